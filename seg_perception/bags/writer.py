"""Writing ROS 2 bags (mcap by default, sqlite3 on request) with rosbags."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.writer import Connection

from seg_perception.bags.typestore import project_typestore
from seg_perception.ros_io.stamps import sec_nanosec

Storage = Literal["mcap", "sqlite3"]
STORAGE_PLUGINS: dict[str, StoragePlugin] = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
# Bag format version 9 is what Jazzy and Kilted's rosbag2 write.
BAG_VERSION = 9


class BagWriter:
    """Writes typestore messages to a new bag; one connection per topic, created on first use.

    >>> with BagWriter(path, storage="mcap") as bag:
    ...     bag.write("/front/image_raw", image_msg, stamp_ns)
    """

    def __init__(self, path: Path | str, *, storage: Storage = "mcap", custom_data: dict[str, str] | None = None):
        if storage not in STORAGE_PLUGINS:
            raise ValueError(f"unknown bag storage {storage!r}; choose one of {sorted(STORAGE_PLUGINS)}")
        self.path = Path(path)
        self.storage = storage
        self.typestore = project_typestore()
        self._writer = Writer(self.path, version=BAG_VERSION, storage_plugin=STORAGE_PLUGINS[storage])
        for key, value in (custom_data or {}).items():
            self._writer.set_custom_data(key, value)
        self._connections: dict[str, Connection] = {}
        self.messages_written = 0

    def __enter__(self) -> BagWriter:
        self._writer.open()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._writer.close()

    def write(self, topic: str, msg: Any, stamp_ns: int) -> None:
        """Serialise ``msg`` (a typestore message, type taken from its ``__msgtype__``) at ``stamp_ns``."""
        msgtype = msg.__msgtype__
        connection = self._connections.get(topic)
        if connection is None:
            connection = self._writer.add_connection(topic, msgtype, typestore=self.typestore)
            self._connections[topic] = connection
        elif connection.msgtype != msgtype:
            raise TypeError(f"topic {topic} carries {connection.msgtype}, cannot write a {msgtype} to it")
        self._writer.write(connection, stamp_ns, self.typestore.serialize_cdr(msg, msgtype))
        self.messages_written += 1

    def header(self, stamp_ns: int, frame_id: str) -> Any:
        """A std_msgs/Header of this typestore."""
        types = self.typestore.types
        sec, nanosec = sec_nanosec(stamp_ns)
        stamp = types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)
        return types["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)
