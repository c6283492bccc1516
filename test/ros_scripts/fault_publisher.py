"""Test helper process: a camera stream with faults mixed in, as sensor_msgs/CompressedImage.

Usage: fault_publisher.py --prefix /test --cameras front,rear --rate 30 --seconds 20 --bad-every 10
Every camera gets jpeg frames of a synthetic drive; every ``--bad-every``-th frame is replaced by the
next fault of FAULTS in turn. Prints one JSON line at the end: frames sent per camera and kind, so the
test can hold the node's counters against what was really sent.
"""

from __future__ import annotations

import argparse
import json
import time
import zlib
from collections import Counter

import cv2
import numpy as np
import rclpy
from _ros_node import ros_node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage

from seg_perception.synth import render_sequence

TEN_YEARS_NS = 10 * 365 * 24 * 3600 * 1_000_000_000
# kind -> the drop reason the node must count it under ("" : processed, not dropped)
FAULTS = {
    "garbage": "decode_error",  # random bytes that claim to be jpeg
    "truncated": "decode_error",  # the first third of a real jpeg
    "empty": "decode_error",
    "unknown_format": "decode_error",
    "huge_png": "bad_frame",  # a real 20000x20000 png of 400 kB: refused by its header, never decoded
    "tiny": "bad_frame",  # 4x4 px
    "future_stamp": "",  # a good frame stamped ten years ahead: processed, its clock flagged
}


def huge_png(width: int = 20000, height: int = 20000) -> bytes:
    """A valid grey png of width x height zeros, built row by row (never 400 MB in memory at once)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])  # 8-bit grey
    compressor = zlib.compressobj(9)
    row = bytes(1 + width)  # filter byte 0, then zeros
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prefix", default="/test")
    parser.add_argument("--cameras", default="front,rear")
    parser.add_argument("--size", default="512x256")
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--bad-every", type=int, default=10)
    parser.add_argument("--wait-subscribers", type=float, default=120.0)
    parser.add_argument("--reliable", action="store_true", help="reliable QoS, depth 100 (default: sensor data)")
    args = parser.parse_args()
    cameras = args.cameras.split(",")
    width, height = (int(v) for v in args.size.split("x"))

    scenes = list(render_sequence(seed=77, sequence=0, num_frames=8, width=width, height=height,
                                  cameras=tuple(cameras)))
    good = {c: [cv2.imencode(".jpg", cv2.cvtColor(s[c].image, cv2.COLOR_RGB2BGR))[1].tobytes() for s in scenes]
            for c in cameras}
    rng = np.random.default_rng(0)
    faults = {
        "garbage": ("jpeg", b"\xff\xd8" + rng.integers(0, 256, 5000, dtype=np.uint8).tobytes()),
        "truncated": ("jpeg", good[cameras[0]][0][: len(good[cameras[0]][0]) // 3]),
        "empty": ("jpeg", b""),
        "unknown_format": ("webp", good[cameras[0]][0]),
        "huge_png": ("png", huge_png()),
        "tiny": ("jpeg", cv2.imencode(".jpg", np.zeros((4, 4, 3), np.uint8))[1].tobytes()),
    }
    kinds = list(FAULTS)

    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE) if args.reliable else qos_profile_sensor_data
    with ros_node("test_fault_publisher") as node:
        publishers = {c: node.create_publisher(CompressedImage, f"{args.prefix}/{c}/image_raw/compressed", qos)
                      for c in cameras}
        deadline = time.monotonic() + args.wait_subscribers
        while any(p.get_subscription_count() == 0 for p in publishers.values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        print("publisher ready", flush=True)
        sent: dict[str, Counter[str]] = {c: Counter() for c in cameras}
        period = 1.0 / args.rate
        frames = int(args.seconds * args.rate)
        start = time.monotonic()
        for index in range(frames):
            kind = kinds[(index // args.bad_every) % len(kinds)] if index % args.bad_every == args.bad_every - 1 \
                else "good"
            stamp = node.get_clock().now().nanoseconds + (TEN_YEARS_NS if kind == "future_stamp" else 0)
            for camera in cameras:
                fmt, data = faults.get(kind, ("jpeg", good[camera][index % len(good[camera])]))
                msg = CompressedImage(format=fmt, data=data)
                msg.header.frame_id = f"{camera}_optical_frame"
                msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
                publishers[camera].publish(msg)
                sent[camera][kind] += 1
            time.sleep(max(0.0, start + (index + 1) * period - time.monotonic()))
        rclpy.spin_once(node, timeout_sec=0.5)
        print(json.dumps({"sent": {c: dict(k) for c, k in sent.items()}}), flush=True)
        print("publisher done", flush=True)


if __name__ == "__main__":
    main()
