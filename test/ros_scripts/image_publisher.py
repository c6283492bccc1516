"""Test helper process: publishes rgb8 frames whose pixels encode their sequence number.

Usage: image_publisher.py TOPIC WIDTH HEIGHT RATE_HZ
Frame n has frame_id "n" and every byte equal to (n * 7 + row) % 256, so the receiver can check
content, order and loss. Runs until SIGINT/SIGTERM.
"""

import sys

import numpy as np
import rclpy
from _ros_node import ros_node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image


def frame_pixels(n: int, width: int, height: int) -> np.ndarray:
    rows = (np.arange(height, dtype=np.int64)[:, None] + n * 7) % 256
    return np.broadcast_to(rows.astype(np.uint8)[:, :, None], (height, width, 3))


def main() -> None:
    topic, width, height, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    with ros_node("test_image_publisher") as node:
        publisher = node.create_publisher(Image, topic, qos_profile_sensor_data)
        count = 0

        def publish() -> None:
            nonlocal count
            msg = Image(height=height, width=width, encoding="rgb8", is_bigendian=0, step=width * 3)
            msg.header.stamp = node.get_clock().now().to_msg()
            msg.header.frame_id = str(count)
            msg.data = np.ascontiguousarray(frame_pixels(count, width, height)).tobytes()
            publisher.publish(msg)
            count += 1

        node.create_timer(1.0 / rate, publish)
        print("publisher ready", flush=True)
        rclpy.spin(node)

if __name__ == "__main__":
    main()
