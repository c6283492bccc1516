"""Preprocessing shared by every backend: any mix of camera image sizes -> one normalised batch."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch


def resize_batch(images: Sequence[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB at ``size`` = (width, height); images already at that size are not resampled."""
    width, height = size
    batch = np.empty((len(images), height, width, 3), np.uint8)
    for i, image in enumerate(images):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image {i}: expected HxWx3 uint8 RGB, got {image.shape} {image.dtype}")
        if image.shape[:2] == (height, width):
            batch[i] = image
        else:
            batch[i] = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    return batch


def normalise(batch_nhwc: np.ndarray, mean: Sequence[float], std: Sequence[float],
              device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 NHWC -> float NCHW with (x/255 - mean) / std, on ``device``."""
    tensor = torch.from_numpy(batch_nhwc).to(device).permute(0, 3, 1, 2).float()
    mean_t = torch.tensor(mean, device=tensor.device).view(1, 3, 1, 1) * 255
    std_t = torch.tensor(std, device=tensor.device).view(1, 3, 1, 1) * 255
    return (tensor - mean_t) / std_t
