"""Recording ROS 2 topics into a bag (mcap or sqlite3), like ``ros2 bag record``.

Subscriptions are raw (``raw=True``): the serialised CDR from the wire goes into the bag unchanged.
The log time of a message is its own header stamp when it has one (read straight from the CDR bytes),
else the receive time; so a recording of the node's outputs lines up with the input bag by log time.
"""

from __future__ import annotations

import struct
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from rosbags.rosbag2 import Writer

from seg_perception.bags.typestore import project_typestore
from seg_perception.bags.writer import BAG_VERSION, STORAGE_PLUGINS
from seg_perception.replay.play import has_header, message_class, ros_context_of, stop_on_signals

OVERLAY_SUFFIX = "/out/overlay"  # a debug picture, large: recorded only when named
DEPTH = 100
# Encapsulation header of little-endian plain CDR, what Fast DDS and rosbags write.
CDR_LE = b"\x00\x01"
_STAMP = struct.Struct("<iI")  # builtin_interfaces/Time: int32 sec, uint32 nanosec


@dataclass
class RecordStats:
    """What one ``record`` call wrote."""

    path: Path
    messages: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.messages.values())


def header_stamp_ns(data: bytes) -> int | None:
    """Header stamp of a serialised message whose first field is a std_msgs/Header, None if unreadable.

    The stamp is the first thing after the 4-byte encapsulation header, 4-byte aligned already.
    """
    if len(data) < 12 or data[:2] != CDR_LE:
        return None
    sec, nanosec = _STAMP.unpack_from(data, 4)
    stamp = sec * 10**9 + nanosec
    return stamp if stamp > 0 else None  # unset stamps would put the message at 1970


def _prefix(node_prefix: str) -> str:
    return "/" + node_prefix.strip("/")


class _Recorder:
    def __init__(self, out: Path, storage: str, topics: Sequence[str] | None, node_prefix: str,
                 context: Any) -> None:
        import rclpy

        self.out = out
        self.typestore = project_typestore()
        self.explicit = set(topics) if topics is not None else None
        self.prefix = _prefix(node_prefix)
        self.writer = Writer(out, version=BAG_VERSION, storage_plugin=STORAGE_PLUGINS[storage])
        self.node = rclpy.create_node("seg_perception_recorder", context=context)
        self.subscriptions: dict[str, Any] = {}
        self.counts: dict[str, int] = {}
        self.skipped: set[str] = set()

    def wanted(self, topic: str) -> bool:
        if self.explicit is not None:
            return topic in self.explicit
        return topic.startswith(self.prefix + "/") and not topic.endswith(OVERLAY_SUFFIX)

    def discover(self) -> None:
        """Subscribe to wanted topics that have a publisher now (its QoS decides ours)."""
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

        for topic, msgtypes in self.node.get_topic_names_and_types():
            if topic in self.subscriptions or topic in self.skipped or not self.wanted(topic):
                continue
            publishers = self.node.get_publishers_info_by_topic(topic)
            if not publishers:
                continue  # only subscribers so far: wait for a publisher to learn its QoS
            msgtype = msgtypes[0]
            if len(msgtypes) > 1 or msgtype not in self.typestore.types:
                why = f"several types {msgtypes}" if len(msgtypes) > 1 else f"type {msgtype} unknown to the typestore"
                print(f"seg-perception record: not recording {topic}: {why}", file=sys.stderr)
                self.skipped.add(topic)
                continue
            try:
                cls = message_class(msgtype)
            except (ImportError, AttributeError, ValueError) as error:
                print(f"seg-perception record: not recording {topic}: cannot import {msgtype}: {error}",
                      file=sys.stderr)
                self.skipped.add(topic)
                continue
            # A reliable subscription never matches a best-effort publisher (a camera driver, our
            # player): take best effort if any publisher offers only that, as ros2 bag record does.
            best_effort = any(p.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT for p in publishers)
            qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=DEPTH,
                             reliability=ReliabilityPolicy.BEST_EFFORT if best_effort else ReliabilityPolicy.RELIABLE)
            connection = self.writer.add_connection(topic, msgtype, typestore=self.typestore)
            stamped = has_header(msgtype)
            self.counts[topic] = 0
            self.subscriptions[topic] = self.node.create_subscription(
                cls, topic, partial(self._write, topic, connection, stamped), qos, raw=True)

    def _write(self, topic: str, connection: Any, stamped: bool, data: bytes) -> None:
        log_ns = (header_stamp_ns(data) if stamped else None) or time.time_ns()
        self.writer.write(connection, log_ns, data)
        self.counts[topic] += 1

    def close(self) -> None:
        for subscription in self.subscriptions.values():
            self.node.destroy_subscription(subscription)
        self.node.destroy_node()


def record(
    out: Path, *, topics: Sequence[str] | None = None, node_prefix: str = "/seg_perception_node",
    duration_s: float | None = None, storage: str = "mcap", discovery_s: float = 2.0, context: Any | None = None,
    stop: threading.Event | None = None, on_ready: Callable[[], None] | None = None,
) -> RecordStats:
    """Record topics into a new bag at ``out`` until ``duration_s``, ``stop``, SIGINT or SIGTERM.

    ``topics``: exactly these (subscribed once they have a publisher); default: every topic under
    ``node_prefix`` except ``*/out/overlay``, looked up again every ``discovery_s`` seconds so that
    topics appearing later are recorded too. ``on_ready`` runs once subscribed to what exists.
    The bag is closed properly however recording ends.
    """
    out = Path(out)
    if storage not in STORAGE_PLUGINS:
        raise ValueError(f"unknown bag storage {storage!r}; choose one of {', '.join(STORAGE_PLUGINS)}")
    if out.exists():
        raise FileExistsError(f"bag {out} exists already; choose another output or remove it")
    if duration_s is not None and duration_s <= 0:
        raise ValueError(f"duration must be > 0 seconds, got {duration_s}")
    if discovery_s <= 0:
        raise ValueError(f"discovery period must be > 0 seconds, got {discovery_s}")
    stop = stop if stop is not None else threading.Event()
    with stop_on_signals(stop), ros_context_of(context) as ctx:
        from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

        recorder = _Recorder(out, storage, topics, node_prefix, ctx)
        executor = SingleThreadedExecutor(context=ctx)
        executor.add_node(recorder.node)
        started = time.monotonic()
        opened = False
        try:
            recorder.writer.open()
            opened = True
            recorder.discover()
            if on_ready is not None:
                on_ready()
            deadline = None if duration_s is None else started + duration_s
            next_discovery = time.monotonic() + discovery_s
            while not stop.is_set() and ctx.ok():
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    break
                if now >= next_discovery:
                    recorder.discover()
                    next_discovery = now + discovery_s
                # Short spins: stop, SIGINT and the deadline are noticed within 0.1 s.
                executor.spin_once(timeout_sec=0.1)
        except ExternalShutdownException:
            pass  # the caller's context was shut down: end like a stop
        finally:
            # Messages already taken were written in their callbacks; closing writes the summary.
            executor.remove_node(recorder.node)
            executor.shutdown()
            recorder.close()
            if opened:
                recorder.writer.close()
    return RecordStats(path=out, messages=dict(recorder.counts), duration_s=time.monotonic() - started)
