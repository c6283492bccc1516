"""ROS time stamps (builtin_interfaces/Time, from rclpy or rosbags alike) to and from integer nanoseconds."""

from __future__ import annotations

from typing import Any

NS_PER_S = 1_000_000_000


def stamp_ns(time_msg: Any) -> int:
    """A Time message (e.g. ``header.stamp``) as nanoseconds."""
    return time_msg.sec * NS_PER_S + time_msg.nanosec


def sec_nanosec(ns: int) -> tuple[int, int]:
    """Nanoseconds as the (sec, nanosec) fields of a Time message."""
    return divmod(ns, NS_PER_S)
