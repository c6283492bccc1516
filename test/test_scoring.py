"""Tests for seg_perception.evaluation.scoring: the frame scoring every evaluation path shares."""

from __future__ import annotations

import numpy as np
import pytest

from seg_perception.datasets import labels
from seg_perception.evaluation.scoring import LabelledScores, sample_labels

NAMES = tuple(c.name for c in labels.CLASSES)
ROAD, CAR, LANE = 0, 13, labels.LANE_MARKING  # train ids
ROAD_LABEL_ID, CAR_LABEL_ID = 7, 26  # Cityscapes label ids: car instance k is 26000 + k


def _scores() -> LabelledScores:
    return LabelledScores(class_names=NAMES, thing_ids=labels.THING_TRAIN_IDS)


def _truth() -> dict[str, np.ndarray]:
    """8x8 labels: road everywhere, a lane column, one 4x4 car (instance 26001)."""
    semantic = np.full((8, 8), ROAD, np.uint8)
    semantic[:, 0] = LANE
    semantic[4:, 4:] = CAR
    instance = np.full((8, 8), ROAD_LABEL_ID, np.int32)  # the lane mask relabels its pixels
    instance[4:, 4:] = CAR_LABEL_ID * 1000
    drivable = (semantic == ROAD).astype(np.uint8)
    lane = (semantic == LANE).astype(np.uint8)
    return {"semantic": semantic, "instance": instance, "drivable": drivable, "lane": lane}


def _perfect_outputs(truth: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    semantic = truth["semantic"]
    instances = (semantic == CAR).astype(np.int32)
    masks = {"drivable": semantic == ROAD, "lane": semantic == LANE, "obstacles": semantic == CAR}
    return semantic, instances, masks


def test_outputs_at_half_resolution_are_scored_at_the_labels_size() -> None:
    truth = _truth()
    semantic, instances, masks = _perfect_outputs(truth)
    scores = _scores()
    half = {name: mask[::2, ::2] for name, mask in masks.items()}  # bool masks: OpenCV cannot resize them as such
    returned = scores.score(semantic[::2, ::2], instances[::2, ::2], half, truth)
    assert returned is truth["semantic"]
    summary = scores.summary()
    # Nearest upsampling of a map whose edges lie on even pixels is exact, except the 1-px lane column, which
    # doubles: road loses 8 of its pixels to lane.
    assert summary["iou_per_class"]["car"] == 1.0
    assert summary["iou_per_class"]["lane_marking"] == pytest.approx(8 / 16)
    assert summary["pq"]["things"]["pq"] == 1.0
    assert summary["drivable_iou"] == pytest.approx((40 - 8) / 40)
    assert summary["lane_iou"] == pytest.approx(8 / 16)
    assert dict(scores.annotated) == {"frames": 1, "semantic": 1, "instances": 1, "drivable": 1, "lane": 1}


def test_missing_roles_and_labels_leave_their_metrics_unscored() -> None:
    truth = _truth()
    semantic, instances, masks = _perfect_outputs(truth)
    scores = _scores()
    # No lane output (a model without the lane class) and no drivable label: neither is scored, not as empty.
    scores.score(semantic, instances, {"drivable": masks["drivable"]},
                 {k: v for k, v in truth.items() if k != "drivable"})
    summary = scores.summary()
    assert summary["drivable_iou"] is None and summary["lane_iou"] is None and summary["lane_fscore"] is None
    assert {summary["iou_per_class"][name] for name in ("road", "car", "lane_marking")} == {1.0}
    assert summary["pq_per_class"]["car"]["tp"] == 1
    assert scores.annotated["drivable"] == 0 and scores.annotated["lane"] == 0


def test_instance_labels_alone_give_the_semantic_truth() -> None:
    truth = _truth()
    semantic, instances, masks = _perfect_outputs(truth)
    scores = _scores()
    returned = scores.score(semantic, instances, masks, {"instance": truth["instance"], "lane": truth["lane"]})
    np.testing.assert_array_equal(returned, truth["semantic"])
    assert scores.summary()["pq"]["all"]["pq"] == 1.0
    assert scores.annotated["semantic"] == 0  # no semantic label: mIoU is not scored from the instance map


def test_merge_equals_scoring_everything_in_one() -> None:
    truth = _truth()
    semantic, instances, masks = _perfect_outputs(truth)
    wrong = np.where(semantic == CAR, ROAD, semantic).astype(np.uint8)  # the car missed
    one, first, second = _scores(), _scores(), _scores()
    for target, outputs in ((first, (semantic, instances, masks)), (second, (wrong, instances * 0, masks))):
        target.score(*outputs, truth)
        one.score(*outputs, truth)
    first.merge(second)
    assert first.summary() == one.summary()
    car = one.summary()["pq_per_class"]["car"]  # RQ = TP / (TP + FP/2 + FN/2)
    assert car == {"pq": pytest.approx(2 / 3, abs=1e-6), "sq": 1.0, "rq": pytest.approx(2 / 3, abs=1e-6),
                   "tp": 1, "fp": 0, "fn": 1}
    with pytest.raises(ValueError, match="different classes"):
        first.merge(LabelledScores(class_names=NAMES, thing_ids=(CAR,)))


def test_bad_label_kinds_are_rejected() -> None:
    semantic, instances, masks = _perfect_outputs(_truth())
    with pytest.raises(ValueError, match="labels must be some of"):
        _scores().score(semantic, instances, masks, {"depth": semantic})
    with pytest.raises(ValueError, match="labels must be some of"):
        _scores().score(semantic, instances, masks, {})


def test_sample_labels_maps_dataset_keys_and_skips_absent_ones() -> None:
    truth = _truth()
    sample = {"image": np.zeros((8, 8, 3), np.uint8), "train_ids": truth["semantic"], "instance_ids": None,
              "lane": truth["lane"]}
    labels = sample_labels(sample)
    assert set(labels) == {"semantic", "lane"}
    assert labels["semantic"] is truth["semantic"]
