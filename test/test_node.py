"""The node under real ROS 2: a publisher process, the node process, and this test as the subscriber.

One drive exercises everything users rely on: masks against ground truth, headers, obstacle ids,
latency messages, diagnostics, drops counted under a 3x overload and for undecodable frames, and a
clean exit on SIGINT and SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import yaml
from node_helpers import wait_until, write_node_params

from seg_perception.ros_io.image_codec import image_to_numpy
from seg_perception.synth import render_sequence

pytestmark = pytest.mark.ros

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "test" / "ros_scripts"
CAMERAS = ("front", "rear")
SIZE = (640, 320)
SEED = 5151
NODE = "/seg_perception_node"
IMAGE_OUTPUTS = ("drivable_area", "lane_markings", "obstacles", "instances", "semantic")


def _params(tmp_path: Path, **changes: object) -> Path:
    return write_node_params(tmp_path / "params.yaml", cameras=CAMERAS, latency_budget_ms=3000.0, changes=changes)


def _start_node(processes, tmp_path: Path, params: Path) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / "node.log"
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    remaps = [arg for camera in CAMERAS for topic, name in (("image", "image_raw"), ("camera_info", "camera_info"))
              for arg in ("--remap", f"~/{camera}/in/{topic}:=/test/{camera}/{name}")]
    remaps += ["--remap", "~/in/odometry:=/test/odom"]
    proc = processes.start([sys.executable, "-u", "-m", "seg_perception.cli", "node", "--params", str(params),
                            *remaps], stdout=log.open("w"), env=env)
    return proc, log


class Listener:
    """Everything the node publishes, keyed by (output, camera, stamp_ns)."""

    def __init__(self, context) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from seg_perception_msgs.msg import LatencyReport, ObstacleList
        from sensor_msgs.msg import Image

        self.node = rclpy.create_node("test_listener", context=context)
        self.messages: dict[tuple[str, str, int], object] = {}
        self.diagnostics: list[object] = []
        self.lock = threading.Lock()
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        types = dict.fromkeys(IMAGE_OUTPUTS, Image) | {"obstacle_list": ObstacleList, "latency": LatencyReport,
                                                       "overlay": Image}
        for camera in CAMERAS:
            for output, msg_type in types.items():
                self.node.create_subscription(msg_type, f"{NODE}/{camera}/out/{output}",
                                              lambda msg, o=output, c=camera: self._store(o, c, msg), qos)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._diag, 50)
        from nav_msgs.msg import OccupancyGrid
        from seg_perception_msgs.msg import LaneBoundaryArray
        from visualization_msgs.msg import MarkerArray

        self.grids: list[object] = []
        self.node.create_subscription(OccupancyGrid, f"{NODE}/out/drivable_grid", self._grid, qos)
        self.lanes: dict[str, list[object]] = defaultdict(list)
        lane_topics = [(f"{NODE}/{c}/out/lanes", LaneBoundaryArray) for c in CAMERAS]
        for topic, kind in [*lane_topics, (f"{NODE}/out/lanes", LaneBoundaryArray),
                            (f"{NODE}/out/lane_markers", MarkerArray)]:
            self.node.create_subscription(kind, topic, lambda msg, t=topic: self._lane(t, msg), qos)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _store(self, output: str, camera: str, msg) -> None:
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with self.lock:
            self.messages[(output, camera, stamp)] = msg

    def _lane(self, topic: str, msg) -> None:
        with self.lock:
            self.lanes[topic.removeprefix(NODE)].append(msg)

    def _grid(self, msg) -> None:
        with self.lock:
            self.grids.append(msg)

    def _diag(self, msg) -> None:
        with self.lock:
            self.diagnostics.append(msg)

    def statuses(self, name_part: str) -> list:
        with self.lock:
            return [s for array in self.diagnostics for s in array.status if name_part in s.name]

    def wait_for(self, predicate, timeout: float, what: str) -> None:
        wait_until(predicate, timeout, what)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.thread.join(timeout=5)


def _read_lines(proc: subprocess.Popen, lines: list[str]) -> threading.Thread:
    def pump() -> None:
        for line in proc.stdout:
            lines.append(line.strip())

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return thread


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def _values(status) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def _synth_mounts() -> list[float]:
    """The synthetic rig's exact poses in base_link (the renderer's camera height and pitch, rig yaws)."""
    import math

    from seg_perception.synth import describe_sequence
    from seg_perception.synth.camera import RIG_YAWS_DEG

    scene = describe_sequence(SEED, 0)
    return [v for camera in CAMERAS for v in (0.0, 0.0, scene.camera_height_m, 0.0,
                                              math.radians(scene.camera_pitch_deg),
                                              math.radians(RIG_YAWS_DEG[camera]))]


def test_node_answers_a_two_camera_drive(processes, ros_context, tmp_path: Path) -> None:
    listener = Listener(ros_context)
    try:
        shipped = yaml.safe_load((REPO / "config" / "perception.param.yaml").read_text())
        geometry = {**shipped["/**"]["ros__parameters"]["geometry"], "mounts": _synth_mounts()}
        node, log = _start_node(processes, tmp_path, _params(tmp_path, geometry=geometry))
        listener.wait_for(lambda: listener.statuses(": model") or node.poll() is not None, 240, "the node to start")
        assert node.poll() is None, log.read_text()[-3000:]

        model = listener.statuses(": model")[0]
        values = _values(model)
        assert values["backend"] == "onnxruntime:CPUExecutionProvider" and "ddrnet23_slim" in values["model"]
        assert values["role.drivable"] != "unavailable" and values["cameras"] == "front, rear"

        publisher = processes.python(str(SCRIPTS / "synth_publisher.py"), "--prefix", "/test", "--cameras",
                                     ",".join(CAMERAS), "--size", f"{SIZE[0]}x{SIZE[1]}", "--seed", str(SEED),
                                     "--frames", "8", "--rate", "2", "--burst-frames", "36", "--burst-rate", "30",
                                     "--bad-frames", "1", "--camera-info", "front", "--odometry")
        lines: list[str] = []
        reader = _read_lines(publisher, lines)
        listener.wait_for(lambda: "publisher done" in lines or publisher.poll() is not None, 120, "the publisher")
        time.sleep(3.0)  # the last frames and two diagnostics periods
        sent = [line.split() for line in lines if line.startswith("frame ")]
        steady = [(c, int(s), int(i)) for _, c, s, i, phase in sent if phase == "steady"]
        assert len(steady) == 8 * len(CAMERAS), lines

        # Masks of the steady phase against ground truth, with the input's header on every output.
        truth = list(render_sequence(seed=SEED, sequence=0, num_frames=8, width=SIZE[0], height=SIZE[1],
                                     cameras=CAMERAS))
        ious: dict[str, list[float]] = defaultdict(list)
        answered = 0
        for camera, stamp, index in steady:
            outputs = {o: listener.messages.get((o, camera, stamp)) for o in (*IMAGE_OUTPUTS, "obstacle_list",
                                                                                "latency")}
            if any(m is None for m in outputs.values()):
                continue
            answered += 1
            assert all(m.header.frame_id == f"{camera}_optical_frame" for m in outputs.values())
            masks = {o: image_to_numpy(outputs[o]) for o in IMAGE_OUTPUTS}
            assert masks["drivable_area"].shape == (SIZE[1], SIZE[0])  # camera resolution
            assert outputs["instances"].encoding == "mono16" and outputs["drivable_area"].encoding == "mono8"
            gt = truth[index][camera]
            ious["drivable"].append(_iou(masks["drivable_area"] > 0, gt.drivable > 0))
            ious["lane"].append(_iou(masks["lane_markings"] > 0, gt.lane > 0))
            ids = set(np.unique(masks["instances"])) - {0}
            listed = outputs["obstacle_list"]
            assert ids == {o.instance_id for o in listed.obstacles}
            assert (listed.image_width, listed.image_height) == SIZE
            latency = outputs["latency"]
            assert latency.backend.startswith("onnxruntime") and latency.batch_size in (1, 2)
            assert latency.end_to_end_ms >= latency.inference_ms + latency.preprocess_ms > 0
            assert latency.receive_ms >= 0 and latency.queue_ms >= 0
        assert answered >= 0.8 * len(steady), (f"{answered} of {len(steady)} steady frames answered; got "
                                               f"{sorted(set(k[:2] for k in listener.messages))} "
                                               f"{log.read_text()[-2000:]} {listener.statuses('camera')[-1:]}")
        assert np.mean(ious["drivable"]) >= 0.85 and np.mean(ious["lane"]) >= 0.4, dict(ious)

        # Metres where the camera's camera_info came (front), pixels only where none did (rear), said in
        # diagnostics; the obstacle messages' existing fields are unchanged either way.
        lists = {camera: [listener.messages[("obstacle_list", c, s)] for c, s, _ in steady
                          if c == camera and ("obstacle_list", c, s) in listener.messages] for camera in CAMERAS}
        located = [o for msg in lists["front"] for o in msg.obstacles if o.has_position]
        assert located and all(msg.ground_frame_id == "base_link" for msg in lists["front"] if
                               any(o.has_position for o in msg.obstacles))
        for o in located:
            assert 0.5 < o.range_m <= 120.0 and abs(o.bearing_rad) < 0.7  # inside the front camera's 70 deg
            assert o.position.x > 0 and abs(np.hypot(o.position.x, o.position.y) - o.range_m) < 1e-3
        # velocities need a track over consecutive frames: the 30 Hz burst has them (2 Hz may lose a track)
        front_lists = [m for (output, camera, _), m in list(listener.messages.items())
                       if output == "obstacle_list" and camera == "front"]
        assert any(o.has_velocity and o.velocity_samples >= 2 for m in front_lists for o in m.obstacles)
        # the ego's odometry reached the velocity filter: velocities over the ground too, said in diagnostics
        assert any(o.has_velocity_over_ground for m in front_lists for o in m.obstacles)
        odometry = listener.statuses(": odometry")
        assert any(s.level == b"\x00" and s.message == "velocities over the ground" for s in odometry), odometry
        assert int(_values(odometry[-1])["received"]) >= 8  # and now, seconds after the drive, it says stale:
        assert odometry[-1].level == b"\x01" and "no odometry for" in odometry[-1].message
        assert not any(o.has_position for msg in lists["rear"] for o in msg.obstacles)
        assert all(msg.ground_frame_id == "" for msg in lists["rear"])
        # The drivable grid in base_link: the road ahead of the front camera free, the unseen sides unknown.
        assert listener.grids, "no drivable grid"
        grid = listener.grids[-1]
        assert grid.header.frame_id == "base_link" and grid.info.resolution == pytest.approx(0.2)
        cells = np.array(grid.data, np.int8).reshape(grid.info.height, grid.info.width)
        assert (grid.info.width, grid.info.height) == (400, 200)  # 80 x 40 m at 0.2 m

        origin = grid.info.origin.position

        def cell(x: float, y: float) -> int:
            return int(cells[int((y - origin.y) / 0.2), int((x - origin.x) / 0.2)])

        assert cell(8.0, 0.0) == 0 and cell(15.0, 0.0) in (0, 100)  # the ego's lane ahead (a car may stand there)
        assert cell(-10.0, 0.0) == -1 and cell(1.0, 15.0) == -1  # behind (rear has no camera_info) and beside
        # Lane boundaries in metres from the front camera, fused, and as markers; none from the rear.
        front_lanes = listener.lanes["/front/out/lanes"]
        assert front_lanes and all(m.header.frame_id == "base_link" for m in front_lanes)
        near = [b for m in front_lanes for b in m.boundaries if b.points and abs(b.coefficients[0]) < 6.0]
        assert near and all(b.camera == "front" and b.style in ("solid", "dashed") for b in near)
        assert all(b.points[0].x > 0 and 0 <= b.confidence <= 1 for b in near)
        assert not listener.lanes["/rear/out/lanes"]
        assert listener.lanes["/out/lanes"] and listener.lanes["/out/lane_markers"]
        front, rear = (listener.statuses(f": camera {c}")[-1] for c in CAMERAS)
        assert _values(front)["geometry"] == "metres"
        assert _values(rear)["geometry"] == "no camera_info received yet"
        assert "pixel outputs only: no camera_info received yet" in rear.message and rear.level >= b"\x01"

        # Overload and bad frames: every frame is processed or dropped with a reason, and diagnostics say so.
        per_camera = {}
        for camera in CAMERAS:
            status = listener.statuses(f": camera {camera}")[-1]
            per_camera[camera] = _values(status)
            v = per_camera[camera]
            received, processed, dropped = int(v["frames_received"]), int(v["frames_processed"]), \
                int(v["frames_dropped"])
            assert received == processed + dropped, v
            assert int(v.get("dropped.superseded", 0)) + int(v.get("dropped.too_old", 0)) > 0, v
            assert v.get("dropped.decode_error") == "1" and "yuv9" in v["last_error"], v
            assert float(v["latency_p99_ms"]) > 0 and v["backend"].startswith("onnxruntime")
            assert "stage_p50_ms.inference" in v
        warned = [s for s in listener.statuses(": camera") if s.level == b"\x01" and "dropped" in s.message]
        assert warned, "drops must raise a WARN"

        node.send_signal(signal.SIGINT)
        assert node.wait(timeout=15) == 0, log.read_text()[-3000:]
        reader.join(timeout=1)
    finally:
        listener.close()


def test_node_exits_cleanly_on_sigterm_and_refuses_bad_parameters(processes, tmp_path: Path) -> None:
    node, log = _start_node(processes, tmp_path, _params(tmp_path, backend="torch"))
    deadline = time.monotonic() + 120
    while "ready:" not in log.read_text() and node.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "ready:" in log.read_text(), log.read_text()[-3000:]
    node.send_signal(signal.SIGTERM)
    assert node.wait(timeout=15) == 0, log.read_text()[-3000:]

    bad = _params(tmp_path, smoothing={"enabled": True, "strength": 3.0, "max_gap_s": 0.5})
    result = subprocess.run([sys.executable, "-m", "seg_perception.cli", "node", "--params", str(bad)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "smoothing.strength" in result.stderr, result.stderr


def test_compressed_input_and_bad_frames_in_process(ros_context, tmp_path: Path, monkeypatch) -> None:
    """The node's callbacks without DDS: jpeg frames are processed, corrupt and tiny ones dropped and counted."""
    import cv2
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import CompressedImage

    from seg_perception.ros_io.node import PerceptionNode
    from seg_perception.ros_io.params import flatten, load_param_file

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    nested = load_param_file(_params(tmp_path, backend="torch", input_transport="compressed", cameras=["front"]))
    node = PerceptionNode(context=ros_context,
                          parameter_overrides=[Parameter(k, value=v) for k, v in flatten(nested).items()])
    try:
        (frame,) = [s["front"] for s in render_sequence(seed=SEED, sequence=0, num_frames=1, width=320, height=160,
                                                        cameras=("front",))]

        def compressed(data: bytes, stamp_ns: int) -> CompressedImage:
            msg = CompressedImage(format="rgb8; jpeg compressed bgr8", data=data)
            msg.header.frame_id = "front_optical_frame"
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
            return msg

        jpeg = cv2.imencode(".jpg", cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))[1].tobytes()
        tiny = cv2.imencode(".jpg", np.zeros((4, 4, 3), np.uint8))[1].tobytes()
        now = node.get_clock().now().nanoseconds
        node._on_image("front", compressed(jpeg, now))
        deadline = time.monotonic() + 60
        while node.stats.counts("front")[1] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        node._on_image("front", compressed(jpeg[: len(jpeg) // 3] + b"garbage", now + 1))
        node._on_image("front", compressed(tiny, now + 2))
        received, processed, dropped = node.stats.counts("front")
        assert (received, processed, dropped) == (3, 1, 2)
        (snapshot,) = node.stats.snapshot()
        assert snapshot.dropped == {"decode_error": 1, "bad_frame": 1} and "too small" in snapshot.last_error
    finally:
        node.destroy_node()


def test_camera_info_is_taken_refused_with_its_reason_and_replaced_in_process(ros_context, tmp_path: Path,
                                                                               monkeypatch) -> None:
    """The node's camera_info callback without DDS: a lens model we cannot undistort leaves the camera in
    pixels and says why in diagnostics; a good camera_info afterwards gives it metres."""
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import CameraInfo

    from seg_perception.ros_io.node import PerceptionNode
    from seg_perception.ros_io.params import flatten, load_param_file

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    nested = load_param_file(_params(tmp_path, backend="torch", cameras=["front"]))
    node = PerceptionNode(context=ros_context,
                          parameter_overrides=[Parameter(k, value=v) for k, v in flatten(nested).items()])
    try:
        assert node.geometry_state == {"front": "no camera_info received yet"} and not node.pipeline.geometry
        fisheye = CameraInfo(width=640, height=320, distortion_model="equidistant", d=[0.1, 0.0, 0.0, 0.0],
                             k=[300.0, 0.0, 319.5, 0.0, 300.0, 159.5, 0.0, 0.0, 1.0])
        node._on_camera_info("front", fisheye)
        assert node.geometry_state["front"].startswith("camera_info refused: distortion model 'equidistant'")
        assert "front" not in node.pipeline.geometry
        statuses = node.health.statuses(node.stats.snapshot(), backend="torch", seconds_since_start=0.1,
                                        geometry=node.geometry_state)
        camera = next(s for s in statuses if s.name.endswith("camera front"))
        assert "pixel outputs only: camera_info refused: distortion model 'equidistant'" in camera.message
        good = CameraInfo(width=640, height=320, distortion_model="plumb_bob", d=[0.0] * 5,
                          k=[300.0, 0.0, 319.5, 0.0, 300.0, 159.5, 0.0, 0.0, 1.0])
        node._on_camera_info("front", good)
        assert node.geometry_state["front"] == "metres"
        geometry = node.pipeline.geometry["front"]
        assert geometry.intrinsics.width == 640 and geometry.mount.z == pytest.approx(nested["geometry"]["mounts"][2])
        node._on_camera_info("front", good)  # the same camera_info again: nothing is rebuilt
        assert node.pipeline.geometry["front"] is geometry
    finally:
        node.destroy_node()


def test_odometry_is_used_refused_with_its_reason_and_overhang_classes_checked_in_process(
        ros_context, tmp_path: Path, monkeypatch) -> None:
    """~/in/odometry without DDS: a twist of another frame or not finite is refused and said in diagnostics,
    never used as base_link's; a good one reaches the velocity filter. Overhang classes the model lacks are
    refused at start and as a live change."""
    from nav_msgs.msg import Odometry
    from rclpy.parameter import Parameter

    from seg_perception.ros_io.node import PerceptionNode
    from seg_perception.ros_io.params import ParamsError, flatten, load_param_file

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    nested = load_param_file(_params(tmp_path, backend="torch", cameras=["front"]))
    overrides = [Parameter(k, value=v) for k, v in flatten(nested).items()]
    node = PerceptionNode(context=ros_context, parameter_overrides=overrides)
    try:
        assert node.odometry is not None and node.odometry.status(0.0).level == 1  # nothing yet: WARN
        assert "no odometry received" in node.odometry.status(0.0).message

        def odometry(child: str, vx: float) -> Odometry:
            msg = Odometry(child_frame_id=child)
            msg.header.stamp.sec, msg.twist.twist.linear.x, msg.twist.twist.angular.z = 7, vx, 0.1
            return msg

        node._on_odometry(odometry("imu_link", 10.0))
        node._on_odometry(odometry("base_link", float("nan")))
        assert node.pipeline.motion.ego_motion_at(7 * 10**9) is None
        status = node.odometry.status(time.monotonic())
        assert status.level == 1 and "refused 2 message(s): odometry twist is not finite" in status.message
        node._on_odometry(odometry("base_link", 10.0))
        assert node.pipeline.motion.ego_motion_at(7 * 10**9).velocity_xy_mps == (10.0, 0.0)
        status = node.odometry.status(time.monotonic())
        assert status.level == 0 and dict(status.values)["received"] == "3" and dict(status.values)["refused"] == "2"
        assert "no odometry for" in node.odometry.status(time.monotonic() + 5.0).message  # stale: WARN again
        refused = node.set_parameters([Parameter("geometry.overhang_classes", value=["lorry"])])[0]
        assert not refused.successful and "lorry not among the model's classes" in refused.reason
        taken = node.set_parameters([Parameter("geometry.overhang_classes", value=["bus"])])[0]
        assert taken.successful and node.settings.geometry.overhangs == (("bus", 0.9),)
    finally:
        node.destroy_node()
    nested["geometry"]["overhang_classes"] = ["lorry"]
    with pytest.raises(ParamsError, match=r"geometry\.overhang_classes: lorry not among the model's classes"):
        PerceptionNode(context=ros_context, parameter_overrides=[Parameter(k, value=v)
                                                                 for k, v in flatten(nested).items()])


def test_mounts_from_tf_static_in_process(ros_context, tmp_path: Path, monkeypatch) -> None:
    """geometry.mounts_from_tf: the node takes each camera's pose from TF for the frame of its camera_info, waits
    (and says so) while TF does not know the frame, and refuses to start without tf2_ros. tf2_ros has no PyPI
    wheel, so a small stand-in with its interface plays it here; the real one is not run by this suite."""
    import types

    from geometry_msgs.msg import TransformStamped
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import CameraInfo

    from seg_perception.ros_io.node import PerceptionNode
    from seg_perception.ros_io.params import ParamsError, flatten, load_param_file

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    nested = load_param_file(_params(tmp_path, backend="torch", cameras=["front"]))
    nested["geometry"]["mounts_from_tf"] = True
    overrides = [Parameter(k, value=v) for k, v in flatten(nested).items()]
    monkeypatch.setitem(sys.modules, "tf2_ros", None)  # as here: not installed
    with pytest.raises(ParamsError, match=r"geometry\.mounts_from_tf: needs tf2_ros"):
        PerceptionNode(context=ros_context, parameter_overrides=overrides)

    class LookupException(Exception):
        pass

    transforms: dict[tuple[str, str], TransformStamped] = {}

    class Buffer:
        def lookup_transform(self, target, source, time):
            if (target, source) not in transforms:
                raise LookupException(f"{source} unknown")
            return transforms[(target, source)]

    fake = types.SimpleNamespace(Buffer=Buffer, TransformListener=lambda buffer, node: None,
                                 LookupException=LookupException, ConnectivityException=LookupException,
                                 ExtrapolationException=LookupException)
    monkeypatch.setitem(sys.modules, "tf2_ros", fake)
    node = PerceptionNode(context=ros_context, parameter_overrides=overrides)
    try:
        info = CameraInfo(width=640, height=320, distortion_model="plumb_bob", d=[0.0] * 5,
                          k=[300.0, 0.0, 319.5, 0.0, 300.0, 159.5, 0.0, 0.0, 1.0])
        info.header.frame_id = "front_optical_frame"
        node._on_camera_info("front", info)
        assert node.geometry_state["front"] == "waiting for the transform base_link -> 'front_optical_frame' on TF"
        assert "front" not in node.pipeline.geometry
        published = TransformStamped()
        published.transform.translation.x, published.transform.translation.z = 1.2, 1.6
        # a level forward optical frame, as robot descriptions publish it: rpy (-pi/2, 0, -pi/2)
        q = published.transform.rotation
        q.x, q.y, q.z, q.w = -0.5, 0.5, -0.5, 0.5
        transforms[("base_link", "front_optical_frame")] = published
        node._on_camera_info("front", info)  # the same camera_info again: asked once more, now known
        assert node.geometry_state["front"] == "metres"
        mount = node.pipeline.geometry["front"].mount
        assert (mount.x, mount.z) == pytest.approx((1.2, 1.6))
        assert (mount.roll, mount.pitch, mount.yaw) == pytest.approx((0.0, 0.0, 0.0), abs=1e-9)
    finally:
        node.destroy_node()
