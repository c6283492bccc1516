"""Small array helpers shared by the metric modules (no torch import: tensors are duck-typed)."""

from __future__ import annotations

from typing import Any

import numpy as np


def to_numpy(x: Any) -> np.ndarray:
    """numpy view/copy of an array-like; torch tensors (any device, with or without grad) are moved to the CPU."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def to_int64(x: Any, name: str) -> np.ndarray:
    """Integer label map as int64; floats are accepted only if they hold whole numbers."""
    a = to_numpy(x)
    if a.dtype == np.bool_:
        return a.astype(np.int64)
    if not np.issubdtype(a.dtype, np.integer) and (
        not np.issubdtype(a.dtype, np.floating) or not np.array_equal(a, np.round(a))
    ):
        raise TypeError(f"{name}: expected an integer label map, got dtype {a.dtype}")
    return a.astype(np.int64, copy=False)


def to_bool(x: Any, name: str) -> np.ndarray:
    """Boolean mask: nonzero is True."""
    a = to_numpy(x)
    if a.dtype == np.bool_:
        return a
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise TypeError(f"{name}: expected a mask, got dtype {a.dtype}")
    return a != 0


def check_same_shape(**arrays: np.ndarray | None) -> None:
    shapes = {k: v.shape for k, v in arrays.items() if v is not None}
    if len(set(shapes.values())) > 1:
        raise ValueError("shape mismatch: " + ", ".join(f"{k}={s}" for k, s in shapes.items()))
