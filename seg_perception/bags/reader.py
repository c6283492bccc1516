"""Reading ROS 2 bags (mcap or sqlite3) with rosbags, with errors that name the bag and the problem."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rosbags.highlevel import AnyReader, AnyReaderError

from seg_perception.bags.typestore import project_typestore


class BagError(ValueError):
    """A bag cannot be used: missing, truncated, unknown storage, or lacks the topics asked for."""


def bag_topics(path: Path | str) -> dict[str, tuple[str, int]]:
    """topic -> (message type, message count) of a bag."""
    with open_bag(path) as reader:
        counts: dict[str, tuple[str, int]] = {}
        for conn in reader.connections:
            _, previous = counts.get(conn.topic, (conn.msgtype, 0))
            counts[conn.topic] = (conn.msgtype, previous + conn.msgcount)
        return counts


@contextmanager
def open_bag(path: Path | str) -> Iterator[AnyReader]:
    """An open AnyReader for one bag, closed afterwards; opening problems raise BagError naming the bag."""
    path = Path(path)
    if not path.exists():
        raise BagError(f"bag {path}: no such file or folder")
    reader = AnyReader([path], default_typestore=project_typestore())
    try:
        reader.open()
    except (AnyReaderError, OSError, ValueError, KeyError) as error:
        raise BagError(f"bag {path}: cannot be opened: {error}") from error
    try:
        yield reader
    finally:
        reader.close()


def read_messages(path: Path | str, topics: Iterable[str]) -> Iterator[tuple[str, int, Any]]:
    """(topic, log time ns, deserialised message) in log-time order for the given topics."""
    wanted = set(topics)
    with open_bag(path) as reader:
        available = {conn.topic for conn in reader.connections}
        missing = sorted(wanted - available)
        if missing:
            raise BagError(f"bag {path}: no topic {', '.join(missing)}; it has {', '.join(sorted(available))}")
        connections = [conn for conn in reader.connections if conn.topic in wanted]
        try:
            for conn, stamp, raw in reader.messages(connections=connections):
                yield conn.topic, stamp, reader.deserialize(raw, conn.msgtype)
        except (AnyReaderError, OSError, ValueError) as error:
            raise BagError(f"bag {path}: unreadable after some messages: {error}") from error
