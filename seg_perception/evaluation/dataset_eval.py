"""Evaluate a model on a labelled folder dataset: mIoU, PQ, drivable-area IoU, lane IoU and F-score.

Predictions are made at the model's input size (as the node does) and compared at the label
resolution (nearest-neighbour upsampling of class and instance maps), as the Cityscapes protocol asks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from seg_perception.evaluation.scoring import LabelledScores, sample_labels
from seg_perception.inference.preprocess import normalise, resize_batch
from seg_perception.postprocess.panoptic import PanopticConfig, group_batch
from seg_perception.postprocess.roles import RoleMapping, role_masks
from seg_perception.training.data import SampleRef

OPTIONAL_METRICS = ("pq", "pq_per_class", "drivable_iou", "lane_iou", "lane_fscore")


@dataclass(frozen=True)
class EvalSettings:
    class_names: tuple[str, ...]
    thing_ids: tuple[int, ...]
    input_size: tuple[int, int]  # (width, height)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    roles: RoleMapping
    panoptic: PanopticConfig


@torch.no_grad()
def evaluate_model(
    model: torch.nn.Module, refs: Sequence[SampleRef], settings: EvalSettings, *, device: torch.device | str = "cpu",
    batch_size: int = 4, show_progress: bool = True,
    forward: Callable[[torch.Tensor], object] | None = None,
) -> dict:
    """Metrics over ``refs`` for a deploy-mode model (or any ``forward`` returning ModelOutputs)."""
    forward = forward or model
    scores = LabelledScores(class_names=settings.class_names, thing_ids=settings.thing_ids)
    for start in tqdm(range(0, len(refs), batch_size), desc="evaluate", unit="batch", disable=not show_progress):
        samples = [ref.load() for ref in refs[start:start + batch_size]]
        batch = normalise(resize_batch([s["image"] for s in samples], settings.input_size),
                          settings.mean, settings.std, device)
        outputs = forward(batch)
        frames = group_batch(outputs.semantic_ids, outputs.center, outputs.offset, settings.panoptic)
        for sample, frame in zip(samples, frames, strict=True):
            masks = {role: mask[0].cpu().numpy()
                     for role, mask in role_masks(frame.semantic[None], settings.roles).items()}
            scores.score(frame.semantic.cpu().numpy().astype(np.uint8), frame.instances.cpu().numpy(), masks,
                         sample_labels(sample))

    # Metrics the labels did not allow are left out here (the bag report keeps them as null).
    summary = scores.summary()
    return {
        "images": len(refs),
        **{key: value for key, value in summary.items() if value is not None or key not in OPTIONAL_METRICS},
        "images_annotated": {kind: scores.annotated[kind] for kind in ("instances", "drivable", "lane")},
    }
