"""Loading a checkpoint folder: model card first (classes, input size, weights hash), then strict weights."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from seg_perception.models.card import ModelCard, ModelCardError, check_weights_sha256, load_card, locate_weights
from seg_perception.models.factory import build_model
from seg_perception.models.panoptic import PanopticNet
from seg_perception.models.weights import WeightsError, load_state_dict_strict, state_dict_from_bytes


def load_checkpoint(path: Path | str, *, device: torch.device | str = "cpu") -> tuple[PanopticNet, ModelCard]:
    """A deploy-mode model and its card from a checkpoint folder (or its model_card.json).

    Raises ModelCardError when the card is missing, malformed, names weights outside its folder or its
    weights are not the card's, and WeightsError when the weights are not safetensors or do not fit the
    architecture and class count the card declares.
    """
    card = load_card(path)
    weights = locate_weights(path, card)
    try:
        data = weights.read_bytes()
    except OSError as error:
        raise ModelCardError(f"{weights}: weights not readable: {error.strerror or error}") from error
    # The bytes that were hashed are the bytes that are loaded: the file cannot change in between.
    check_weights_sha256(path, weights, hashlib.sha256(data).hexdigest(), card)
    model = build_model(arch=card.arch, num_classes=card.num_classes, deploy=True,  # type: ignore[arg-type]
                        instance_head=card.instance_head, instance_stride=card.instance_stride)
    try:
        load_state_dict_strict(model, state_dict_from_bytes(data, source=weights), source=str(weights))
    except WeightsError as error:
        raise WeightsError(f"{error} (model card: {card.summary()})") from error
    return model.to(device).eval(), card


__all__ = ["ModelCardError", "WeightsError", "load_checkpoint"]
