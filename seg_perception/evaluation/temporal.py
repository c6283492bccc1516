"""Temporal consistency (TC) of a video segmentation, as defined by Liu et al., "Efficient Semantic Video
Segmentation with Per-frame Inference" (ECCV 2020).

For each pair of consecutive frames the previous prediction is warped into the current frame with dense optical
flow, and the mIoU between the warped and the current prediction is taken; TC is the mean over all pairs. A
prediction that flickers where the scene does not change scores low, one that moves with the scene scores high.

Flow: OpenCV Farneback on the grayscale images, computed from the current to the previous frame, so every current
pixel samples the previous label map (backward warping, no holes); labels are sampled with nearest neighbour and
pixels whose source lies outside the image become ``ignore``. The Farneback parameters are fixed
(``FARNEBACK_PARAMS``) so that scores are comparable between runs; the paper used FlowNet 2.0, so absolute numbers
differ from the published ones, comparisons between our own models do not.

Pair mIoU: over the classes present in either map after dropping the pixels where either is ``ignore``; NaN when
no class is present. The mean over pairs skips NaN pairs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

# Farneback: pyramid scale 0.5 with 3 levels (motion up to ~2^3 * winsize / 2 px), 15 px averaging window,
# 3 iterations per level, 5 px neighbourhood with sigma 1.2 for the polynomial fit (OpenCV's recommended pair).
FARNEBACK_PARAMS: dict[str, Any] = {
    "pyr_scale": 0.5,
    "levels": 3,
    "winsize": 15,
    "iterations": 3,
    "poly_n": 5,
    "poly_sigma": 1.2,
    "flags": 0,
}
_REMAP_DTYPES = (np.uint8, np.uint16, np.int16)  # integer types cv2.remap samples without conversion


def _gray(image: np.ndarray, name: str) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"{name} must be an (H, W, 3) uint8 RGB image, got {image.dtype} {image.shape}")
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def warp_previous(previous_labels: np.ndarray, previous_image: np.ndarray, current_image: np.ndarray, *,
                  ignore: int = 255) -> np.ndarray:
    """The previous (H, W) label map warped into the current frame; pixels with no source become ``ignore``.

    Returns the labels' dtype when it holds ``ignore``, else int64.
    """
    labels = np.asarray(previous_labels)
    previous_gray, current_gray = _gray(previous_image, "previous_image"), _gray(current_image, "current_image")
    if previous_gray.shape != current_gray.shape:
        raise ValueError(f"images differ in size: {previous_gray.shape} vs {current_gray.shape}")
    if labels.shape != current_gray.shape:
        raise ValueError(f"previous_labels {labels.shape} do not match the images {current_gray.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"previous_labels must be integer class ids, got {labels.dtype}")
    remap_dtype = next((d for d in _REMAP_DTYPES if _fits(labels, ignore, d)), None)
    if remap_dtype is None:
        raise ValueError(f"labels and ignore={ignore} must fit in uint8, uint16 or int16 for cv2.remap")

    # flow from current to previous: current(y, x) ~ previous(y + flow_y, x + flow_x)
    flow = cv2.calcOpticalFlowFarneback(current_gray, previous_gray, None, **FARNEBACK_PARAMS)
    height, width = current_gray.shape
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    warped = cv2.remap(labels.astype(remap_dtype, copy=False), grid_x + flow[..., 0], grid_y + flow[..., 1],
                       interpolation=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=ignore)
    label_range = np.iinfo(labels.dtype)
    out_dtype = labels.dtype if label_range.min <= ignore <= label_range.max else np.dtype(np.int64)
    return warped.astype(out_dtype, copy=False)


def _fits(labels: np.ndarray, ignore: int, dtype: Any) -> bool:
    info = np.iinfo(dtype)
    if not info.min <= ignore <= info.max:
        return False
    return labels.size == 0 or (info.min <= int(labels.min()) and int(labels.max()) <= info.max)


def pair_miou(warped: np.ndarray, current: np.ndarray, *, num_classes: int, ignore: int = 255) -> float:
    """mIoU of two label maps over the classes present in either; pixels that are ``ignore`` in either are
    excluded. NaN when no class is present."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    warped, current = np.asarray(warped), np.asarray(current)
    if warped.shape != current.shape:
        raise ValueError(f"label maps differ in shape: {warped.shape} vs {current.shape}")
    valid = (warped != ignore) & (current != ignore)
    a, b = warped[valid].astype(np.int64), current[valid].astype(np.int64)
    if a.size and (min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= num_classes):
        raise ValueError(f"labels outside [0, {num_classes}) that are not ignore={ignore}")
    confusion = np.bincount(a * num_classes + b, minlength=num_classes * num_classes).reshape(num_classes, -1)
    intersection = np.diag(confusion)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - intersection
    present = union > 0
    if not present.any():
        return math.nan
    return float(np.mean(intersection[present] / union[present]))


@dataclass(frozen=True)
class TemporalConsistency:
    per_pair: tuple[float, ...]  # pair mIoU for each consecutive pair, in feeding order (NaN: no class present)
    mean: float  # mean over the non-NaN pairs, in [0, 1]; NaN when there are none


class TemporalConsistencyMeter:
    """Streaming TC: feed one camera's frames in order; use one meter per camera (or ``end_stream`` between
    sequences), since pairs are only formed between consecutive frames of the same stream."""

    def __init__(self, *, num_classes: int, ignore: int = 255) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes, self.ignore = num_classes, ignore
        self._per_pair: list[float] = []
        self._previous: tuple[np.ndarray, np.ndarray] | None = None  # (image, prediction) of the last frame

    def update(self, image: np.ndarray, prediction: np.ndarray) -> float | None:
        """The pair mIoU with the previous frame, or None for the first frame of a stream."""
        image, prediction = np.asarray(image), np.asarray(prediction)
        score = None
        if self._previous is not None:
            previous_image, previous_prediction = self._previous
            warped = warp_previous(previous_prediction, previous_image, image, ignore=self.ignore)
            score = pair_miou(warped, prediction, num_classes=self.num_classes, ignore=self.ignore)
            self._per_pair.append(score)
        self._previous = (image.copy(), prediction.copy())  # the caller may reuse its buffers
        return score

    def end_stream(self) -> None:
        """The next frame starts a new stream (no pair with the last one); the scores so far are kept."""
        self._previous = None

    def reset(self) -> None:
        """Forget everything: scores and the last frame."""
        self._per_pair.clear()
        self._previous = None

    def result(self) -> TemporalConsistency:
        scored = [s for s in self._per_pair if not math.isnan(s)]
        return TemporalConsistency(tuple(self._per_pair), float(np.mean(scored)) if scored else math.nan)


def temporal_consistency(images: Sequence[np.ndarray], predictions: Sequence[np.ndarray], *, num_classes: int,
                         ignore: int = 255) -> TemporalConsistency:
    """TC of one stream: ``images`` are (H, W, 3) uint8 RGB frames in order, ``predictions`` their (H, W) label
    maps."""
    if len(images) != len(predictions):
        raise ValueError(f"got {len(images)} images but {len(predictions)} predictions")
    if len(images) < 2:
        raise ValueError(f"temporal consistency needs at least 2 frames, got {len(images)}")
    meter = TemporalConsistencyMeter(num_classes=num_classes, ignore=ignore)
    for image, prediction in zip(images, predictions, strict=True):
        meter.update(image, prediction)
    return meter.result()
