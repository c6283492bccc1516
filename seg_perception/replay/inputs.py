"""Opening the bags `eval` and `play` read, with one line that says what is wrong with a path that is no bag.

rosbags reports a folder without metadata.yaml as "Expected metadata file '<folder>' does not exist" from the
reader's constructor, outside ``bags.reader.open_bag``'s error handling; callers then blamed the bag's
contents. Here the folder is looked at first, so an empty folder or a missing metadata.yaml is named as such.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rosbags.highlevel import AnyReader, AnyReaderError

from seg_perception.bags.reader import BagError
from seg_perception.bags.typestore import project_typestore

METADATA = "metadata.yaml"


def first_line(error: BaseException) -> str:
    """An error's message on one line (YAML errors span several)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def not_a_bag(path: Path) -> str | None:
    """Why ``path`` cannot be a bag, from the file system alone; None when it may be one."""
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
def open_input_bag(path: Path | str) -> Iterator[AnyReader]:
    """An open reader of one bag, closed afterwards; BagError naming the bag and the problem otherwise."""
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
