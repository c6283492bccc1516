"""Evaluate a model on a labelled folder dataset: mIoU, PQ, drivable-area IoU, lane IoU and F-score.

Predictions are made at the model's input size (as the node does) and compared at the label
resolution (nearest-neighbour upsampling of class and instance maps), as the Cityscapes protocol asks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from tqdm import tqdm

from seg_perception.evaluation.lanes import BinaryIoU, LaneFScore
from seg_perception.evaluation.panoptic import PanopticQuality, cityscapes_instance_ids_to_panoptic
from seg_perception.evaluation.semantic import ConfusionMatrix
from seg_perception.evaluation.summary import lane_fscore_summary, metric_value, pq_summary, semantic_summary
from seg_perception.inference.preprocess import normalise, resize_batch
from seg_perception.postprocess.panoptic import PanopticConfig, group_batch
from seg_perception.postprocess.roles import RoleMapping, role_masks
from seg_perception.training.data import SampleRef


@dataclass(frozen=True)
class EvalSettings:
    class_names: tuple[str, ...]
    thing_ids: tuple[int, ...]
    input_size: tuple[int, int]  # (width, height)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    roles: RoleMapping
    panoptic: PanopticConfig


def _resize_nearest(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if array.shape == shape:
        return array
    return cv2.resize(array, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)


@torch.no_grad()
def evaluate_model(
    model: torch.nn.Module, refs: Sequence[SampleRef], settings: EvalSettings, *, device: torch.device | str = "cpu",
    batch_size: int = 4, show_progress: bool = True,
    forward: Callable[[torch.Tensor], object] | None = None,
) -> dict:
    """Metrics over ``refs`` for a deploy-mode model (or any ``forward`` returning ModelOutputs)."""
    forward = forward or model
    num_classes = len(settings.class_names)
    confusion = ConfusionMatrix(num_classes, class_names=settings.class_names)
    panoptic = PanopticQuality(num_classes, settings.thing_ids, class_names=settings.class_names)
    drivable_iou, lane_iou, lane_f = BinaryIoU(), BinaryIoU(), LaneFScore()
    annotated = {"instances": 0, "drivable": 0, "lane": 0}

    for start in tqdm(range(0, len(refs), batch_size), desc="evaluate", unit="batch", disable=not show_progress):
        samples = [ref.load() for ref in refs[start:start + batch_size]]
        batch = normalise(resize_batch([s["image"] for s in samples], settings.input_size),
                          settings.mean, settings.std, device)
        outputs = forward(batch)
        frames = group_batch(outputs.semantic_ids, outputs.center, outputs.offset, settings.panoptic)
        for sample, frame in zip(samples, frames, strict=True):
            gt_sem = sample["train_ids"]
            shape = gt_sem.shape
            pred_sem = _resize_nearest(frame.semantic.cpu().numpy().astype(np.uint8), shape)
            pred_inst = _resize_nearest(frame.instances.cpu().numpy(), shape)
            confusion.update(pred_sem, gt_sem)
            if "instance_ids" in sample:
                gt = cityscapes_instance_ids_to_panoptic(sample["instance_ids"], sample.get("lane"))
                panoptic.update(pred_sem, pred_inst, gt.semantic, gt.instance, gt.crowd)
                annotated["instances"] += 1
            masks = {k: v[0].cpu().numpy() for k, v in role_masks(torch.from_numpy(pred_sem)[None],
                                                                    settings.roles).items()}
            if "drivable" in sample and "drivable" in masks:
                drivable_iou.update(masks["drivable"], sample["drivable"])
                annotated["drivable"] += 1
            if "lane" in sample and "lane" in masks:
                lane_iou.update(masks["lane"], sample["lane"])
                lane_f.update(masks["lane"], sample["lane"])
                annotated["lane"] += 1

    scores = confusion.compute()
    pq = panoptic.compute() if annotated["instances"] else None
    result: dict = {
        "images": len(refs),
        **semantic_summary(scores, settings.class_names),
        "images_annotated": annotated,
    }
    if pq is not None:
        result["pq"] = pq_summary(pq)
        # Per class, with the matched / unmatched segment counts that explain a low RQ.
        result["pq_per_class"] = {
            c["name"]: {"pq": metric_value(c["pq"]), "sq": metric_value(c["sq"]), "rq": metric_value(c["rq"]),
                        "tp": c["tp"], "fp": c["fp"], "fn": c["fn"]}
            for c in pq["per_class"].values() if c["tp"] + c["fp"] + c["fn"] > 0}
    if annotated["drivable"]:
        result["drivable_iou"] = metric_value(drivable_iou.compute().iou)
    if annotated["lane"]:
        result["lane_iou"] = metric_value(lane_iou.compute().iou)
        result["lane_fscore"] = lane_fscore_summary(lane_f.compute())
    return result
