"""Binary-mask metrics: drivable-area IoU, lane IoU and the BDD100K lane F-score at 1/2/5 px.

Masks are boolean (nonzero = positive) numpy arrays or torch tensors of equal shape. Pixels outside an optional
``valid`` mask are excluded from both; so are pixels whose GT equals ``ignore_index`` if one is given (default
None, because our 0/255 lane and drivable PNGs use 255 as "positive").

IoU (``BinaryIoU``, ``binary_iou``, ``drivable_area_iou``, ``lane_iou``)
    ``TP / (TP + FP + FN)`` of the positive class, counts accumulated over all images (dataset level, like the
    semantic confusion matrix); NaN when both masks are empty everywhere. Passing an ``NxHxW`` stack to the
    functions gives the dataset-level value in one call.

Lane F-score (``LaneFScore``, ``lane_fscore``), the BDD100K lane-marking protocol (``bdd100k/eval/lane.py``, itself
adapted from the DAVIS boundary measure)
    Per image and tolerance d in {1, 2, 5} px: precision = fraction of predicted lane pixels whose Euclidean
    distance to the nearest GT lane pixel is <= d; recall = fraction of GT lane pixels within d of a predicted
    lane pixel; F = 2PR / (P + R) (0 if P + R = 0). "Within d" equals BDD100K's dilation with
    ``skimage.morphology.disk(d)`` (offsets with dx^2 + dy^2 <= d^2); we compute it with an exact Euclidean
    ``cv2.distanceTransform`` (``DIST_L2``, ``DIST_MASK_PRECISE``). Empty masks as in BDD100K: both empty ->
    P = R = 1 (F = 1); prediction empty only -> P = 1, R = 0 (F = 0); GT empty only -> P = 0, R = 1 (F = 0).
    The data-set score is the mean of the per-image F (and P, R) over images, as BDD100K's ``merge_results``.
    BDD100K compares the thin lane masks themselves (mode ``"mask"``, the default and the protocol). Mode
    ``"boundary"`` first reduces each mask to its boundary pixels (mask pixels with a 4-neighbour outside the mask;
    the image border is not a boundary), the DAVIS contour F-measure, for thick masks.
    BDD100K scores one F per lane category/direction/style and averages them; our label space has a single
    lane_marking class, so ours is that per-category score for the one class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from seg_perception.evaluation._arrays import check_same_shape, to_bool, to_numpy

BDD100K_LANE_THRESHOLDS: tuple[int, ...] = (1, 2, 5)
_DIST_EPS = 1e-3  # the precise distance transform returns float32 distances; sqrt(k) for integer k


def _masks(pred: Any, gt: Any, valid: Any, ignore_index: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pred, gt, valid) boolean arrays of equal shape; pixels with GT == ignore_index or ~valid are invalid and
    cleared in both masks."""
    p = to_bool(pred, "pred")
    g_raw = to_numpy(gt)
    v = None if valid is None else to_bool(valid, "valid")
    check_same_shape(pred=p, gt=g_raw, valid=v)
    ok = np.ones(p.shape, dtype=bool) if v is None else v.copy()
    if ignore_index is not None and g_raw.dtype != np.bool_:
        ok &= g_raw != ignore_index
    return p & ok, to_bool(g_raw, "gt") & ok, ok


@dataclass(frozen=True)
class BinaryScores:
    iou: float
    precision: float
    recall: float
    f1: float
    accuracy: float
    tp: int
    fp: int
    fn: int
    tn: int


class BinaryIoU:
    """Accumulated binary confusion counts (positive class IoU, precision, recall, F1, pixel accuracy)."""

    def __init__(self, ignore_index: int | None = None) -> None:
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        self.tp = self.fp = self.fn = self.tn = 0

    def update(self, pred: Any, gt: Any, valid: Any = None) -> None:
        p, g, ok = _masks(pred, gt, valid, self.ignore_index)
        tp = int(np.count_nonzero(p & g))
        n_p, n_g, n_ok = int(np.count_nonzero(p)), int(np.count_nonzero(g)), int(np.count_nonzero(ok))
        self.tp += tp
        self.fp += n_p - tp
        self.fn += n_g - tp
        self.tn += n_ok - n_p - n_g + tp

    def merge(self, other: BinaryIoU) -> None:
        """Add another accumulator's counts (e.g. from another worker process)."""
        self.tp, self.fp, self.fn, self.tn = (self.tp + other.tp, self.fp + other.fp, self.fn + other.fn,
                                              self.tn + other.tn)

    def compute(self) -> BinaryScores:
        tp, fp, fn, tn = self.tp, self.fp, self.fn, self.tn
        nan = float("nan")
        iou = tp / (tp + fp + fn) if tp + fp + fn else nan
        precision = tp / (tp + fp) if tp + fp else nan
        recall = tp / (tp + fn) if tp + fn else nan
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else nan
        total = tp + fp + fn + tn
        accuracy = (tp + tn) / total if total else nan
        return BinaryScores(iou, precision, recall, f1, accuracy, tp, fp, fn, tn)


def binary_iou(pred: Any, gt: Any, valid: Any = None, ignore_index: int | None = None) -> float:
    """IoU of the positive class over all given pixels (one image or an NxHxW stack)."""
    acc = BinaryIoU(ignore_index)
    acc.update(pred, gt, valid)
    return acc.compute().iou


def drivable_area_iou(pred: Any, gt: Any, valid: Any = None, ignore_index: int | None = None) -> float:
    """Drivable-area IoU of binary masks (``binary_iou``); stack images to get the dataset-level value."""
    return binary_iou(pred, gt, valid, ignore_index)


def lane_iou(pred: Any, gt: Any, valid: Any = None, ignore_index: int | None = None) -> float:
    """Lane-marking IoU of binary masks (``binary_iou``); stack images to get the dataset-level value."""
    return binary_iou(pred, gt, valid, ignore_index)


# ----------------------------------------------------------------------------------------------------------------
# Lane F-score
# ----------------------------------------------------------------------------------------------------------------


def mask_boundary(mask: Any) -> np.ndarray:
    """Boundary pixels of a 2-D mask: mask pixels with at least one 4-neighbour outside it (border excluded)."""
    m = to_bool(mask, "mask")
    if m.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {m.shape}")
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    eroded = cv2.erode(m.astype(np.uint8), cross, borderType=cv2.BORDER_CONSTANT, borderValue=1)
    return m & (eroded == 0)


def distance_to_mask(mask: np.ndarray) -> np.ndarray:
    """Exact Euclidean distance (float32) from every pixel to the nearest True pixel of a non-empty 2-D mask."""
    return cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


@dataclass(frozen=True)
class LaneF:
    precision: float
    recall: float
    fscore: float


def lane_fscore(
    pred: Any, gt: Any, thresholds: tuple[float, ...] = BDD100K_LANE_THRESHOLDS, mode: str = "mask",
    valid: Any = None, ignore_index: int | None = None,
) -> dict[float, LaneF]:  # fmt: skip
    """BDD100K lane F-score of one image (2-D masks) at each pixel tolerance; see the module docstring.

    Pixels outside ``valid`` (or GT == ``ignore_index``) are removed from both masks before matching.
    """
    if mode not in ("mask", "boundary"):
        raise ValueError(f"mode must be 'mask' or 'boundary', not {mode!r}")
    p, g, _ = _masks(pred, gt, valid, ignore_index)
    if p.ndim != 2:
        raise ValueError(f"lane_fscore takes one image (2-D masks), got shape {p.shape}")
    if mode == "boundary":
        p, g = mask_boundary(p), mask_boundary(g)
    n_p, n_g = int(np.count_nonzero(p)), int(np.count_nonzero(g))
    out: dict[float, LaneF] = {}
    if n_p == 0 or n_g == 0:
        precision, recall = (1.0 if n_p == 0 else 0.0), (1.0 if n_g == 0 else 0.0)
        f = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {d: LaneF(precision, recall, f) for d in thresholds}
    d_to_gt = distance_to_mask(g)[p]  # distance of each predicted pixel to the GT
    d_to_pred = distance_to_mask(p)[g]
    for d in thresholds:
        precision = float(np.count_nonzero(d_to_gt <= d + _DIST_EPS)) / n_p
        recall = float(np.count_nonzero(d_to_pred <= d + _DIST_EPS)) / n_g
        f = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[d] = LaneF(precision, recall, f)
    return out


class LaneFScore:
    """Mean over images of the per-image BDD100K lane F-score (and precision, recall) at each tolerance.

    ``update`` takes one image (HxW) or a batch (NxHxW, each image scored separately). ``compute`` returns
    ``{"fscore_1px": ..., "precision_1px": ..., "recall_1px": ..., ..., "num_images": N}`` (fractions).
    """

    def __init__(
        self, thresholds: tuple[float, ...] = BDD100K_LANE_THRESHOLDS, mode: str = "mask",
        ignore_index: int | None = None,
    ) -> None:  # fmt: skip
        self.thresholds = tuple(thresholds)
        self.mode = mode
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        self._sums = np.zeros((len(self.thresholds), 3))  # precision, recall, fscore
        self.num_images = 0

    def update(self, pred: Any, gt: Any, valid: Any = None) -> None:
        p, g = to_numpy(pred), to_numpy(gt)
        v = None if valid is None else to_numpy(valid)
        if p.ndim == 2:
            p, g = p[None], g[None]
            v = None if v is None else v[None]
        if p.ndim != 3:
            raise ValueError(f"expected HxW or NxHxW masks, got shape {p.shape}")
        for i in range(p.shape[0]):
            res = lane_fscore(p[i], g[i], self.thresholds, self.mode, None if v is None else v[i], self.ignore_index)
            self._sums += np.array([[r.precision, r.recall, r.fscore] for r in res.values()])
            self.num_images += 1

    def merge(self, other: LaneFScore) -> None:
        if other.thresholds != self.thresholds:
            raise ValueError("cannot merge lane F-scores measured at different tolerances")
        self._sums += other._sums
        self.num_images += other.num_images

    def compute(self) -> dict[str, float]:
        n = self.num_images
        mean = self._sums / n if n else np.full_like(self._sums, np.nan)
        out: dict[str, float] = {}
        for (p, r, f), d in zip(mean, self.thresholds, strict=True):
            tag = f"{d:g}px"
            out[f"fscore_{tag}"] = float(f)
            out[f"precision_{tag}"] = float(p)
            out[f"recall_{tag}"] = float(r)
        out["num_images"] = n
        return out
