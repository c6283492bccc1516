"""`seg-perception eval BAG...` glue: node parameters -> replay config -> report folder -> summary.

The report folder never shows a result that is not one: everything is written into a staging folder inside
``--out`` and moved to its final name only when the whole run succeeded (report.json last). A failure or an
interruption (SIGINT, SIGTERM) removes what the run created, the staging folder and any folder it made.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seg_perception.pipeline.pipeline import PipelineSettings
from seg_perception.ros_io.environment import config_file

if TYPE_CHECKING:
    from seg_perception.ros_io.params import NodeSettings


def pipeline_settings_from_params(path: Path | None) -> tuple[PipelineSettings, NodeSettings]:
    """The node's pipeline settings from a node parameter file (default: the shipped one), so eval == node;
    and all the node's settings from it."""
    from seg_perception.ros_io.node import pipeline_settings
    from seg_perception.ros_io.params import PARAMS_FILE, NodeSettings, load_param_file

    nested = load_param_file(path or config_file(PARAMS_FILE))
    settings = NodeSettings.from_nested(nested, str(path or PARAMS_FILE))
    return pipeline_settings(settings), settings


def parse_label_folder(text: str) -> tuple[Path, str, int]:
    parts = text.split(":")
    if len(parts) not in (3, 4) or parts[0] != "cityscapes" or not parts[1] or not parts[2]:
        raise argparse.ArgumentTypeError(f"--labels must look like cityscapes:PATH:SPLIT[:SEQ], got {text!r}")
    try:
        sequence = int(parts[3]) if len(parts) == 4 else 0
    except ValueError:
        raise argparse.ArgumentTypeError(f"--labels: SEQ must be a number, got {parts[3]!r}") from None
    return Path(parts[1]), parts[2], sequence


def add_bag_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bags", nargs="*", type=Path, metavar="BAG",
                        help="ROS 2 bags (mcap or sqlite3) to replay through the node's pipeline")
    parser.add_argument("--params", type=Path,
                        help="node parameter file: smoothing, tracking, output and input size (default: shipped)")
    parser.add_argument("--backend", choices=("torch", "onnxruntime", "tensorrt"), default="onnxruntime")
    parser.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp32")
    parser.add_argument("--cameras", default="", help="comma-separated camera names or image topics (default: all)")
    parser.add_argument("--labels", type=parse_label_folder, metavar="cityscapes:PATH:SPLIT[:SEQ]",
                        help="labels from a Cityscapes folder instead of label topics; the k-th image of camera "
                             "CAM is synth-CAM_SEQ_k (names as `synth` writes them; SEQ defaults to 0)")
    parser.add_argument("--out", type=Path, default=Path("eval_output"),
                        help="report folder: output bags, report.md/json, plots (default eval_output)")
    parser.add_argument("--workers", type=int, default=1, help="bags evaluated in parallel processes (default 1)")
    parser.add_argument("--no-output-bag", action="store_true", help="skip writing output bags")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="output bag storage")
    parser.add_argument("--video", action="store_true", help="also write overlay.mp4 (one process: not with --workers)")
    parser.add_argument("--video-fps", type=float, default=10.0)
    parser.add_argument("--no-tc", action="store_true", help="skip temporal consistency (optical flow)")
    parser.add_argument("--max-frames", type=int, default=0, help="per bag (0: all)")
    parser.add_argument("--threads", type=int, default=0, help="inference threads (0: the runtime's choice)")
    parser.add_argument("--live", action="store_true",
                        help="under real DDS: start the node, play each bag in real time, record and score the "
                             "node's outputs (adds transport latency; frames the node drops are counted)")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed factor with --live (default 1.0)")


STAGING_PREFIX = "unfinished-eval-"  # a run that was killed (SIGKILL, power) leaves this name behind


class OutputFolder:
    """``--out`` of one eval run: checked writable before any work, filled through a staging folder."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.created: list[Path] = []  # folders this run made, outermost first
        self.staging: Path | None = None
        self.committed = False

    def prepare(self) -> Path:
        """Create ``out`` if needed and a staging folder in it (which proves it writable); the staging folder.

        ValueError (a refusal, exit 2) naming the folder when it is a file, not empty, or not writable."""
        out = self.out
        try:
            if out.exists():
                if not out.is_dir():
                    raise ValueError(f"--out {out}: a file, not a folder")
                self._refuse_if_not_empty()
            else:
                self._create()
            self.staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out))
        except OSError as error:
            self.abort()
            if error.errno is None:  # our own FileExistsError: not empty
                raise
            raise ValueError(f"--out {out}: not writable: {error.strerror or error}") from error
        except ValueError:
            self.abort()
            raise
        return self.staging

    def _refuse_if_not_empty(self) -> None:
        entries = sorted(entry.name for entry in self.out.iterdir())
        if not entries:
            return
        unfinished = [name for name in entries if name.startswith(STAGING_PREFIX)]
        why = f" (an unfinished run left {unfinished[0]})" if unfinished else ""
        raise FileExistsError(f"{self.out} is not empty{why}; choose another --out or remove it")

    def _create(self) -> None:
        missing = []
        folder = self.out
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        if not folder.is_dir():  # fails for root too, unlike permissions
            raise ValueError(f"--out {self.out}: cannot be created: {folder} is a file, not a folder")
        for folder in reversed(missing):
            try:
                folder.mkdir()
            except OSError as error:
                raise ValueError(f"--out {self.out}: cannot create {folder}: {error.strerror or error}") from error
            self.created.append(folder)

    def commit(self) -> None:
        """Move the staged outputs to their final names, report.json last: once it is there, the run is complete."""
        assert self.staging is not None
        names = sorted(os.listdir(self.staging), key=lambda name: name == "report.json")
        for name in names:
            os.replace(self.staging / name, self.out / name)
        self.staging.rmdir()
        self.committed = True

    def abort(self) -> str:
        """Remove what this run created (never what was there before); says what was removed."""
        if self.committed:
            return ""
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
        for folder in reversed(self.created):
            with contextlib.suppress(OSError):  # someone else put something in it: theirs to keep
                folder.rmdir()
        if self.created and not self.created[0].exists():
            return f"removed {self.created[0]}"
        return f"removed its unfinished outputs from {self.out}" if self.staging is not None else ""

    def shown(self, path: str | None) -> str | None:
        """A path inside the staging folder as it will be named after ``commit``."""
        if path is None or self.staging is None:
            return path
        try:
            return str(self.out / Path(path).relative_to(self.staging))
        except ValueError:
            return path


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM during an eval run.

    A subclass on purpose: with a plain KeyboardInterrupt the process sometimes ended killed by SIGINT
    (status -2) although the interrupt was handled and 130 returned (7 of 16 test runs; 0 of 32 with the
    subclass). CPython flags "unhandled KeyboardInterrupt" by exact type when one leaves code run through
    PyRun_* and then re-kills itself with SIGINT at exit; which extension runs code that way here was not
    traced.
    """


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """SIGINT and SIGTERM end the run as ``Interrupted``, so that it cleans up after itself and exits 130."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise Interrupted(f"signal {signum}")

    previous = {signum: signal.signal(signum, interrupt) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run_bag_eval(args: argparse.Namespace) -> dict[str, Any]:
    """The whole `eval BAG...` run; refusals (ValueError and kin) come before anything is created."""
    from seg_perception.replay.evaluate import check_bags
    from seg_perception.ros_io.environment import resolve_model_path

    if args.live:
        # One node per bag, fed in real time: sharding, offline videos and frame limits do not apply.
        conflicts = [name for name, given in (("--workers", args.workers > 1), ("--video", args.video),
                                              ("--max-frames", args.max_frames > 0)) if given]
        if conflicts:
            raise ValueError(f"{', '.join(conflicts)} cannot be combined with --live")
    elif args.rate != 1.0:
        raise ValueError("--rate sets the playback speed of --live; offline replay runs as fast as it can")
    elif args.video and args.workers > 1:
        # Frames from parallel workers arrive unordered and in other processes: no single video to write.
        raise ValueError("--video needs one process; drop --workers or run the video separately")
    settings, node_settings = pipeline_settings_from_params(args.params)
    model_path = resolve_model_path(args.model)  # as the node finds it: from any directory
    check_bags(args.bags, tuple(c for c in args.cameras.split(",") if c))
    folder = OutputFolder(args.out)
    try:
        with signals_interrupt():
            staging = folder.prepare()
            return _run_in(staging, folder, args, settings, node_settings, model_path)
    except KeyboardInterrupt:
        removed = folder.abort()
        left = (f"its outputs in {args.out} were complete already" if folder.committed
                else removed or "nothing was written")
        print(f"seg-perception eval: interrupted; {left}", file=sys.stderr)
        raise
    except OSError as error:
        removed = folder.abort()
        if error.errno is None:  # one of ours (FileNotFoundError naming a folder): a refusal, exit 2
            raise
        # The system refused a write (disk full, say) mid-run: one line, no traceback.
        where = f"{error.filename}: " if error.filename else ""
        print(f"seg-perception eval: error: {where}{error.strerror or error}{'; ' + removed if removed else ''}",
              file=sys.stderr)
        raise SystemExit(1) from error
    except BaseException:
        folder.abort()
        raise


def _run_in(staging: Path, folder: OutputFolder, args: argparse.Namespace, settings: PipelineSettings,
            node_settings: NodeSettings, model_path: Path) -> dict[str, Any]:
    from seg_perception.inference.factory import BackendRequest
    from seg_perception.replay.evaluate import ReplayConfig, evaluate_bags
    from seg_perception.replay.report import OverlayVideo

    input_size = args.input_size or node_settings.input_size  # as the node would run; None: the card's
    out = staging
    model = BackendRequest(model_path=model_path, backend=args.backend, precision=args.precision,
                           device="cpu" if args.device == "auto" else args.device, intra_op_threads=args.threads,
                           input_size=input_size)
    config = ReplayConfig(
        model=model, pipeline=settings,
        cameras=tuple(c for c in args.cameras.split(",") if c), output_dir=None if args.no_output_bag else out,
        storage=args.storage, temporal_consistency=not args.no_tc, max_frames=args.max_frames,
        label_folder=args.labels)
    video = OverlayVideo(out / "overlay.mp4", fps=args.video_fps) if args.video else None
    command = ["seg-perception", *args.argv]
    if args.live:
        from seg_perception.replay.live import evaluate_live

        try:
            report, acc = evaluate_live(args.bags, config, params=args.params, out=out, rate=args.rate,
                                        command=command)
        except RuntimeError as error:  # a child failed; its log tail is in the message, a traceback adds nothing
            removed = folder.abort()
            print(f"seg-perception eval --live: error: {error}{'; ' + removed if removed else ''}", file=sys.stderr)
            raise SystemExit(1) from error
    else:
        report, acc = evaluate_bags(args.bags, config, workers=args.workers, command=command, video=video)
    for bag in report["bags"]:  # the report names the output bags where they will be, not where they are staged
        bag["output_bag"] = folder.shown(bag["output_bag"])
    report = finish_report(out, report, acc, video)
    # Signals wait while the outputs move: a run is either complete or removed, never half moved.
    blocked = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        folder.commit()
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, blocked)
    return report


def finish_report(out: Path, report: dict[str, Any], acc: Any, video: Any = None) -> dict[str, Any]:
    """Close the overlay video (if any) and write report.json, report.md and the plots into ``out``."""
    from seg_perception.replay.report import write_report

    if video is not None:
        try:
            if video.close() is not None:
                report["outputs"]["video"] = video.path.name
        except RuntimeError as error:  # no video codec here: the report matters more than the video
            print(f"warning: no overlay video: {error}", file=sys.stderr)
    report["outputs"].update(write_report(out, report, latency_samples=dict(acc.latency_ms),
                                          tc_series=dict(acc.tc_series), overlays=acc.overlays,
                                          birds_eye=acc.birds_eye))
    return report


def summary(report: dict[str, Any], out: Path) -> str:
    """A few lines for the terminal: what was measured and where to look."""
    frames = report["frames"]
    lines = [f"{frames['processed']} frames from {len(report['bags'])} bag(s) on {report['backend']}: "
             f"{report['throughput_fps']:.1f} frames/s; decode failures {frames['decode_failures']}"]
    metrics = report.get("metrics")
    if metrics:
        def pct(value: float | None) -> str:
            return "n/a" if value is None else f"{100 * value:.1f}"

        pq = (metrics.get("pq") or {}).get("all", {}).get("pq")
        lines.append(f"mIoU (classes present) {pct(metrics['miou_present'])}  PQ {pct(pq)}  "
                     f"drivable IoU {pct(metrics['drivable_iou'])}  lane IoU {pct(metrics['lane_iou'])}  "
                     f"TC {pct(report['temporal_consistency']['mean'])}")
    latency = report["latency_ms"].get("end_to_end")
    if latency:
        lines.append(f"latency per batch p50 {latency['p50']:.1f} ms, p99 {latency['p99']:.1f} ms")
    live = report.get("live")
    if live:
        transport = live["transport_latency_ms"] or {}
        lines.append(f"live at rate {live['rate']:g}: {live['frames_answered']} of {live['frames_published']} "
                     f"frames answered; transport p50 {transport.get('p50', float('nan')):.1f} ms; "
                     f"node log {out / live['node_log']}")
    lines.append(f"report: {out / 'report.md'}  (plots in {out / 'plots'})")
    return "\n".join(lines)
