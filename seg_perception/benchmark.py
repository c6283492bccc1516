"""`seg-perception bench`: backends side by side, end to end, on the machine at hand.

For each backend x input size x batch (cameras): warm-up calls first, the device synchronised before
every clock read, then per call the stages preprocess (batching, normalisation where the backend does
not do it in its graph), inference (the network and the in-graph smoothing blend), postprocess
(panoptic grouping, role masks) and smoothing (per-camera state and obstacle tracking), all through the
same ``PerceptionPipeline`` the node runs, at model resolution. Baseline: torchvision's
LR-ASPP MobileNetV3-Large in eager PyTorch at the same size (semantic only: argmax and role masks).
Compare rows as ratios measured in one run, never across machines.

On CUDA, work is queued and the host returns before the GPU has done it, so a host clock around a
kernel launch measures the launch. The pipeline's stage clocks stay host clocks, and end to end is honest:
the outputs stay on the GPU until the published maps of the batch are copied back in one blocking copy
(in postprocess), so the GPU time of the network and of the grouping lands in postprocess, the first stage
that waits, and the device is synchronised before each call so no earlier work is charged to it. What is
timed here directly (the network alone, the baseline's stages, the in-graph blend, and the backend call
inside the pipeline as ``inference_gpu``) is timed with CUDA events on the GPU's own clock
(``Stopwatch``); on the CPU with ``time.perf_counter``.
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from seg_perception.inference.backends import OnnxRuntimeBackend, TorchBackend
from seg_perception.inference.export import export_onnx
from seg_perception.inference.preprocess import normalise, resize_batch
from seg_perception.models.card import load_card
from seg_perception.pipeline.pipeline import CameraFrame, PerceptionPipeline, PipelineSettings
from seg_perception.postprocess.roles import role_mapping_for, role_masks
from seg_perception.synth import render_sequence

STAGES = ("preprocess", "inference", "postprocess", "smoothing")


@dataclass(frozen=True)
class BenchRow:
    backend: str
    model: str
    width: int
    height: int
    batch: int
    calls: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    fps: float  # images per second at the mean end-to-end time
    stage_p50_ms: dict[str, float]
    # The torch backend's network alone (run_on_device: its precision, its CUDA graphs) on random camera pixels
    # already on the device, same size and batch (torch rows only): how much of end to end is the network.
    network_p50_ms: float | None = None
    # CUDA only: the backend call inside the pipeline on CUDA events (upload, normalise, network, blend,
    # argmax), the GPU share of the host-timed inference stage.
    inference_gpu_p50_ms: float | None = None


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


class Stopwatch:
    """Milliseconds of one span: CUDA events on a CUDA device, ``time.perf_counter`` on the CPU.

    ``start`` and ``stop`` only mark the span; ``ms`` waits for the GPU to reach the end mark, so read it
    after the work, never inside the span being measured.
    """

    def __init__(self, device: str) -> None:
        self.cuda = str(device).startswith("cuda")
        if self.cuda:
            self._start = torch.cuda.Event(enable_timing=True)
            self._end = torch.cuda.Event(enable_timing=True)

    def start(self) -> Stopwatch:
        if self.cuda:
            self._start.record()
        else:
            self._t0 = time.perf_counter()
        return self

    def stop(self) -> Stopwatch:
        if self.cuda:
            self._end.record()
        else:
            self._t1 = time.perf_counter()
        return self

    def ms(self) -> float:
        if self.cuda:
            self._end.synchronize()
            return self._start.elapsed_time(self._end)
        return (self._t1 - self._t0) * 1000


def device_name(device: str) -> str:
    """The GPU's name on CUDA, else the CPU model (what a row's figures belong to)."""
    if str(device).startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
                platform.processor() or platform.machine())


def _time_calls(run: Callable[[], dict[str, float]], *, warmup: int, calls: int) -> list[dict[str, float]]:
    for _ in range(warmup):
        run()
    return [run() for _ in range(calls)]


def _p50(values: Sequence[float]) -> float:
    return round(float(np.percentile(values, 50)), 2)


def _row(backend: str, model: str, size: tuple[int, int], batch: int, samples: list[dict[str, float]],
         **extra: float | None) -> BenchRow:
    totals = np.array([sum(s.values()) for s in samples])
    return BenchRow(
        backend=backend, model=model, width=size[0], height=size[1], batch=batch, calls=len(samples),
        p50_ms=round(float(np.percentile(totals, 50)), 2), p90_ms=round(float(np.percentile(totals, 90)), 2),
        p99_ms=round(float(np.percentile(totals, 99)), 2), fps=round(batch * 1000 / float(totals.mean()), 2),
        stage_p50_ms={k: round(float(np.percentile([s[k] for s in samples], 50)), 2) for k in samples[0]},
        **extra,
    )


def _frames(size: tuple[int, int], count: int) -> list[np.ndarray]:
    cameras = ("front", "front_left", "front_right", "rear")[:count]
    (step,) = render_sequence(seed=77, sequence=0, num_frames=1, width=size[0], height=size[1], cameras=cameras)
    return [step[c].image for c in cameras]


def run_benchmark(checkpoint: Path, *, backends: Sequence[str], sizes: Sequence[tuple[int, int]],
                  batches: Sequence[int], warmup: int = 2, calls: int = 10, device: str = "cpu",
                  baseline: bool = True, progress: Callable[[str], None] = print, trt_precision: str = "fp16",
                  torch_precision: str = "fp32") -> dict:
    card = load_card(checkpoint)
    roles = role_mapping_for(card.class_names, card.thing_ids)
    rows: list[BenchRow] = []
    blend: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for size in sizes:
            frames = _frames(size, max(batches))
            runners: dict[str, object] = {}
            torch_backend = None
            if "torch" in backends:
                torch_backend = TorchBackend(checkpoint, device=device, input_size=size, precision=torch_precision)
                runners[torch_backend.name] = torch_backend
            onnx_path = None
            if "onnxruntime" in backends or "tensorrt" in backends:
                onnx_path = export_onnx(checkpoint, Path(scratch) / f"model_{size[0]}x{size[1]}.onnx", input_size=size)
            if "onnxruntime" in backends:
                runners["onnxruntime:CPUExecutionProvider"] = OnnxRuntimeBackend(onnx_path)
            if "tensorrt" in backends:
                from seg_perception.inference.factory import default_cache_dir
                from seg_perception.inference.tensorrt_backend import TensorRTBackend

                # Engines are cached by the graph's sha256, so repeated benches reuse them.
                engine = TensorRTBackend(onnx_path, OnnxRuntimeBackend.read_card(onnx_path),
                                         cache_dir=default_cache_dir("engines"), precision=trt_precision,
                                         max_batch=max(batches))
                runners[engine.name] = engine
            network = {batch: network_ms(torch_backend, batch, warmup=warmup, calls=calls)
                       for batch in batches} if torch_backend else {}
            for name, backend in runners.items():
                for batch in batches:
                    run = _PipelineCall(backend, card, roles, frames[:batch], device)
                    samples = _time_calls(run, warmup=warmup, calls=calls)
                    extra = {"network_p50_ms": _p50(network[batch]) if name.startswith("torch") else None,
                             "inference_gpu_p50_ms": _p50(run.gpu_ms[warmup:]) if run.gpu_ms else None}
                    rows.append(_row(name, card.arch, size, batch, samples, **extra))
                    progress(_format_row(rows[-1]))
                blend[f"{size[0]}x{size[1]}"] = smoothing_blend_ms(backend.state_shape, 1, device)
            if baseline:
                rows += _baseline_rows(size, batches, frames, card, roles, device, warmup, calls, progress)
    return {"device": device, "device_name": device_name(device), "machine": machine_description(device),
            "checkpoint": str(checkpoint), "warmup": warmup, "calls": calls, "torch_precision": torch_precision,
            "smoothing_blend_ms_per_image": blend, "rows": [asdict(r) for r in rows], "ratios": ratios(rows)}


class _PipelineCall:
    """One end-to-end call of the node's pipeline per ``__call__``; milliseconds per stage.

    Stamps advance by 100 ms per call, so smoothing and tracking run as on a 10 Hz stream.
    """

    def __init__(self, backend, card, roles, frames: list[np.ndarray], device: str = "cpu") -> None:
        settings = PipelineSettings(output_resolution="model")
        self.device = device
        self.timed = _EventTimedBackend(backend) if device.startswith("cuda") and backend.name.startswith("torch") \
            else None
        self.pipeline = PerceptionPipeline(self.timed or backend, card, roles, settings)
        self.frames, self.stamp_ns = frames, 0
        self.gpu_ms: list[float] = []  # one per call, warm-up included (CUDA torch backends only)

    def __call__(self) -> dict[str, float]:
        self.stamp_ns += 100_000_000
        batch = [CameraFrame(camera=f"camera{i}", image=image, stamp_ns=self.stamp_ns, frame_id="bench")
                 for i, image in enumerate(self.frames)]
        _sync(self.device)  # nothing queued before the call is charged to it
        timings = dict(self.pipeline.process(batch)[0].timings_ms)
        if self.timed is not None:
            self.gpu_ms.append(self.timed.watch.ms())
        return timings


class _EventTimedBackend:
    """The backend as the pipeline sees it, with CUDA events around each ``infer`` (read after the call)."""

    def __init__(self, backend) -> None:
        self.backend, self.name = backend, backend.name
        self.input_size, self.state_shape = backend.input_size, backend.state_shape
        self.watch = Stopwatch("cuda")

    def input_buffer(self, batch: int):
        return self.backend.input_buffer(batch)

    def infer(self, images, previous_logits=None, smoothing=None):
        self.watch.start()
        outputs = self.backend.infer(images, previous_logits, smoothing)
        self.watch.stop()
        return outputs


@torch.no_grad()
def network_ms(backend: TorchBackend, batch: int, *, warmup: int, calls: int) -> list[float]:
    """The network as the backend runs it (same precision, CUDA graphs when it has them; normalisation, the
    smoothing blend and the argmax included) on random camera pixels already on the device: no upload, no
    post-processing."""
    width, height = backend.input_size
    images = torch.randint(0, 256, (batch, height, width, 3), dtype=torch.uint8, device=backend.device)
    samples = []
    for call in range(warmup + calls):
        watch = Stopwatch(str(backend.device)).start()
        backend.run_on_device(images)
        watch.stop()
        if call >= warmup:
            samples.append(watch.ms())
    return samples


def smoothing_blend_ms(state_shape: tuple[int, int, int], batch: int, device: str, repeats: int = 50) -> float:
    """Median time of the in-graph blend alone (w * previous + (1 - w) * current), the cost smoothing adds."""
    previous = torch.randn(batch, *state_shape, device=device)
    current = torch.randn(batch, *state_shape, device=device)
    weight = torch.full((batch, 1, 1, 1), 0.5, device=device)
    samples = []
    for _ in range(repeats):
        watch = Stopwatch(device).start()
        weight * previous + (1.0 - weight) * current
        samples.append(watch.stop().ms())
    return round(float(np.median(samples)), 4)


def _baseline_rows(size, batches, frames, card, roles, device, warmup, calls, progress) -> list[BenchRow]:
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large

    model = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=card.num_classes)
    model = model.eval().to(device)
    rows = []
    for batch in batches:
        @torch.no_grad()
        def run(batch=batch) -> dict[str, float]:
            _sync(device)
            watches = {stage: Stopwatch(device) for stage in ("preprocess", "inference", "postprocess")}
            watches["preprocess"].start()
            tensor = normalise(resize_batch(frames[:batch], size), card.mean, card.std, device)
            watches["preprocess"].stop()
            watches["inference"].start()
            logits = model(tensor)["out"]
            watches["inference"].stop()
            watches["postprocess"].start()
            role_masks(logits.argmax(1), roles)
            watches["postprocess"].stop()
            return {stage: watch.ms() for stage, watch in watches.items()}

        rows.append(_row(f"torch:{device}", "lraspp_mobilenet_v3_large", size, batch,
                         _time_calls(run, warmup=warmup, calls=calls)))
        progress(_format_row(rows[-1]))
    return rows


def ratios(rows: Sequence[BenchRow]) -> dict[str, float]:
    """The issue's targets as ratios within this one run."""
    by = {(r.backend.split(":")[0], r.model, r.width, r.height, r.batch): r for r in rows}
    out: dict[str, float] = {}
    for (backend, model, w, h, b), row in by.items():
        torch_row = by.get(("torch", model, w, h, b))
        if backend in ("onnxruntime", "tensorrt") and torch_row:
            out[f"{backend}_vs_torch_fps_{w}x{h}_b{b}"] = round(row.fps / torch_row.fps, 2)
        if (w, h) == (1024, 512) and model != "lraspp_mobilenet_v3_large":
            share = row.stage_p50_ms["postprocess"] / row.p50_ms
            out[f"postprocess_share_{backend}_{w}x{h}_b{b}"] = round(share, 3)
        single = by.get((backend, model, w, h, 1))
        if b == 4 and single:
            out[f"batch4_vs_batch1_throughput_{backend}_{model}_{w}x{h}"] = round(row.fps / single.fps, 2)
    return out


def machine_description(device: str) -> dict[str, str]:
    import onnxruntime

    described = {"cpu": device_name("cpu"), "cores": str(torch.get_num_threads()), "torch": torch.__version__,
                 "onnxruntime": onnxruntime.__version__, "python": platform.python_version()}
    if device.startswith("cuda"):
        described["gpu"] = torch.cuda.get_device_name()
    return described


def _format_row(row: BenchRow) -> str:
    stages = " ".join(f"{k}={v:.1f}" for k, v in row.stage_p50_ms.items())
    network = "" if row.network_p50_ms is None else f" | network={row.network_p50_ms:.1f}"
    gpu = "" if row.inference_gpu_p50_ms is None else f" inference_gpu={row.inference_gpu_p50_ms:.1f}"
    return (f"{row.backend:34s} {row.model:26s} {row.width}x{row.height} b{row.batch}: p50 {row.p50_ms:8.1f} ms "
            f"p90 {row.p90_ms:8.1f} p99 {row.p99_ms:8.1f} fps {row.fps:7.2f} | {stages}{network}{gpu}")


def markdown_table(result: dict) -> str:
    columns = ("device", "backend", "model", "size", "batch", "p50 ms", "p90 ms", "p99 ms", "FPS", "network p50 ms",
               *STAGES, "inference GPU ms")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    # Older result files have no device name; their machine's CPU is the best there is.
    device = result.get("device_name") or result.get("machine", {}).get("cpu", "-")
    for r in result["rows"]:
        s = r["stage_p50_ms"]
        stages = " | ".join(str(s.get(stage, "-")) for stage in STAGES)  # the baseline has no smoothing stage
        network, gpu = (r.get(key) for key in ("network_p50_ms", "inference_gpu_p50_ms"))
        lines.append(f"| {device} | {r['backend']} | {r['model']} | {r['width']}x{r['height']} | {r['batch']} | "
                     f"{r['p50_ms']} | {r['p90_ms']} | {r['p99_ms']} | {r['fps']} | {_cell(network)} | {stages} | "
                     f"{_cell(gpu)} |")
    return "\n".join(lines)


def _cell(value: float | None) -> str:
    return "-" if value is None else str(value)


def write_json(result: dict, path: Path) -> None:
    path.write_text(json.dumps(result, indent=2) + "\n")


def metres_outputs_ms(size: tuple[int, int], cameras: Sequence[str] = ("front", "rear"), *,
                      calls: int = 50) -> dict[str, float]:
    """What the outputs in metres cost per frame on the host, after the network: each camera's drivable-grid
    votes plus the fused grid (shipped grid: 0.2 m over 80 x 40 m), projecting a frame's obstacles with
    their velocity filters, and fitting its lane boundaries. Masks and obstacles come from the renderer's
    ground truth of a synthetic frame, with its exact geometry; lookups are built once, as the node does."""
    import math

    from seg_perception.datasets.labels import THING_TRAIN_IDS
    from seg_perception.geometry import GroundProjector, Intrinsics, Mount
    from seg_perception.geometry.grid import CameraGridLookup, GridSpec, fuse
    from seg_perception.geometry.lanes import fit_lane_boundaries
    from seg_perception.geometry.motion import EgoMotion, VelocityFilter

    (step,) = render_sequence(seed=77, sequence=0, num_frames=1, width=size[0], height=size[1], cameras=cameras)
    spec = GridSpec()
    lookups, masks, contacts = [], [], []
    for camera in cameras:
        frame = step[camera]
        model = frame.camera
        projector = GroundProjector(Intrinsics(model.width, model.height, model.intrinsic_matrix(), np.zeros(5)),
                                    Mount(z=model.mount_height_m, pitch=math.radians(model.pitch_deg),
                                          yaw=math.radians(model.yaw_deg)))
        lookups.append(CameraGridLookup(projector, spec))
        obstacles = np.isin(frame.semantic, THING_TRAIN_IDS)  # things stand on the ground: not ground
        masks.append((frame.drivable.astype(np.uint8) * 255, obstacles.astype(np.uint8) * 255))
        bottoms = np.array([((o.bbox[0] + o.bbox[2]) / 2, o.bbox[3] - 0.5) for o in frame.objects] or
                           np.zeros((0, 2)))
        contacts.append((projector, bottoms, frame.lane))
    grid_ms, obstacles_ms, lanes_ms, motion = [], [], [], VelocityFilter()
    for call in range(calls):
        start = time.perf_counter()
        fuse(spec, [lookup.observe(*mask) for lookup, mask in zip(lookups, masks, strict=True)])
        grid_ms.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        motion.add_ego_motion(EgoMotion(call * 100_000_000, (10.0, 0.0), 0.05))  # odometry, as the node gets it
        for index, (projector, bottoms, _) in enumerate(contacts):
            ground, steps = projector.to_ground_with_steps(bottoms)  # as the pipeline projects contacts
            for k, ((x, y), step) in enumerate(zip(ground, steps, strict=True)):
                if math.isfinite(x):
                    motion.update(str(index), k, (float(x), float(y)), call * 100_000_000, pixel_steps=step)
        obstacles_ms.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        for projector, _, lane in contacts:
            fit_lane_boundaries(lane, projector)
        lanes_ms.append((time.perf_counter() - start) * 1000)
    frames = len(cameras)
    return {"cameras": frames, "width": size[0], "height": size[1],
            "obstacles_per_frame": round(sum(len(b) for _, b, _ in contacts) / frames, 1),
            "grid_ms_per_frame": round(float(np.median(grid_ms)) / frames, 3),
            "obstacles_ms_per_frame": round(float(np.median(obstacles_ms)) / frames, 3),
            "lanes_ms_per_frame": round(float(np.median(lanes_ms)) / frames, 3)}
