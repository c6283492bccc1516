"""The YOLOP-family protocol for drivable area and lane lines (YOLOP, HybridNets, YOLOPv2 ... on BDD100K).

This is *not* the BDD100K protocol (see ``lanes.py``); it exists so our numbers can be put next to those papers'.
It reproduces YOLOP's ``lib/core/evaluate.py::SegmentationMetric`` as used in ``lib/core/function.py::validate``:

* Each ``update`` call is one validation batch. A 2-class confusion matrix (0 = background, 1 = positive) is built
  from that batch alone (YOLOP calls ``metric.reset()`` before every batch), over the pixels with a valid GT.
* From it, per batch: ``acc`` = (TP + TN) / pixels; ``iou`` = IoU of class 1; ``miou`` = mean of the IoUs of
  class 0 and class 1 (an undefined IoU counts as 0); ``line_acc`` = TP / (GT positives + 1e-12), i.e. the recall
  of class 1 (YOLOP's ``lineAccuracy``, 0 for a batch without positives).
* The reported value is the mean of the per-batch values weighted by batch size (YOLOP's ``AverageMeter``).
  Per-batch averaging means the numbers depend on the batch size; pass one image per call for a per-image mean.

What the papers' tables report: drivable area "mIoU" = ``miou`` (2-class), lane "Accuracy" = ``line_acc`` and lane
"IoU" = ``iou``. Masks: nonzero = positive; ``valid`` (optional) excludes pixels, as YOLOP excludes GT values
outside {0, 1}. Predictions are compared at the resolution given (YOLOP crops the letterbox padding first).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from seg_perception.evaluation._arrays import check_same_shape, to_bool, to_numpy


def yolop_batch_metrics(pred: Any, gt: Any, valid: Any = None) -> dict[str, float]:
    """The four YOLOP numbers for one batch (or image): acc, iou, miou, line_acc."""
    p = to_bool(pred, "pred")
    g = to_bool(gt, "gt")
    v = None if valid is None else to_bool(valid, "valid")
    check_same_shape(pred=p, gt=g, valid=v)
    if v is not None:
        p, g = p[v], g[v]
    tp = float(np.count_nonzero(p & g))
    n_p, n_g = float(np.count_nonzero(p)), float(np.count_nonzero(g))
    total = float(p.size)
    tn = total - n_p - n_g + tp
    fp, fn = n_p - tp, n_g - tp
    iou1 = tp / (tp + fp + fn) if tp + fp + fn else 0.0
    iou0 = tn / (tn + fp + fn) if tn + fp + fn else 0.0
    return {
        "acc": (tp + tn) / total if total else float("nan"),
        "iou": iou1,
        "miou": (iou0 + iou1) / 2,
        "line_acc": tp / (n_g + 1e-12),
    }


class YolopSegMetrics:
    """Batch-size-weighted mean of ``yolop_batch_metrics`` over ``update`` calls (one call = one batch)."""

    KEYS = ("acc", "iou", "miou", "line_acc")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._sums = dict.fromkeys(self.KEYS, 0.0)
        self.num_images = 0

    def update(self, pred: Any, gt: Any, valid: Any = None) -> None:
        """``pred``/``gt``: HxW (one image) or NxHxW (a batch of N)."""
        shape = to_numpy(pred).shape
        n = 1 if len(shape) == 2 else int(shape[0])
        m = yolop_batch_metrics(pred, gt, valid)
        for k in self.KEYS:
            self._sums[k] += m[k] * n
        self.num_images += n

    def compute(self) -> dict[str, float]:
        n = self.num_images
        out = {k: (v / n if n else float("nan")) for k, v in self._sums.items()}
        out["num_images"] = n
        return out
