"""The repository also builds as a normal ROS 2 workspace with colcon (from PyPI).

colcon stops descending at the root package.xml, so the nested interface package is named with
--base-paths, exactly as README tells users.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT

pytestmark = pytest.mark.timeout(900)


def _source_files() -> list[Path]:
    """What a clone contains: tracked plus untracked-but-not-ignored files."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO_ROOT, check=True, capture_output=True, text=True,
    ).stdout
    return [Path(p) for p in out.split("\0") if p and (REPO_ROOT / p).is_file()]


def test_colcon_builds_both_packages_and_messages_import(tmp_path: Path) -> None:
    venv_bin = Path(sys.executable).parent
    venv = venv_bin.parent
    src = tmp_path / "ws" / "src" / "seg_perception"
    for rel in _source_files():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / rel, src / rel)
    ws = tmp_path / "ws"
    env = {
        **os.environ,
        "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}",
        "AMENT_PREFIX_PATH": str(venv),
        "CMAKE_PREFIX_PATH": str(venv),
    }
    listed = subprocess.run(
        [str(venv_bin / "colcon"), "list", "--names-only", "--base-paths", "src/seg_perception",
         "src/seg_perception/msg"], cwd=ws, env=env, check=True, capture_output=True, text=True,
    ).stdout.split()
    assert sorted(listed) == ["seg_perception", "seg_perception_msgs"]

    build = subprocess.run(
        [str(venv_bin / "colcon"), "build", "--base-paths", "src/seg_perception", "src/seg_perception/msg",
         "--event-handlers", "console_direct-", "--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}",
         "-DBUILD_TESTING=OFF"],
        cwd=ws, env=env, capture_output=True, text=True,
    )
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    install = ws / "install"
    assert (install / "seg_perception/share/seg_perception/config/fastdds_profile.xml").is_file()
    assert (install / "seg_perception/share/ament_index/resource_index/packages/seg_perception").is_file()
    assert (install / "seg_perception/lib/seg_perception/seg-perception").is_file(), "ros2 run needs lib/<pkg>"

    # Import from the install space, not from the venv (which has its own copy of both packages).
    probe = (
        "import seg_perception_msgs.msg as m, seg_perception as p;"
        "from seg_perception.ros_io.environment import fastdds_profile;"
        "m.ObstacleList(); print(m.__file__); print(p.__file__); print(fastdds_profile())"
    )
    shell = f"source {install}/setup.bash && {sys.executable} -c '{probe}'"
    run = subprocess.run(["bash", "-c", shell], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    msgs_file, package_file, profile = run.stdout.split()
    assert msgs_file.startswith(str(install / "seg_perception_msgs")), msgs_file
    assert package_file.startswith(str(install / "seg_perception")), package_file
    assert profile == str(install / "seg_perception/share/seg_perception/config/fastdds_profile.xml")
