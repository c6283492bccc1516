"""Our ROS interfaces (seg_perception_msgs): built into the venv, and readable by rosbags from .msg text."""

from __future__ import annotations

import numpy as np
import pytest

from seg_perception.bags.typestore import message_definitions, project_typestore


def _obstacle_list():
    from geometry_msgs.msg import Point, Vector3
    from seg_perception_msgs.msg import Obstacle, ObstacleList
    from sensor_msgs.msg import RegionOfInterest

    msg = ObstacleList(image_width=1024, image_height=512)
    msg.header.stamp.sec, msg.header.stamp.nanosec = 1_700_000_000, 123_456_789
    msg.header.frame_id = "front_optical_frame"
    msg.obstacles = [
        Obstacle(instance_id=1, track_id=42, class_id=13, class_name="car", score=0.93,
                 bbox=RegionOfInterest(x_offset=100, y_offset=200, width=80, height=40),
                 area_px=2500, centroid_x_px=140.5, centroid_y_px=221.25, has_position=True,
                 position=Point(x=12.5, y=-1.25), range_m=12.56, bearing_rad=-0.0997, has_velocity=True,
                 velocity=Vector3(x=-3.0, y=0.5), velocity_samples=4, has_velocity_over_ground=True,
                 velocity_over_ground=Vector3(x=7.0, y=0.25)),
        Obstacle(instance_id=2, track_id=0, class_id=11, class_name="person", score=0.51,
                 bbox=RegionOfInterest(x_offset=600, y_offset=180, width=12, height=40),
                 area_px=300, centroid_x_px=606.0, centroid_y_px=200.0),
    ]
    return msg


def test_generated_python_types_have_the_documented_fields() -> None:
    from seg_perception_msgs.msg import LatencyReport, Obstacle, ObstacleList

    assert ObstacleList.get_fields_and_field_types() == {
        "header": "std_msgs/Header", "image_width": "uint32", "image_height": "uint32",
        "obstacles": "sequence<seg_perception_msgs/Obstacle>", "ground_frame_id": "string",
    }
    obstacle = Obstacle.get_fields_and_field_types()
    assert set(obstacle) == {
        "instance_id", "track_id", "class_id", "class_name", "score", "bbox", "area_px",
        "centroid_x_px", "centroid_y_px",  # the pixel fields, unchanged since the first version
        "has_position", "position", "range_m", "bearing_rad", "has_velocity", "velocity", "velocity_samples",
        "has_velocity_over_ground", "velocity_over_ground",  # with the vehicle's odometry
    }
    assert obstacle["position"] == "geometry_msgs/Point" and obstacle["velocity"] == "geometry_msgs/Vector3"
    assert obstacle["velocity_over_ground"] == "geometry_msgs/Vector3"
    fields = LatencyReport.get_fields_and_field_types()
    for stage in ("receive", "queue", "preprocess", "inference", "postprocess", "smoothing", "publish",
                  "end_to_end"):
        assert fields[f"{stage}_ms"] == "float"
    assert fields["receive_stamp"] == "builtin_interfaces/Time"
    assert fields["frames_dropped"] == "uint64"


def test_rclpy_bytes_deserialise_with_rosbags_typestore() -> None:
    """A bag written by our node (rclpy CDR) must be readable by rosbags with our .msg text."""
    from rclpy.serialization import serialize_message

    msg = _obstacle_list()
    decoded = project_typestore().deserialize_cdr(serialize_message(msg), "seg_perception_msgs/msg/ObstacleList")
    assert decoded.header.frame_id == "front_optical_frame"
    assert (decoded.header.stamp.sec, decoded.header.stamp.nanosec) == (1_700_000_000, 123_456_789)
    assert [o.track_id for o in decoded.obstacles] == [42, 0]
    first = decoded.obstacles[0]
    assert (first.class_name, first.bbox.x_offset, first.bbox.width, first.area_px) == ("car", 100, 80, 2500)
    assert np.isclose(first.score, 0.93) and first.centroid_y_px == 221.25
    assert first.has_position and (first.position.x, first.position.y) == (12.5, -1.25)
    assert first.has_velocity and first.velocity.x == -3.0 and first.velocity_samples == 4
    assert first.has_velocity_over_ground and first.velocity_over_ground.x == 7.0
    assert not decoded.obstacles[1].has_position and not decoded.obstacles[1].has_velocity_over_ground


def test_rosbags_bytes_deserialise_with_rclpy() -> None:
    from rclpy.serialization import deserialize_message
    from seg_perception_msgs.msg import LatencyReport

    store = project_typestore()
    types = store.types
    report = types["seg_perception_msgs/msg/LatencyReport"](
        header=types["std_msgs/msg/Header"](stamp=types["builtin_interfaces/msg/Time"](sec=5, nanosec=6),
                                             frame_id="cam"),
        receive_stamp=types["builtin_interfaces/msg/Time"](sec=5, nanosec=9_000_000),
        receive_ms=3.0, queue_ms=0.5, preprocess_ms=1.5, inference_ms=20.0, postprocess_ms=2.0,
        smoothing_ms=0.5, publish_ms=0.25, end_to_end_ms=27.75, stamp_ahead_ms=0.0, processing_ms=24.5,
        batch_size=2, backend="onnxruntime:CPUExecutionProvider", frames_received=10, frames_processed=9,
        frames_dropped=1,
    )
    raw = store.serialize_cdr(report, "seg_perception_msgs/msg/LatencyReport")
    back = deserialize_message(bytes(raw), LatencyReport)
    assert back.backend == "onnxruntime:CPUExecutionProvider"
    assert (back.inference_ms, back.end_to_end_ms, back.frames_dropped, back.batch_size) == (20.0, 27.75, 1, 2)
    assert (back.stamp_ahead_ms, back.processing_ms) == (0.0, 24.5)


def test_message_definitions_come_from_msg_folder() -> None:
    names = set(message_definitions())
    assert names == {f"seg_perception_msgs/msg/{n}" for n in ("Obstacle", "ObstacleList", "LatencyReport",
                                                                "LaneBoundary", "LaneBoundaryArray")}


@pytest.mark.parametrize("name", ["Obstacle", "ObstacleList", "LatencyReport"])
def test_every_field_is_documented(name: str) -> None:
    """Each field, or the block of fields it belongs to, has a comment: planners read these files."""
    lines = message_definitions()[f"seg_perception_msgs/msg/{name}"].splitlines()

    def is_field(line: str) -> bool:
        return bool(line.strip()) and not line.startswith("#")

    for i, line in enumerate(lines):
        if not is_field(line) or "#" in line:
            continue
        start = i
        while start > 0 and is_field(lines[start - 1]):
            start -= 1
        assert start > 0 and lines[start - 1].startswith("#"), f"{name}.msg: {line!r} undocumented"


def test_lane_boundaries_round_trip_between_rclpy_and_rosbags() -> None:
    from geometry_msgs.msg import Point
    from rclpy.serialization import serialize_message
    from seg_perception_msgs.msg import LaneBoundary, LaneBoundaryArray

    assert set(LaneBoundary.get_fields_and_field_types()) == {"points", "coefficients", "style", "confidence",
                                                              "length_m", "camera"}
    msg = LaneBoundaryArray(boundaries=[LaneBoundary(points=[Point(x=5.0, y=1.75), Point(x=6.0, y=1.74)],
                                                     coefficients=[1.8, -0.01, 0.0], style="dashed",
                                                     confidence=0.8, length_m=1.0, camera="front")])
    msg.header.frame_id = "base_link"
    decoded = project_typestore().deserialize_cdr(serialize_message(msg), "seg_perception_msgs/msg/LaneBoundaryArray")
    (boundary,) = decoded.boundaries
    assert decoded.header.frame_id == "base_link" and boundary.style == "dashed" and boundary.camera == "front"
    assert [(p.x, p.y) for p in boundary.points] == [(5.0, 1.75), (6.0, 1.74)]
    assert np.allclose(boundary.coefficients, [1.8, -0.01, 0.0])
