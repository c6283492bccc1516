"""Regenerate requirements.lock from a working venv: `.venv/bin/python tools/lock_requirements.py`.

Only distributions pip installed are pinned. The ros-* wheels also ship egg-info folders of the ROS
packages inside them (action_msgs, builtin_interfaces, ...) that `pip freeze` lists as if they were
on PyPI; our own editable package and CMake-built messages are not PyPI packages either.
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

HEADER = """\
# Exact versions of a working environment; regenerate with tools/lock_requirements.py.
# Direct dependencies and why: requirements.in. torch/torchvision come from this machine's disk
# (a CUDA build that runs on CPU); do not change them.
"""


def pinned_distributions() -> list[str]:
    pins = {}
    for dist in metadata.distributions():
        path = Path(str(dist._path))  # private, but the only way to see how it was installed
        installer = (dist.read_text("INSTALLER") or "").strip()
        if path.suffix != ".dist-info" or installer != "pip" or dist.read_text("direct_url.json"):
            continue
        if dist.metadata["Name"].lower() == "pip":  # the venv's own, upgraded separately if ever
            continue
        pins[dist.metadata["Name"].lower()] = f"{dist.metadata['Name']}=={dist.version}"
    return [pins[name] for name in sorted(pins)]


if __name__ == "__main__":
    target = Path(__file__).resolve().parents[1] / "requirements.lock"
    target.write_text(HEADER + "\n".join(pinned_distributions()) + "\n")
    print(f"wrote {target}", file=sys.stderr)
