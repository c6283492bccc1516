"""Loading a checkpoint folder: model card first (classes, input size, weights hash), then strict weights."""

from __future__ import annotations

from pathlib import Path

import torch

from seg_perception.models.card import ModelCard, ModelCardError, load_card, weights_path
from seg_perception.models.factory import build_model
from seg_perception.models.panoptic import PanopticNet
from seg_perception.models.weights import WeightsError, load_weights


def load_checkpoint(path: Path | str, *, device: torch.device | str = "cpu") -> tuple[PanopticNet, ModelCard]:
    """A deploy-mode model and its card from a checkpoint folder (or its model_card.json).

    Raises ModelCardError when the card is missing, malformed or its weights are not the card's,
    and WeightsError when the weights do not fit the architecture and class count the card declares.
    """
    card = load_card(path)
    weights = weights_path(path, card)
    model = build_model(arch=card.arch, num_classes=card.num_classes, deploy=True,  # type: ignore[arg-type]
                        instance_head=card.instance_head)
    try:
        load_weights(model, weights)
    except WeightsError as error:
        raise WeightsError(f"{error} (model card: {card.summary()})") from error
    return model.to(device).eval(), card


__all__ = ["ModelCardError", "WeightsError", "load_checkpoint"]
