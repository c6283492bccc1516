"""Test helper process: publishes a synthetic multi-camera drive, like a vehicle's cameras would.

Usage: synth_publisher.py --prefix /test --cameras front,rear --size 640x320 --seed 5151
           --frames 12 --rate 4 --burst-frames 30 --burst-rate 40 --bad-frames 1

``--camera-info front`` also publishes those cameras' CameraInfo (the renderer's exact intrinsics) on
``PREFIX/CAMERA/camera_info`` with every image; ``--odometry`` the ego's motion (nav_msgs/Odometry, twist in
base_link, as the synthetic world knows it) on ``PREFIX/odom`` before each time step.
Phases: ``--frames`` steps at ``--rate`` Hz (the node keeps up), then ``--burst-frames`` at
``--burst-rate`` Hz (an overload: the node must drop and count), then ``--bad-frames`` undecodable
images per camera. Each published image prints ``frame CAMERA STAMP_NS INDEX PHASE``, so the test can
render the same ground truth. Stays up afterwards until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import rclpy
from _ros_node import ros_node
from nav_msgs.msg import Odometry
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image

from seg_perception.synth import render_sequence


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prefix", default="/test")
    parser.add_argument("--cameras", default="front,rear")
    parser.add_argument("--size", default="640x320")
    parser.add_argument("--seed", type=int, default=5151)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--rate", type=float, default=4.0)
    parser.add_argument("--burst-frames", type=int, default=0)
    parser.add_argument("--burst-rate", type=float, default=40.0)
    parser.add_argument("--bad-frames", type=int, default=0)
    parser.add_argument("--wait-subscribers", type=float, default=60.0)
    parser.add_argument("--camera-info", default="", help="cameras whose CameraInfo is published too")
    parser.add_argument("--odometry", action="store_true", help="publish the ego's odometry on PREFIX/odom")
    args = parser.parse_args()
    cameras = args.cameras.split(",")
    width, height = (int(v) for v in args.size.split("x"))
    steps = list(render_sequence(seed=args.seed, sequence=0, num_frames=max(args.frames, 1), width=width,
                                 height=height, cameras=tuple(cameras)))

    with ros_node("test_synth_publisher") as node:
        publishers = {c: node.create_publisher(Image, f"{args.prefix}/{c}/image_raw", qos_profile_sensor_data)
                      for c in cameras}
        deadline = time.monotonic() + args.wait_subscribers
        while any(p.get_subscription_count() == 0 for p in publishers.values()) and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.05)
        info_cameras = [c for c in args.camera_info.split(",") if c]
        info_publishers = {c: node.create_publisher(CameraInfo, f"{args.prefix}/{c}/camera_info",
                                                    qos_profile_sensor_data) for c in info_cameras}
        odometry = node.create_publisher(Odometry, f"{args.prefix}/odom", qos_profile_sensor_data) \
            if args.odometry else None
        print("publisher ready", flush=True)

        def publish_odometry(index: int) -> None:
            ego = next(iter(steps[index].values())).ground_truth["ego"]
            msg = Odometry(child_frame_id="base_link")
            msg.header.stamp = node.get_clock().now().to_msg()
            msg.header.frame_id = "odom"
            msg.twist.twist.linear.x, msg.twist.twist.linear.y = ego["velocity_xy_mps"]
            msg.twist.twist.angular.z = ego["yaw_rate_rps"]
            odometry.publish(msg)

        def publish(camera: str, image: np.ndarray, index: int, phase: str, encoding: str = "rgb8") -> None:
            msg = Image(height=image.shape[0], width=image.shape[1], encoding=encoding, is_bigendian=0,
                        step=image.shape[1] * 3)
            msg.header.stamp = node.get_clock().now().to_msg()
            msg.header.frame_id = f"{camera}_optical_frame"
            msg.data = np.ascontiguousarray(image).tobytes()
            if camera in info_publishers:  # before the image: the node has the intrinsics for it
                model = steps[0][camera].camera
                info = CameraInfo(width=model.width, height=model.height, distortion_model="plumb_bob",
                                  d=[0.0] * 5, k=model.intrinsic_matrix().ravel().tolist())
                info.header = msg.header
                info_publishers[camera].publish(info)
            publishers[camera].publish(msg)
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            print(f"frame {camera} {stamp} {index} {phase}", flush=True)

        schedule = [("steady", i % len(steps), args.rate) for i in range(args.frames)]
        schedule += [("burst", i % len(steps), args.burst_rate) for i in range(args.burst_frames)]
        for phase, index, rate in schedule:
            started = time.monotonic()
            if odometry is not None:
                publish_odometry(index)
            for camera in cameras:
                publish(camera, steps[index][camera].image, index, phase)
            time.sleep(max(0.0, 1.0 / rate - (time.monotonic() - started)))
        for i in range(args.bad_frames):
            for camera in cameras:  # an encoding no camera driver speaks: undecodable by design
                publish(camera, steps[0][camera].image, i, "bad", encoding="yuv9")
            time.sleep(0.2)
        print("publisher done", flush=True)
        rclpy.spin(node)

if __name__ == "__main__":
    main()
