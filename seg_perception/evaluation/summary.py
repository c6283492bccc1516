"""Metric results as JSON-ready values, shared by `eval --dataset` and the bag replay's report."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

PQ_GROUPS = ("all", "things", "stuff")


def metric_value(value: float | None) -> float | None:
    """Rounded to 6 places; NaN (nothing to score) becomes None, which JSON can hold."""
    return None if value is None or math.isnan(float(value)) else round(float(value), 6)


def semantic_summary(scores: Any, class_names: Sequence[str]) -> dict[str, Any]:
    """mIoU (all and present classes), pixel / mean accuracy, FWIoU and IoU per class of ``ConfusionMatrix``
    scores."""
    return {
        "miou": metric_value(scores.miou), "miou_present": metric_value(scores.miou_present),
        "pixel_acc": metric_value(scores.pixel_acc), "mean_acc": metric_value(scores.mean_acc),
        "fwiou": metric_value(scores.fwiou),
        "iou_per_class": {name: metric_value(v) for name, v in zip(class_names, scores.iou, strict=True)},
    }


def pq_summary(pq: Mapping[str, Any]) -> dict[str, dict[str, float | int | None]]:
    """PQ / SQ / RQ and class count of each group, from ``PanopticQuality.compute()``."""
    return {group: {"pq": metric_value(pq[group]["pq"]), "sq": metric_value(pq[group]["sq"]),
                    "rq": metric_value(pq[group]["rq"]), "n": int(pq[group]["n"])} for group in PQ_GROUPS}


def lane_fscore_summary(fscores: Mapping[str, float]) -> dict[str, float | None]:
    """The boundary F-scores at 1 / 2 / 5 px of ``LaneFScore.compute()``."""
    return {k: metric_value(v) for k, v in fscores.items() if k.startswith("fscore")}
