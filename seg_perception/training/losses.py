"""Losses: OHEM cross-entropy (+ optional Dice on the thin lane class), centre MSE, offset L1, aux heads."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from seg_perception.datasets.labels import IGNORE_TRAIN_ID


def ohem_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, *, threshold: float = 0.7, min_kept: int = 100_000,
    ignore_index: int = IGNORE_TRAIN_ID,
) -> torch.Tensor:
    """Cross-entropy over the hard pixels: those whose true-class probability is below ``threshold``,
    and at least the ``min_kept`` hardest ones (as in the DDRNet/BiSeNet training recipes).

    The cutoff is max(threshold, the min_kept-th smallest true-class probability). That order statistic is
    only needed when fewer than ``min_kept`` pixels are below the threshold, and then it comes from a top-k
    of the smallest; a selection over all pixels (``kthvalue``) was half of a GPU training step. The mean
    is a masked sum, so the backward pass is a multiply, not an index_put.
    """
    pixel_loss = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="none").flatten()
    valid = target.flatten() != ignore_index
    num_valid = int(valid.sum())
    if num_valid == 0:
        return logits.sum() * 0.0
    with torch.no_grad():
        # p(true class) = exp(-CE); ignored pixels get 2, above every probability, so never among the hardest
        true_prob = torch.where(valid, torch.exp(-pixel_loss.detach()), 2.0)
        kept = min(min_kept, num_valid)
        cutoff = torch.tensor(threshold, dtype=true_prob.dtype, device=true_prob.device)
        if kept > 0 and int((true_prob <= threshold).sum()) < kept:  # the threshold alone keeps too few
            cutoff = true_prob.topk(kept, largest=False).values.max()
        hard = (true_prob <= cutoff) & valid
        if not bool(hard.any()):
            hard = valid
    weight = hard.to(pixel_loss.dtype)
    return (pixel_loss * weight).sum() / weight.sum()


def dice_loss(logits: torch.Tensor, target: torch.Tensor, class_id: int,
              ignore_index: int = IGNORE_TRAIN_ID) -> torch.Tensor:
    """Soft Dice on one class: thin structures (lane markings) get a gradient CE's pixel average hides."""
    valid = (target != ignore_index).float()
    prob = logits.softmax(1)[:, class_id] * valid
    truth = (target == class_id).float() * valid
    intersection = (prob * truth).sum()
    return 1.0 - (2 * intersection + 1.0) / (prob.sum() + truth.sum() + 1.0)


@dataclass(frozen=True)
class LossWeights:
    semantic: float = 1.0
    aux: tuple[float, ...] = ()  # one weight per auxiliary head, the papers' (PanopticNet.aux_loss_weights)
    center: float = 200.0  # Panoptic-DeepLab
    offset: float = 0.01  # Panoptic-DeepLab
    lane_dice: float = 0.0  # 0 disables the Dice term
    lane_class: int = 19
    ohem_threshold: float = 0.7
    ohem_min_kept: int = 100_000


def panoptic_loss(outputs: dict, batch: dict[str, torch.Tensor], weights: LossWeights) -> dict[str, torch.Tensor]:
    """Terms and their weighted total; ``outputs`` is the training-mode model output dict."""
    semantic_target = batch["semantic"]
    terms: dict[str, torch.Tensor] = {}

    def seg(logits: torch.Tensor) -> torch.Tensor:
        return ohem_cross_entropy(logits, semantic_target, threshold=weights.ohem_threshold,
                                  min_kept=weights.ohem_min_kept)

    terms["semantic"] = weights.semantic * seg(outputs["semantic"])
    aux = outputs.get("aux") or []
    if aux:
        if len(aux) != len(weights.aux):
            raise ValueError(f"{len(aux)} auxiliary outputs but {len(weights.aux)} auxiliary loss weights")
        terms["aux"] = sum(w * seg(a) for w, a in zip(weights.aux, aux, strict=True))
    if weights.lane_dice > 0:
        terms["lane_dice"] = weights.lane_dice * dice_loss(outputs["semantic"], semantic_target, weights.lane_class)
    if "center" in outputs:
        center_weight = batch["center_weight"]
        # The model outputs centre logits; deploy applies the sigmoid, so the loss sees the same [0, 1] values.
        squared = (outputs["center"].sigmoid() - batch["center"]) ** 2 * center_weight
        terms["center"] = weights.center * squared.sum() / center_weight.sum().clamp(min=1.0)
        offset_weight = batch["offset_weight"]
        absolute = (outputs["offset"] - batch["offset"]).abs() * offset_weight
        terms["offset"] = weights.offset * absolute.sum() / offset_weight.sum().clamp(min=1.0)
    terms["total"] = sum(terms.values())
    return terms
