"""The outputs in metres during a bag replay, scored against a synthetic bag's ground truth (issue 17).

A bag gets these scores when it carries what they need. That means:
- the rig's camera mounts in its metadata (``seg_perception.synth`` -> ``rig``, written by ``seg-perception
  synth``);
- each scored camera's CameraInfo;
- the ground truth in base_link: ``/labels/lanes`` (LaneBoundaryArray) and ``/labels/obstacles``
  (ObstacleList).

The ego's odometry (``/odom``, nav_msgs/Odometry), where the bag has it, goes to the pipeline as the node's
``~/in/odometry`` does: velocities are then estimated with the ego's own motion taken out.

The replay then gives the pipeline each camera's geometry, as the node does from its parameters and
camera_info, and turns the drivable grid on. Each time step is scored once its cameras' results, their label
images and its ground truth have all arrived, in whatever order the bag holds them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from seg_perception.datasets.synthetic import GROUND_TRUTH_LANES_TOPIC, GROUND_TRUTH_OBSTACLES_TOPIC, ODOMETRY_TOPIC
from seg_perception.evaluation.metric_outputs import (
    MetricOutputScores,
    TruthFrame,
    TruthObstacle,
    along_road,
    free_space_iou_counts,
    ground_visibility,
    lane_stations,
    match_instances,
    truth_grid,
)
from seg_perception.geometry.camera import GeometryError, Intrinsics, Mount
from seg_perception.geometry.grid import GridSpec
from seg_perception.geometry.motion import EgoMotion
from seg_perception.pipeline.pipeline import CameraGeometry, FrameResult, PerceptionPipeline
from seg_perception.ros_io.stamps import stamp_ns

TRUTH_LANES_TOPIC = GROUND_TRUTH_LANES_TOPIC
TRUTH_OBSTACLES_TOPIC = GROUND_TRUTH_OBSTACLES_TOPIC
SYNTH_METADATA_KEY = "seg_perception.synth"
GROUND_CLASSES = ("road", "lane_marking")  # the ground a lane marking lies on: where it can be seen
MAX_RANGE_M = 120.0  # the node's defaults (config/perception.param.yaml geometry.max_range_m ...
SIDEWALK_HEIGHT_M = 0.12  # ... and geometry.sidewalk_height_m)
DEFAULT_GRID = GridSpec()  # the node's defaults: 0.2 m cells, 20 m behind to 60 m ahead, 20 m either side


@dataclass
class BirdsEyeSample:
    """One time step seen from above, predicted beside true (the report's bird's-eye plot)."""

    bag: str
    stamp_ns: int
    spec: GridSpec
    grid: np.ndarray
    truth_grid: np.ndarray
    lanes: list[np.ndarray]
    truth_lanes: list[np.ndarray]
    obstacles: list[tuple[tuple[float, float], tuple[float, float] | None]]  # ground contact, velocity
    truth_obstacles: list[tuple[tuple[float, float], tuple[float, float]]]


def bag_rig(reader: Any) -> dict[str, Mount]:
    """Camera mounts from a synthetic bag's metadata; empty when the bag has none (a real drive)."""
    for bag in reader.readers:
        storage = getattr(bag, "storage", None)  # rosbag2 readers; ROS 1 bags have no custom metadata
        custom = getattr(getattr(storage, "metadata", None), "custom", None) or {}
        text = custom.get(SYNTH_METADATA_KEY)
        if not text:
            continue
        rig = json.loads(text).get("rig") or {}
        try:
            return {camera: Mount(**{k: float(v) for k, v in mount.items()}) for camera, mount in rig.items()}
        except (TypeError, GeometryError) as error:
            raise ValueError(f"bag {bag.path}: metadata rig is malformed: {error}") from error
    return {}


def truth_from_messages(stamp_ns: int, lanes_msg: Any, obstacles_msg: Any) -> TruthFrame:
    """A TruthFrame from the bag's LaneBoundaryArray and ObstacleList (both in base_link)."""
    for msg in (lanes_msg, obstacles_msg):
        if msg.header.frame_id != "base_link":
            raise ValueError(f"ground truth must be in base_link, got frame {msg.header.frame_id!r}")
    lanes = tuple(np.array([[p.x, p.y] for p in b.points], np.float64).reshape(-1, 2) for b in lanes_msg.boundaries)
    obstacles = {}
    for o in obstacles_msg.obstacles:
        contact = np.array([o.position.x, o.position.y], np.float64)
        obstacles[int(o.instance_id)] = TruthObstacle(
            instance_id=int(o.instance_id), track_id=int(o.track_id), class_name=str(o.class_name),
            contact_xy=contact, range_m=float(np.hypot(*contact)),
            velocity_xy=np.array([o.velocity.x, o.velocity.y], np.float64))
    return TruthFrame(stamp_ns, lanes, obstacles)


@dataclass
class _Step:
    cameras: set[str] = field(default_factory=set)  # processed with geometry, waiting for labels
    scored: dict[str, tuple[FrameResult, dict[str, np.ndarray], list[np.ndarray]]] = field(default_factory=dict)
    grid: np.ndarray | None = None
    lanes: Any = None
    obstacles: Any = None


class MetricReplay:
    """The replay's side of the metric outputs for one bag (see the module docstring)."""

    def __init__(self, pipeline: PerceptionPipeline, scores: MetricOutputScores, rig: Mapping[str, Mount],
                 cameras: Mapping[str, str], *, bag_name: str, spec: GridSpec = DEFAULT_GRID,
                 sample_step: int = 0, samples: list[BirdsEyeSample] | None = None) -> None:
        self.pipeline, self.scores, self.rig, self.bag_name, self.spec = pipeline, scores, rig, bag_name, spec
        # a camera's topics share its namespace, as the label topics do (/front/image_raw, /front/camera_info)
        self.info_topics = {"/" + topic.strip("/").split("/")[0] + "/camera_info": camera
                            for camera, topic in cameras.items() if camera in rig}
        names = pipeline.card.class_names
        self.ground_ids = [names.index(n) for n in GROUND_CLASSES if n in names]
        self.steps: dict[int, _Step] = {}
        self.sample_step, self.samples, self.steps_scored = sample_step, samples, 0
        pipeline.set_grid(spec)

    @property
    def topics(self) -> set[str]:
        return set(self.info_topics) | {TRUTH_LANES_TOPIC, TRUTH_OBSTACLES_TOPIC, ODOMETRY_TOPIC}

    def on_message(self, topic: str, msg: Any) -> None:
        if topic in self.info_topics:
            camera = self.info_topics[topic]
            if camera not in self.pipeline.geometry:  # CameraInfo of a synthetic rig does not change
                self.pipeline.set_geometry(camera, CameraGeometry(Intrinsics.from_camera_info(msg), self.rig[camera],
                                                                   max_range_m=MAX_RANGE_M,
                                                                   sidewalk_height_m=SIDEWALK_HEIGHT_M))
            return
        if topic == ODOMETRY_TOPIC:
            self.pipeline.set_ego_motion(EgoMotion.from_odometry(msg))
            self.scores.odometry_messages += 1
            return
        step = self.steps.setdefault(stamp_ns(msg.header.stamp), _Step())
        if topic == TRUTH_LANES_TOPIC:
            step.lanes = msg
        else:
            step.obstacles = msg
        self._finish_if_complete(stamp_ns(msg.header.stamp))

    def after_process(self, results: Sequence[FrameResult]) -> None:
        """A batch (one time step) left the pipeline: its grid and each camera's lanes, kept until scored."""
        grid = self.pipeline.update_grid(results)
        for result in results:
            if result.frame.camera not in self.pipeline.geometry:
                continue
            step = self.steps.setdefault(result.frame.stamp_ns, _Step())
            step.cameras.add(result.frame.camera)
            if grid is not None:
                step.grid = grid[0]
            result.extra["lanes"] = self.pipeline.lane_boundaries(result) or []

    def on_labels(self, result: FrameResult, labels: Mapping[str, np.ndarray]) -> None:
        """A camera's result with its label images (semantic, instance, drivable)."""
        camera, stamp = result.frame.camera, result.frame.stamp_ns
        step = self.steps.get(stamp)
        if step is None or camera not in step.cameras or not {"semantic", "instance"} <= set(labels):
            return
        size = result.semantic.shape
        fitted = {k: v if v.shape == size else cv2.resize(v, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
                  for k, v in labels.items()}
        step.scored[camera] = (result, fitted, [b.points_xy for b in result.extra.get("lanes", [])])
        self._finish_if_complete(stamp)

    def _finish_if_complete(self, stamp: int) -> None:
        step = self.steps.get(stamp)
        if step is None or step.lanes is None or step.obstacles is None or not step.cameras \
                or set(step.scored) != step.cameras:
            return
        del self.steps[stamp]
        truth = truth_from_messages(stamp, step.lanes, step.obstacles)
        drivable, obstacles, lookups = {}, {}, {}
        for camera, (result, labels, lanes) in step.scored.items():
            self._score_camera(camera, result, labels, lanes, truth)
            if step.grid is not None and "drivable" in labels:
                height, width = result.semantic.shape
                lookups[camera] = self.pipeline.grid_lookup(camera, width, height)  # the one the grid used
                drivable[camera] = labels["drivable"]
                obstacles[camera] = self.pipeline.role_tables["obstacles"][labels["semantic"]] \
                    if "obstacles" in self.pipeline.role_tables else None
        true_grid = None
        if lookups:
            true_grid = truth_grid(self.spec, lookups, drivable, {k: v for k, v in obstacles.items() if v is not None},
                                   [o.contact_xy for o in truth.obstacles.values()])
            self.scores.add_grid(free_space_iou_counts(step.grid, true_grid, self.spec))
        if self.samples is not None and self.steps_scored == self.sample_step and true_grid is not None:
            self.samples.append(self._sample(stamp, step, truth, true_grid))
        self.steps_scored += 1

    def _score_camera(self, camera: str, result: FrameResult, labels: Mapping[str, np.ndarray],
                      lanes: list[np.ndarray], truth: TruthFrame) -> None:
        mount = self.rig[camera]
        height, width = result.semantic.shape
        if along_road(mount.yaw) and self.ground_ids and "lane" in result.masks:
            ground = np.isin(labels["semantic"], self.ground_ids)
            projector = self.pipeline.projector(camera, width, height)
            self.scores.add_lanes(lane_stations(lanes, truth.lanes, yaw_rad=mount.yaw,
                                                visible=ground_visibility(projector, ground)))
        located = [o for o in result.obstacles if o.ground_xy_m is not None]
        self.scores.add_obstacles(match_instances(result.instances, located, labels["instance"].astype(np.int64)),
                                  truth, len(located))

    def _sample(self, stamp: int, step: _Step, truth: TruthFrame, true_grid: np.ndarray) -> BirdsEyeSample:
        obstacles = [(o.ground_xy_m, o.velocity_xy_mps) for result, _, _ in step.scored.values()
                     for o in result.obstacles if o.ground_xy_m is not None]
        return BirdsEyeSample(
            bag=self.bag_name, stamp_ns=stamp, spec=self.spec, grid=step.grid, truth_grid=true_grid,
            lanes=[lane for _, _, lanes in step.scored.values() for lane in lanes], truth_lanes=list(truth.lanes),
            obstacles=obstacles,
            truth_obstacles=[(tuple(o.contact_xy), tuple(o.velocity_xy)) for o in truth.obstacles.values()
                             if math.isfinite(o.range_m)])
