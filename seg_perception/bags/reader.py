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


METADATA = "metadata.yaml"


def first_line(error: BaseException) -> str:
    """An error's message on one line (YAML errors span several)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def not_a_bag(path: Path) -> str | None:
    """Why ``path`` cannot be a bag, from the file system alone; None when it may be one.

    rosbags reports an empty folder or a missing metadata.yaml as a vague constructor error; looking first
    lets the message say what is really wrong.
    """
    try:
        if not path.exists():
            return "no such file or folder"
        if not path.is_dir():
            return None  # a single .mcap file, or rosbags names the storage it does not know
        entries = sorted(entry.name for entry in path.iterdir())
    except OSError as error:
        return f"cannot be read: {error.strerror or first_line(error)}"
    if not entries:
        return "empty folder, not a bag"
    if METADATA not in entries:
        mcaps = [name for name in entries if name.endswith(".mcap")]
        hint = f"; give {path / mcaps[0]} itself to read it without one" if len(mcaps) == 1 else ""
        return f"not a bag: no {METADATA}{hint}"
    return None


@contextmanager
def open_bag(path: Path | str) -> Iterator[AnyReader]:
    """An open AnyReader for one bag, closed afterwards; BagError naming the bag and the problem otherwise."""
    path = Path(path)
    problem = not_a_bag(path)
    if problem is not None:
        raise BagError(f"bag {path}: {problem}")
    try:
        reader = AnyReader([path], default_typestore=project_typestore())
        reader.open()
    except (AnyReaderError, OSError, ValueError, KeyError) as error:
        raise BagError(f"bag {path}: cannot be opened: {first_line(error)}") from error
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
