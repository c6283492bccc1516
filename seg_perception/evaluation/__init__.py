"""Evaluation metrics: semantic (mIoU ...), panoptic (PQ/SQ/RQ, Cityscapes rules), drivable area and lanes.

* ``ConfusionMatrix`` -> ``SemanticScores``: per-class IoU, mIoU (Cityscapes averaging and "classes present in
  GT"), pixel accuracy, mean accuracy, FWIoU. Cross-checked against ``cityscapesscripts``' pixel-level evaluator.
* ``PanopticQuality``: PQ/SQ/RQ for all/things/stuff with IoU > 0.5 matching, VOID and crowd handling as in
  ``cityscapesscripts``' panoptic evaluator (cross-checked against it), plus format conversions.
* ``BinaryIoU``/``drivable_area_iou``/``lane_iou`` and ``LaneFScore``/``lane_fscore`` (BDD100K lane F at 1/2/5 px).
* ``YolopSegMetrics``: the YOLOP-family protocol (2-class drivable mIoU, lane accuracy and IoU).

All scores are fractions in [0, 1]. Inputs may be numpy arrays or torch tensors.
"""

from seg_perception.evaluation.lanes import (
    BDD100K_LANE_THRESHOLDS,
    BinaryIoU,
    BinaryScores,
    LaneF,
    LaneFScore,
    binary_iou,
    drivable_area_iou,
    lane_fscore,
    lane_iou,
    mask_boundary,
)
from seg_perception.evaluation.panoptic import (
    PanopticLabels,
    PanopticQuality,
    Segments,
    cityscapes_instance_ids_to_panoptic,
    extract_segments,
    id_map_to_rgb,
    match_segments,
    panoptic_to_cityscapes_instance_ids,
    panoptic_to_coco,
    rgb_to_id_map,
)
from seg_perception.evaluation.semantic import ConfusionMatrix, SemanticScores
from seg_perception.evaluation.yolop import YolopSegMetrics, yolop_batch_metrics

__all__ = [
    "BDD100K_LANE_THRESHOLDS",
    "BinaryIoU",
    "BinaryScores",
    "ConfusionMatrix",
    "LaneF",
    "LaneFScore",
    "PanopticLabels",
    "PanopticQuality",
    "Segments",
    "SemanticScores",
    "YolopSegMetrics",
    "binary_iou",
    "cityscapes_instance_ids_to_panoptic",
    "drivable_area_iou",
    "extract_segments",
    "id_map_to_rgb",
    "lane_fscore",
    "lane_iou",
    "mask_boundary",
    "match_segments",
    "panoptic_to_cityscapes_instance_ids",
    "panoptic_to_coco",
    "rgb_to_id_map",
    "yolop_batch_metrics",
]
