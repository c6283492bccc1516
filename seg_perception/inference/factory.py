"""One way to open a backend from a model path, for the node, `eval` and `demo` alike.

``model_path`` is a checkpoint folder (model_card.json + model.safetensors) or an exported .onnx file.
ONNX Runtime and TensorRT run an ONNX graph; from a checkpoint folder we export one once and keep it
in a cache keyed by the weights' sha256 (of the file, checked against the card on every start), what
else of the card goes into the graph, the input size and the exporter's format, so a restart is quick.
A cached graph is used only if the card embedded in it names the same weights; otherwise it is exported again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from seg_perception.inference.backends import (
    TORCH_PRECISIONS,
    Backend,
    BackendError,
    OnnxRuntimeBackend,
    TorchBackend,
)
from seg_perception.inference.export import export_onnx
from seg_perception.models.card import ModelCard, ModelCardError, load_card, weights_path

LOG = logging.getLogger(__name__)
BACKENDS = ("torch", "onnxruntime", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")
_EXPORT_FORMAT = "5"  # bump when export_onnx's graph contract changes, so cached graphs are re-exported


@dataclass(frozen=True)
class BackendRequest:
    model_path: Path
    backend: str = "onnxruntime"
    precision: str = "fp32"
    device: str = "cpu"
    input_size: tuple[int, int] | None = None  # (width, height); None: the card's
    intra_op_threads: int = 0
    engine_cache_dir: Path | None = None
    max_batch: int = 4


def default_cache_dir(kind: str) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "seg_perception" / kind


def _graph_identity(card: ModelCard, input_size: tuple[int, int]) -> dict:
    """What of a card shapes its exported graph (not training or metrics, which `eval --record` rewrites)."""
    return {"arch": card.arch, "instance_head": card.instance_head, "instance_stride": card.instance_stride,
            "classes": [asdict(c) for c in card.classes],
            "mean": list(card.mean), "std": list(card.std), "weights_sha256": card.weights_sha256,
            "input_size": list(input_size)}


def _graph_mismatch(path: Path, expected: dict) -> str | None:
    """Why the graph at ``path`` is not the export of ``expected`` (None when it is)."""
    try:
        proto = onnx.load(str(path), load_external_data=False)
        onnx.checker.check_model(proto)
        card = OnnxRuntimeBackend.card_of(path, proto)
    except (BackendError, OSError, ValueError, DecodeError, onnx.checker.ValidationError) as error:
        return f"is corrupt or has no valid model card ({type(error).__name__}: {error})"
    found = _graph_identity(card, card.input_size)
    if found["weights_sha256"] != expected["weights_sha256"]:
        return (f"was exported from weights with sha256 {found['weights_sha256'][:16]}..., "
                f"not {expected['weights_sha256'][:16]}...")
    differing = [name for name in expected if found[name] != expected[name]]
    return f"differs from the model card in {', '.join(differing)}" if differing else None


def cached_onnx(checkpoint: Path, card: ModelCard, input_size: tuple[int, int], cache_dir: Path) -> Path:
    """The checkpoint's ONNX graph at ``input_size``, exported on first use.

    The weights file is hashed first (ModelCardError unless it is the card's), and a cached graph is used only
    if the card embedded in it names those weights; a stale, foreign or corrupt one is exported again.
    """
    weights_path(checkpoint, card)
    expected = _graph_identity(card, input_size)
    identity = json.dumps(expected, sort_keys=True)
    key = hashlib.sha256(f"{identity}:{_EXPORT_FORMAT}".encode()).hexdigest()[:16]
    path = cache_dir / f"{card.arch}-{input_size[0]}x{input_size[1]}-{key}.onnx"
    if path.is_file():
        problem = _graph_mismatch(path, expected)
        if problem is None:
            return path
        LOG.warning("exporting %s again: the cached graph %s %s", checkpoint, path, problem)
    started = time.perf_counter()
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.partial")
    try:
        export_onnx(checkpoint, partial, input_size=input_size)
        # export_onnx reads the card and weights again: they may have been replaced since the hash above.
        problem = _graph_mismatch(partial, expected)
        if problem is not None:
            raise ModelCardError(f"{checkpoint}: changed while it was exported (the new graph {problem}); "
                                 "start again once the checkpoint is complete")
        partial.replace(path)  # atomic: a crash never leaves a half-written graph under the final name
    finally:
        partial.unlink(missing_ok=True)
    LOG.warning("exported %s to %s in %.1f s (cached for next time)", checkpoint, path, time.perf_counter() - started)
    return path


def open_backend(request: BackendRequest) -> tuple[Backend, ModelCard]:
    """The backend asked for, or BackendError / ModelCardError saying exactly why not (never another one)."""
    if request.backend not in BACKENDS:
        raise BackendError(f"unknown backend {request.backend!r}; choose one of {', '.join(BACKENDS)}")
    if request.precision not in PRECISIONS:
        raise BackendError(f"unknown precision {request.precision!r}; choose one of {', '.join(PRECISIONS)}")
    if request.backend == "onnxruntime" and request.precision != "fp32":
        raise BackendError(f"precision {request.precision} needs the tensorrt or torch backend; onnxruntime runs fp32")
    if request.backend == "torch" and request.precision not in TORCH_PRECISIONS:
        raise BackendError(f"precision {request.precision} needs the tensorrt backend; torch runs "
                           f"{' or '.join(TORCH_PRECISIONS)}")
    path = Path(request.model_path)
    is_onnx = path.suffix == ".onnx"
    if not path.exists():
        raise ModelCardError(f"{path}: no such model (a checkpoint folder or an .onnx file)")

    if request.backend == "torch":
        if is_onnx:
            raise BackendError(f"{path}: the torch backend needs a checkpoint folder, not an ONNX graph")
        backend = TorchBackend(path, device=request.device, input_size=request.input_size,
                               precision=request.precision)
        return backend, backend.card

    if is_onnx:
        onnx_path = path
    else:
        card = load_card(path)
        size = request.input_size or card.input_size
        onnx_path = cached_onnx(path, card, size, default_cache_dir("onnx"))

    if request.backend == "onnxruntime":
        providers = ("CPUExecutionProvider",) if request.device == "cpu" else (
            "CUDAExecutionProvider", "CPUExecutionProvider")
        backend = OnnxRuntimeBackend(onnx_path, providers=providers, intra_op_threads=request.intra_op_threads)
    else:
        from seg_perception.inference.tensorrt_backend import TensorRTBackend

        card = OnnxRuntimeBackend.read_card(onnx_path)
        backend = TensorRTBackend(onnx_path, card, cache_dir=request.engine_cache_dir or default_cache_dir("engines"),
                                  precision=request.precision, max_batch=request.max_batch)
    if request.input_size is not None and backend.input_size != request.input_size:
        raise BackendError(f"{onnx_path} was exported at {backend.input_size[0]}x{backend.input_size[1]}, "
                           f"not the requested {request.input_size[0]}x{request.input_size[1]}")
    return backend, backend.card
