"""Pipeline results -> ROS messages, for rclpy (the node) and for rosbags (output bags of `eval`).

Both message flavours take keyword fields, so one builder serves both; every output carries the input
image's header. Output names are the topic names under ``~/<camera>/out/``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from seg_perception.datasets.labels import PALETTE
from seg_perception.pipeline.pipeline import FrameResult
from seg_perception.ros_io.image_codec import to_image_msg
from seg_perception.ros_io.stamps import sec_nanosec

OUTPUT_NAMES = ("drivable_area", "lane_markings", "obstacles", "instances", "semantic", "obstacle_list", "latency",
                "overlay")
ROLE_OUTPUTS = {"drivable": "drivable_area", "lane": "lane_markings", "obstacles": "obstacles"}
OUTPUT_TYPES = {name: "sensor_msgs/msg/Image" for name in OUTPUT_NAMES} | {
    "obstacle_list": "seg_perception_msgs/msg/ObstacleList", "latency": "seg_perception_msgs/msg/LatencyReport"}
OVERLAY_ALPHA = 0.45  # weight of the class colours over the camera image


@dataclass(frozen=True)
class MessageTypes:
    image: type
    time: type
    roi: type
    obstacle: type
    obstacle_list: type
    latency: type
    point: type
    vector: type

    @classmethod
    def rclpy(cls) -> MessageTypes:
        from builtin_interfaces.msg import Time
        from geometry_msgs.msg import Point, Vector3
        from seg_perception_msgs.msg import LatencyReport, Obstacle, ObstacleList
        from sensor_msgs.msg import Image, RegionOfInterest

        return cls(image=Image, time=Time, roi=RegionOfInterest, obstacle=Obstacle, obstacle_list=ObstacleList,
                   latency=LatencyReport, point=Point, vector=Vector3)

    @classmethod
    def rosbags(cls, typestore: Any) -> MessageTypes:
        types = typestore.types
        return cls(image=types["sensor_msgs/msg/Image"], time=types["builtin_interfaces/msg/Time"],
                   roi=types["sensor_msgs/msg/RegionOfInterest"], obstacle=types["seg_perception_msgs/msg/Obstacle"],
                   obstacle_list=types["seg_perception_msgs/msg/ObstacleList"],
                   latency=types["seg_perception_msgs/msg/LatencyReport"],
                   point=types["geometry_msgs/msg/Point"], vector=types["geometry_msgs/msg/Vector3"])


@dataclass(frozen=True)
class LatencyTimes:
    """When one frame arrived and went out: stamp ages on the stamp's (ROS) clock, durations on a steady one."""

    receive_ns: int  # ROS clock at arrival; 0 when unknown (bag replay)
    published_ns: int  # ROS clock when the last other output of the frame went out
    queue_ms: float  # arrival -> the worker took the frame (steady clock)
    processing_ms: float  # arrival -> published (steady clock)
    publish_ms: float
    frames_received: int
    frames_processed: int
    frames_dropped: int


def overlay_bgr(result: FrameResult) -> np.ndarray:
    """Camera image with class colours blended in and obstacle boxes drawn, bgr8 at output resolution."""
    image = result.frame.image
    height, width = result.semantic.shape
    if image.shape[:2] != (height, width):
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    blended = cv2.addWeighted(image, 1.0 - OVERLAY_ALPHA, PALETTE[result.semantic], OVERLAY_ALPHA, 0.0)
    bgr = cv2.cvtColor(blended, cv2.COLOR_RGB2BGR)
    for obstacle in result.obstacles:
        x, y, w, h = obstacle.bbox_xywh
        cv2.rectangle(bgr, (x, y), (x + w - 1, y + h - 1), (255, 255, 255), 1)
        cv2.putText(bgr, f"{obstacle.class_name} #{obstacle.track_id}", (x, max(10, y - 3)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
    return bgr


def image_outputs(result: FrameResult, wanted: Collection[str], header: Any, types: MessageTypes) -> dict[str, Any]:
    """The image and obstacle-list messages among ``wanted``; roles the model lacks are never published."""
    messages: dict[str, Any] = {}
    for role, name in ROLE_OUTPUTS.items():
        if name in wanted and role in result.masks:
            messages[name] = to_image_msg(result.masks[role], "mono8", header, types.image)
    if "instances" in wanted:
        messages["instances"] = to_image_msg(result.instances, "mono16", header, types.image)
    if "semantic" in wanted:
        messages["semantic"] = to_image_msg(result.semantic, "mono8", header, types.image)
    if "overlay" in wanted:
        messages["overlay"] = to_image_msg(overlay_bgr(result), "bgr8", header, types.image)
    if "obstacle_list" in wanted:
        messages["obstacle_list"] = obstacle_list_msg(result, header, types)
    return messages


GROUND_FRAME_ID = "base_link"


def obstacle_list_msg(result: FrameResult, header: Any, types: MessageTypes) -> Any:
    height, width = result.semantic.shape
    obstacles = []
    for o in result.obstacles:
        x, y = o.ground_xy_m or (0.0, 0.0)
        vx, vy = o.velocity_xy_mps or (0.0, 0.0)
        gx, gy = o.velocity_over_ground_xy_mps or (0.0, 0.0)
        obstacles.append(types.obstacle(
            instance_id=o.instance_id, track_id=o.track_id, class_id=o.class_id, class_name=o.class_name,
            score=float(o.score),
            bbox=types.roi(x_offset=o.bbox_xywh[0], y_offset=o.bbox_xywh[1], width=o.bbox_xywh[2],
                           height=o.bbox_xywh[3], do_rectify=False),
            area_px=o.area_px, centroid_x_px=float(o.centroid_xy[0]), centroid_y_px=float(o.centroid_xy[1]),
            has_position=o.ground_xy_m is not None, position=types.point(x=float(x), y=float(y), z=0.0),
            range_m=float(o.range_m or 0.0), bearing_rad=float(o.bearing_rad or 0.0),
            has_velocity=o.velocity_xy_mps is not None, velocity=types.vector(x=float(vx), y=float(vy), z=0.0),
            velocity_samples=o.velocity_samples, has_velocity_over_ground=o.velocity_over_ground_xy_mps is not None,
            velocity_over_ground=types.vector(x=float(gx), y=float(gy), z=0.0)))
    located = any(o.ground_xy_m is not None for o in result.obstacles)
    return types.obstacle_list(header=header, image_width=width, image_height=height, obstacles=obstacles,
                               ground_frame_id=GROUND_FRAME_ID if located else "")


def stamp_age_ms(now_ns: int, stamp_ns: int) -> float:
    """now - stamp in ms, never negative: a stamp ahead of the clock is reported apart (stamp_ahead_ms)."""
    return max(0, now_ns - stamp_ns) / 1e6


def latency_msg(result: FrameResult, header: Any, times: LatencyTimes, backend: str, types: MessageTypes) -> Any:
    stamp = result.frame.stamp_ns
    stages = result.timings_ms
    received = times.receive_ns or stamp
    received_sec, received_nanosec = sec_nanosec(received)
    return types.latency(
        header=header,
        receive_stamp=types.time(sec=received_sec, nanosec=received_nanosec),
        receive_ms=stamp_age_ms(received, stamp), queue_ms=times.queue_ms,
        preprocess_ms=stages.get("preprocess", 0.0), inference_ms=stages.get("inference", 0.0),
        postprocess_ms=stages.get("postprocess", 0.0), smoothing_ms=stages.get("smoothing", 0.0),
        publish_ms=times.publish_ms, end_to_end_ms=stamp_age_ms(times.published_ns, stamp),
        stamp_ahead_ms=max(0, stamp - received) / 1e6, processing_ms=times.processing_ms,
        batch_size=result.batch_size, backend=backend, frames_received=times.frames_received,
        frames_processed=times.frames_processed, frames_dropped=times.frames_dropped)
