"""Scoring of labelled frames, shared by every evaluation path.

`eval --dataset` (labelled folders, also the trainer's per-epoch validation), the offline bag replay and
`eval --live` all score a frame's outputs with ``LabelledScores.score`` and report
``LabelledScores.summary``, so their figures follow one set of rules.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from seg_perception.evaluation.lanes import BinaryIoU, LaneFScore
from seg_perception.evaluation.panoptic import PanopticQuality, cityscapes_instance_ids_to_panoptic
from seg_perception.evaluation.semantic import ConfusionMatrix
from seg_perception.evaluation.summary import lane_fscore_summary, metric_value, pq_summary, semantic_summary

# What a frame's labels may hold: train-id map, Cityscapes instance ids (label_id * 1000 + k for things),
# drivable-area mask and lane mask (nonzero inside).
LABEL_KINDS = ("semantic", "instance", "drivable", "lane")


def _resize_nearest(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if array.shape[:2] == shape:
        return array
    if array.dtype == bool:  # OpenCV has no bool images
        return _resize_nearest(array.view(np.uint8), shape).view(bool)
    return cv2.resize(array, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)


def sample_labels(sample: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The LABEL_KINDS of a loaded dataset sample (the keys of ``load_sample`` and ``SampleRef.load``)."""
    names = {"semantic": "train_ids", "instance": "instance_ids", "drivable": "drivable", "lane": "lane"}
    return {kind: sample[name] for kind, name in names.items() if sample.get(name) is not None}


@dataclass
class LabelledScores:
    """Metric state over labelled frames: mIoU family, PQ, drivable-area IoU, lane IoU and boundary F-score.

    Mergeable, so frames scored in other processes or on other machines add up to the same result.
    ``annotated`` counts the frames scored and, per metric, the frames whose labels allowed it.
    """

    class_names: tuple[str, ...]
    thing_ids: tuple[int, ...]
    confusion: ConfusionMatrix = field(init=False)
    panoptic: PanopticQuality = field(init=False)
    drivable: BinaryIoU = field(default_factory=BinaryIoU)
    lane: BinaryIoU = field(default_factory=BinaryIoU)
    lane_f: LaneFScore = field(default_factory=LaneFScore)
    annotated: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.confusion = ConfusionMatrix(len(self.class_names), class_names=self.class_names)
        self.panoptic = PanopticQuality(len(self.class_names), self.thing_ids, class_names=self.class_names)

    def score(self, semantic: np.ndarray, instances: np.ndarray, masks: Mapping[str, np.ndarray],
              labels: Mapping[str, np.ndarray]) -> np.ndarray | None:
        """Score one frame's outputs against its labels (kinds of LABEL_KINDS); returns the semantic truth, if any.

        ``masks``: role ("drivable", "lane", "obstacles") -> mask, nonzero inside. Outputs of another size than
        the labels are resized to them (nearest), as the Cityscapes protocol scores at label resolution.
        A role the model does not provide is left unscored, never scored as an empty mask.
        """
        unknown = set(labels) - set(LABEL_KINDS)
        if unknown or not labels:
            raise ValueError(f"labels must be some of {LABEL_KINDS}, got {sorted(labels)}")
        self.annotated["frames"] += 1
        shape = next(iter(labels.values())).shape[:2]
        semantic, instances = _resize_nearest(semantic, shape), _resize_nearest(instances, shape)
        masks = {role: _resize_nearest(mask, shape) for role, mask in masks.items()}
        lane_truth = labels["lane"] > 0 if "lane" in labels else None
        truth_semantic = labels.get("semantic")
        if truth_semantic is not None:
            self.confusion.update(semantic, truth_semantic)
            self.annotated["semantic"] += 1
        if "instance" in labels:
            truth = cityscapes_instance_ids_to_panoptic(labels["instance"], lane_truth)
            self.panoptic.update(semantic, instances, truth.semantic, truth.instance, truth.crowd)
            self.annotated["instances"] += 1
            truth_semantic = truth.semantic if truth_semantic is None else truth_semantic
        if "drivable" in labels and "drivable" in masks:
            self.drivable.update(masks["drivable"] > 0, labels["drivable"] > 0)
            self.annotated["drivable"] += 1
        if lane_truth is not None and "lane" in masks:
            self.lane.update(masks["lane"] > 0, lane_truth)
            self.lane_f.update(masks["lane"] > 0, lane_truth)
            self.annotated["lane"] += 1
        return truth_semantic

    def merge(self, other: LabelledScores) -> None:
        if other.class_names != self.class_names or other.thing_ids != self.thing_ids:
            raise ValueError("cannot merge evaluations of models with different classes")
        self.confusion.merge(other.confusion)
        self.panoptic.merge(other.panoptic)
        self.drivable.merge(other.drivable)
        self.lane.merge(other.lane)
        self.lane_f.merge(other.lane_f)
        self.annotated.update(other.annotated)

    def summary(self) -> dict[str, Any]:
        """JSON-ready metrics; a metric no frame's labels allowed is None."""
        result: dict[str, Any] = {
            **semantic_summary(self.confusion.compute(), self.class_names),
            "pq": None, "pq_per_class": None, "drivable_iou": None, "lane_iou": None, "lane_fscore": None,
        }
        if self.annotated["instances"]:
            pq = self.panoptic.compute()
            result["pq"] = pq_summary(pq)
            # Per class, with the matched / unmatched segment counts that explain a low RQ.
            result["pq_per_class"] = {
                c["name"]: {"pq": metric_value(c["pq"]), "sq": metric_value(c["sq"]), "rq": metric_value(c["rq"]),
                            "tp": c["tp"], "fp": c["fp"], "fn": c["fn"]}
                for c in pq["per_class"].values() if c["tp"] + c["fp"] + c["fn"] > 0}
        if self.annotated["drivable"]:
            result["drivable_iou"] = metric_value(self.drivable.compute().iou)
        if self.annotated["lane"]:
            result["lane_iou"] = metric_value(self.lane.compute().iou)
            result["lane_fscore"] = lane_fscore_summary(self.lane_f.compute())
        return result
