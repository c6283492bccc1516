"""ROS 2 runtime defaults for every process seg_perception starts.

Fast DDS reads FASTDDS_DEFAULT_PROFILES_FILE when the first participant is created, so these
defaults must be applied before ``rclpy.init`` (the CLI does it first thing) and passed to child
processes through their environment.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, MutableMapping
from pathlib import Path

PACKAGE = "seg_perception"
PROFILE_NAME = "fastdds_profile.xml"
PROFILE_ENV = "FASTDDS_DEFAULT_PROFILES_FILE"


REPO_ROOT = Path(__file__).resolve().parents[2]


def find_share_file(package: str, relative: str, *, source_dir: Path) -> Path:
    """A file a ROS package installs under share/<package>/; FileNotFoundError lists where it looked.

    The source checkout (``source_dir``, for editable installs) comes first so that an edited file is
    used without reinstalling; then the share/ folders of AMENT_PREFIX_PATH (colcon install spaces)
    and of this Python environment (pip data_files, our CMake-built messages).
    """
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    prefixes.append(sys.prefix)
    candidates = [source_dir / relative] + [Path(p) / "share" / package / relative for p in prefixes]
    for path in candidates:
        if path.exists():
            return path
    looked = ", ".join(str(p) for p in candidates)
    raise FileNotFoundError(f"{relative!r} of package {package} not found; looked in: {looked}")


def config_file(name: str) -> Path:
    """Path of one of the package's config files (config/<name>)."""
    return find_share_file(PACKAGE, f"config/{name}", source_dir=REPO_ROOT)


def resolve_model_path(model_path: str | os.PathLike[str]) -> Path:
    """A model path as the node, `eval` and `demo` all read it: as given when it exists (absolute or
    relative to the current directory), else in the package share (so the shipped models/demo is found
    from any directory)."""
    path = Path(model_path).expanduser()
    if path.exists() or path.is_absolute():
        return path
    return find_share_file(PACKAGE, str(model_path), source_dir=REPO_ROOT)


def fastdds_profile() -> Path:
    """The Fast DDS profile shipped with the package (shared memory + loopback UDP)."""
    return config_file(PROFILE_NAME)


def ros_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: os.environ) plus our defaults; a user's own settings always win."""
    env = dict(os.environ if base is None else base)
    env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    if not env.get(PROFILE_ENV):
        env[PROFILE_ENV] = str(fastdds_profile())
    return env


def apply_ros_defaults(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Write our defaults into ``environ`` (default: os.environ) and return what was set."""
    target = os.environ if environ is None else environ
    updated = ros_environment(target)
    added = {k: v for k, v in updated.items() if target.get(k) != v}
    target.update(added)
    return added
