"""Panoptic-DeepLab training targets from an instance map: centre heatmap and offsets to the centre."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CENTER_SIGMA_PX = 8.0  # Panoptic-DeepLab's Gaussian at full Cityscapes resolution


@dataclass(frozen=True)
class InstanceTargets:
    center: np.ndarray  # (H, W) float32 in [0, 1], a Gaussian peak of 1 at every instance centre
    offset: np.ndarray  # (2, H, W) float32 (dy, dx) from each instance pixel to its centre, 0 elsewhere
    offset_weight: np.ndarray  # (H, W) float32, 1 on instance pixels
    centers_yx: np.ndarray  # (M, 2) float32 centres of mass, in instance order


def instance_targets(instance_ids: np.ndarray, *, sigma: float = CENTER_SIGMA_PX) -> InstanceTargets:
    """``instance_ids``: (H, W) ints, Cityscapes encoding; values >= 1000 are thing instances, others none."""
    height, width = instance_ids.shape
    center = np.zeros((height, width), np.float32)
    offset = np.zeros((2, height, width), np.float32)
    things = instance_ids >= 1000
    if not things.any():
        return InstanceTargets(center, offset, things.astype(np.float32), np.zeros((0, 2), np.float32))

    ys, xs = np.nonzero(things)
    ids, owner = np.unique(instance_ids[ys, xs], return_inverse=True)
    area = np.bincount(owner, minlength=len(ids))
    cy = np.bincount(owner, weights=ys, minlength=len(ids)) / area
    cx = np.bincount(owner, weights=xs, minlength=len(ids)) / area
    offset[0, ys, xs] = cy[owner] - ys
    offset[1, ys, xs] = cx[owner] - xs

    # A Gaussian per instance on a window of +-3 sigma; overlapping peaks keep the maximum.
    radius = int(np.ceil(3 * sigma))
    for y, x in zip(cy, cx, strict=True):
        iy, ix = round(y), round(x)
        y0, y1 = max(0, iy - radius), min(height, iy + radius + 1)
        x0, x1 = max(0, ix - radius), min(width, ix + radius + 1)
        gy = np.exp(-((np.arange(y0, y1) - iy) ** 2) / (2 * sigma**2))
        gx = np.exp(-((np.arange(x0, x1) - ix) ** 2) / (2 * sigma**2))
        np.maximum(center[y0:y1, x0:x1], np.outer(gy, gx).astype(np.float32), out=center[y0:y1, x0:x1])
    centers = np.stack([cy, cx], 1).astype(np.float32)
    return InstanceTargets(center, offset, things.astype(np.float32), centers)
