"""Preprocessing shared by every backend: any mix of camera image sizes -> one normalised batch."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch


def resize_batch(images: Sequence[np.ndarray], size: tuple[int, int], out: np.ndarray | None = None) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB at ``size`` = (width, height); images already at that size are not resampled.

    ``out``: where to write it (a backend's ``input_buffer``, pinned memory for a GPU upload)."""
    width, height = size
    shape = (len(images), height, width, 3)
    if out is not None and (out.shape != shape or out.dtype != np.uint8):
        raise ValueError(f"out must be {shape} uint8, got {out.shape} {out.dtype}")
    batch = np.empty(shape, np.uint8) if out is None else out
    for i, image in enumerate(images):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image {i}: expected HxWx3 uint8 RGB, got {image.shape} {image.dtype}")
        if image.shape[:2] == (height, width):
            batch[i] = image
        else:
            cv2.resize(image, (width, height), dst=batch[i], interpolation=cv2.INTER_LINEAR)
    return batch


def normalise(batch_nhwc: np.ndarray, mean: Sequence[float], std: Sequence[float],
              device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 NHWC -> float NCHW with (x/255 - mean) / std, on ``device``."""
    tensor = torch.from_numpy(batch_nhwc).to(device).permute(0, 3, 1, 2).float()
    mean_t = torch.tensor(mean, device=tensor.device).view(1, 3, 1, 1) * 255
    std_t = torch.tensor(std, device=tensor.device).view(1, 3, 1, 1) * 255
    return (tensor - mean_t) / std_t
