"""Fault injection against the real node, across processes (issue 14).

A hostile but fair user: bad parameters at start-up and at run time, a stream with one bad frame in ten
(garbage, truncated, empty, unknown format, a 20000x20000 png, tiny frames, stamps ten years ahead),
stop signals under load, and model folders that must not run. The node must refuse what it cannot
trust with one line and exit 2, drop and count every bad frame, keep publishing good outputs, keep
its memory flat, and exit 0 on SIGINT/SIGTERM.

The defects of ``seg-perception eval`` (unwritable --out, bad bags, interruption) are injected in
test/test_eval_safety.py; those of model loading below the node in test/test_model_trust.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.ros

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "test" / "ros_scripts"
DEMO = REPO / "models" / "demo"
NODE = "/seg_perception_node"
CAMERAS = ("front", "rear")
TRACEBACK_MARKERS = ("Traceback", "RCLError", "Exception in thread")

sys.path.insert(0, str(SCRIPTS))
from fault_publisher import FAULTS  # noqa: E402
from node_helpers import wait_until, write_node_params  # noqa: E402


@pytest.fixture(scope="module")
def cache_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One XDG cache for the module: the demo graph is exported by the first node and reused after."""
    return tmp_path_factory.mktemp("cache")


def _params(tmp_path: Path, name: str = "params.yaml", **changes: Any) -> Path:
    return write_node_params(tmp_path / name, cameras=CAMERAS, latency_budget_ms=5000.0, changes=changes)


def _node_command(params: Path, *extra: str, transport: str = "raw") -> list[str]:
    suffix = "/compressed" if transport == "compressed" else ""
    remaps = [arg for camera in CAMERAS
              for arg in ("--remap", f"~/{camera}/in/image{suffix}:=/test/{camera}/image_raw{suffix}")]
    return [sys.executable, "-u", "-m", "seg_perception.cli", "node", "--params", str(params), *remaps, *extra]


def _start_node(processes: Any, command: list[str], log: Path, cache_home: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, XDG_CACHE_HOME=str(cache_home))
    return processes.start(command, stdout=log.open("w"), env=env)


def _wait_ready(node: subprocess.Popen[str], log: Path, timeout: float = 240.0) -> None:
    wait_until(lambda: "ready:" in log.read_text() or node.poll() is not None, timeout, "the node to start")
    assert node.poll() is None, log.read_text()[-3000:]


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def _assert_no_traceback(text: str) -> None:
    found = [marker for marker in TRACEBACK_MARKERS if marker in text]
    assert not found, f"{found} in:\n{text[-4000:]}"


def _values(status: Any) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


class Observer:
    """This test's own ROS node: outputs, latency reports and diagnostics of the node under test."""

    def __init__(self, context: Any) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from seg_perception_msgs.msg import LatencyReport
        from sensor_msgs.msg import Image

        self.node = rclpy.create_node("fault_observer", context=context)
        self.lock = threading.Lock()
        self.drivable: dict[str, list[float]] = defaultdict(list)  # camera -> arrival times (monotonic)
        self.latency: list[Any] = []
        self.diagnostics: list[Any] = []
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        for camera in CAMERAS:
            self.node.create_subscription(Image, f"{NODE}/{camera}/out/drivable_area",
                                          lambda msg, c=camera: self._add(self.drivable[c], time.monotonic()), qos)
            self.node.create_subscription(LatencyReport, f"{NODE}/{camera}/out/latency",
                                          lambda msg: self._add(self.latency, msg), qos)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", lambda msg: self._add(self.diagnostics, msg),
                                      50)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _add(self, target: list[Any], item: Any) -> None:
        with self.lock:
            target.append(item)

    def camera_status(self, camera: str) -> Any | None:
        with self.lock:
            statuses = [s for array in self.diagnostics for s in array.status if s.name.endswith(f"camera {camera}")]
        return statuses[-1] if statuses else None

    def set_parameters(self, parameters: list[Any], *, atomically: bool = False, timeout: float = 20.0) -> list[Any]:
        from rcl_interfaces.srv import SetParameters, SetParametersAtomically

        service, name = ((SetParametersAtomically, "set_parameters_atomically") if atomically
                         else (SetParameters, "set_parameters"))
        client = self.node.create_client(service, f"{NODE}/{name}")
        try:
            assert client.wait_for_service(timeout_sec=timeout), f"no {name} service"
            future = client.call_async(service.Request(parameters=[p.to_parameter_msg() for p in parameters]))
            wait_until(future.done, timeout, f"the {name} answer")
            answer = future.result()
            return [answer.result] if atomically else list(answer.results)
        finally:
            self.node.destroy_client(client)

    def get_parameters(self, names: list[str], timeout: float = 20.0) -> dict[str, Any]:
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python

        client = self.node.create_client(GetParameters, f"{NODE}/get_parameters")
        try:
            assert client.wait_for_service(timeout_sec=timeout), "no get_parameters service"
            future = client.call_async(GetParameters.Request(names=names))
            wait_until(future.done, timeout, "the get_parameters answer")
            return {n: parameter_value_to_python(v) for n, v in zip(names, future.result().values, strict=True)}
        finally:
            self.node.destroy_client(client)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.thread.join(timeout=5)


# ------------------------------------------------------------------------------ refused at start-up


@pytest.mark.parametrize(("how", "key"), [
    ("set", "max_frame_age_s"),
    ("file", "smoothing.label_prior"),
    ("file", "diagnostics_period_s"),
    ("ros-args", "latency_budget_ms"),
    ("ros-args", "max_frame_age_s"),
])
def test_non_finite_or_flooding_parameters_stop_start_up_with_one_line(how: str, key: str, tmp_path: Path) -> None:
    value = "1.0e-6" if key == "diagnostics_period_s" else ".nan" if key != "latency_budget_ms" else ".inf"
    if how == "set":
        command = [sys.executable, "-m", "seg_perception.cli", "node", "--params", str(_params(tmp_path)),
                   "--set", f"{key}:={value}"]
    elif how == "file":
        group, _, leaf = key.rpartition(".")
        changes: dict[str, Any] = {key: yaml.safe_load(value)} if not group else {}
        if group:
            shipped = yaml.safe_load((REPO / "config" / "perception.param.yaml").read_text())
            changes[group] = shipped["/**"]["ros__parameters"][group] | {leaf: yaml.safe_load(value)}
        command = [sys.executable, "-m", "seg_perception.cli", "node", "--params", str(_params(tmp_path, **changes))]
    else:  # the entry point that launch files run, past the CLI's own check
        command = [sys.executable, "-m", "seg_perception.ros_io.node", "--ros-args", "--params-file",
                   str(_params(tmp_path)), "-p", f"{key}:={value}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache")))
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    _assert_no_traceback(output)
    errors = [line for line in result.stderr.splitlines() if key in line]
    assert len(errors) == 1 and ("finite" in errors[0] or "minimum" in errors[0] or "less than" in errors[0]), output


# ------------------------------------------------------------------------------ refused at run time


def test_runtime_parameter_changes_are_validated_whole(processes: Any, ros_context: Any, tmp_path: Path,
                                                      cache_home: Path) -> None:
    from rclpy.parameter import Parameter

    observer = Observer(ros_context)
    try:
        log = tmp_path / "node.log"
        node = _start_node(processes, _node_command(_params(tmp_path)), log, cache_home)
        _wait_ready(node, log)
        names = ["smoothing.strength", "smoothing.label_prior", "max_frame_age_s", "tracking.iou_threshold",
                 "latency_budget_ms", "no_input_timeout_s", "diagnostics_period_s"]
        before = observer.get_parameters(names)
        nan, inf = float("nan"), float("inf")
        for name, value in [("smoothing.strength", nan), ("max_frame_age_s", nan), ("tracking.iou_threshold", nan),
                            ("smoothing.label_prior", nan), ("latency_budget_ms", nan), ("no_input_timeout_s", inf),
                            ("diagnostics_period_s", 1e-6)]:
            (result,) = observer.set_parameters([Parameter(name, value=value)])
            assert not result.successful and name in result.reason, (name, result.reason)
        # One bad value in an atomic change refuses all of it: the good one is not applied either.
        (result,) = observer.set_parameters([Parameter("smoothing.strength", value=0.3),
                                             Parameter("max_frame_age_s", value=nan)], atomically=True)
        assert not result.successful and "max_frame_age_s" in result.reason, result
        assert observer.get_parameters(names) == before
        assert node.poll() is None, log.read_text()[-3000:]
        (accepted,) = observer.set_parameters([Parameter("smoothing.strength", value=0.3)])
        assert accepted.successful, accepted.reason
        assert observer.get_parameters(["smoothing.strength"]) == {"smoothing.strength": 0.3}

        node.send_signal(signal.SIGINT)
        assert node.wait(timeout=30) == 0, log.read_text()[-3000:]
        _assert_no_traceback(log.read_text())
    finally:
        observer.close()


# ------------------------------------------------------------------------------ a stream with faults


def test_mixed_stream_one_bad_frame_in_ten(processes: Any, ros_context: Any, tmp_path: Path,
                                           cache_home: Path) -> None:
    """30 Hz on two cameras for 20 s, 1 frame in 10 bad: good outputs go on, drops are counted by reason."""
    observer = Observer(ros_context)
    try:
        log = tmp_path / "node.log"
        # Reliable input with a deep queue, so that DDS loses nothing and the node's counts must equal what
        # was sent (best effort on a loaded machine may lose a few frames before the node sees them).
        qos = yaml.safe_load((REPO / "config" / "perception.param.yaml").read_text())["/**"]["ros__parameters"]["qos"]
        params = _params(tmp_path, input_transport="compressed", output_resolution="model",
                         qos=qos | {"input_reliability": "reliable", "input_depth": 100})
        node = _start_node(processes, _node_command(params, transport="compressed"), log, cache_home)
        _wait_ready(node, log)
        publisher = processes.python(str(SCRIPTS / "fault_publisher.py"), "--prefix", "/test", "--cameras",
                                     ",".join(CAMERAS), "--rate", "30", "--seconds", "20", "--bad-every", "10",
                                     "--reliable")
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(line.strip() for line in publisher.stdout), daemon=True)
        reader.start()
        wait_until(lambda: "publisher ready" in lines or publisher.poll() is not None, 120, "the publisher")
        started = time.monotonic()
        time.sleep(5.0)  # warm: allocator pools, the first smoothing states, tracks
        rss_warm = _rss_kib(node.pid)
        wait_until(lambda: "publisher done" in lines or publisher.poll() is not None, 60, "the stream to end")
        rss_end = _rss_kib(node.pid)
        ended = time.monotonic()
        time.sleep(2.0)  # the last frames, then diagnostics periods
        (summary,) = [json.loads(line) for line in lines if line.startswith("{")]
        sent = summary["sent"]

        for camera in CAMERAS:
            status = observer.camera_status(camera)
            assert status is not None, "no diagnostics"
            values = _values(status)
            received, processed = int(values["frames_received"]), int(values["frames_processed"])
            dropped = {key.removeprefix("dropped."): int(v) for key, v in values.items() if key.startswith("dropped.")}
            sent_here = sent[camera]
            assert received == sum(sent_here.values()), (values, sent_here)
            assert received == processed + sum(dropped.values()), values
            # Without the pixel cap the 20000x20000 png would decode (1.2 GB of RGB), not count as bad_frame.
            for reason in ("decode_error", "bad_frame"):
                expected = sum(n for kind, n in sent_here.items() if FAULTS.get(kind) == reason)
                assert expected > 0 and dropped.get(reason, 0) == expected, (reason, values, sent_here)
            assert int(values["stamps_ahead_of_clock"]) == sent_here["future_stamp"], values
            assert float(values["max_stamp_ahead_ms"]) > 9 * 365 * 24 * 3600 * 1000, values
            # Good outputs all along the stream, not only before the first fault.
            arrivals = [t for t in observer.drivable[camera] if started <= t <= ended + 1.0]
            quarters = {min(3, int(4 * (t - started) / (ended - started))) for t in arrivals}
            assert processed >= 40 and quarters == {0, 1, 2, 3}, (processed, quarters)

        with observer.lock:
            latencies = list(observer.latency)
        assert latencies and all(r.end_to_end_ms >= 0 and r.receive_ms >= 0 and r.processing_ms > 0
                                 for r in latencies)
        ahead = [r for r in latencies if r.stamp_ahead_ms > 0]
        assert all(r.end_to_end_ms == 0 and r.stamp_ahead_ms > 9 * 365 * 24 * 3600 * 1000 for r in ahead)
        assert rss_end < 1.05 * rss_warm, (rss_warm, rss_end)
        assert node.poll() is None, log.read_text()[-3000:]

        node.send_signal(signal.SIGINT)
        assert node.wait(timeout=30) == 0, log.read_text()[-3000:]
        _assert_no_traceback(log.read_text())
        reader.join(timeout=1)
    finally:
        observer.close()


# ------------------------------------------------------------------------------ stop signals under load


def test_stop_signals_under_load_exit_zero_ten_of_ten(processes: Any, tmp_path: Path, cache_home: Path) -> None:
    """SIGINT and SIGTERM alternately while two cameras stream at 60 Hz: exit 0, no traceback, every time."""
    for camera in CAMERAS:
        processes.python(str(SCRIPTS / "image_publisher.py"), f"/test/{camera}/image_raw", "512", "256", "60")
    params = _params(tmp_path)
    outcomes = []
    for attempt in range(10):
        log = tmp_path / f"node{attempt}.log"
        node = _start_node(processes, _node_command(params), log, cache_home)
        _wait_ready(node, log)
        time.sleep(1.5)  # frames flowing, the worker mid-batch
        stop = signal.SIGINT if attempt % 2 == 0 else signal.SIGTERM
        node.send_signal(stop)
        try:
            code = node.wait(timeout=30)
        except subprocess.TimeoutExpired:
            code = "hung"
        text = log.read_text()
        clean = code == 0 and not any(marker in text for marker in TRACEBACK_MARKERS)
        outcomes.append((attempt, stop.name, code, clean, "" if clean else text[-2000:]))
    assert all(clean for _, _, _, clean, _ in outcomes), [o for o in outcomes if not o[3]]


# ------------------------------------------------------------------------------ models it must not run


def _copy_demo(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    shutil.copy(DEMO / "model_card.json", folder / "model_card.json")
    return folder


def _edit_card(folder: Path, **changes: Any) -> None:
    card = json.loads((folder / "model_card.json").read_text())
    for key, value in changes.items():
        if value is None:
            card.pop(key, None)
        else:
            card[key] = value
    (folder / "model_card.json").write_text(json.dumps(card))


def _unsafe_models(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (model folder, what the refusal must name)."""
    import hashlib

    models: dict[str, tuple[Path, str]] = {}
    text = _copy_demo(tmp_path, "text_weights")
    (text / "model.safetensors").write_text("these are not weights\n")
    models["text file as weights, demo card"] = (text, str(text / "model.safetensors"))

    unhashed = _copy_demo(tmp_path, "no_hash")
    shutil.copy(DEMO / "model.safetensors", unhashed / "model.safetensors")
    _edit_card(unhashed, weights_sha256=None)
    models["card without weights_sha256"] = (unhashed, "weights_sha256")

    outside = _copy_demo(tmp_path, "outside")
    _edit_card(outside, weights_file=str(DEMO / "model.safetensors"))
    models["absolute weights path"] = (outside, str(DEMO / "model.safetensors"))
    parent = _copy_demo(tmp_path, "parent")
    shutil.copytree(DEMO, tmp_path / "demo")
    _edit_card(parent, weights_file="../demo/model.safetensors")
    models["weights in ../demo"] = (parent, "../demo/model.safetensors")

    pickled = _copy_demo(tmp_path, "pickle")
    import torch

    torch.save({"weights": torch.zeros(3)}, pickled / "model.safetensors")
    digest = hashlib.sha256((pickled / "model.safetensors").read_bytes()).hexdigest()
    _edit_card(pickled, weights_sha256=digest)  # the hash fits: only the format can refuse it
    models["pickle named .safetensors"] = (pickled, str(pickled / "model.safetensors"))
    return models


def test_the_node_refuses_models_it_cannot_verify(tmp_path: Path, cache_home: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from seg_perception.inference.factory import BackendRequest, open_backend

    env = dict(os.environ, XDG_CACHE_HOME=str(cache_home))
    params = _params(tmp_path)
    # Warm the graph cache with the real demo model first: a warm cache must not let anything through.
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_home))
    open_backend(BackendRequest(model_path=DEMO))

    failures = []
    for name, (folder, named) in _unsafe_models(tmp_path).items():
        result = subprocess.run([sys.executable, "-m", "seg_perception.cli", "node", "--params", str(params),
                                 "--set", f"model_path:={folder}"], capture_output=True, text=True, timeout=120,
                                env=env)
        output = result.stdout + result.stderr
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        ok = (result.returncode == 2 and len(lines) == 1 and named in lines[0]
              and not any(marker in output for marker in TRACEBACK_MARKERS))
        if not ok:
            failures.append((name, result.returncode, output[-1500:]))
    assert not failures, failures


# ------------------------------------------------------------------------------ replay on simulation time


def test_replay_on_sim_time_measures_against_the_bags_clock(processes: Any, ros_context: Any, tmp_path: Path,
                                                            cache_home: Path) -> None:
    """play --clock + use_sim_time: the bag's old stamps are fresh to the node and no latency is negative."""
    from seg_perception.bags.reader import read_messages
    from seg_perception.datasets.synthetic import bag_path, write_synthetic

    write_synthetic(tmp_path / "synth", fmt="bag", sequences=1, frames=20, width=256, height=128, cameras=CAMERAS,
                    fps=10, seed=11, show_progress=False)
    bag = bag_path(tmp_path / "synth", 0)
    observer = Observer(ros_context)
    try:
        log = tmp_path / "node.log"
        # The bag's stamps are far from today's wall clock: without sim time every frame would be too old.
        params = _params(tmp_path, max_frame_age_s=1.0)
        node = _start_node(processes, _node_command(params, "--set", "use_sim_time:=true"), log, cache_home)
        _wait_ready(node, log)
        remaps = [f"/{camera}/image_raw:=/test/{camera}/image_raw" for camera in CAMERAS]
        player = processes.start([sys.executable, "-m", "seg_perception.cli", "play", str(bag), "--clock",
                                  "--rate", "0.5", "--wait-for-subscribers", "60", "--remap", *remaps])
        assert player.wait(timeout=180) == 0, player.stdout.read()
        time.sleep(2.0)  # the last frames; diagnostics run on the steady clock, /clock has stopped

        stamps = [log_ns for _, log_ns, _ in read_messages(bag, [f"/{camera}/image_raw" for camera in CAMERAS])]
        first, last = min(stamps), max(stamps)
        with observer.lock:
            reports = list(observer.latency)
        assert len(reports) >= 10, len(reports)
        for report in reports:
            received = report.receive_stamp.sec * 1_000_000_000 + report.receive_stamp.nanosec
            assert first <= received <= last + 2_000_000_000  # the node's clock is the bag's
            assert 0 <= report.end_to_end_ms < 5000 and report.stamp_ahead_ms == 0, report
            assert 0 < report.processing_ms < 60_000, report
        for camera in CAMERAS:
            values = _values(observer.camera_status(camera))
            assert values.get("dropped.too_old", "0") == "0" and int(values["frames_processed"]) >= 5, values
        node.send_signal(signal.SIGINT)
        assert node.wait(timeout=30) == 0, log.read_text()[-3000:]
    finally:
        observer.close()
