"""Test isolation for everything that touches ROS 2.

Set before any test imports rclpy: discovery stays on loopback, each pytest run gets its own DDS
domain, ROS logs go to a temp dir, and our Fast DDS profile is in force (as in the product).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from seg_perception.ros_io.environment import apply_ros_defaults

_LOG_DIR = tempfile.mkdtemp(prefix="seg_perception_roslog_")
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
# Domains 1-101 are safe for Fast DDS ports on Linux; random so parallel CI jobs rarely meet.
os.environ["ROS_DOMAIN_ID"] = str(random.SystemRandom().randint(1, 101))
os.environ["ROS_LOG_DIR"] = _LOG_DIR
os.environ.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)  # tests check the shipped profile
apply_ros_defaults()

REPO_ROOT = Path(__file__).resolve().parents[1]


def _is_python_helper(proc: Path) -> bool:
    """multiprocessing's resource tracker (started by spawn pools) lives until the interpreter exits, by design."""
    try:
        return b"multiprocessing.resource_tracker" in (proc / "cmdline").read_bytes()
    except OSError:
        return False


def _children() -> list[str]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z" and not _is_python_helper(stat.parent):
            found.append(stat.parent.name)
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_LOG_DIR, ignore_errors=True)
    leftovers = _children()
    if leftovers:  # a test started a process and did not stop it: fail the run, naming them
        print(f"\nERROR: the test run left child processes behind: {', '.join(leftovers)}", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


class ProcessGroup:
    """Child processes started in their own session, always terminated (then killed) at teardown."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[str]] = []

    def start(self, args: list[str], **kwargs: object) -> subprocess.Popen[str]:
        options = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, **kwargs}  # a log file may replace PIPE
        proc = subprocess.Popen(args, start_new_session=True, text=True, **options)  # type: ignore[call-overload]
        self.processes.append(proc)
        return proc

    def python(self, script: str, *args: str, **kwargs: object) -> subprocess.Popen[str]:
        return self.start([sys.executable, "-u", script, *args], **kwargs)

    def stop_all(self, timeout: float = 5.0) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
        deadline = time.monotonic() + timeout
        for proc in self.processes:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture
def processes() -> Iterator[ProcessGroup]:
    group = ProcessGroup()
    try:
        yield group
    finally:
        group.stop_all()
        leftovers = [p.pid for p in group.processes if p.poll() is None]
        assert not leftovers, f"processes left behind: {leftovers}"


@pytest.fixture
def ros_context() -> Iterator[object]:
    """An rclpy context of this test alone, shut down afterwards."""
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        context.try_shutdown()
