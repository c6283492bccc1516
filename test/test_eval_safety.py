"""`seg-perception eval` never leaves a lie behind: refusals come before any work, a failed or interrupted run
removes what it created, and only a finished run leaves outputs under their final names."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from seg_perception.bags.reader import BagError, read_messages
from seg_perception.datasets.synthetic import bag_path, write_synthetic
from seg_perception.inference.factory import BackendRequest
from seg_perception.replay.command import STAGING_PREFIX
from seg_perception.replay.evaluate import ReplayConfig, evaluate_bags

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "models" / "demo"
CLI = [sys.executable, "-m", "seg_perception.cli"]
SIZE = (64, 32)  # the model still runs at its input size: frames this small only keep the bags tiny
FAST = ["--no-tc", "--input-size", "256x128"]
# Dropping these capabilities makes root obey file permissions like anyone else.
DROP_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]


@pytest.fixture(scope="module", autouse=True)
def onnx_cache(tmp_path_factory: pytest.TempPathFactory):
    with pytest.MonkeyPatch.context() as patch:  # inherited by the CLI subprocesses
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        yield


def _drive(out: Path, frames: int, cameras: tuple[str, ...] = ("front", "rear")) -> Path:
    write_synthetic(out, fmt="bag", sequences=1, frames=frames, width=SIZE[0], height=SIZE[1], seed=11,
                    cameras=cameras, show_progress=False)
    return bag_path(out, 0)


@pytest.fixture(scope="module")
def bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _drive(tmp_path_factory.mktemp("drive"), frames=2)


@pytest.fixture(scope="module")
def long_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _drive(tmp_path_factory.mktemp("long"), frames=40, cameras=("front",))


def run_eval(*args: str | Path, cwd: Path | None = None, prefix: list[str] | None = None,
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*(prefix or []), *CLI, "eval", *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def assert_refused(result: subprocess.CompletedProcess[str], *named: str) -> str:
    """Exit 2 with one line on stderr naming ``named``; returns that line."""
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    for name in named:
        assert name in lines[0], lines[0]
    return lines[0]


def _config(out: Path | None, **changes) -> ReplayConfig:
    return ReplayConfig(model=BackendRequest(model_path=DEMO, input_size=(256, 128)), output_dir=out,
                        show_progress=False, **changes)


# ------------------------------------------------------------------------------------------ 6: --out unwritable


def test_out_under_a_regular_file_is_refused_before_any_work(bag: Path, tmp_path: Path) -> None:
    """Fails for root too: no permission bit lets a folder be made under a file."""
    regular = tmp_path / "notes.txt"
    regular.write_text("not a folder\n")
    line = assert_refused(run_eval(bag, "--out", regular / "report", "--no-output-bag", *FAST),
                          str(regular / "report"), "is a file, not a folder")
    assert str(bag) not in line  # the input bag is fine and must not be blamed
    assert regular.read_text() == "not a folder\n"
    assert_refused(run_eval(bag, "--out", regular, *FAST), str(regular), "not a folder")


def _without_write_permission() -> list[str]:
    """Command prefix under which file permissions apply; skips where that cannot be had."""
    if os.geteuid() != 0:
        return []
    # As root, chmod does not stop writes; without CAP_DAC_OVERRIDE it does (if we may drop it here).
    if shutil.which("setpriv") is None:
        pytest.skip("running as root, where chmod does not stop writes, and setpriv is not installed")
    probe = subprocess.run([*DROP_DAC, "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"running as root, where chmod does not stop writes, and cannot drop CAP_DAC_OVERRIDE: "
                    f"{probe.stderr.strip()}")
    return DROP_DAC


@pytest.mark.parametrize("case", ["new subfolder", "existing folder, no output bag"])
def test_unwritable_out_is_refused_before_any_work(case: str, bag: Path, tmp_path: Path) -> None:
    prefix = _without_write_permission()
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        if prefix:  # the check of the prefix itself: a write it must stop
            assert subprocess.run([*prefix, "touch", str(locked / "x")], capture_output=True).returncode != 0
        if case == "new subfolder":
            out, flags = locked / "report", []
        else:
            out, flags = locked, ["--no-output-bag"]
        started = time.monotonic()
        line = assert_refused(run_eval(bag, "--out", out, *flags, *FAST, prefix=prefix), str(out),
                              "Permission denied")
        assert str(bag) not in line and "unreadable" not in line
        assert list(locked.iterdir()) == []
        assert time.monotonic() - started < 60  # refused up front, not after replaying
    finally:
        locked.chmod(0o755)


# ------------------------------------------------------------------------------- 7 and 9a: bad bags, up front


def _bad_bag(kind: str, good: Path, tmp_path: Path) -> tuple[Path, str]:
    """A path that is no usable bag, and the words that must name its problem."""
    bad = tmp_path / kind.replace(" ", "_")
    if kind == "empty folder":
        bad.mkdir()
        return bad, "empty folder, not a bag"
    if kind == "no metadata":
        shutil.copytree(good, bad)
        (bad / "metadata.yaml").unlink()
        return bad, "no metadata.yaml"
    if kind == "no data file":
        shutil.copytree(good, bad)
        for data in bad.glob("*.mcap"):
            data.unlink()
        return bad, "cannot be opened: Some database files are missing"
    if kind == "garbled metadata":
        shutil.copytree(good, bad)
        (bad / "metadata.yaml").write_text("rosbag2_bagfile_information: [\n")
        return bad, "cannot be opened: Could not load YAML"
    if kind == "missing":
        return bad, "no such file or folder"
    raise AssertionError(kind)


BAD_KINDS = ["empty folder", "no metadata", "no data file", "garbled metadata", "missing"]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_a_bad_bag_is_refused_before_any_bag_is_replayed(kind: str, bag: Path, tmp_path: Path) -> None:
    bad, problem = _bad_bag(kind, bag, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(BagError) as raised:
        evaluate_bags([bag, bad], _config(out))
    message = str(raised.value)
    assert message.startswith(f"bag {bad}: ") and problem in message, message
    assert "\n" not in message and "unreadable after" not in message
    assert list(out.iterdir()) == []  # the good first bag was not replayed into an output bag


def test_cli_names_the_bad_last_bag_and_creates_nothing(bag: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "report"
    line = assert_refused(run_eval(bag, bag, empty, "--out", out, *FAST), f"bag {empty}", "empty folder")
    assert "unreadable" not in line
    assert not out.exists()


# ------------------------------------------------------------------------- 9b: a failed run removes its own


def test_a_failed_run_removes_what_it_created_and_nothing_else(bag: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Labels from a folder that is none: found only once the replay starts, after --out was made."""
    from seg_perception.cli import main

    no_labels = ["--labels", f"cityscapes:{tmp_path / 'no_labels'}:val"]
    nested = tmp_path / "a" / "b" / "report"
    assert main(["eval", str(bag), "--model", str(DEMO), "--out", str(nested), *no_labels, *FAST]) == 2
    assert "no_labels" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()  # every folder eval made, and only those

    existing = tmp_path / "existing"
    existing.mkdir()
    assert main(["eval", str(bag), "--model", str(DEMO), "--out", str(existing), *no_labels, *FAST]) == 2
    assert existing.is_dir() and list(existing.iterdir()) == []  # it was there before: kept, emptied of ours


# ----------------------------------------------------------------------------------------- 8: interrupted


@pytest.mark.parametrize("how", ["SIGINT to the group (Ctrl-C)", "SIGTERM to eval"])
def test_an_interrupted_run_leaves_no_finished_looking_output(how: str, long_bag: Path, tmp_path: Path,
                                                              processes) -> None:
    out = tmp_path / "report"
    existed = how.startswith("SIGTERM")  # one run into a folder that was there before: kept, empty
    if existed:
        out.mkdir()
    log = tmp_path / "stderr.log"
    with log.open("w") as sink:  # a file, not a pipe: progress bars never block on a full pipe
        proc = processes.start([*CLI, "eval", str(long_bag), "--out", str(out), *FAST],
                               stdout=subprocess.DEVNULL, stderr=sink)
    deadline = time.monotonic() + 120
    while not list(out.glob(f"{STAGING_PREFIX}*/bags/*/*.mcap")):  # the output bag is being written
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "eval did not start writing its output bag"
        time.sleep(0.05)
    if existed:
        proc.send_signal(signal.SIGTERM)
    else:
        os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=60)
    stderr = log.read_text()
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    (said,) = [line for line in stderr.splitlines() if "interrupted" in line]
    assert said.startswith("seg-perception eval: interrupted; removed")
    assert not (out / "bags" / long_bag.name).exists() and not (out / "report.json").exists()
    if existed:
        assert out.is_dir() and list(out.iterdir()) == []
    else:
        assert not out.exists()


# ---------------------------------------------------------------------------- 9c: the model from anywhere


def test_eval_finds_the_shipped_model_from_any_directory(bag: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run_eval(bag, "--out", "report", "--max-frames", "2", *FAST, cwd=elsewhere)
    assert result.returncode == 0, result.stderr[-3000:]
    out = elsewhere / "report"
    report = json.loads((out / "report.json").read_text())
    assert Path(report["model"]["path"]).resolve() == DEMO.resolve()
    assert not list(out.glob(f"{STAGING_PREFIX}*"))
    # The report names the output bag where it is now, not where it was staged.
    (entry,) = report["bags"]
    assert entry["output_bag"] == str(Path("report") / "bags" / bag.name)
    assert len(list(read_messages(elsewhere / entry["output_bag"], ["/seg_perception_node/front/out/semantic"]))) == 1

    data = tmp_path / "labelled"
    write_synthetic(data, fmt="cityscapes", sequences=1, frames=1, width=SIZE[0], height=SIZE[1], seed=5,
                    split="val", show_progress=False)
    result = run_eval("--dataset", f"synthetic:{data}:val", "--device", "cpu", "--input-size", "256x128",
                      cwd=elsewhere)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "miou" in result.stdout


def test_bags_of_one_name_get_one_output_bag_each(bag: Path, tmp_path: Path) -> None:
    """day1/drive and day2/drive in one run: the second does not fail on the first's output bag."""
    first, second = tmp_path / "day1" / "drive", tmp_path / "day2" / "drive"
    shutil.copytree(bag, first)
    shutil.copytree(bag, second)
    out = tmp_path / "out"
    report, _ = evaluate_bags([first, second], _config(out, max_frames=1, temporal_consistency=False))
    assert [b["output_bag"] for b in report["bags"]] == [str(out / "bags" / "drive"), str(out / "bags" / "drive_2")]
    for entry in report["bags"]:
        assert list(read_messages(entry["output_bag"], ["/seg_perception_node/front/out/semantic"]))
