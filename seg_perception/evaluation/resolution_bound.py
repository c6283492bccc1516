"""How much of a dataset's ground truth can a head at 1/stride of the input represent at all?

Independent of any trained network: per image, free maps at the head's resolution (class logits and
offsets) are fitted to the ground truth by gradient descent through the same bilinear resize the model
applies; the centre heatmap is the ground-truth heatmap average-pooled to that resolution. The maps are then
scored by the normal evaluation (grouping, mIoU, PQ, drivable and lane IoU). A network whose heads predict
at that stride produces maps of exactly this form, so its scores should not exceed these by much. The fits
minimise the training losses (cross-entropy on the logits, convex in them; L1 on the offsets), not IoU or PQ
directly, so the figures are an estimate of the ceiling, not a proof of it.

This answers "which input size does this data need?" before any training: on our synthetic test split a
stride-8 head at 512x256 cannot separate most distant pedestrians, whatever the training.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from seg_perception.datasets.labels import IGNORE_TRAIN_ID
from seg_perception.datasets.targets import instance_targets
from seg_perception.evaluation.dataset_eval import EvalSettings, evaluate_model
from seg_perception.models.blocks import resize_to
from seg_perception.models.panoptic import ModelOutputs, center_peaks
from seg_perception.training.data import SampleRef

FIT_STEPS = 100
_FIT_LR = 2.0


def _pool(x: torch.Tensor, stride: int) -> torch.Tensor:
    return F.avg_pool2d(x, stride, ceil_mode=True) if stride > 1 else x


def fit_head_maps(train_ids: np.ndarray, instance_ids: np.ndarray | None, *, num_classes: int, stride: int,
                  steps: int = FIT_STEPS, instance_stride: int | None = None) -> ModelOutputs:
    """Best maps at 1/``stride`` (the instance maps at 1/``instance_stride``, by default the same) for one
    image's (H, W) ground truth, returned as deploy outputs at (H, W)."""
    instance_stride = stride if instance_stride is None else instance_stride
    height, width = train_ids.shape
    target = torch.from_numpy(train_ids.astype(np.int64))
    valid = target != IGNORE_TRAIN_ID
    onehot = F.one_hot(torch.where(valid, target, 0), num_classes).permute(2, 0, 1)[None].float()
    onehot = onehot * valid[None, None]
    # Start from the pooled ground truth (already close), then optimise through the resize.
    logits = torch.log(_pool(onehot, stride) + 1e-3).requires_grad_()
    params = [logits]
    heat = offsets = None
    if instance_ids is not None:
        truth = instance_targets(instance_ids)
        heat_target = torch.from_numpy(truth.center)[None, None]
        offset_target = torch.from_numpy(truth.offset)[None]
        offset_weight = torch.from_numpy(truth.offset_weight)[None, None]
        # The heatmap is pooled, not fitted: a squared-error fit through the resize adds ripples whose local
        # maxima become spurious centres (on 20 test images PQ things fell from 48.8 to 29.6 with a fitted one).
        heat = _pool(heat_target, instance_stride)
        pooled_weight = _pool(offset_weight, instance_stride)
        offsets = (_pool(offset_target * offset_weight, instance_stride)
                   / pooled_weight.clamp(min=1e-6)).requires_grad_()
        params.append(offsets)

    optimiser = torch.optim.Adam(params, lr=_FIT_LR)
    with torch.enable_grad():  # evaluate_model runs under no_grad
        for _ in range(steps):
            optimiser.zero_grad()
            loss = F.cross_entropy(resize_to(logits, (height, width)), target[None], ignore_index=IGNORE_TRAIN_ID)
            if offsets is not None:
                error = (resize_to(offsets, (height, width)) - offset_target).abs() * offset_weight
                loss = loss + error.sum() / offset_weight.sum().clamp(min=1.0)
            loss.backward()
            optimiser.step()

    with torch.no_grad():
        semantic_ids = resize_to(logits, (height, width)).argmax(1)
        # Without instance labels there is nothing to fit: no centres, so no instances.
        center = torch.zeros(1, 1, height, width)
        offset = torch.zeros(1, 2, height, width)
        if heat is not None and offsets is not None:  # both or neither
            center = center_peaks(resize_to(heat, (height, width)).clamp(0.0, 1.0))
            offset = resize_to(offsets, (height, width))
    return ModelOutputs(semantic_logits=logits.detach(), semantic_ids=semantic_ids, center=center, offset=offset)


class _FittedOutputs:
    """Stands in for the network in ``evaluate_model``: fits the maps of the samples it is called for, in order."""

    def __init__(self, refs: Sequence[SampleRef], settings: EvalSettings, stride: int, steps: int,
                 instance_stride: int) -> None:
        self.refs, self.settings, self.stride, self.steps = refs, settings, stride, steps
        self.instance_stride = instance_stride
        self.position = 0

    def __call__(self, batch: torch.Tensor) -> ModelOutputs:
        width, height = self.settings.input_size
        fitted = []
        for ref in self.refs[self.position:self.position + batch.shape[0]]:
            sample = ref.load()
            train_ids = cv2.resize(sample["train_ids"], (width, height), interpolation=cv2.INTER_NEAREST)
            instance_ids = sample.get("instance_ids")
            if instance_ids is not None:
                instance_ids = cv2.resize(instance_ids, (width, height), interpolation=cv2.INTER_NEAREST)
            fitted.append(fit_head_maps(train_ids, instance_ids, num_classes=len(self.settings.class_names),
                                        stride=self.stride, steps=self.steps,
                                        instance_stride=self.instance_stride))
        self.position += batch.shape[0]
        return ModelOutputs(*(torch.cat(maps) for maps in zip(*fitted, strict=True)))


def resolution_bound(refs: Sequence[SampleRef], settings: EvalSettings, *, stride: int, steps: int = FIT_STEPS,
                     show_progress: bool = True, instance_stride: int | None = None) -> dict:
    """``evaluate_model``'s metrics for maps fitted at 1/``stride`` of ``settings.input_size`` (the instance
    maps at 1/``instance_stride``, by default the same)."""
    instance_stride = stride if instance_stride is None else instance_stride
    if stride < 1 or instance_stride < 1:
        raise ValueError(f"strides must be >= 1, got {stride} and {instance_stride}")
    fitted = _FittedOutputs(refs, settings, stride, steps, instance_stride)
    return evaluate_model(torch.nn.Identity(), refs, settings, forward=fitted, show_progress=show_progress)
