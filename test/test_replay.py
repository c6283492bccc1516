"""`seg-perception play` / `record`: bags onto ROS 2 topics and back, across processes and in-process."""

from __future__ import annotations

import itertools
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from seg_perception.bags.reader import BagError, read_messages
from seg_perception.datasets.synthetic import bag_path, write_synthetic

pytestmark = pytest.mark.ros

CAMERAS = ("front", "rear")
FRAMES = 6
IMAGES = [f"/{cam}/image_raw" for cam in CAMERAS]
INFOS = [f"/{cam}/camera_info" for cam in CAMERAS]
CLI = [sys.executable, "-m", "seg_perception.cli"]


@pytest.fixture(scope="module")
def bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    write_synthetic(out, fmt="bag", sequences=1, frames=FRAMES, width=128, height=64, cameras=CAMERAS, fps=10,
                    seed=3, show_progress=False)
    return bag_path(out, 0)


def stamp_ns(header: Any) -> int:
    """Of a header, or of a builtin_interfaces/Time itself (a /clock message's ``clock``)."""
    stamp = getattr(header, "stamp", header)
    return stamp.sec * 10**9 + stamp.nanosec


def source_images(bag: Path) -> dict[tuple[str, int], Any]:
    """(topic, header stamp) -> image of the source bag."""
    return {(topic, stamp_ns(msg.header)): msg for topic, _, msg in read_messages(bag, IMAGES)}


def assert_same_image(got: Any, expected: Any) -> None:
    assert (got.header.frame_id, got.height, got.width, got.encoding, got.step) == (
        expected.header.frame_id, expected.height, expected.width, expected.encoding, expected.step)
    assert np.array_equal(pixels(got.data), pixels(expected.data))


def pixels(data: Any) -> np.ndarray:
    # bytes (mcap_ros2), array.array (rclpy) or numpy (rosbags)
    return np.frombuffer(data, np.uint8) if isinstance(data, bytes) else np.asarray(data, dtype=np.uint8)


class LineReader:
    """Lines of a child's stdout, read by a thread so that waiting for one can time out."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, args=(proc,), daemon=True).start()

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r} in {timeout} s; got: {''.join(self.seen)}")

    def rest(self) -> str:
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return "".join(self.seen)


class Listener:
    """In-test subscriptions to image topics; collects messages while `spin_until` runs."""

    def __init__(self, context: Any, topics: list[str], *, reliable: bool = False, clock: bool = False) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import Image

        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE) if reliable else qos_profile_sensor_data
        self.node = rclpy.create_node("test_replay_listener", context=context)
        self.received: list[tuple[str, Any]] = []
        for topic in topics:
            self.node.create_subscription(Image, topic, lambda msg, t=topic: self.received.append((t, msg)), qos)
        self.clock: list[int] = []  # /clock in ns, in arrival order
        if clock:
            from rosgraph_msgs.msg import Clock

            # Deep and reliable: every tick the player sends is seen, so gaps and reordering would show.
            self.node.create_subscription(Clock, "/clock", lambda msg: self.clock.append(stamp_ns(msg.clock)),
                                          QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE))
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)

    def spin_until(self, done: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.05)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


@pytest.fixture
def listener_factory(ros_context: Any) -> Iterator[Callable[..., Listener]]:
    made: list[Listener] = []

    def make(topics: list[str], **kwargs: Any) -> Listener:
        made.append(Listener(ros_context, topics, **kwargs))
        return made[-1]

    yield make
    for listener in made:
        listener.close()


def play_in_thread(**kwargs: Any) -> tuple[threading.Thread, dict[str, Any]]:
    from seg_perception.replay.play import play_bags

    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["stats"] = play_bags(**kwargs)
        except Exception as error:  # handed to the test thread
            result["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def finished(thread: threading.Thread, result: dict[str, Any], timeout: float = 20.0) -> Any:
    thread.join(timeout)
    assert not thread.is_alive(), "playback did not end"
    if "error" in result:
        raise result["error"]
    return result["stats"]


# mcap_ros2.reader warns that it will be replaced; it is still the reference reader of ROS 2 mcap files.
@pytest.mark.filterwarnings("ignore::DeprecationWarning:mcap_ros2.reader")
def test_play_record_round_trip_across_processes(bag: Path, tmp_path: Path, processes: Any) -> None:
    from mcap_ros2.reader import read_ros2_messages

    out = tmp_path / "recorded"
    recorder = processes.start([*CLI, "record", "--out", str(out), "--topics", ",".join(IMAGES), *INFOS])
    lines = LineReader(recorder)
    lines.wait_for("recording", timeout=20)
    player = processes.start([*CLI, "play", str(bag), "--rate", "2", "--wait-for-subscribers", "10"])
    assert player.wait(timeout=30) == 0, player.stdout.read()
    assert "published 24 messages" in player.stdout.read()
    time.sleep(0.3)  # the last frames may still be in the recorder's queue
    os.killpg(recorder.pid, signal.SIGINT)
    assert recorder.wait(timeout=10) == 0, lines.rest()
    assert "recorded" in lines.rest()

    expected = source_images(bag)
    recorded = [(topic, msg) for topic, _, msg in read_messages(out, IMAGES)]
    # Best effort through shared memory: in ~30 runs one lost the first front frame (before the player's
    # grace after matching existed), so one lost frame of 12 (>= 90 % arrive) is tolerated, never more.
    lost = sorted(set(expected) - {(topic, stamp_ns(msg.header)) for topic, msg in recorded})
    assert len(expected) == FRAMES * len(CAMERAS)
    assert len(lost) <= 1 and len(recorded) == len(expected) - len(lost), f"lost {lost}; {lines.rest()}"
    for topic, msg in recorded:
        assert_same_image(msg, expected[(topic, stamp_ns(msg.header))])
    infos = [t for t, _, _ in read_messages(out, INFOS)]
    assert set(infos) == set(INFOS) and len(infos) >= len(INFOS) * FRAMES - 1

    # The other reader of mcap files sees the same, from the message definitions stored in the bag.
    mcap_file = next(out.glob("*.mcap"))
    seen = {}
    for message in read_ros2_messages(str(mcap_file), topics=IMAGES):
        msg = message.ros_msg
        assert message.log_time_ns == stamp_ns(msg.header)  # the header stamp is the log time
        seen[(message.channel.topic, stamp_ns(msg.header))] = msg
    assert seen.keys() == set(expected) - set(lost)
    for key, msg in seen.items():
        assert_same_image(msg, expected[key])


def test_restamp_shifts_stamps_by_the_recorded_offset(bag: Path, tmp_path: Path, ros_context: Any,
                                                      listener_factory: Callable[..., Listener]) -> None:
    listener = listener_factory(IMAGES)
    offsets_file = tmp_path / "offsets.json"
    thread, result = play_in_thread(paths=[bag], rate=2.0, restamp=True, offsets_file=offsets_file,
                                    wait_for_subscribers=10, context=ros_context)
    listener.spin_until(lambda: not thread.is_alive() and len(listener.received) >= 12, timeout=15)
    stats = finished(thread, result)

    (entry,) = json.loads(offsets_file.read_text())["loops"]
    assert stats.offsets == [entry]
    assert abs(entry["started_ns"] - time.time_ns()) < 60 * 10**9  # about now: stamps follow the wall clock
    expected = source_images(bag)
    assert len(listener.received) == len(expected)
    for topic, msg in listener.received:
        original = stamp_ns(msg.header) - entry["offset_ns"]
        assert (topic, original) in expected, f"{topic} stamp {original} is not in the bag"
        assert_same_image(msg, expected[(topic, original)])


def test_play_raw_keeps_headers_and_remaps_reliably(bag: Path, ros_context: Any,
                                                    listener_factory: Callable[..., Listener]) -> None:
    listener = listener_factory(["/replayed/front"], reliable=True)
    thread, result = play_in_thread(paths=[bag], topics=["/front/image_raw"],
                                    remap={"/front/image_raw": "/replayed/front"}, qos_reliability="reliable",
                                    rate=4.0, wait_for_subscribers=10, context=ros_context)
    listener.spin_until(lambda: not thread.is_alive() and len(listener.received) >= FRAMES, timeout=15)
    stats = finished(thread, result)

    assert stats.published == {"/replayed/front": FRAMES} and stats.offsets == []
    expected = source_images(bag)
    assert len(listener.received) == FRAMES
    for _, msg in listener.received:  # published as stored: the bag's own stamps
        assert_same_image(msg, expected[("/front/image_raw", stamp_ns(msg.header))])


def test_record_discovers_topics_under_a_prefix(bag: Path, tmp_path: Path, ros_context: Any) -> None:
    from seg_perception.replay.record import record

    stop_play = threading.Event()
    ready = threading.Event()
    out = tmp_path / "prefix"
    recorded: dict[str, Any] = {}

    def run_record() -> None:
        recorded["stats"] = record(out, node_prefix="/front/", storage="sqlite3", discovery_s=0.2, duration_s=2.5,
                                   context=ros_context, on_ready=ready.set)

    recorder = threading.Thread(target=run_record, daemon=True)
    recorder.start()
    assert ready.wait(10)
    # The overlay is left out unless asked for, whatever else is under the prefix.
    thread, result = play_in_thread(
        paths=[bag], topics=["/front/image_raw", "/front/camera_info", "/front/labels/semantic", "/rear/image_raw"],
        remap={"/front/labels/semantic": "/front/out/overlay"}, rate=4.0, loop=True, context=ros_context,
        stop=stop_play)
    recorder.join(15)
    stop_play.set()
    finished(thread, result)
    assert not recorder.is_alive()
    stats = recorded["stats"]
    assert set(stats.messages) == {"/front/image_raw", "/front/camera_info"}
    assert stats.messages["/front/image_raw"] > 0
    assert (out / "prefix.db3").is_file()
    frames = list(read_messages(out, ["/front/image_raw"]))
    assert len(frames) == stats.messages["/front/image_raw"]


def test_timing_follows_the_rate_and_loops_until_stopped(bag: Path, ros_context: Any) -> None:
    from seg_perception.replay.play import play_bags

    # 6 frames at 10 fps span 0.5 s of log time: 0.25 s at twice the speed.
    stats = play_bags([bag], rate=2.0, context=ros_context)
    assert 0.15 <= stats.duration_s <= 1.5, stats
    assert stats.loops == 1 and stats.total == 4 * FRAMES

    stop = threading.Event()
    threading.Timer(1.2, stop.set).start()  # four passes of 0.25 s after set-up, two on a loaded machine
    stats = play_bags([bag], rate=2.0, loop=True, stop=stop, context=ros_context)
    assert stats.loops >= 2, stats
    assert stats.published["/front/image_raw"] >= 2 * FRAMES

    with pytest.raises(ValueError, match="rate"):
        play_bags([bag], rate=0.0, context=ros_context)


def test_cli_play_loop_ends_cleanly_on_sigterm(bag: Path, tmp_path: Path, processes: Any) -> None:
    offsets_file = tmp_path / "offsets.json"
    player = processes.start([*CLI, "play", str(bag), "--loop", "--restamp", "--offsets-file", str(offsets_file)])
    deadline = time.monotonic() + 20
    while not offsets_file.exists() and time.monotonic() < deadline:  # playback has begun
        assert player.poll() is None, player.stdout.read()
        time.sleep(0.05)
    os.killpg(player.pid, signal.SIGTERM)
    assert player.wait(timeout=10) == 0, player.stdout.read()
    assert "published" in player.stdout.read()


def test_bag_problems_name_the_bag(bag: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    from seg_perception.cli import main
    from seg_perception.replay.play import play_bags

    missing = tmp_path / "no_such_bag"
    truncated = tmp_path / "truncated"
    shutil.copytree(bag, truncated)
    mcap_file = next(truncated.glob("*.mcap"))
    mcap_file.write_bytes(mcap_file.read_bytes()[: mcap_file.stat().st_size // 2])

    # Every problem is found before ROS starts: no context needed.
    with pytest.raises(BagError, match=f"{missing}.*no such file"):
        play_bags([missing])
    with pytest.raises(BagError, match=f"{bag}.*no topic /side/image_raw"):
        play_bags([bag], topics=["/side/image_raw"])
    with pytest.raises(BagError, match=f"{truncated}"):
        play_bags([bag, truncated])  # the second bag is checked before the first plays

    for args in ([str(missing)], [str(bag), "--topics", "/side/image_raw"], [str(truncated)]):
        assert main(["play", *args]) == 2
        err = capsys.readouterr().err
        assert "seg-perception play: error: bag" in err and Path(args[0]).name in err, err


def log_times(bag: Path) -> list[int]:
    """Log times of the messages play publishes by default, in order."""
    return [log_ns for _, log_ns, _ in read_messages(bag, IMAGES + INFOS)]


def assert_clock_follows(clock: list[int], times: list[int], offset_ns: int = 0) -> None:
    """/clock only moves forward, starts and ends at the bag's first and last time, has a tick at every
    message's time and ticks between them too, never outside the bag's span."""
    expected = [t + offset_ns for t in times]
    assert clock, "no /clock message"
    assert all(a < b for a, b in itertools.pairwise(clock)), "the clock went backwards or repeated"
    assert clock[0] == expected[0] and clock[-1] == expected[-1]
    assert set(expected) <= set(clock), sorted(set(expected) - set(clock))
    assert len(clock) >= len(set(expected)) + 5  # ticks between messages: 0.25 s of playback at 100 Hz


def test_play_clock_follows_the_bag_time_scaled_by_the_rate(bag: Path, ros_context: Any,
                                                           listener_factory: Callable[..., Listener]) -> None:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter

    listener = listener_factory(IMAGES, clock=True)
    # A node on sim time, subscribed as rclpy's time source subscribes (best effort, depth 1).
    sim = rclpy.create_node("test_sim_time", context=ros_context,
                            parameter_overrides=[Parameter("use_sim_time", value=True)])
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(sim)
    times = log_times(bag)
    try:
        thread, result = play_in_thread(paths=[bag], rate=2.0, clock_hz=100.0, wait_for_subscribers=10,
                                        context=ros_context)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (thread.is_alive() or not listener.clock
                                               or listener.clock[-1] != times[-1]):
            listener.executor.spin_once(timeout_sec=0.01)
            executor.spin_once(timeout_sec=0.0)
        stats = finished(thread, result)
        for _ in range(20):  # the sim-time node's last callbacks
            executor.spin_once(timeout_sec=0.01)
        sim_now = sim.get_clock().now().nanoseconds
    finally:
        executor.shutdown()
        sim.destroy_node()

    assert_clock_follows(listener.clock, times)
    assert stats.clock_ticks >= len(listener.clock) and stats.published["/front/image_raw"] == FRAMES
    assert sim_now == times[-1]  # a node with use_sim_time took its time from us
    # Ticks come every 10 ms of wall time, 20 ms of bag time at rate 2 (more when the machine lags behind).
    steps_ms = sorted((b - a) / 1e6 for a, b in itertools.pairwise(listener.clock))
    assert 15 <= steps_ms[len(steps_ms) // 2] <= 60, steps_ms


def test_cli_play_clock_follows_restamped_times(bag: Path, tmp_path: Path, processes: Any,
                                                listener_factory: Callable[..., Listener]) -> None:
    listener = listener_factory(IMAGES, reliable=True, clock=True)  # images too: --wait-for-subscribers
    offsets_file = tmp_path / "offsets.json"
    player = processes.start([*CLI, "play", str(bag), "--clock", "--restamp", "--offsets-file", str(offsets_file),
                              "--rate", "2", "--reliable", "--wait-for-subscribers", "20"])
    listener.spin_until(lambda: player.poll() is not None, timeout=60)
    output = player.stdout.read()
    assert player.returncode == 0, output
    times = log_times(bag)
    listener.spin_until(lambda: bool(listener.clock) and listener.clock[-1] > times[-1], timeout=5)

    (entry,) = json.loads(offsets_file.read_text())["loops"]
    assert_clock_follows(listener.clock, times, entry["offset_ns"])
    assert abs(listener.clock[0] - time.time_ns()) < 60 * 10**9  # restamped: about now, not the bag's 1970s
    # Each image is stamped with a time the clock also said: a sim-time node sees them agree.
    stamps = {stamp_ns(msg.header) for _, msg in listener.received}
    assert len(stamps) == FRAMES and stamps <= set(listener.clock)
    assert "published 24 messages" in output and "/clock" in output


def test_play_clock_options_are_checked(bag: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from seg_perception.cli import main

    assert main(["play", str(bag), "--clock-hz", "50"]) == 2
    assert "--clock-hz sets the rate of --clock; add --clock" in capsys.readouterr().err
    assert main(["play", str(bag), "--clock", "--clock-hz", "0"]) == 2
    assert "clock rate must be > 0 Hz" in capsys.readouterr().err


def test_record_refuses_an_existing_output(bag: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from seg_perception.cli import main
    from seg_perception.replay.record import record

    with pytest.raises(FileExistsError, match=str(bag)):
        record(bag, duration_s=1.0)
    assert main(["record", "--out", str(bag), "--duration", "1"]) == 2
    assert f"bag {bag} exists already" in capsys.readouterr().err


def test_helpers_read_stamps_remaps_and_default_topics(bag: Path) -> None:
    from seg_perception.bags.reader import bag_topics
    from seg_perception.bags.typestore import project_typestore
    from seg_perception.replay.play import default_topics, parse_remaps
    from seg_perception.replay.record import header_stamp_ns

    types = project_typestore().types
    header = types["std_msgs/msg/Header"](stamp=types["builtin_interfaces/msg/Time"](sec=12, nanosec=345),
                                         frame_id="x")
    info = types["std_msgs/msg/String"](data="no header")
    stamped = bytes(project_typestore().serialize_cdr(header, "std_msgs/msg/Header"))
    assert header_stamp_ns(stamped) == 12 * 10**9 + 345
    assert header_stamp_ns(bytes(project_typestore().serialize_cdr(info, "std_msgs/msg/String"))[:8]) is None

    assert parse_remaps(["/a:=/b", "/c:=/d/e"]) == {"/a": "/b", "/c": "/d/e"}
    with pytest.raises(ValueError, match="/a=/b"):
        parse_remaps(["/a=/b"])

    types_in_bag = {topic: msgtype for topic, (msgtype, _) in bag_topics(bag).items()}
    assert default_topics(types_in_bag) == sorted(IMAGES + INFOS)  # labels are ground truth, not camera data
