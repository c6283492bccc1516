"""Latest-frame policy between subscription callbacks and the inference worker.

Callbacks only ``put`` (never infer); the worker ``take``s the newest frame of every camera that has a
fresh one and runs them as one batch. A frame replaced before its turn, or older than the maximum age
when its turn comes, is dropped and counted: nothing queues without bound.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from seg_perception.pipeline.pipeline import CameraFrame
from seg_perception.pipeline.stats import PipelineStats


class LatestFrameSlots:
    def __init__(self, cameras: Sequence[str], *, max_age_s: float, stats: PipelineStats,
                 clock_ns: Callable[[], int] = time.time_ns) -> None:
        if max_age_s <= 0:
            raise ValueError(f"max_age_s must be positive, got {max_age_s}")
        self.cameras = tuple(cameras)
        self.max_age_ns = int(max_age_s * 1e9)
        self.stats = stats
        self.clock_ns = clock_ns  # the clock of the frames' stamps (ROS time in the node)
        self._slots: dict[str, CameraFrame] = {}
        self._ready = threading.Condition()
        self._closed = False

    def put(self, frame: CameraFrame) -> None:
        with self._ready:
            if frame.camera in self._slots:
                self.stats.drop(frame.camera, "superseded")  # the worker was busy: keep only the newest
            self._slots[frame.camera] = frame
            self._ready.notify()

    def take(self, timeout_s: float | None = None) -> list[CameraFrame]:
        """The fresh frames (camera order), waiting up to ``timeout_s`` for one; [] on timeout or close."""
        with self._ready:
            if not self._slots and not self._closed:
                self._ready.wait(timeout_s)
            frames = [self._slots.pop(c) for c in self.cameras if c in self._slots]
        now = self.clock_ns()
        fresh = []
        for frame in frames:
            if now - frame.stamp_ns > self.max_age_ns:
                self.stats.drop(frame.camera, "too_old")
            else:
                fresh.append(frame)
        return fresh

    def set_max_age(self, max_age_s: float) -> None:
        self.max_age_ns = int(max_age_s * 1e9)

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()
