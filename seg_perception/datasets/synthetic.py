"""Writing the synthetic driving world to disk: a Cityscapes folder or ROS 2 bags.

Both outputs carry the same exact ground truth. In a bag, each camera ``<cam>`` has::

    /<cam>/image_raw            sensor_msgs/Image rgb8 (or /<cam>/image_raw/compressed, jpeg)
    /<cam>/camera_info          sensor_msgs/CameraInfo
    /<cam>/labels/semantic      sensor_msgs/Image mono8, trainIds of seg_perception.datasets.labels
    /<cam>/labels/instance      sensor_msgs/Image mono16, Cityscapes instanceIds (labelId*1000+track id)
    /<cam>/labels/drivable      sensor_msgs/Image mono8, 0/255
    /<cam>/labels/lane          sensor_msgs/Image mono8, 0/255

all stamped with the capture time (header.stamp and the bag's log time), frame_id ``<cam>_optical_frame``.
Per time step, the exact geometry in metres in ``base_link`` (see ``seg_perception.synth.ground_truth``):

    /labels/lanes               seg_perception_msgs/LaneBoundaryArray, every painted marking line
    /labels/obstacles           seg_perception_msgs/ObstacleList, every visible thing instance: position =
                                ground contact, velocity relative to base_link

stamped with the step's capture time, frame_id ``base_link``; the bag's metadata (``seg_perception.synth``)
holds the rig's camera mounts under ``rig`` (as ``camera_mount``). A Cityscapes folder holds the same
geometry in ``gtGeometry/<split>/<city>/<stem>_gtGeometry.json`` (read it with
``seg_perception.synth.ground_truth.read_ground_truth``).

``variety=True`` (``seg-perception synth --variety``) writes the opt-in harder scenes of
``seg_perception.synth.config.Variety`` (motorcycles with riders, crosswalks, dusk/night, rain) and records
``"variety": true`` in the manifest and bag metadata. Without it the output, manifest included, is what it
was before the option existed, so the recorded held-out splits (seed 2000 etc.) stay fixed.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from tqdm import tqdm

from seg_perception import __version__
from seg_perception.datasets import cityscapes, labels
from seg_perception.ros_io.image_codec import to_compressed_msg, to_image_msg
from seg_perception.synth import CameraModel, SynthFrame, describe_sequence, render_sequence

if TYPE_CHECKING:  # rosbags is needed to write bags only, not image folders (GPU machines lack it)
    from seg_perception.bags.writer import BagWriter, Storage

OutputFormat = Literal["cityscapes", "bag"]
GROUND_TRUTH_LANES_TOPIC = "/labels/lanes"
GROUND_TRUTH_OBSTACLES_TOPIC = "/labels/obstacles"
GROUND_TRUTH_FRAME_ID = "base_link"
# The ego's odometry (nav_msgs/Odometry, twist in base_link): a sensor, not a label; the node's
# ~/in/odometry is remapped onto it, and `eval` takes the ego's motion out of obstacle velocities with it.
ODOMETRY_TOPIC = "/odom"
ODOMETRY_FRAME_ID = "odom"


def manifest_path(out: Path, fmt: OutputFormat, split: str) -> Path:
    """One manifest per output, so a train and a val split can share a folder."""
    return out / ("synth_manifest.json" if fmt == "bag" else f"synth_manifest_{split}.json")


@dataclass(frozen=True)
class CameraTopics:
    image: str
    compressed_image: str
    camera_info: str
    semantic: str
    instance: str
    drivable: str
    lane: str
    frame_id: str


def camera_topics(camera: str) -> CameraTopics:
    """Topic names of one camera in a synthetic bag (the evaluation reads the label topics)."""
    return CameraTopics(
        image=f"/{camera}/image_raw", compressed_image=f"/{camera}/image_raw/compressed",
        camera_info=f"/{camera}/camera_info", semantic=f"/{camera}/labels/semantic",
        instance=f"/{camera}/labels/instance", drivable=f"/{camera}/labels/drivable",
        lane=f"/{camera}/labels/lane", frame_id=f"{camera}_optical_frame",
    )


def city_name(camera: str) -> str:
    """Cityscapes 'city' of a camera: file names are split on '_', so camera names lose theirs."""
    return "synth-" + camera.replace("_", "-")


def camera_json(camera: CameraModel) -> dict[str, Any]:
    """Cityscapes camera file: extrinsics in metres/radians relative to the vehicle, intrinsics in pixels."""
    return {
        "extrinsic": {"baseline": 0.0, "pitch": math.radians(camera.pitch_deg), "roll": 0.0, "x": 0.0, "y": 0.0,
                      "yaw": math.radians(camera.yaw_deg), "z": camera.mount_height_m},
        "intrinsic": {"fx": camera.fx, "fy": camera.fy, "u0": camera.cx, "v0": camera.cy},
    }


def camera_mount(camera: CameraModel) -> dict[str, float]:
    """The camera's mount in base_link as ``seg_perception.geometry.camera.Mount`` takes it (metres, radians;
    positive pitch looks down, positive yaw to the left): the extrinsics of ``camera_json``."""
    return {"x": 0.0, "y": 0.0, "z": camera.mount_height_m, "roll": 0.0, "pitch": math.radians(camera.pitch_deg),
            "yaw": math.radians(camera.yaw_deg)}


@dataclass(frozen=True)
class SynthJob:
    """One sequence to render and write (picklable, for worker processes)."""

    out: Path
    fmt: OutputFormat
    seed: int
    sequence: int
    frames: int
    width: int
    height: int
    cameras: tuple[str, ...]
    fps: float
    split: str
    storage: Storage
    compressed: bool
    variety: bool = False


def _frames(job: SynthJob) -> Iterator[dict[str, SynthFrame]]:
    return render_sequence(seed=job.seed, sequence=job.sequence, num_frames=job.frames, width=job.width,
                           height=job.height, cameras=job.cameras, fps=job.fps, variety=job.variety)


def bag_path(out: Path, sequence: int) -> Path:
    return out / f"synth_seq{sequence:03d}"


def _write_cityscapes(job: SynthJob, progress: Any) -> None:
    # PNG encoding releases the GIL: writing in threads overlaps it with rendering the next frame.
    with ThreadPoolExecutor(max_workers=2) as writers:
        pending: list[Future[Any]] = []
        for step in _frames(job):
            for name, frame in step.items():
                pending.append(writers.submit(
                    cityscapes.write_sample, job.out, job.split, city_name(name), frame.sequence, frame.index,
                    image_rgb=frame.image, train_ids=frame.semantic, instance_ids=frame.instance, lane=frame.lane,
                    drivable=frame.drivable, camera=camera_json(frame.camera), geometry=frame.ground_truth,
                ))
            # Bounded queue: never hold more than a few rendered frames in memory.
            while len(pending) > 4 * len(step):
                pending.pop(0).result()
            progress(1)
        for future in pending:
            future.result()


def _camera_info(bag: BagWriter, frame: SynthFrame, header: Any) -> Any:
    camera = frame.camera
    k = camera.intrinsic_matrix().astype(np.float64)
    p = np.hstack([k, np.zeros((3, 1))])
    types = bag.typestore.types
    return types["sensor_msgs/msg/CameraInfo"](
        header=header, height=camera.height, width=camera.width, distortion_model="plumb_bob",
        d=np.zeros(5), k=k.reshape(-1), r=np.eye(3).reshape(-1), p=p.reshape(-1), binning_x=0, binning_y=0,
        roi=types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
    )


def _lanes_msg(bag: BagWriter, truth: dict[str, Any], header: Any) -> Any:
    types = bag.typestore.types
    point = types["geometry_msgs/msg/Point"]
    boundaries = []
    for lane in truth["lanes"]:
        xy = np.asarray(lane["points_xy"], np.float64).reshape(-1, 2)
        boundaries.append(types["seg_perception_msgs/msg/LaneBoundary"](
            points=[point(x=float(x), y=float(y), z=0.0) for x, y in xy], coefficients=np.zeros(3, np.float32),
            style=lane["style"], confidence=1.0, length_m=float(np.hypot(*np.diff(xy, axis=0).T).sum()),
            camera=""))
    return types["seg_perception_msgs/msg/LaneBoundaryArray"](header=header, boundaries=boundaries)


def _obstacles_msg(bag: BagWriter, truth: dict[str, Any], header: Any) -> Any:
    types = bag.typestore.types
    empty_box = types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                          do_rectify=False)
    obstacles = [
        types["seg_perception_msgs/msg/Obstacle"](
            instance_id=o["instance_id"], track_id=o["track_id"], class_id=o["train_id"], class_name=o["class_name"],
            score=1.0, bbox=empty_box, area_px=0, centroid_x_px=0.0, centroid_y_px=0.0, has_position=True,
            position=types["geometry_msgs/msg/Point"](x=o["contact_xy"][0], y=o["contact_xy"][1], z=0.0),
            range_m=o["range_m"], bearing_rad=o["bearing_rad"], has_velocity=True,
            velocity=types["geometry_msgs/msg/Vector3"](x=o["velocity_xy_mps"][0], y=o["velocity_xy_mps"][1], z=0.0),
            velocity_samples=0, has_velocity_over_ground=True,
            velocity_over_ground=types["geometry_msgs/msg/Vector3"](
                x=o["velocity_over_ground_xy_mps"][0], y=o["velocity_over_ground_xy_mps"][1], z=0.0))
        for o in truth["obstacles"]
    ]
    return types["seg_perception_msgs/msg/ObstacleList"](header=header, image_width=0, image_height=0,
                                                         obstacles=obstacles, ground_frame_id=GROUND_TRUTH_FRAME_ID)


def _odometry_msg(bag: BagWriter, frame: SynthFrame, header: Any) -> Any:
    """The ego's exact motion as odometry: pose in the world (as ``odom``), twist in base_link."""
    types = bag.typestore.types
    truth = frame.ground_truth
    assert truth is not None  # render_sequence attaches it to every frame
    x, y, heading = frame.ego_pose
    vx, vy = truth["ego"]["velocity_xy_mps"]
    vector, point = types["geometry_msgs/msg/Vector3"], types["geometry_msgs/msg/Point"]
    turn = types["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=math.sin(heading / 2), w=math.cos(heading / 2))
    pose = types["geometry_msgs/msg/Pose"](position=point(x=float(x), y=float(y), z=0.0), orientation=turn)
    twist = types["geometry_msgs/msg/Twist"](linear=vector(x=float(vx), y=float(vy), z=0.0),
                                             angular=vector(x=0.0, y=0.0, z=float(truth["ego"]["yaw_rate_rps"])))
    return types["nav_msgs/msg/Odometry"](
        header=header, child_frame_id=GROUND_TRUTH_FRAME_ID,
        pose=types["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=np.zeros(36)),
        twist=types["geometry_msgs/msg/TwistWithCovariance"](twist=twist, covariance=np.zeros(36)))


def _write_ground_truth(bag: BagWriter, step: dict[str, SynthFrame]) -> None:
    """The step's lanes and obstacles in base_link (its cameras share one ground truth and one stamp)."""
    frame = next(iter(step.values()))
    assert frame.ground_truth is not None  # render_sequence attaches it to every frame
    header = bag.header(frame.stamp_ns, GROUND_TRUTH_FRAME_ID)
    bag.write(GROUND_TRUTH_LANES_TOPIC, _lanes_msg(bag, frame.ground_truth, header), frame.stamp_ns)
    bag.write(GROUND_TRUTH_OBSTACLES_TOPIC, _obstacles_msg(bag, frame.ground_truth, header), frame.stamp_ns)


def _write_bag(job: SynthJob, progress: Any) -> None:
    steps = _frames(job)
    first = next(steps, {})  # the rig as rendered, for the metadata the bag is opened with
    meta: dict[str, Any] = {"seed": job.seed, "sequence": job.sequence, "fps": job.fps}
    if job.variety:  # only then: bags written without it keep their metadata
        meta["variety"] = True
    meta["rig"] = {name: camera_mount(frame.camera) for name, frame in first.items()}
    custom = {"seg_perception.synth": json.dumps(meta)}
    from seg_perception.bags.writer import BagWriter

    with BagWriter(bag_path(job.out, job.sequence), storage=job.storage, custom_data=custom) as bag:
        image_type = bag.typestore.types["sensor_msgs/msg/Image"]
        compressed_type = bag.typestore.types["sensor_msgs/msg/CompressedImage"]
        for step in itertools.chain([first] if first else [], steps):
            frame = next(iter(step.values()))  # before the images: the ego's motion when they are processed
            bag.write(ODOMETRY_TOPIC, _odometry_msg(bag, frame, bag.header(frame.stamp_ns, ODOMETRY_FRAME_ID)),
                      frame.stamp_ns)
            for name, frame in step.items():
                topics = camera_topics(name)
                header = bag.header(frame.stamp_ns, topics.frame_id)
                if job.compressed:
                    msg = to_compressed_msg(frame.image, header, compressed_type, fmt="jpeg", encoding="rgb8")
                    bag.write(topics.compressed_image, msg, frame.stamp_ns)
                else:
                    bag.write(topics.image, to_image_msg(frame.image, "rgb8", header, image_type), frame.stamp_ns)
                bag.write(topics.camera_info, _camera_info(bag, frame, header), frame.stamp_ns)
                for topic, array, encoding in (
                    (topics.semantic, frame.semantic, "mono8"),
                    (topics.instance, frame.instance.astype(np.uint16), "mono16"),
                    (topics.drivable, frame.drivable.astype(np.uint8) * 255, "mono8"),
                    (topics.lane, frame.lane.astype(np.uint8) * 255, "mono8"),
                ):
                    bag.write(topic, to_image_msg(array, encoding, header, image_type), frame.stamp_ns)
            _write_ground_truth(bag, step)
            progress(1)


def run_job(job: SynthJob, progress: Any = lambda n: None) -> None:
    (_write_cityscapes if job.fmt == "cityscapes" else _write_bag)(job, progress)


def _run_job_quietly(job: SynthJob) -> int:
    run_job(job)
    return job.frames


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(v) for k, v in asdict(value).items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _scene_json(cfg: Any) -> Any:
    scene = _jsonable(cfg)
    if scene.get("variety", 0) is None:  # the pre-variety manifest had no such key
        del scene["variety"]
    return scene


def write_synthetic(
    out: Path | str, *, fmt: OutputFormat, sequences: int, frames: int, width: int, height: int, seed: int,
    cameras: Sequence[str] = ("front",), fps: float = 10.0, split: str = "train", storage: Storage = "mcap",
    compressed: bool = False, workers: int = 1, show_progress: bool = True, variety: bool = False,
) -> Path:
    """Render ``sequences`` x ``frames`` time steps and write them; returns the manifest path.

    Deterministic for a seed: sequence ``i`` of seed ``s`` is the same world whatever else is written.
    ``variety`` opts in to the harder scenes (see the module docstring); off, nothing changes.
    """
    out = Path(out)
    if fmt not in ("cityscapes", "bag"):
        raise ValueError(f"unknown format {fmt!r}; choose cityscapes or bag")
    if sequences < 1 or frames < 1 or width < 16 or height < 16:
        raise ValueError(f"need sequences>=1, frames>=1 and a size of at least 16x16, got "
                         f"{sequences} x {frames} at {width}x{height}")
    if fmt == "bag":
        existing = [bag_path(out, s) for s in range(sequences) if bag_path(out, s).exists()]
        if existing:
            raise FileExistsError(f"bag {existing[0]} exists already; choose another --out or remove it")
    out.mkdir(parents=True, exist_ok=True)
    jobs = [SynthJob(out=out, fmt=fmt, seed=seed, sequence=s, frames=frames, width=width, height=height,
                     cameras=tuple(cameras), fps=fps, split=split, storage=storage, compressed=compressed,
                     variety=variety)
            for s in range(sequences)]
    with tqdm(total=sequences * frames, unit="frame", desc=f"synth -> {fmt}", disable=not show_progress) as bar:
        if workers <= 1 or sequences == 1:
            for job in jobs:
                run_job(job, bar.update)
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for done in pool.map(_run_job_quietly, jobs):
                    bar.update(done)

    manifest = {
        "generator": f"seg_perception {__version__} synth",
        "format": fmt, "storage": storage if fmt == "bag" else None, "split": split if fmt == "cityscapes" else None,
        "seed": seed, "sequences": sequences, "frames_per_sequence": frames, "size": [width, height],
        "cameras": list(cameras), "fps": fps, "compressed_images": compressed,
        "label_space": [{"train_id": c.train_id, "name": c.name, "label_id": c.label_id, "is_thing": c.is_thing}
                        for c in labels.CLASSES],
        "bags": [bag_path(out, s).name for s in range(sequences)] if fmt == "bag" else [],
        "topics": {cam: asdict(camera_topics(cam)) for cam in cameras} if fmt == "bag" else {},
        "scenes": [_scene_json(describe_sequence(seed, s, variety=variety)) for s in range(sequences)],
    }
    if variety:  # recorded only when on, so manifests written without it are unchanged
        manifest["variety"] = True
    path = manifest_path(out, fmt, split)
    path.write_text(json.dumps(manifest, indent=2))
    return path
