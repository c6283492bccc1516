"""Semantic segmentation scores from one confusion matrix accumulated over a whole data set.

Conventions (those of the Cityscapes benchmark, ``cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling``):

* Pixels whose ground truth is ``ignore_index`` (255) are skipped entirely: they are neither TP, FP nor FN.
* A prediction outside ``[0, num_classes)`` on a valid ground-truth pixel (e.g. a "void" prediction of 255, or a
  class id the evaluation does not know) is simply wrong: a false negative of the ground-truth class and a false
  positive of no class. The official evaluator does the same with predicted labelIds that are not evaluated.
* Ground-truth values outside ``[0, num_classes)`` other than ``ignore_index`` raise ``ValueError``.
* One matrix over all images (dataset-level IoU), not a mean of per-image IoUs.

Scores (all fractions in [0, 1]; multiply by 100 for the usual "points"):

* ``iou[c] = TP / (TP + FP + FN)``; NaN when ``TP + FP + FN == 0`` (class neither in GT nor predicted).
* ``miou`` = nanmean of ``iou`` over all classes: a class absent from both GT and prediction is excluded, a class
  absent from GT but predicted counts with IoU 0. This is exactly the official Cityscapes "Score Average"
  (``averageScoreClasses``).
* ``miou_present`` = mean of ``iou`` over the classes that have ground-truth pixels (false-positive-only classes
  are excluded; this is what some codebases report).
* ``pixel_acc`` = sum(TP) / valid pixels; ``acc[c] = TP / GT(c)`` (per-class recall, NaN without GT);
  ``mean_acc`` = nanmean of ``acc``; ``fwiou`` = sum over classes with GT of ``GT(c) / valid * iou[c]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from seg_perception.datasets.labels import CLASS_NAMES, IGNORE_TRAIN_ID, NUM_CLASSES
from seg_perception.evaluation._arrays import check_same_shape, to_int64


@dataclass(frozen=True)
class SemanticScores:
    """Scores of a ``ConfusionMatrix``; per-class arrays are indexed by class id (trainId)."""

    confusion: np.ndarray  # (C, C) int64, rows = ground truth, columns = prediction
    invalid_pred: np.ndarray  # (C,) int64, valid GT pixels whose prediction was outside [0, C)
    iou: np.ndarray  # (C,) float, NaN where TP+FP+FN == 0
    acc: np.ndarray  # (C,) float, per-class recall, NaN where the class has no GT pixel
    miou: float  # nanmean(iou): Cityscapes "averageScoreClasses"
    miou_present: float  # mean iou over classes with GT pixels
    pixel_acc: float
    mean_acc: float
    fwiou: float
    class_names: tuple[str, ...] = field(default=())

    @property
    def gt_pixels(self) -> np.ndarray:
        return self.confusion.sum(axis=1) + self.invalid_pred

    def iou_by_name(self) -> dict[str, float]:
        names = self.class_names or tuple(str(i) for i in range(len(self.iou)))
        return {n: float(v) for n, v in zip(names, self.iou, strict=True)}

    def as_dict(self) -> dict[str, Any]:
        """Flat JSON-friendly summary (fractions), per-class IoU under ``iou/<name>``."""
        out: dict[str, Any] = {
            "miou": self.miou, "miou_present": self.miou_present, "pixel_acc": self.pixel_acc,
            "mean_acc": self.mean_acc, "fwiou": self.fwiou,
        }  # fmt: skip
        out.update({f"iou/{k}": v for k, v in self.iou_by_name().items()})
        return out


def _nanmean(a: np.ndarray) -> float:
    a = a[~np.isnan(a)]
    return float(a.mean()) if a.size else float("nan")


class ConfusionMatrix:
    """Dataset-level confusion matrix; ``update`` per image or batch, ``compute`` at the end.

    ``pred`` and ``gt`` are integer label maps of equal shape (any shape: HxW, NxHxW ...), numpy arrays or torch
    tensors (moved to the CPU). Accumulation is one vectorised ``np.bincount`` per call.
    """

    def __init__(
        self, num_classes: int = NUM_CLASSES, ignore_index: int | None = IGNORE_TRAIN_ID,
        class_names: tuple[str, ...] | None = None,
    ) -> None:  # fmt: skip
        if num_classes < 1:
            raise ValueError("num_classes must be >= 1")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        if class_names is None:
            class_names = CLASS_NAMES[:num_classes] if num_classes <= len(CLASS_NAMES) else ()
        if class_names and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
        self.class_names = tuple(class_names)
        self.reset()

    def reset(self) -> None:
        # Last column: predictions outside [0, C) on valid GT pixels.
        self._counts = np.zeros((self.num_classes, self.num_classes + 1), dtype=np.int64)

    @property
    def matrix(self) -> np.ndarray:
        """(C, C) counts, rows = ground truth, columns = prediction (a copy)."""
        return self._counts[:, : self.num_classes].copy()

    def update(self, pred: Any, gt: Any) -> None:
        p = to_int64(pred, "pred")
        g = to_int64(gt, "gt")
        check_same_shape(pred=p, gt=g)
        n = self.num_classes
        g = g.ravel()
        p = p.ravel()
        if self.ignore_index is not None:
            keep = g != self.ignore_index
            g, p = g[keep], p[keep]
        if g.size and (g.min() < 0 or g.max() >= n):
            bad = np.unique(g[(g < 0) | (g >= n)])[:10]
            raise ValueError(f"gt contains ids outside [0, {n}) that are not ignore_index: {bad.tolist()}")
        p = np.where((p >= 0) & (p < n), p, n)
        self._counts += np.bincount(g * (n + 1) + p, minlength=n * (n + 1)).reshape(n, n + 1)

    def merge(self, other: ConfusionMatrix) -> None:
        """Add another accumulator's counts (e.g. from another worker)."""
        if other.num_classes != self.num_classes:
            raise ValueError("cannot merge confusion matrices of different sizes")
        self._counts += other._counts

    def compute(self) -> SemanticScores:
        n = self.num_classes
        conf = self._counts[:, :n]
        invalid = self._counts[:, n]
        tp = np.diag(conf).astype(np.float64)
        gt = self._counts.sum(axis=1).astype(np.float64)  # includes invalid predictions (FN)
        pred = conf.sum(axis=0).astype(np.float64)
        union = gt + pred - tp
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where(union > 0, tp / union, np.nan)
            acc = np.where(gt > 0, tp / gt, np.nan)
        total = gt.sum()
        present = gt > 0
        pixel_acc = float(tp.sum() / total) if total > 0 else float("nan")
        fwiou = float(np.sum(gt[present] / total * iou[present])) if total > 0 else float("nan")
        return SemanticScores(
            confusion=conf.copy(), invalid_pred=invalid.copy(), iou=iou, acc=acc,
            miou=_nanmean(iou), miou_present=_nanmean(iou[present]) if present.any() else float("nan"),
            pixel_acc=pixel_acc, mean_acc=_nanmean(acc), fwiou=fwiou, class_names=self.class_names,
        )  # fmt: skip
