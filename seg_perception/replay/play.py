"""Publishing a bag's messages over rclpy in real time, like ``ros2 bag play``.

Messages go out as the bag stores them (serialised CDR handed to ``Publisher.publish(bytes)``), so
playback costs no (de)serialisation unless ``restamp`` asks for new header stamps. Message ``i`` of a
bag is published at ``start + (log_time_i - first_log_time) / rate`` on the monotonic clock.

With ``clock_hz`` the player is a ROS time source, as ``ros2 bag play --clock``: ``/clock`` carries the bag's
log time as playback reaches it, ``first_log_time + (now - start) * rate`` (plus the restamp offset, so that
it follows restamped stamps), published every ``1 / clock_hz`` s and right before each message at exactly
its log time, so a node on sim time never gets a message stamped ahead of its clock. Within a pass it only
moves forward (it never passes the next message's log time); a new pass starts it again at that pass's first
message.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.typesys.store import Typestore

from seg_perception.bags.reader import BagError, open_bag
from seg_perception.bags.typestore import project_typestore
from seg_perception.ros_io.stamps import sec_nanosec, stamp_ns

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
CLOCK_TOPIC = "/clock"
DEFAULT_CLOCK_HZ = 100.0
HEADER_TYPE = "std_msgs/msg/Header"
RELIABILITIES = ("best_effort", "reliable")
# After every image topic has a subscriber (wait_for_subscribers), before the first message.
MATCH_GRACE_S = 0.3
# Wall-clock wait for reliable subscribers to acknowledge the last messages before the node goes away.
ACK_TIMEOUT_S = 2.0


@dataclass
class PlayStats:
    """What one ``play_bags`` call did; topics are the published (remapped) names."""

    published: dict[str, int] = field(default_factory=dict)
    loops: int = 0  # complete passes over all bags
    duration_s: float = 0.0  # from the first message to the end, without set-up and waiting for subscribers
    offsets: list[dict[str, Any]] = field(default_factory=list)  # as in the offsets file, when restamping
    clock_ticks: int = 0  # /clock messages published (not in ``published``: they are not the bag's)

    @property
    def total(self) -> int:
        return sum(self.published.values())


@dataclass(frozen=True)
class _BagPlan:
    path: Path
    topics: dict[str, str]  # bag topic -> message type
    reader: AnyReader  # open for the whole playback: opening parses every definition, too slow between loops
    stamped: frozenset[str]  # topics whose messages start with a Header, by the bag's own definitions


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set ``stop`` (main thread only; elsewhere Python cannot install handlers).

    Previous handlers come back afterwards. Left alone when rclpy's handlers are installed (a default
    context): those shut the contexts down and raise KeyboardInterrupt, which ends us just as well, and
    replacing them from Python would lose them for good. Contexts we create skip rclpy's handlers.
    """
    from rclpy.signals import SignalHandlerOptions, get_current_signal_handlers_options

    if (threading.current_thread() is not threading.main_thread()
            or get_current_signal_handlers_options() != SignalHandlerOptions.NO):
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda *_: stop.set())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def ros_context_of(context: Any | None) -> Iterator[Any]:
    """``context`` as given, or a fresh one (without rclpy's signal handlers) shut down afterwards."""
    if context is not None:
        yield context
        return
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    own = rclpy.Context()
    rclpy.init(context=own, signal_handler_options=SignalHandlerOptions.NO)
    try:
        yield own
    finally:
        own.try_shutdown()


def message_class(msgtype: str) -> type:
    """The rclpy message class of ``pkg/msg/Name`` (rosidl_runtime_py when installed, else importlib)."""
    try:
        from rosidl_runtime_py.utilities import get_message
    except ImportError:
        package, kind, name = msgtype.split("/")
        return getattr(importlib.import_module(f"{package}.{kind}"), name)
    return get_message(msgtype)


def has_header(msgtype: str, typestore: Typestore | None = None) -> bool:
    """Whether a message starts with a std_msgs/Header (then its stamp sits right behind the CDR header)."""
    fields = (typestore or project_typestore()).fielddefs.get(msgtype)
    if not fields or not fields[1]:
        return False
    name, (_, ref) = fields[1][0]
    return name == "header" and ref == HEADER_TYPE


def default_topics(types: Mapping[str, str]) -> list[str]:
    """Camera topics of a bag: images (not labels) and camera infos."""
    return sorted(topic for topic, msgtype in types.items()
                  if (msgtype in IMAGE_TYPES and "/labels/" not in topic) or msgtype == CAMERA_INFO_TYPE)


def parse_remaps(rules: Sequence[str]) -> dict[str, str]:
    """``FROM:=TO`` rules (as ``ros2 bag play --remap``) -> mapping."""
    remap = {}
    for rule in rules:
        source, sep, target = rule.partition(":=")
        if not sep or not source or not target:
            raise ValueError(f"remap must look like /from:=/to, got {rule!r}")
        remap[source] = target
    return remap


def _plan(bags: ExitStack, path: Path, topics: Sequence[str] | None) -> _BagPlan:
    reader = bags.enter_context(open_bag(path))
    types = {conn.topic: conn.msgtype for conn in reader.connections}
    counts: dict[str, int] = {}
    for conn in reader.connections:
        counts[conn.topic] = counts.get(conn.topic, 0) + conn.msgcount
    chosen = list(topics) if topics is not None else default_topics(types)
    missing = [topic for topic in chosen if topic not in types]
    if missing:
        raise BagError(f"bag {path}: no topic {', '.join(missing)}; it has {', '.join(sorted(types))}")
    if not chosen:
        raise BagError(f"bag {path}: no camera topics (Image, CompressedImage, CameraInfo) to play; "
                       f"it has {', '.join(sorted(types)) or 'no topics'}")
    if not sum(counts[topic] for topic in chosen):  # looping over nothing would spin forever
        raise BagError(f"bag {path}: no messages on {', '.join(chosen)}")
    stamped = frozenset(topic for topic in chosen if has_header(types[topic], reader.typestore))
    return _BagPlan(path=path, topics={topic: types[topic] for topic in chosen}, reader=reader, stamped=stamped)


def _topic_types(plans: Sequence[_BagPlan]) -> dict[str, str]:
    """bag topic -> type over all bags; one publisher per topic needs one type."""
    types: dict[str, str] = {}
    for plan in plans:
        for topic, msgtype in plan.topics.items():
            if types.setdefault(topic, msgtype) != msgtype:
                raise BagError(f"bag {plan.path}: topic {topic} carries {msgtype}, an earlier bag {types[topic]}")
    return types


def _messages(plan: _BagPlan) -> Iterator[tuple[str, str, int, bytes]]:
    """(topic, type, log time ns, serialised CDR) of the planned topics in log-time order."""
    count = 0
    connections = [conn for conn in plan.reader.connections if conn.topic in plan.topics]
    try:
        for conn, log_ns, raw in plan.reader.messages(connections=connections):
            count += 1
            # rclpy publishes `bytes` only (a memoryview is refused); the bag's CDR already
            # carries the 4-byte encapsulation header rclpy expects.
            yield conn.topic, conn.msgtype, log_ns, raw if isinstance(raw, bytes) else bytes(raw)
    except (AnyReaderError, OSError, ValueError, KeyError) as error:
        raise BagError(f"bag {plan.path}: unreadable after {count} messages: {error}") from error


def _write_offsets(path: Path, offsets: list[dict[str, Any]]) -> None:
    # Replaced atomically after every pass: a reader during a looping playback sees a whole file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"loops": offsets}, indent=2) + "\n")
    tmp.replace(path)


def restamp_cdr(raw: bytes, msgtype: str, offset_ns: int, typestore: Typestore) -> bytes:
    """``raw`` with its header stamp moved by ``offset_ns``: deserialise, change, serialise."""
    msg = typestore.deserialize_cdr(raw, msgtype)
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec_nanosec(stamp_ns(msg.header.stamp) + offset_ns)
    return bytes(typestore.serialize_cdr(msg, msgtype))


BEST_EFFORT_LINGER_S = 0.5


def play_bags(
    paths: Sequence[Path], *, topics: Sequence[str] | None = None, rate: float = 1.0, loop: bool = False,
    restamp: bool = False, remap: Mapping[str, str] | None = None, qos_reliability: str = "best_effort",
    wait_for_subscribers: float = 0.0, offsets_file: Path | None = None, context: Any | None = None,
    stop: threading.Event | None = None, clock_hz: float | None = None,
) -> PlayStats:
    """Publish the bags' messages one bag after the other, in real time scaled by ``rate``.

    ``topics``: bag topics to play (default: camera images, not labels, and camera infos of each bag).
    ``restamp``: shift header stamps so that a pass starts at the wall-clock time; the offset of every
    pass goes to ``offsets_file`` (``{"loops": [{"offset_ns", "started_ns", "loop", "bag"}]}``) so that
    ``bag stamp = published stamp - offset_ns``. Without it headers are published untouched.
    ``wait_for_subscribers``: seconds to wait for a subscriber on every image topic, and on /clock with
    ``clock_hz`` (0: start at once).
    ``clock_hz``: publish /clock (rosgraph_msgs/Clock) following the bag's time at this rate (module doc).
    ``loop`` repeats until ``stop`` is set, SIGINT or SIGTERM (in the main thread; both also end a
    single pass early). Raises BagError naming the bag for missing, unreadable or topic-less bags.
    """
    if not rate > 0:
        raise ValueError(f"rate must be > 0, got {rate}")
    if qos_reliability not in RELIABILITIES:
        raise ValueError(f"qos reliability must be one of {', '.join(RELIABILITIES)}, got {qos_reliability!r}")
    if not paths:
        raise ValueError("no bag to play")
    if offsets_file is not None and not restamp:
        raise ValueError("an offsets file is written only when restamping; add restamp (--restamp)")
    if clock_hz is not None and not (clock_hz > 0 and clock_hz != float("inf")):
        raise ValueError(f"clock rate must be > 0 Hz, got {clock_hz}")
    remap = dict(remap or {})
    stop = stop if stop is not None else threading.Event()
    stats = PlayStats()
    with ExitStack() as bags:
        # Every bag is checked before the first message goes out: a bad second bag fails now, not in an hour.
        plans = [_plan(bags, Path(path), topics) for path in paths]
        types = _topic_types(plans)
        with stop_on_signals(stop), ros_context_of(context) as ctx:
            player = _Player(plans, types, remap, rate, restamp, qos_reliability, offsets_file, ctx, stop, stats,
                             clock_hz)
            player.run(loop=loop, wait_for_subscribers=wait_for_subscribers)
    return stats


class _Player:
    def __init__(self, plans: Sequence[_BagPlan], types: Mapping[str, str], remap: Mapping[str, str], rate: float,
                 restamp: bool, reliability: str, offsets_file: Path | None, context: Any, stop: threading.Event,
                 stats: PlayStats, clock_hz: float | None = None) -> None:
        import rclpy
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

        self.plans, self.types, self.rate, self.stop, self.stats = plans, types, rate, stop, stats
        self.offsets_file = offsets_file
        self.restamp = restamp
        self.reliable = reliability == "reliable"
        qos = (QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
               if self.reliable else qos_profile_sensor_data)  # sensor data: best effort, depth 5
        self.node = rclpy.create_node("seg_perception_player", context=context)
        self.out_topic = {topic: remap.get(topic, topic) for topic in types}
        self.publishers: dict[str, Any] = {}
        for topic, msgtype in types.items():
            try:
                cls = message_class(msgtype)
            except (ImportError, AttributeError, ValueError) as error:
                bag = next(plan.path for plan in plans if topic in plan.topics)
                raise BagError(f"bag {bag}: topic {topic} has type {msgtype}, which this Python environment "
                               f"cannot import: {error}") from error
            self.publishers[topic] = self.node.create_publisher(cls, self.out_topic[topic], qos)
        for topic in types:
            stats.published.setdefault(self.out_topic[topic], 0)
        self.clock = None
        if clock_hz is not None:
            from rosgraph_msgs.msg import Clock

            self.clock_type = Clock
            # Reliable matches both kinds of subscriber (rclpy's time source subscribes best effort, depth 1).
            self.clock = self.node.create_publisher(
                Clock, CLOCK_TOPIC, QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                                               reliability=ReliabilityPolicy.RELIABLE))
            self.clock_period_ns = max(1, round(1e9 / clock_hz))
        self.last_clock_ns: int | None = None
        self.next_tick_ns = 0

    def run(self, *, loop: bool, wait_for_subscribers: float) -> None:
        started = None
        try:
            if wait_for_subscribers > 0:
                self._wait_for_subscribers(wait_for_subscribers)
            started = time.monotonic()
            while not self.stop.is_set():
                for plan in self.plans:
                    if not self._play(plan):
                        return
                self.stats.loops += 1
                if not loop:
                    return
        finally:
            if started is not None:
                self.stats.duration_s = time.monotonic() - started
            self._drain()
            self.node.destroy_node()

    def _wait_for_subscribers(self, timeout_s: float) -> None:
        images = [topic for topic, msgtype in self.types.items() if msgtype in IMAGE_TYPES]
        deadline = time.monotonic() + timeout_s
        while not self.stop.is_set():
            waiting = [self.out_topic[t] for t in images if self.publishers[t].get_subscription_count() == 0]
            if self.clock is not None and self.clock.get_subscription_count() == 0:
                waiting.append(CLOCK_TOPIC)  # a node on sim time needs the clock from the first message on
            if not waiting:
                # Our side has matched the subscriber; its side may match us a moment later and would
                # drop what comes before (best effort). A short grace keeps the first frames.
                self.stop.wait(MATCH_GRACE_S)
                return
            if time.monotonic() >= deadline:
                print(f"seg-perception play: no subscriber on {', '.join(waiting)} after {timeout_s:g} s; "
                      f"playing anyway", file=sys.stderr)
                return
            self.stop.wait(0.05)

    def _play(self, plan: _BagPlan) -> bool:
        """One pass over one bag; False when stopped."""
        published = self.stats.published
        first_ns = start_mono = offset_ns = 0
        for count, (topic, msgtype, log_ns, raw) in enumerate(_messages(plan)):
            if count == 0:
                first_ns, start_mono = log_ns, time.monotonic_ns()
                offset_ns = self._new_pass(plan, first_ns) if self.restamp else 0
                self.last_clock_ns, self.next_tick_ns = None, start_mono
            due_ns = start_mono + (log_ns - first_ns) / self.rate
            if not self._wait_until(due_ns, start_mono, first_ns + offset_ns, log_ns + offset_ns):
                return False
            self._tick(log_ns + offset_ns)
            if self.restamp and topic in plan.stamped:
                raw = restamp_cdr(raw, msgtype, offset_ns, plan.reader.typestore)
            self.publishers[topic].publish(raw)
            published[self.out_topic[topic]] += 1
        return True

    def _wait_until(self, due_ns: float, start_mono: int, first_clock_ns: int, next_clock_ns: int) -> bool:
        """Until the monotonic time ``due_ns``, ticking /clock on the way; False when stopped."""
        while not self.stop.is_set():
            now = time.monotonic_ns()
            if now >= due_ns:
                return True
            wake = due_ns if self.clock is None else min(due_ns, self.next_tick_ns)
            if wake > now and self.stop.wait((wake - now) / 1e9):
                return False
            now = time.monotonic_ns()
            if self.clock is not None and now >= self.next_tick_ns:
                # The bag's time now, never past the next message: its own tick comes with it.
                self._tick(min(first_clock_ns + round((now - start_mono) * self.rate), next_clock_ns))
                self.next_tick_ns += self.clock_period_ns
                if self.next_tick_ns <= now:  # fell behind (a loaded machine): no burst of stale ticks
                    self.next_tick_ns = now + self.clock_period_ns
        return False

    def _tick(self, clock_ns: int) -> None:
        if self.clock is None or (self.last_clock_ns is not None and clock_ns <= self.last_clock_ns):
            return  # several messages at one log time, or a tick that already said it: nothing new
        msg = self.clock_type()
        msg.clock.sec, msg.clock.nanosec = sec_nanosec(clock_ns)
        self.clock.publish(msg)
        self.last_clock_ns = clock_ns
        self.stats.clock_ticks += 1

    def _new_pass(self, plan: _BagPlan, first_ns: int) -> int:
        started_ns = time.time_ns()
        entry = {"offset_ns": started_ns - first_ns, "started_ns": started_ns, "loop": self.stats.loops,
                 "bag": str(plan.path)}
        self.stats.offsets.append(entry)
        if self.offsets_file is not None:
            _write_offsets(self.offsets_file, self.stats.offsets)
        return entry["offset_ns"]

    def _drain(self) -> None:
        # Reliable subscribers may still be fetching the last messages. Best effort has no acks, but over
        # shared memory the samples live in our segment: leaving at once lost the last frame now and then.
        if not self.reliable:
            self.stop.wait(BEST_EFFORT_LINGER_S)
            return
        from rclpy.duration import Duration

        for publisher in [*self.publishers.values(), *([self.clock] if self.clock is not None else [])]:
            with suppress(Exception):  # a context shut down by a signal: nothing left to deliver to
                publisher.wait_for_all_acked(Duration(seconds=ACK_TIMEOUT_S))
