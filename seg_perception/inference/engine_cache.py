"""TensorRT engine cache: which engine file fits this ONNX graph, TensorRT version, GPU, precision and shapes.

Engines are only valid for the exact TensorRT version and GPU (compute capability) they were built on.
Each engine ``<name>-<key>.engine`` has a sidecar ``.json`` with its full key, its own sha256 and how long
it took to build; anything stale, corrupt or foreign is rebuilt with a log line that says why, never
loaded, never a crash. Pure logic here (no TensorRT import), so it is tested on machines without a GPU.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from seg_perception.models.card import sha256_of

SIDECAR_SUFFIX = ".json"


@dataclass(frozen=True)
class EngineKey:
    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "9.0" for H100
    precision: str  # fp32, fp16 or int8
    max_batch: int  # optimisation profile: batch 1..max_batch, optimum at max_batch
    input_height: int
    input_width: int
    calibration_sha256: str = ""  # int8 only: the calibration cache the engine was built with

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "fp16", "int8"):
            raise ValueError(f"precision must be fp32, fp16 or int8, got {self.precision!r}")
        if self.max_batch < 1 or self.input_height < 1 or self.input_width < 1:
            raise ValueError(f"invalid engine shapes: batch {self.max_batch}, {self.input_width}x{self.input_height}")

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CacheDecision:
    action: str  # "reuse" or "build"
    reason: str  # for the log line: why this engine is (not) used
    engine_path: Path


def engine_path(cache_dir: Path, name: str, key: EngineKey) -> Path:
    return cache_dir / f"{name}-{key.precision}-b{key.max_batch}-{key.digest()}.engine"


def decide(cache_dir: Path, name: str, key: EngineKey) -> CacheDecision:
    """Reuse the cached engine only if it exists, its sidecar is intact, and both agree with ``key``."""
    path = engine_path(cache_dir, name, key)
    sidecar = path.with_suffix(path.suffix + SIDECAR_SUFFIX)
    if not path.exists():
        return CacheDecision("build", "no cached engine for this graph, TensorRT, GPU, precision and shapes", path)
    try:
        recorded = json.loads(sidecar.read_text())
        recorded_key = EngineKey(**{f.name: recorded["key"][f.name] for f in fields(EngineKey)})
        recorded_sha = recorded["engine_sha256"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        return CacheDecision("build", f"engine {path.name} has no readable sidecar ({error}): treated as corrupt", path)
    if recorded_key != key:
        changed = [f.name for f in fields(EngineKey) if getattr(recorded_key, f.name) != getattr(key, f.name)]
        detail = ", ".join(f"{n}: {getattr(recorded_key, n)!r} -> {getattr(key, n)!r}" for n in changed)
        return CacheDecision("build", f"engine {path.name} was built for something else ({detail})", path)
    if sha256_of(path) != recorded_sha:
        return CacheDecision("build", f"engine {path.name} does not match its recorded sha256: corrupt", path)
    return CacheDecision("reuse", f"cached engine {path.name} fits (built in {recorded.get('build_s', '?')} s)", path)


def record(path: Path, key: EngineKey, build_s: float) -> None:
    """Write the sidecar after a successful build (engine first, sidecar last: a crash leaves no valid pair)."""
    sidecar = path.with_suffix(path.suffix + SIDECAR_SUFFIX)
    sidecar.write_text(json.dumps({"key": asdict(key), "engine_sha256": sha256_of(path),
                                   "build_s": round(build_s, 1), "built_at": time.strftime("%Y-%m-%dT%H:%M:%S")},
                                  indent=2))


def invalidate(path: Path) -> None:
    """Forget an engine that failed to deserialise, so the next decision rebuilds it."""
    path.with_suffix(path.suffix + SIDECAR_SUFFIX).unlink(missing_ok=True)
