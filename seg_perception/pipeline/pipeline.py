"""The perception pipeline without ROS: camera frames in, masks, instances and obstacles out.

``preprocess -> backend (network + in-graph smoothing) -> panoptic grouping -> tracking -> role masks``.
The ROS node, ``seg-perception eval`` on bags and the benchmark all run this same code.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from seg_perception.geometry import GroundProjector, Intrinsics, Mount
from seg_perception.geometry.grid import CameraGridLookup, GridFuser, GridSpec
from seg_perception.geometry.lanes import LaneBoundary, fit_lane_boundaries
from seg_perception.geometry.motion import EgoMotion, VelocityFilter
from seg_perception.inference.backends import Backend
from seg_perception.inference.preprocess import resize_batch
from seg_perception.models.card import ModelCard
from seg_perception.pipeline.smoothing import TemporalSmoother
from seg_perception.pipeline.tracking import ObstacleTracker
from seg_perception.postprocess.panoptic import PanopticConfig, group_batch
from seg_perception.postprocess.publish import MapMaker
from seg_perception.postprocess.roles import ROLE_NAMES, RoleMapping

OUTPUT_RESOLUTIONS = ("model", "camera")
STAGES = ("preprocess", "inference", "postprocess", "smoothing")
SIDEWALK = "sidewalk"
TWO_WHEELERS = ("bicycle", "motorcycle")  # what a rider stands on: its ground contact is theirs
WALKERS = ("person",)  # walking speeds and accelerations in the velocity filter
# How far a vehicle's body reaches beyond its lowest visible ground contact, its tyres, along base_link x:
# the overhang in front of the front axle or behind the rear one (typical passenger cars: 0.8-1.0 m). Traffic
# is assumed to run parallel to the vehicle, so a contact is moved that far along base_link x, towards it.
DEFAULT_OVERHANGS_M = (("car", 0.9),)


@dataclass(frozen=True)
class CameraFrame:
    camera: str
    image: np.ndarray  # (H, W, 3) uint8 RGB
    stamp_ns: int  # the image header's stamp
    frame_id: str
    receive_ns: int = 0  # when it arrived, on the stamp's clock (0 when unknown, e.g. bag replay)
    receive_steady_ns: int = 0  # when it arrived, on the steady clock (time.monotonic_ns; 0 when unknown)
    header: Any = None  # the original ROS header, copied to every output (None outside ROS)


@dataclass(frozen=True)
class Obstacle:
    instance_id: int  # value in the instance image
    track_id: int  # stable across frames of one camera
    class_id: int
    class_name: str
    score: float
    bbox_xywh: tuple[int, int, int, int]  # output-resolution pixels
    area_px: int
    centroid_xy: tuple[float, float]
    # In metres, with the camera's geometry (intrinsics and mount; see set_geometry), else None. The ground
    # contact is the bottom of the mask below its centroid, projected onto the flat ground of base_link (a
    # vehicle's then moved by its overhang, CameraGeometry.overhangs_m); None too when that bottom is cut by
    # the image's lower edge (the true contact is out of view).
    ground_xy_m: tuple[float, float] | None = None
    range_m: float | None = None  # distance of the ground contact from the base_link origin
    bearing_rad: float | None = None  # its direction, counter-clockwise from x (forward)
    velocity_xy_mps: tuple[float, float] | None = None  # relative to base_link; tracked obstacles, from frame 2
    velocity_samples: int = 0  # positions the velocity estimate rests on (0: no position)
    # over the ground in base_link axes: with odometry (set_ego_motion) only
    velocity_over_ground_xy_mps: tuple[float, float] | None = None


@dataclass(frozen=True)
class CameraGeometry:
    """What turns one camera's pixels into metres: its intrinsics (CameraInfo) and its mount on the vehicle."""

    intrinsics: Intrinsics
    mount: Mount
    max_range_m: float = 200.0
    # How far sidewalks stand above the road: obstacles seen standing on one are projected onto that height
    # (0: the ground is flat everywhere).
    sidewalk_height_m: float = 0.0
    # (class name, metres): vehicles' contacts moved by their overhang (see DEFAULT_OVERHANGS_M)
    overhangs_m: tuple[tuple[str, float], ...] = DEFAULT_OVERHANGS_M

    def projector_for(self, width: int, height: int) -> GroundProjector:
        """For images of this size (intrinsics are scaled when CameraInfo describes another resolution)."""
        intrinsics = self.intrinsics
        if (intrinsics.width, intrinsics.height) != (width, height):
            intrinsics = intrinsics.scaled_to(width, height)
        return GroundProjector(intrinsics, self.mount, max_range_m=self.max_range_m)


@dataclass
class FrameResult:
    frame: CameraFrame
    semantic: np.ndarray  # (H, W) uint8 class ids at output resolution
    instances: np.ndarray  # (H, W) uint16 instance ids, 0 = none; ids match ``obstacles``
    masks: dict[str, np.ndarray]  # role -> (H, W) uint8 0/255; unavailable roles are absent
    obstacles: tuple[Obstacle, ...]
    timings_ms: dict[str, float]  # per stage (STAGES), shared by the frames of one batch
    batch_size: int
    smoothed: bool  # False when off, or reset for ``reset_reason``
    reset_reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PipelineSettings:
    output_resolution: str = "camera"
    smoothing_enabled: bool = True
    smoothing_strength: float = 0.0  # exponential weight of the previous logits
    smoothing_label_prior: float = 0.6  # logit bonus of the previous frame's class (hysteresis)
    smoothing_max_gap_s: float = 0.5
    tracking_iou_threshold: float = 0.3
    tracking_max_misses: int = 2

    def __post_init__(self) -> None:
        # Checked whole before anything is applied: a live change is taken entirely or not at all.
        if self.output_resolution not in OUTPUT_RESOLUTIONS:
            raise ValueError(f"output_resolution must be one of {OUTPUT_RESOLUTIONS}, got {self.output_resolution!r}")
        _check_finite_range("smoothing_strength", self.smoothing_strength, 0.0, 1.0, high_open=True)
        _check_finite_range("smoothing_label_prior", self.smoothing_label_prior, 0.0, math.inf)
        _check_finite_range("smoothing_max_gap_s", self.smoothing_max_gap_s, 0.0, math.inf, low_open=True)
        _check_finite_range("tracking_iou_threshold", self.tracking_iou_threshold, 0.0, 1.0)
        if self.tracking_max_misses < 0:
            raise ValueError(f"tracking_max_misses must be >= 0, got {self.tracking_max_misses}")


def _check_finite_range(name: str, value: float, low: float, high: float, *, low_open: bool = False,
                        high_open: bool = False) -> None:
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if not (math.isfinite(value) and above and below):
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be a finite number in {interval}, got {value}")


def role_lookup_tables(mapping: RoleMapping) -> dict[str, np.ndarray]:
    """role -> 256-entry uint8 table (255 for the role's classes), so a mask is one lookup of the class map."""
    tables = {}
    obstacle_ids = set(mapping.obstacles)
    for role in ROLE_NAMES:
        ids = getattr(mapping, role)
        if not ids:
            continue  # unavailable: no mask at all, never an empty one
        if role == "drivable":
            ids = tuple(i for i in ids if i not in obstacle_ids)
        table = np.zeros(256, np.uint8)
        table[list(ids)] = 255
        tables[role] = table
    return tables


class PerceptionPipeline:
    def __init__(self, backend: Backend, card: ModelCard, roles: RoleMapping,
                 settings: PipelineSettings = PipelineSettings()) -> None:
        self.backend, self.card, self.roles = backend, card, roles
        self.panoptic = PanopticConfig.for_input(card.thing_ids, backend.input_size)
        self.role_tables = role_lookup_tables(roles)
        self.map_maker = MapMaker(self.role_tables)
        self.smoother = TemporalSmoother(enabled=settings.smoothing_enabled, strength=settings.smoothing_strength,
                                         label_prior=settings.smoothing_label_prior,
                                         max_gap_s=settings.smoothing_max_gap_s)
        self.trackers: dict[str, ObstacleTracker] = {}
        self.settings = settings
        self.geometry: dict[str, CameraGeometry] = {}  # cameras whose obstacles get metres
        # (kind, camera, width, height) -> (the geometry it was built from, the projector or grid lookup)
        self._per_geometry: dict[tuple[str, str, int, int], tuple[CameraGeometry, Any]] = {}
        self.motion = VelocityFilter()
        self.grid_fuser: GridFuser | None = None  # set_grid turns the drivable-area grid on

    def set_geometry(self, camera: str, geometry: CameraGeometry | None) -> None:
        """Give a camera's obstacles positions in metres (None: pixels only again). Safe to call while
        another thread runs ``process``: the next frame of that camera uses it."""
        if geometry is None:
            self.geometry.pop(camera, None)
        else:
            self.geometry[camera] = geometry

    def set_ego_motion(self, motion: EgoMotion) -> None:
        """The vehicle's own motion (odometry): velocities are then estimated over the ground, the ego's motion
        taken out (geometry/motion.py). Any thread, any order."""
        self.motion.add_ego_motion(motion)

    def set_grid(self, spec: GridSpec | None, *, max_age_s: float = 0.5) -> None:
        """Fuse the cameras' drivable masks into a grid on the ground (None: off)."""
        self.grid_fuser = None if spec is None else GridFuser(spec, max_age_s=max_age_s)
        self._per_geometry = {key: value for key, value in self._per_geometry.items() if key[0] != "grid"}

    def update_grid(self, results: Sequence[FrameResult]) -> tuple[np.ndarray, int] | None:
        """Fold a batch's drivable and obstacle masks into the grid; (grid, newest stamp) or None when there is
        no grid: off, no camera with geometry yet, or a model without a drivable role."""
        if self.grid_fuser is None:
            return None
        for result in results:
            camera = result.frame.camera
            drivable = result.masks.get("drivable")
            lookup = None if drivable is None else self.grid_lookup(camera, drivable.shape[1], drivable.shape[0])
            if lookup is None:
                self.grid_fuser.forget(camera)
                continue
            votes = lookup.observe(drivable, result.masks.get("obstacles"))
            contacts = [o.ground_xy_m for o in result.obstacles if o.ground_xy_m is not None]
            self.grid_fuser.update(camera, result.frame.stamp_ns, votes, contacts)
        return self.grid_fuser.grid()

    def lane_boundaries(self, result: FrameResult) -> list[LaneBoundary] | None:
        """The frame's lane boundaries in metres; None without the camera's geometry or a lane role."""
        lane = result.masks.get("lane")
        if lane is None:
            return None
        projector = self.projector(result.frame.camera, lane.shape[1], lane.shape[0])
        return None if projector is None else fit_lane_boundaries(lane, projector,
                                                                  max_range_m=min(60.0, projector.max_range_m))

    def projector(self, camera: str, width: int, height: int) -> GroundProjector | None:
        """The camera's pixels-to-ground projector for images of this size; None without its geometry."""
        return self._for_geometry("projector", camera, width, height, lambda g: g.projector_for(width, height))

    def grid_lookup(self, camera: str, width: int, height: int) -> CameraGridLookup | None:
        """The camera's cell-to-pixel lookup of the grid for masks of this size; None without a grid or the
        camera's geometry."""
        if self.grid_fuser is None:
            return None
        spec = self.grid_fuser.spec
        return self._for_geometry("grid", camera, width, height,
                                  lambda g: CameraGridLookup(self.projector(camera, width, height), spec))

    def _for_geometry(self, kind: str, camera: str, width: int, height: int,
                      build: Callable[[CameraGeometry], Any]) -> Any:
        """Built once per camera geometry and image size: a new CameraInfo or mount (a new geometry object)
        builds it again."""
        geometry = self.geometry.get(camera)
        if geometry is None:
            return None
        key = (kind, camera, width, height)
        cached = self._per_geometry.get(key)
        if cached is None or cached[0] is not geometry:
            cached = (geometry, build(geometry))
            self._per_geometry[key] = cached
        return cached[1]

    def configure(self, settings: PipelineSettings) -> None:
        """Live changes (smoothing, tracking, output resolution); the streams' state is kept."""
        self.smoother.configure(enabled=settings.smoothing_enabled, strength=settings.smoothing_strength,
                                label_prior=settings.smoothing_label_prior, max_gap_s=settings.smoothing_max_gap_s)
        if (settings.tracking_iou_threshold, settings.tracking_max_misses) != (
                self.settings.tracking_iou_threshold, self.settings.tracking_max_misses):
            self.trackers.clear()
        self.settings = settings

    def _tracker(self, camera: str) -> ObstacleTracker:
        if camera not in self.trackers:
            self.trackers[camera] = ObstacleTracker(iou_threshold=self.settings.tracking_iou_threshold,
                                                    max_misses=self.settings.tracking_max_misses)
        return self.trackers[camera]

    def process(self, frames: Sequence[CameraFrame]) -> list[FrameResult]:
        """One backend call for the batch (one frame per camera); raises the backend's errors."""
        if not frames:
            return []
        timings: dict[str, float] = {}
        cameras = [f.camera for f in frames]
        stamps = [f.stamp_ns for f in frames]
        sizes = [(f.image.shape[1], f.image.shape[0]) for f in frames]

        start = time.perf_counter()
        batch = resize_batch([f.image for f in frames], self.backend.input_size,
                             out=self.backend.input_buffer(len(frames)))
        timings["preprocess"] = _ms(start)

        start = time.perf_counter()
        reasons = [self.smoother.discontinuity(c, s, z) for c, s, z in zip(cameras, stamps, sizes, strict=True)]
        previous, weights = self.smoother.inputs(cameras, reasons, self.backend.state_shape)
        smoothing_ms = _ms(start)

        start = time.perf_counter()
        # The outputs stay where the backend made them (the GPU's memory on CUDA): post-processing runs
        # there too, and only the published maps cross to the host (postprocess/publish.py). On CUDA this
        # stage therefore times the queueing of the network; its GPU time lands in the first stage that
        # waits for a result.
        outputs = self.backend.infer(batch, previous, weights)
        semantic_ids, center, offset = outputs.semantic_ids, outputs.center, outputs.offset
        timings["inference"] = _ms(start)

        start = time.perf_counter()
        self.smoother.update(cameras, stamps, sizes, outputs.semantic_logits)
        smoothing_ms += _ms(start)

        start = time.perf_counter()
        if center is not None and offset is not None:
            panoptic = group_batch(semantic_ids, center, offset, self.panoptic)
            semantic_maps = [p.semantic for p in panoptic]
            instance_maps = [p.instances for p in panoptic]
            infos = [p.infos for p in panoptic]
        else:  # a model without an instance head: no instances, obstacles come from the class map only
            semantic_maps = list(semantic_ids)
            instance_maps = [torch.zeros(m.shape, dtype=torch.int16, device=m.device) for m in semantic_maps]
            infos = [() for _ in frames]
        requests, scales = [], []
        for i in range(len(frames)):
            model_size, size = (semantic_maps[i].shape[1], semantic_maps[i].shape[0]), sizes[i]
            scale, output_size = (1.0, 1.0), None
            if self.settings.output_resolution == "camera" and size != model_size:
                scale, output_size = (size[0] / model_size[0], size[1] / model_size[1]), size
            requests.append((semantic_maps[i], instance_maps[i], output_size, len(infos[i])))
            scales.append(scale)
        published = self.map_maker.to_host(requests)
        timings["postprocess"] = _ms(start)

        start = time.perf_counter()
        track_ids = []
        # The tracker matches at the model's resolution, where the maps are (on a GPU: only counts cross).
        for camera, reason, instances, frame_infos in zip(cameras, reasons, instance_maps, infos, strict=True):
            tracker = self._tracker(camera)
            if reason is not None and reason != "first_frame":
                tracker.reset()
                self.motion.reset(camera)
            boxes = {i.instance_id: (i.bbox_xywh[0] + i.bbox_xywh[2] / 2, i.bbox_xywh[1] + i.bbox_xywh[3] / 2,
                                     float(i.bbox_xywh[2]), float(i.bbox_xywh[3])) for i in frame_infos}
            track_ids.append(tracker.update(instances, {i.instance_id: i.class_id for i in frame_infos}, boxes))
        timings["smoothing"] = smoothing_ms + _ms(start)

        start = time.perf_counter()
        results = []
        for i, (frame, maps) in enumerate(zip(frames, published, strict=True)):
            obstacles = self._obstacles(infos[i], track_ids[i], maps.areas, scales[i])
            projector = self.projector(frame.camera, *sizes[i]) if obstacles else None
            if projector is not None:
                model_size = semantic_maps[i].shape[1], semantic_maps[i].shape[0]
                obstacles = self._in_metres(frame, obstacles, infos[i], projector, model_size, maps.semantic)
            results.append(FrameResult(frame=frame, semantic=maps.semantic, instances=maps.instances, masks=maps.masks,
                                       obstacles=obstacles, timings_ms=timings, batch_size=len(frames),
                                       smoothed=weights is not None and bool(weights[i].any()),
                                       reset_reason=reasons[i]))
        timings["postprocess"] += _ms(start)
        return results

    def _obstacles(self, infos, track_ids: dict[int, int], areas: np.ndarray,
                   scale: tuple[float, float]) -> tuple[Obstacle, ...]:
        """``areas``: pixels per instance id, counted at the output resolution (exact there)."""
        if not infos:
            return ()
        sx, sy = scale
        names = self.card.class_names
        obstacles = []
        for info in infos:
            x, y, w, h = info.bbox_xywh
            x0, y0 = int(np.floor(x * sx)), int(np.floor(y * sy))
            x1, y1 = int(np.ceil((x + w) * sx)), int(np.ceil((y + h) * sy))
            obstacles.append(Obstacle(
                instance_id=info.instance_id, track_id=track_ids[info.instance_id], class_id=info.class_id,
                class_name=names[info.class_id], score=info.score, bbox_xywh=(x0, y0, x1 - x0, y1 - y0),
                area_px=int(areas[info.instance_id]),
                centroid_xy=((info.centroid_xy[0] + 0.5) * sx - 0.5, (info.centroid_xy[1] + 0.5) * sy - 0.5)))
        return tuple(obstacles)

    def _in_metres(self, frame: CameraFrame, obstacles: tuple[Obstacle, ...], infos, projector: GroundProjector,
                   model_size: tuple[int, int], semantic: np.ndarray) -> tuple[Obstacle, ...]:
        """Ground contact (the bottom edge of the mask's lowest row, below its centroid; a rider's is its
        two-wheeler's; a vehicle's moved by its overhang) in camera pixels, projected; velocities from the
        camera's track history."""
        sx, sy = frame.image.shape[1] / model_size[0], frame.image.shape[0] / model_size[1]
        carriers = self._carriers(infos)
        touching = [carriers.get(i, info) for i, info in enumerate(infos)]
        names = self.card.class_names
        # a rider without its two-wheeler seen under it: its own feet are off the ground (about 40 % too far)
        floating = {i for i, info in enumerate(infos) if names[info.class_id] == "rider" and i not in carriers}
        contacts = np.array([((info.centroid_xy[0] + 0.5) * sx - 0.5,
                              (info.bbox_xywh[1] + info.bbox_xywh[3]) * sy - 0.5) for info in touching])
        # with the ground one pixel of the masks spans there: the velocity filter's measurement noise
        ground, steps = projector.to_ground_with_steps(contacts, self._ground_heights(frame, contacts, semantic),
                                                       pixel_size=(sx, sy))
        overhangs = dict(self.geometry[frame.camera].overhangs_m)
        out = []
        for index, (obstacle, info, (x, y), step) in enumerate(zip(obstacles, touching, ground, steps, strict=True)):
            # At or above the horizon, beyond max_range_m, or cut by the image's bottom edge (its contact is
            # below the view, nearer than the last row's ground, which would place it too far): no position.
            if not (math.isfinite(x) and math.isfinite(y)) or info.bbox_xywh[1] + info.bbox_xywh[3] >= model_size[1] \
                    or index in floating:
                out.append(obstacle)
                continue
            overhang = overhangs.get(obstacle.class_name, 0.0)
            x = math.copysign(max(abs(x) - overhang, 0.0), x)
            estimate = self.motion.update(frame.camera, obstacle.track_id, (float(x), float(y)), frame.stamp_ns,
                                          pixel_steps=step,
                                          walker=obstacle.class_name in WALKERS)
            out.append(replace(obstacle, ground_xy_m=(float(x), float(y)), range_m=float(math.hypot(x, y)),
                               bearing_rad=float(math.atan2(y, x)), velocity_xy_mps=estimate.velocity_xy_mps,
                               velocity_samples=estimate.samples,
                               velocity_over_ground_xy_mps=estimate.over_ground_xy_mps))
        self.motion.forget_older_than(frame.stamp_ns)
        return tuple(out)

    def _ground_heights(self, frame: CameraFrame, contacts: np.ndarray, semantic: np.ndarray) -> np.ndarray | float:
        """Height of the ground under each contact: the camera's sidewalk height where the published map shows
        sidewalk just below it (people mostly stand there: flat ground would place them too far), else 0."""
        raised = self.geometry[frame.camera].sidewalk_height_m
        if not raised or SIDEWALK not in self.card.class_names:
            return 0.0
        height, width = semantic.shape
        columns = np.clip(np.rint((contacts[:, 0] + 0.5) * width / frame.image.shape[1] - 0.5), 0, width - 1)
        rows = np.clip(np.rint((contacts[:, 1] + 0.5) * height / frame.image.shape[0] - 0.5) + 2, 0, height - 1)
        below = semantic[rows.astype(np.int64), columns.astype(np.int64)]
        return np.where(below == self.card.class_names.index(SIDEWALK), raised, 0.0)

    def _carriers(self, infos) -> dict[int, Any]:
        """Riders touch the ground through their bicycle or motorcycle: index of each rider -> the two-wheeler
        instance under it (the one whose box holds the rider's centre column and reaches below the rider's feet,
        starting no lower than them), whose bottom is the rider's ground contact. Riders without one get no
        position."""
        names = self.card.class_names
        wheels = [info for info in infos if names[info.class_id] in TWO_WHEELERS]
        out = {}
        for index, info in enumerate(infos):
            if names[info.class_id] != "rider" or not wheels:
                continue
            centre, feet = info.centroid_xy[0], info.bbox_xywh[1] + info.bbox_xywh[3]
            under = [b for b in wheels if b.bbox_xywh[0] <= centre <= b.bbox_xywh[0] + b.bbox_xywh[2]
                     and b.bbox_xywh[1] <= feet <= b.bbox_xywh[1] + b.bbox_xywh[3] + 1]
            if under:
                out[index] = max(under, key=lambda b: b.bbox_xywh[1] + b.bbox_xywh[3])
        return out


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0
