"""Counters and latency windows per camera, shared by callbacks, the worker and the diagnostics timer.

Every frame that arrives is either processed or dropped with a reason; the counts always add up
(``received == processed + dropped + pending``), which the tests check.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

DROP_REASONS = ("superseded", "too_old", "decode_error", "bad_frame", "backend_error", "not_synchronised")
WINDOW = 300  # latency samples kept per camera
RATE_WINDOW_S = 5.0


@dataclass
class _Camera:
    received: int = 0
    processed: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    arrivals: deque[float] = field(default_factory=lambda: deque(maxlen=4096))  # monotonic seconds
    outputs: deque[float] = field(default_factory=lambda: deque(maxlen=4096))
    latency_ms: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))  # stamp age at publication
    processing_ms: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))  # steady clock, arrival on
    stamps_ahead: int = 0  # frames stamped ahead of the node's clock
    max_stamp_ahead_ms: float = 0.0
    stage_ms: dict[str, deque[float]] = field(default_factory=dict)
    last_error: str = ""


@dataclass(frozen=True)
class CameraSnapshot:
    camera: str
    received: int
    processed: int
    dropped: dict[str, int]
    input_hz: float
    output_hz: float
    seconds_since_input: float | None  # None: nothing ever arrived
    latency_p50_ms: float | None
    latency_p90_ms: float | None
    latency_p99_ms: float | None
    processing_p50_ms: float | None
    processing_p99_ms: float | None
    stamps_ahead: int
    max_stamp_ahead_ms: float
    stage_p50_ms: dict[str, float]
    last_error: str

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


def percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values), q)) if len(values) else None


class PipelineStats:
    def __init__(self, cameras: Sequence[str], clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._cameras = {c: _Camera() for c in cameras}
        self._started = clock()

    def received(self, camera: str) -> None:
        with self._lock:
            entry = self._cameras[camera]
            entry.received += 1
            entry.arrivals.append(self._clock())

    def drop(self, camera: str, reason: str, detail: str = "") -> None:
        if reason not in DROP_REASONS:
            raise ValueError(f"unknown drop reason {reason!r}")
        with self._lock:
            entry = self._cameras[camera]
            entry.dropped[reason] += 1
            if detail:
                entry.last_error = f"{reason}: {detail}"

    def stamp_ahead(self, camera: str, ahead_ms: float) -> None:
        """A frame whose stamp was ahead of the node's clock on arrival (its stamp ages are clamped to 0)."""
        with self._lock:
            entry = self._cameras[camera]
            entry.stamps_ahead += 1
            entry.max_stamp_ahead_ms = max(entry.max_stamp_ahead_ms, ahead_ms)

    def processed(self, camera: str, end_to_end_ms: float, stages_ms: Mapping[str, float],
                  processing_ms: float | None = None) -> None:
        """``end_to_end_ms``: stamp to publication on the stamp's clock; ``processing_ms``: arrival to
        publication on the steady clock (None when the arrival is unknown)."""
        with self._lock:
            entry = self._cameras[camera]
            entry.processed += 1
            entry.outputs.append(self._clock())
            entry.latency_ms.append(end_to_end_ms)
            if processing_ms is not None:
                entry.processing_ms.append(processing_ms)
            for stage, value in stages_ms.items():
                entry.stage_ms.setdefault(stage, deque(maxlen=WINDOW)).append(value)

    def counts(self, camera: str) -> tuple[int, int, int]:
        """(received, processed, dropped) so far."""
        with self._lock:
            entry = self._cameras[camera]
            return entry.received, entry.processed, sum(entry.dropped.values())

    def snapshot(self) -> list[CameraSnapshot]:
        now = self._clock()
        with self._lock:
            return [self._snapshot(name, entry, now) for name, entry in self._cameras.items()]

    def _snapshot(self, name: str, entry: _Camera, now: float) -> CameraSnapshot:
        span = min(RATE_WINDOW_S, max(now - self._started, 1e-3))
        latency, processing = list(entry.latency_ms), list(entry.processing_ms)
        return CameraSnapshot(
            camera=name, received=entry.received, processed=entry.processed, dropped=dict(entry.dropped),
            input_hz=sum(1 for t in entry.arrivals if now - t <= span) / span,
            output_hz=sum(1 for t in entry.outputs if now - t <= span) / span,
            seconds_since_input=now - entry.arrivals[-1] if entry.arrivals else None,
            latency_p50_ms=percentile(latency, 50), latency_p90_ms=percentile(latency, 90),
            latency_p99_ms=percentile(latency, 99),
            processing_p50_ms=percentile(processing, 50), processing_p99_ms=percentile(processing, 99),
            stamps_ahead=entry.stamps_ahead, max_stamp_ahead_ms=entry.max_stamp_ahead_ms,
            stage_p50_ms={stage: float(np.median(values)) for stage, values in entry.stage_ms.items() if values},
            last_error=entry.last_error)

    def seconds_since_start(self) -> float:
        return self._clock() - self._started
