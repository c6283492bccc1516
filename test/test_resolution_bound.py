"""The resolution bound: maps fitted at the head's stride, scored by the normal evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from seg_perception.datasets import labels
from seg_perception.datasets.synthetic import write_synthetic
from seg_perception.evaluation.dataset_eval import EvalSettings
from seg_perception.evaluation.resolution_bound import fit_head_maps, resolution_bound
from seg_perception.postprocess.panoptic import PanopticConfig
from seg_perception.postprocess.roles import role_mapping_for
from seg_perception.training.data import IMAGENET_MEAN, IMAGENET_STD, parse_data_spec


def _iou(prediction: np.ndarray, truth: np.ndarray) -> float:
    return float((prediction & truth).sum() / (prediction | truth).sum())


def test_fitting_through_the_resize_recovers_a_line_thinner_than_the_stride() -> None:
    train_ids = np.zeros((64, 64), np.uint8)
    # 2 px wide on the centres of the 8x8 cells (x = 27.5): a quarter of each cell, never its majority.
    train_ids[:, 27:29] = labels.LANE_MARKING
    pooled = fit_head_maps(train_ids, None, num_classes=labels.NUM_CLASSES, stride=8, steps=0)
    fitted = fit_head_maps(train_ids, None, num_classes=labels.NUM_CLASSES, stride=8)
    line = train_ids == labels.LANE_MARKING
    assert not (pooled.semantic_ids[0].numpy() == labels.LANE_MARKING).any()
    assert _iou(fitted.semantic_ids[0].numpy() == labels.LANE_MARKING, line) > 0.5
    assert fitted.semantic_logits.shape == (1, labels.NUM_CLASSES, 8, 8)
    assert not fitted.center.any() and not fitted.offset.any()  # no instance labels, no instances


@pytest.fixture(scope="module")
def small_split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bound")
    write_synthetic(root, fmt="cityscapes", sequences=1, frames=2, width=256, height=128, seed=7, split="test",
                    show_progress=False)
    return root


def test_full_resolution_maps_reproduce_the_ground_truth_and_stride_8_loses_some(small_split: Path) -> None:
    refs = parse_data_spec(f"synthetic:{small_split}:test")
    thing_ids = tuple(labels.THING_TRAIN_IDS)
    settings = EvalSettings(class_names=tuple(labels.CLASS_NAMES), thing_ids=thing_ids, input_size=(256, 128),
                            mean=IMAGENET_MEAN, std=IMAGENET_STD,
                            roles=role_mapping_for(labels.CLASS_NAMES, thing_ids),
                            panoptic=PanopticConfig.for_input(thing_ids, (256, 128)))
    exact = resolution_bound(refs, settings, stride=1, steps=10, show_progress=False)
    coarse = resolution_bound(refs, settings, stride=8, steps=30, show_progress=False)
    assert exact["miou"] == 1.0 and exact["drivable_iou"] == 1.0 and exact["lane_iou"] == 1.0
    assert exact["pq"]["stuff"]["pq"] == 1.0
    assert coarse["miou"] < exact["miou"] and coarse["pq"]["things"]["pq"] < exact["pq"]["things"]["pq"]
