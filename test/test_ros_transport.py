"""Real ROS 2 (rclpy + Fast DDS) across processes, with the project's Fast DDS profile."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from seg_perception.ros_io.environment import PROFILE_ENV, fastdds_profile, ros_environment

pytestmark = pytest.mark.ros

SCRIPTS = Path(__file__).parent / "ros_scripts"


def test_profile_is_default_and_user_profile_wins(tmp_path: Path) -> None:
    assert Path(os.environ[PROFILE_ENV]) == fastdds_profile()
    assert ros_environment({})[PROFILE_ENV] == str(fastdds_profile())
    own = tmp_path / "mine.xml"
    assert ros_environment({PROFILE_ENV: str(own)})[PROFILE_ENV] == str(own)
    assert ros_environment({"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"})["RMW_IMPLEMENTATION"] == "rmw_cyclonedds_cpp"


def test_profile_is_valid_fastdds_xml() -> None:
    import xml.etree.ElementTree as ET

    root = ET.parse(fastdds_profile()).getroot()
    ns = {"f": "http://www.eprosima.com"}
    kinds = {d.findtext("f:type", namespaces=ns) for d in root.iter("{http://www.eprosima.com}transport_descriptor")}
    assert kinds == {"SHM", "UDPv4"}
    participant = root.find(".//f:participant", ns)
    assert participant is not None and participant.get("is_default_profile") == "true"
    assert participant.findtext(".//f:useBuiltinTransports", namespaces=ns) == "false"


def test_720p_rgb8_crosses_processes_best_effort(processes, ros_context) -> None:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    width, height, rate_hz = 1280, 720, 30.0
    topic = f"/test_transport_{os.getpid()}/image"
    received: list[tuple[int, bool, float]] = []

    node = rclpy.create_node("test_image_subscriber", context=ros_context)

    def on_image(msg: Image) -> None:
        n = int(msg.header.frame_id)
        pixels = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.step)[:, : msg.width * 3]
        expected_rows = ((np.arange(msg.height) + n * 7) % 256).astype(np.uint8)
        correct = (
            (msg.width, msg.height, msg.encoding) == (width, height, "rgb8")
            and bool(np.all(pixels == expected_rows[:, None]))
        )
        sent = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        received.append((n, correct, time.time() - sent))

    node.create_subscription(Image, topic, on_image, qos_profile_sensor_data)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)

    # The child inherits os.environ, which conftest filled with our profile and isolation settings.
    publisher = processes.python(str(SCRIPTS / "image_publisher.py"), topic, str(width), str(height), str(rate_hz))
    deadline = time.monotonic() + 30.0
    while len(received) < 60 and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.1)
        assert publisher.poll() is None, f"publisher died: {publisher.stdout.read()}"
    executor.shutdown()
    node.destroy_node()

    assert len(received) >= 60, f"only {len(received)} 720p frames arrived in 30 s over BEST_EFFORT"
    assert all(correct for _, correct, _ in received), "a frame arrived with wrong size or content"
    numbers = [n for n, _, _ in received]
    # After discovery the stream is essentially lossless on one machine with shared memory.
    span = numbers[-1] - numbers[0] + 1
    assert len(set(numbers)) / span >= 0.9, f"lost {span - len(set(numbers))} of {span} frames"
    latency_ms = 1000 * float(np.median([lat for _, _, lat in received]))
    assert latency_ms < 100, f"median transport latency {latency_ms:.1f} ms"
