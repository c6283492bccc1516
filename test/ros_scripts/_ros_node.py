"""What the test helper processes share: one node, torn down cleanly on SIGINT or SIGTERM."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node


@contextmanager
def ros_node(name: str) -> Iterator[Node]:
    """A node for the ``with`` block; a stop signal ends the block quietly, the tests check the exit code."""
    signal.signal(signal.SIGTERM, lambda *_: rclpy.try_shutdown())
    rclpy.init()
    node = rclpy.create_node(name)
    try:
        yield node
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
