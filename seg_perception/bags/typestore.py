"""A rosbags typestore that knows ROS 2 Kilted's standard messages and ours (seg_perception_msgs)."""

from __future__ import annotations

from functools import lru_cache

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from seg_perception.ros_io.environment import REPO_ROOT, find_share_file

MSGS_PACKAGE = "seg_perception_msgs"


def message_definitions() -> dict[str, str]:
    """``seg_perception_msgs/msg/<Name>`` -> .msg text, from the source tree or the installed package."""
    folder = find_share_file(MSGS_PACKAGE, "msg", source_dir=REPO_ROOT / "msg")
    definitions = {f"{MSGS_PACKAGE}/msg/{path.stem}": path.read_text() for path in sorted(folder.glob("*.msg"))}
    if not definitions:
        raise FileNotFoundError(f"no .msg files in {folder}")
    return definitions


@lru_cache(maxsize=1)
def project_typestore() -> Typestore:
    """Kilted typestore plus our messages; cached, since building it parses every definition."""
    typestore = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for name, text in message_definitions().items():
        types.update(get_types_from_msg(text, name))
    typestore.register(types)
    return typestore
