"""`seg-perception bench --soak FRAMES`: the real node over a long drive, watched for memory growth and latency creep.

The node runs in its own process, started the way users start it (`seg-perception node`: the shipped
parameter file plus `--set` overrides). This process plays pre-rendered synthetic camera frames to it
at a fixed rate, listens to its per-frame latency reports and to /diagnostics, and reads the resident
memory of the node's processes from /proc every second. Phases:

1. ready: the node's image subscriptions are matched;
2. warm: a few frames at 2 Hz until every camera has answered;
3. calibrate (unless --soak-rate): a flood for 10 s; the soak rate is 80 % of what the node processed;
4. soak: frames at that rate until FRAMES frames have been *processed* (by the node's own counters,
   summed over cameras), i.e. went through the whole node; sent frames that were dropped do not count;
5. stop: SIGINT, as Ctrl-C would; the exit code is part of the result.

--soak-max-minutes ends phase 4 early on a slow machine; the result says which limit stopped it, and
the windows below are then fractions of the frames actually run.

Counts of the soak phase are differences of the node's idle counters before and after it. RSS growth
compares the first sample after 10 % of the frames with the last one; latency drift compares the p99 of
frames 10-20 % with that of the last 10 %.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seg_perception.pipeline.stats import percentile as stats_percentile

NODE = "/seg_perception_node"
WARMUP_FRACTION = 0.1  # baselines (RSS, first latency window) are taken after this share of the frames
WINDOW_FRACTION = 0.1  # width of the latency windows compared
RATE_FRACTION = 0.8  # soak rate as a share of what the node sustained under the flood
CALIBRATION_S = 10.0
CALIBRATION_RATE_HZ = 30.0
WARM_RATE_HZ = 2.0
SAMPLE_PERIOD_S = 1.0
READY_TIMEOUT_S = 240.0  # loading the model on a busy 2-core machine
STALL_S = 60.0  # no frame processed for this long ends the soak as failed
PROGRESS_S = 60.0
STOP_TIMEOUT_S = 30.0
TARGETS = {"rss_growth_pct": 5.0, "p99_drift_pct": 10.0}  # issue 14; a negative value (shrinking) meets them


class SoakError(RuntimeError):
    pass


# ----------------------------------------------------------------------------------------- statistics


def growth_percent(before: float, after: float) -> float:
    return (after - before) / before * 100.0


def fraction_slice(values: Sequence, start: float, stop: float) -> list:
    """The part of ``values`` from fraction ``start`` to ``stop`` of its length, e.g. 0.1-0.2."""
    n = len(values)
    return list(values[round(start * n):round(stop * n)])


def percentile(values: Sequence[float], q: float) -> float | None:
    value = stats_percentile(values, q)
    return None if value is None else round(value, 3)


def latency_drift(latencies_ms: Sequence[float], *, warmup: float = WARMUP_FRACTION,
                  window: float = WINDOW_FRACTION) -> dict:
    """p50/p99 of the window right after warm-up and of the last window, and the p99 drift between them."""
    first = fraction_slice(latencies_ms, warmup, warmup + window)
    last = fraction_slice(latencies_ms, 1.0 - window, 1.0)
    first_p99, last_p99 = percentile(first, 99), percentile(last, 99)
    drift = round(growth_percent(first_p99, last_p99), 2) if first_p99 and last_p99 is not None else None
    return {"first_window": {"fraction": [warmup, warmup + window], "frames": len(first),
                             "p50": percentile(first, 50), "p99": first_p99},
            "last_window": {"fraction": [1.0 - window, 1.0], "frames": len(last),
                            "p50": percentile(last, 50), "p99": last_p99},
            "p99_drift_pct": drift}


def rss_growth(samples: Sequence[tuple[int, float]], warmup_frames: int) -> dict:
    """``samples``: (frames processed so far, RSS in KiB), in time order. Growth from the first sample at or
    after ``warmup_frames`` to the last one; the slope of a line fitted through those samples shows a
    steady leak even where the two end points are noisy."""
    after = [(frames, rss) for frames, rss in samples if frames >= warmup_frames]
    if not after:
        return {"warm_kib": None, "end_kib": None, "growth_pct": None, "slope_kib_per_1000_frames": None}
    warm, end = after[0][1], after[-1][1]
    frames = np.array([f for f, _ in after], dtype=float)
    slope = None
    if len(after) >= 3 and np.ptp(frames) > 0:
        slope = round(float(np.polyfit(frames, [r for _, r in after], 1)[0] * 1000.0), 1)
    return {"warm_kib": warm, "end_kib": end, "growth_pct": round(growth_percent(warm, end), 3),
            "min_kib": min(r for _, r in after), "max_kib": max(r for _, r in after),
            "slope_kib_per_1000_frames": slope}


def profile(latencies_ms: Sequence[float], samples: Sequence[tuple[int, float]],
            load: Sequence[tuple[int, float]] = (), parts: int = 10) -> list[dict]:
    """Latency, RSS and machine load per tenth of the soak: where a creep starts, and whether the machine's
    other work explains it. ``load``: (frames processed so far, 1-min load average)."""
    out = []
    for k in range(parts):
        part = fraction_slice(latencies_ms, k / parts, (k + 1) / parts)
        start_frame, end_frame = round(k / parts * len(latencies_ms)), round((k + 1) / parts * len(latencies_ms))
        rss = [r for f, r in samples if f <= end_frame]
        loads = [v for f, v in load if start_frame <= f <= end_frame]
        out.append({"part": k + 1, "frames": len(part), "p50": percentile(part, 50), "p99": percentile(part, 99),
                    "rss_kib": rss[-1] if rss else None,
                    "load_avg": round(float(np.mean(loads)), 2) if loads else None})
    return out


# -------------------------------------------------------------------------------------------- /proc


def process_tree(root: int) -> list[int]:
    """``root`` and its descendants: the node is the CLI process itself today, a child should that change."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    tree, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        tree += frontier
    return tree


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def source_version() -> dict[str, object]:
    """The commit measured and whether the working tree differed from it (a soak is often run mid-work)."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                 capture_output=True, text=True, timeout=10).stdout.splitlines()
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None}
    return {"commit": commit or None, "modified_files": [line[3:] for line in changed]}


def machine() -> dict[str, str]:
    from seg_perception.benchmark import device_name

    cpu = device_name("cpu")
    return {"cpu": cpu, "cores": str(os.cpu_count()), "python": platform.python_version(),
            "kernel": platform.release()}


class RssSampler(threading.Thread):
    """Every second: (seconds, phase, frames processed in the soak, RSS KiB of the node's processes, their CPU
    seconds, 1-min load average). The load says how much else competed for the CPU at that time."""

    def __init__(self, pid: int, frames: Callable[[], int]) -> None:
        super().__init__(name="soak_rss", daemon=True)
        self.pid, self.frames, self.phase = pid, frames, "start"
        self.samples: list[tuple[float, str, int, int, float, float]] = []
        self._done = threading.Event()
        self._t0 = time.monotonic()

    def sample(self) -> None:
        pids = process_tree(self.pid)
        rss = sum(_status_kib(pid, "VmRSS") for pid in pids)
        cpu = sum(cpu_seconds(pid) for pid in pids)
        self.samples.append((round(time.monotonic() - self._t0, 2), self.phase, self.frames(), rss, round(cpu, 2),
                             round(os.getloadavg()[0], 2)))

    def run(self) -> None:
        while not self._done.wait(SAMPLE_PERIOD_S):
            self.sample()

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=5)


# ----------------------------------------------------------------------------------------------- ROS


@dataclass
class Report:
    """One latency report as it arrived here."""

    t: float  # monotonic seconds
    camera: str
    end_to_end_ms: float
    queue_ms: float
    inference_ms: float
    batch_size: int


@dataclass
class CameraDiagnostics:
    received: int = 0
    processed: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    p99_ms: str = "n/a"


class Client:
    """This process's ROS side: a publisher per camera out; latency reports and diagnostics in."""

    def __init__(self, cameras: Sequence[str], images: dict[str, list[np.ndarray]]) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from rclpy.signals import SignalHandlerOptions
        from seg_perception_msgs.msg import LatencyReport
        from sensor_msgs.msg import Image

        self.cameras = tuple(cameras)
        self.context = rclpy.Context()
        # Ctrl-C must reach our own clean-up (stop the node), not only shut ROS down.
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node("seg_perception_soak", context=self.context)
        self.lock = threading.Lock()
        self.reports: list[Report] = []
        self.processed = dict.fromkeys(self.cameras, 0)  # the node's own counter, from its latest report
        self.diagnostics: dict[str, CameraDiagnostics] = {}
        self.diagnostics_at = 0.0
        self.sent = dict.fromkeys(self.cameras, 0)

        self.messages = {camera: [self._image(Image, camera, image) for image in images[camera]]
                         for camera in self.cameras}
        self.publishers = {camera: self.node.create_publisher(Image, f"{NODE}/{camera}/in/image",
                                                              qos_profile_sensor_data) for camera in self.cameras}
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        for camera in self.cameras:
            self.node.create_subscription(LatencyReport, f"{NODE}/{camera}/out/latency",
                                          lambda msg, c=camera: self._on_latency(c, msg), reliable)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, name="soak_ros", daemon=True)
        self.thread.start()

    @staticmethod
    def _image(image_type: type, camera: str, image: np.ndarray):
        height, width = image.shape[:2]
        msg = image_type(height=height, width=width, encoding="rgb8", is_bigendian=0, step=width * 3)
        msg.header.frame_id = f"{camera}_optical_frame"
        msg.data = np.ascontiguousarray(image).tobytes()  # once: tobytes per publish would cost the node CPU
        return msg

    def _on_latency(self, camera: str, msg) -> None:
        report = Report(time.monotonic(), camera, msg.end_to_end_ms, msg.queue_ms, msg.inference_ms, msg.batch_size)
        with self.lock:
            self.reports.append(report)
            self.processed[camera] = msg.frames_processed

    def _on_diagnostics(self, msg) -> None:
        found = {}
        for status in msg.status:
            camera = status.name.rsplit(": camera ", 1)[-1] if ": camera " in status.name else None
            if camera not in self.cameras:
                continue
            values = {kv.key: kv.value for kv in status.values}
            found[camera] = CameraDiagnostics(
                received=int(values["frames_received"]), processed=int(values["frames_processed"]),
                dropped={k.split(".", 1)[1]: int(v) for k, v in values.items() if k.startswith("dropped.")},
                p99_ms=values.get("latency_p99_ms", "n/a"))
        if found:
            with self.lock:
                self.diagnostics.update(found)
                self.diagnostics_at = time.monotonic()

    def matched(self) -> bool:
        return all(p.get_subscription_count() > 0 for p in self.publishers.values())

    def publish(self, index: int) -> None:
        now = self.node.get_clock().now().to_msg()
        for camera in self.cameras:
            msg = self.messages[camera][index % len(self.messages[camera])]
            msg.header.stamp = now
            self.publishers[camera].publish(msg)
            self.sent[camera] += 1

    def snapshot(self) -> tuple[int, dict[str, int], dict[str, CameraDiagnostics]]:
        with self.lock:
            return len(self.reports), dict(self.processed), dict(self.diagnostics)

    def close(self) -> None:
        import rclpy

        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self.thread.join(timeout=5)


# ------------------------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class SoakConfig:
    frames: int
    cameras: tuple[str, ...] = ("front", "rear")
    size: tuple[int, int] = (512, 256)
    rate_hz: float = 0.0  # per camera; 0: calibrate
    model: str = "models/demo"
    params: Path | None = None
    node_set: tuple[str, ...] = ()
    distinct_frames: int = 50  # rendered once per camera, then cycled
    max_minutes: float = 0.0  # 0: until the frames are processed, however long that takes


def node_command(config: SoakConfig) -> list[str]:
    """`seg-perception node` as a user runs it; later --set values win, so the caller's come last."""
    command = [sys.executable, "-m", "seg_perception.cli", "node"]
    if config.params:
        command += ["--params", str(config.params)]
    sets = [f"cameras:=[{','.join(config.cameras)}]", f"model_path:={config.model}", "publish.latency:=true",
            *config.node_set]
    return command + [arg for value in sets for arg in ("--set", value)]


def render_images(config: SoakConfig) -> dict[str, list[np.ndarray]]:
    from seg_perception.synth import render_sequence

    width, height = config.size
    images: dict[str, list[np.ndarray]] = {camera: [] for camera in config.cameras}
    for step in render_sequence(seed=1414, sequence=0, num_frames=config.distinct_frames, width=width,
                                height=height, cameras=config.cameras):
        for camera in config.cameras:
            images[camera].append(step[camera].image)
    return images


class Soak:
    def __init__(self, config: SoakConfig, log: Path, say: Callable[[str], None]) -> None:
        self.config, self.log, self.say = config, log, say
        self.client: Client | None = None
        self.node: subprocess.Popen | None = None
        self.sampler: RssSampler | None = None
        self.index = 0  # frames published per camera, all phases
        self.baseline: dict[str, int] = {}
        self.result: dict = {}  # filled as the run goes: what a failed run got to is still reported

    def soak_frames(self) -> int:
        """The node's frames processed since the soak phase began, summed over cameras."""
        if not self.baseline or self.client is None:
            return 0
        _, processed, _ = self.client.snapshot()
        return sum(processed[c] - self.baseline[c] for c in self.config.cameras)

    def _check_node(self) -> None:
        if self.node is not None and self.node.poll() is not None:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise SoakError(f"the node exited with code {self.node.returncode}; log {self.log}:\n{tail}")

    def _wait(self, done: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not done():
            self._check_node()
            if time.monotonic() > deadline:
                raise SoakError(f"timed out after {timeout_s:.0f} s waiting for {what}; node log {self.log}")
            time.sleep(0.1)

    def _play(self, rate_hz: float, until: Callable[[], bool], soak: bool = False) -> None:
        """Publish every camera at ``rate_hz`` on a fixed schedule; when late, never burst to catch up.
        In the soak, a stalled node ends the run and progress is told every minute."""
        period, due = 1.0 / rate_hz, time.monotonic()
        progress, progress_at, told_at = -1, time.monotonic(), time.monotonic()
        while not until():
            self._check_node()
            self.client.publish(self.index)
            self.index += 1
            if soak:
                frames, now = self.soak_frames(), time.monotonic()
                if frames != progress:
                    progress, progress_at = frames, now
                elif now - progress_at > STALL_S:
                    raise SoakError(f"no frame processed for {STALL_S:.0f} s; node log {self.log}")
                if now - told_at >= PROGRESS_S and self.sampler.samples:
                    told_at = now
                    self.say(f"{frames}/{self.config.frames} processed, node RSS "
                             f"{self.sampler.samples[-1][3] / 1024:.1f} MiB, load {os.getloadavg()[0]:.2f}")
            due += period
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -period:
                due = time.monotonic()

    def _settle(self) -> dict[str, CameraDiagnostics]:
        """Idle until a diagnostics report shows every frame sent so far processed or dropped."""
        stopped = time.monotonic()

        def quiet() -> bool:
            _, processed, diagnostics = self.client.snapshot()
            return self.client.diagnostics_at > stopped + 0.5 and all(
                c in diagnostics and diagnostics[c].processed == processed[c]
                and diagnostics[c].received == diagnostics[c].processed + sum(diagnostics[c].dropped.values())
                for c in self.config.cameras)

        self._wait(quiet, 15.0, "the node to go idle and report it in /diagnostics")
        return self.client.snapshot()[2]

    def _calibrate(self) -> dict:
        start = time.monotonic()
        self._play(CALIBRATION_RATE_HZ, lambda: time.monotonic() - start >= CALIBRATION_S)
        counted_from = start + CALIBRATION_S / 2  # the second half: the flood has reached a steady state
        with self.client.lock:
            counted = sum(1 for r in self.client.reports if r.t >= counted_from)
        sustained = counted / len(self.config.cameras) / (time.monotonic() - counted_from)
        if sustained <= 0:
            raise SoakError(f"the node processed nothing during a {CALIBRATION_S:.0f} s flood; node log {self.log}")
        return {"flood_rate_hz": CALIBRATION_RATE_HZ, "seconds": CALIBRATION_S,
                "sustained_hz_per_camera": round(sustained, 2), "rate_fraction": RATE_FRACTION}

    def run(self) -> dict:
        config = self.config
        self.say(f"rendering {config.distinct_frames} frames per camera at {config.size[0]}x{config.size[1]}")
        images = render_images(config)
        command = node_command(config)
        self.say(f"starting the node: {shlex.join(command)} (log {self.log})")
        result = self.result
        result |= {"node_command": shlex.join(command), "node_log": str(self.log)}
        with self.log.open("w") as log:
            self.node = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        result["node_pid"] = self.node.pid
        try:
            self.client = Client(config.cameras, images)
            self.sampler = RssSampler(self.node.pid, self.soak_frames)
            self.sampler.start()
            self._wait(self.client.matched, READY_TIMEOUT_S, "the node's image subscriptions")
            self.sampler.phase = "warm"
            self._play(WARM_RATE_HZ, lambda: all(self.client.snapshot()[1][c] >= 3 for c in config.cameras)
                       or self.index > 2 * READY_TIMEOUT_S * WARM_RATE_HZ)
            if not all(self.client.snapshot()[1][c] >= 3 for c in config.cameras):
                raise SoakError(f"the node answered too few warm-up frames; node log {self.log}")
            if config.rate_hz > 0:
                rate = config.rate_hz
                result["calibration"] = None
            else:
                self.sampler.phase = "calibrate"
                self.say(f"calibrating: {CALIBRATION_S:.0f} s flood at {CALIBRATION_RATE_HZ:.0f} Hz per camera")
                result["calibration"] = self._calibrate()
                rate = round(RATE_FRACTION * result["calibration"]["sustained_hz_per_camera"], 1)
                self.say(f"node sustained {result['calibration']['sustained_hz_per_camera']} Hz per camera; "
                         f"soak at {rate} Hz per camera")
            self.sampler.phase = "settle"
            before = self._settle()
            first_report, processed, _ = self.client.snapshot()
            self.baseline = processed
            sent_before = dict(self.client.sent)
            self.sampler.phase = "soak"
            load_start = os.getloadavg()
            self.say(f"soak: {config.frames} frames processed at {rate} Hz per camera "
                     f"(about {config.frames / (rate * len(config.cameras)) / 60:.1f} min)")
            self.sampler.sample()
            started = time.monotonic()
            limit_s = config.max_minutes * 60.0 or float("inf")
            self._play(rate, lambda: self.soak_frames() >= config.frames or time.monotonic() - started >= limit_s,
                       soak=True)
            finished = time.monotonic()
            result["stopped_by"] = "frames" if self.soak_frames() >= config.frames else "time limit"
            with self.client.lock:
                reports = self.client.reports[first_report:]
            reports = reports[:config.frames]  # frames still in flight past the target are not part of it
            self.sampler.sample()
            result["rss_peak_kib"] = sum(_status_kib(pid, "VmHWM") for pid in process_tree(self.node.pid))
            self.sampler.phase = "settle"
            after = self._settle()
            result["load_average"] = {"start": [round(v, 2) for v in load_start],
                                      "end": [round(v, 2) for v in os.getloadavg()]}
            result |= summarise(config, rate, reports, self.sampler.samples, started, finished, before, after,
                                {c: self.client.sent[c] - sent_before[c] for c in config.cameras})
        finally:
            if self.sampler is not None:
                self.sampler.stop()
            if self.client is not None:
                self.client.close()
            result["node_exit"] = stop_node(self.node)
            result["node_log_summary"] = log_summary(self.log)
        return result


def summarise(config: SoakConfig, rate: float, reports: Sequence[Report], samples: Sequence[tuple],
              started: float, finished: float, before: dict[str, CameraDiagnostics],
              after: dict[str, CameraDiagnostics], sent: dict[str, int]) -> dict:
    latencies = [r.end_to_end_ms for r in reports]
    soak = [s for s in samples if s[1] == "soak"]
    soak_samples = [(frames, rss) for _, _, frames, rss, _, _ in soak]
    cpu = [(t, cpu_s) for t, _, _, _, cpu_s, _ in soak]
    load = [(frames, load1) for _, _, frames, _, _, load1 in soak]
    processed = sum(after[c].processed - before[c].processed for c in config.cameras)
    dropped: dict[str, int] = {}
    for c in config.cameras:
        for reason, count in after[c].dropped.items():
            delta = count - before[c].dropped.get(reason, 0)
            if delta:
                dropped[reason] = dropped.get(reason, 0) + delta
    received = sum(after[c].received - before[c].received for c in config.cameras)
    duration = finished - started
    rss = rss_growth(soak_samples, int(WARMUP_FRACTION * len(reports)))  # of the frames run, if time ran out
    drift = latency_drift(latencies)
    return {
        "cameras": list(config.cameras), "size": list(config.size), "rate_hz_per_camera": rate,
        "frames_target": config.frames, "duration_s": round(duration, 1),
        "throughput_fps": round(len(reports) / duration, 2) if duration > 0 else None,
        "node_cpu_pct": (round((cpu[-1][1] - cpu[0][1]) / (cpu[-1][0] - cpu[0][0]) * 100, 1)
                         if len(cpu) >= 2 and cpu[-1][0] > cpu[0][0] else None),
        "counts": {"sent": sum(sent.values()), "received": received, "processed": processed,
                   "dropped": dropped, "not_received": sum(sent.values()) - received,
                   "latency_reports_used": len(reports)},
        "latency_ms": {"p50": percentile(latencies, 50), "p99": percentile(latencies, 99),
                       "max": max(latencies) if latencies else None,
                       "queue_p50": percentile([r.queue_ms for r in reports], 50),
                       "inference_p50": percentile([r.inference_ms for r in reports], 50),
                       "batch_2_share": round(sum(r.batch_size >= 2 for r in reports) / len(reports), 3)
                       if reports else None,
                       **drift},
        "rss": rss,
        "profile": profile(latencies, soak_samples, load),
        "targets": {
            "rss_growth_pct": {"target": f"< {TARGETS['rss_growth_pct']}", "value": rss["growth_pct"],
                               "met": rss["growth_pct"] is not None and rss["growth_pct"] < TARGETS["rss_growth_pct"]},
            "p99_drift_pct": {"target": f"< {TARGETS['p99_drift_pct']}", "value": drift["p99_drift_pct"],
                              "met": drift["p99_drift_pct"] is not None
                              and drift["p99_drift_pct"] < TARGETS["p99_drift_pct"]},
        },
        "rss_samples": [list(s) for s in samples],
    }


def stop_node(node: subprocess.Popen | None) -> dict:
    """SIGINT as a user's Ctrl-C; escalate only so that nothing is left running, and say so."""
    if node is None:
        return {"code": None, "stopped_by": "never started"}
    if node.poll() is not None:
        return {"code": node.returncode, "stopped_by": "exited by itself"}
    started = time.monotonic()
    for sig, wait_s in ((signal.SIGINT, STOP_TIMEOUT_S), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        node.send_signal(sig)
        try:
            code = node.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
        return {"code": code, "stopped_by": sig.name, "seconds": round(time.monotonic() - started, 2)}
    return {"code": None, "stopped_by": "still running after SIGKILL"}


def log_summary(log: Path) -> dict:
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    errors = [line for line in lines if "[ERROR]" in line or "Traceback" in line or "[FATAL]" in line]
    return {"lines": len(lines), "errors": len(errors), "warnings": sum("[WARN]" in line for line in lines),
            "first_errors": errors[:5], "tail": lines[-10:]}


# ------------------------------------------------------------------------------------------ printing


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def _mib(kib: float | None) -> str:
    return "n/a" if kib is None else f"{kib / 1024:.1f} MiB"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f} %"


def table(result: dict) -> str:
    lat, rss, counts = result["latency_ms"], result["rss"], result["counts"]
    first, last = lat["first_window"], lat["last_window"]
    dropped = ", ".join(f"{reason} {n}" for reason, n in sorted(counts["dropped"].items())) or "none"
    exit_ = result["node_exit"]
    rows = [
        ("frames processed (target)", f"{counts['processed']} ({result['frames_target']}; "
                                      f"stopped by {result['stopped_by']})"),
        ("rate per camera", f"{result['rate_hz_per_camera']} Hz"),
        ("duration / throughput", f"{result['duration_s']} s / {result['throughput_fps']} frames/s"),
        ("sent / received / not received", f"{counts['sent']} / {counts['received']} / {counts['not_received']}"),
        ("dropped by reason", dropped),
        ("latency p50 / p99 / max", f"{_ms(lat['p50'])} / {_ms(lat['p99'])} / {_ms(lat['max'])} ms"),
        ("p99 frames 10-20 % / last 10 %", f"{_ms(first['p99'])} / {_ms(last['p99'])} ms"),
        ("p99 drift (target < 10 %)", _pct(lat["p99_drift_pct"])),
        ("RSS after warm-up / end", f"{_mib(rss['warm_kib'])} / {_mib(rss['end_kib'])}"),
        ("RSS growth (target < 5 %)", _pct(rss["growth_pct"])),
        ("RSS slope", "n/a" if rss["slope_kib_per_1000_frames"] is None
         else f"{rss['slope_kib_per_1000_frames']:.1f} KiB per 1000 frames"),
        ("RSS peak (VmHWM)", _mib(result.get("rss_peak_kib"))),
        ("node CPU", f"{result['node_cpu_pct']} %"),
        ("node exit at SIGINT", f"{exit_['code']} ({exit_['stopped_by']}, {exit_.get('seconds', '-')} s)"),
        ("node log errors / warnings", f"{result['node_log_summary']['errors']} / "
                                      f"{result['node_log_summary']['warnings']}"),
    ]
    lines = ["| measure | value |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows), "",
             "| tenth | frames | p50 ms | p99 ms | RSS MiB | load avg |", "|---|---|---|---|---|---|"]
    lines += [f"| {p['part']} | {p['frames']} | {_ms(p['p50'])} | {_ms(p['p99'])} | "
              f"{'n/a' if p['rss_kib'] is None else round(p['rss_kib'] / 1024, 1)} | {p['load_avg']} |"
              for p in result["profile"]]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ command


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 512x256, got {text!r}") from None
    return width, height


def add_soak_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--soak-rate", type=float, default=0.0, metavar="HZ",
                        help="soak: frames per second and camera (default 0: 80%% of what the node sustains "
                             "under a 10 s flood)")
    parser.add_argument("--soak-size", type=_size, default=(512, 256), help="soak: camera image WxH (512x256)")
    parser.add_argument("--soak-cameras", default="front,rear", help="soak: cameras (front,rear)")
    parser.add_argument("--soak-params", type=Path, help="soak: the node's parameter file (default: the shipped one)")
    parser.add_argument("--soak-set", action="append", default=[], metavar="NAME:=VALUE",
                        help="soak: override one node parameter; repeatable")
    parser.add_argument("--soak-max-minutes", type=float, default=0.0, metavar="MIN",
                        help="soak: stop after MIN minutes even if fewer frames were processed (default 0: no limit)")
    parser.add_argument("--soak-log", type=Path, help="soak: the node's log (default: beside --json, else a temp file)")


def run_soak_command(args: argparse.Namespace) -> int:
    if args.soak < 10:
        raise ValueError(f"--soak needs at least 10 frames, got {args.soak}")
    config = SoakConfig(frames=args.soak, cameras=tuple(c for c in args.soak_cameras.split(",") if c),
                        size=args.soak_size, rate_hz=args.soak_rate, model=str(args.model),
                        params=args.soak_params, node_set=tuple(args.soak_set), max_minutes=args.soak_max_minutes)
    if args.soak_log:
        log = args.soak_log
    elif args.json:
        log = args.json.with_suffix(".node.log")
    else:
        handle, name = tempfile.mkstemp(prefix="soak_node_", suffix=".log")
        os.close(handle)
        log = Path(name)

    def terminate(*_: object) -> None:
        raise KeyboardInterrupt  # SIGTERM (e.g. kill of a nohup run) still stops the node in `finally`

    signal.signal(signal.SIGTERM, terminate)

    def say(text: str) -> None:
        print(f"[soak {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    result: dict = {"kind": "soak", "command": shlex.join(["seg-perception", *args.argv]),
                    "date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "machine": machine(), "source": source_version()}
    soak = Soak(config, log, say)
    try:
        result |= soak.run()
    except (SoakError, KeyboardInterrupt) as error:
        result |= soak.result | {"error": str(error) or type(error).__name__}
        print(f"seg-perception bench --soak: {result['error']}", file=sys.stderr)
        print(f"node exit: {result.get('node_exit')}", file=sys.stderr)
    else:
        print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        say(f"wrote {args.json}")
    return 1 if "error" in result else 0
