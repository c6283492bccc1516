"""Per-camera temporal smoothing state: which terms the graph gets, and when the past must be forgotten.

The blend itself runs inside the model graph (``PanopticNet.smooth_logits``: an exponential weight and a
label prior, on head-resolution logits); this class keeps each camera's previous logits and decides the
terms: the configured ones, or zeros (a reset) when the past no longer describes the present.
The logits stay on the device the network made them on (a view of its output, never copied to the host):
on a GPU the state is fed back without crossing the bus.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch

RESET_REASONS = ("first_frame", "stamp_backwards", "stamp_gap", "size_changed")


@dataclass
class _CameraState:
    stamp_ns: int
    image_size: tuple[int, int]  # (width, height) of the camera image
    logits: torch.Tensor | None  # (C, h, w) smoothed head-resolution logits of the last frame (None when off)


class TemporalSmoother:
    """Keeps every camera's stream continuity (also when smoothing is off: trackers reset on the same events)."""

    def __init__(self, *, enabled: bool, strength: float, label_prior: float, max_gap_s: float) -> None:
        self._state: dict[str, _CameraState] = {}
        self.resets: Counter[str] = Counter()  # reason -> count, for diagnostics and reports
        self.configure(enabled=enabled, strength=strength, label_prior=label_prior, max_gap_s=max_gap_s)

    def configure(self, *, enabled: bool, strength: float, label_prior: float, max_gap_s: float) -> None:
        """Also the live parameter change: the state is kept, the next frame blends with the new terms.

        ``strength``: exponential weight of the previous logits in [0, 1); ``label_prior``: logit bonus
        of the previous frame's class, >= 0.
        """
        if not 0.0 <= strength < 1.0:
            raise ValueError(f"smoothing strength must be in [0, 1), got {strength}")
        if label_prior < 0:
            raise ValueError(f"smoothing label prior must be >= 0, got {label_prior}")
        if max_gap_s <= 0:
            raise ValueError(f"max_gap_s must be positive, got {max_gap_s}")
        self.enabled, self.strength, self.label_prior = enabled, strength, label_prior
        self.max_gap_ns = int(max_gap_s * 1e9)

    def discontinuity(self, camera: str, stamp_ns: int, image_size: tuple[int, int]) -> str | None:
        """Why this frame cannot continue the camera's stream (one of RESET_REASONS), or None."""
        state = self._state.get(camera)
        if state is None:
            return "first_frame"
        if stamp_ns < state.stamp_ns:
            return "stamp_backwards"  # a bag loop or a restarted source
        if stamp_ns - state.stamp_ns > self.max_gap_ns:
            return "stamp_gap"
        if image_size != state.image_size:
            return "size_changed"
        return None

    def inputs(self, cameras: Sequence[str], reasons: Sequence[str | None],
               state_shape: tuple[int, int, int]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(previous_logits (N, C, h, w) on the logits' device, terms (N, 2) on the host) for a batch, or
        (None, None) when smoothing is off or no frame of the batch continues a stream.

        ``reasons`` come from ``discontinuity``; a frame with a reason starts afresh (weight 0).
        """
        for reason in reasons:
            if reason is not None:
                self.resets[reason] += 1
        if not self.enabled:
            return None, None
        terms = torch.zeros((len(cameras), 2), dtype=torch.float32)  # tiny: made on the host, moved by the backend
        states = []
        for i, (camera, reason) in enumerate(zip(cameras, reasons, strict=True)):
            state = self._state.get(camera)
            if reason is None and state is not None and state.logits is not None \
                    and tuple(state.logits.shape) == tuple(state_shape):
                states.append(state.logits)
                terms[i, 0], terms[i, 1] = self.strength, self.label_prior
            else:
                states.append(None)
        known = [logits for logits in states if logits is not None]
        if not known:
            return None, None  # every frame starts afresh: the backend's zeros with weight 0, exactly unsmoothed
        zeros = torch.zeros_like(known[0])
        previous = torch.stack([zeros if logits is None else logits for logits in states])
        return previous, terms

    def update(self, cameras: Sequence[str], stamps_ns: Sequence[int], image_sizes: Sequence[tuple[int, int]],
               logits: torch.Tensor) -> None:
        """Remember each camera's stamp, size and the graph's (smoothed) logits."""
        for i, camera in enumerate(cameras):
            # A view: backends hand out fresh output tensors every call, so nothing overwrites it.
            state_logits = logits[i].detach() if self.enabled else None
            self._state[camera] = _CameraState(stamp_ns=stamps_ns[i], image_size=image_sizes[i], logits=state_logits)

    def reset(self, camera: str | None = None) -> None:
        if camera is None:
            self._state.clear()
        else:
            self._state.pop(camera, None)
