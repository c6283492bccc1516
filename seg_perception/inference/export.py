"""`seg-perception export`: one ONNX graph from camera pixels to network outputs.

Inputs: ``images`` (N, H, W, 3) uint8 RGB at the model card's input size, N dynamic (one image per
camera); ``previous_logits`` (N, C, h, w) float, the ``semantic_logits`` this camera produced last time
(zeros when there is none), and ``smoothing`` (N, 2) float, per image the exponential weight of the
past and the label prior (see ``PanopticNet``; zeros = no smoothing, bit-exact). The graph holds the
layout change, the normalisation, the deploy-mode network (no auxiliary heads), the temporal smoothing
at head resolution, the argmax and the centre sigmoid; outputs are ``semantic_logits`` (N, C, h, w)
(the smoothed state), ``semantic_ids`` (N, H, W) uint8, ``center`` (N, 1, H, W) in [0, 1] and
``offset`` (N, 2, H, W). The model card travels in the file's metadata (``seg_perception.model_card``),
so a runtime can check what it was given.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import replace
from pathlib import Path

import onnx
import torch
from torch import nn

from seg_perception.models.card import card_to_dict
from seg_perception.models.checkpoint import load_checkpoint
from seg_perception.models.export_wrappers import NormalizedModel

INPUT_NAME = "images"
STATE_INPUT_NAME = "previous_logits"
SMOOTHING_INPUT_NAME = "smoothing"
SMOOTHING_TERMS = 2  # exponential weight, label prior
CARD_METADATA_KEY = "seg_perception.model_card"
MIN_OPSET = 17


class CameraPixelsModel(nn.Module):
    """NHWC uint8 camera pixels -> the deploy outputs (cameras hand over HWC buffers; no transpose on the CPU)."""

    def __init__(self, normalized: NormalizedModel) -> None:
        super().__init__()
        self.normalized = normalized
        self.eval()

    @property
    def output_names(self) -> tuple[str, ...]:
        return self.normalized.output_names

    def forward(self, images: torch.Tensor, previous_logits: torch.Tensor,
                smoothing: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # Cast first: TensorRT accepts uint8 only at the graph boundary, straight into a Cast.
        return self.normalized(images.float().permute(0, 3, 1, 2), previous_logits, smoothing)


def state_shape(model: nn.Module, input_size: tuple[int, int]) -> tuple[int, int, int]:
    """(C, h, w) of the smoothing state (the head-resolution logits) at ``input_size``, by one dry run."""
    width, height = input_size
    parameter = next(model.parameters())
    with torch.no_grad():
        logits = model(torch.zeros(1, 3, height, width, device=parameter.device)).semantic_logits
    return tuple(logits.shape[1:])


def export_onnx(checkpoint: Path | str, out: Path | str, *, opset: int = MIN_OPSET,
                input_size: tuple[int, int] | None = None) -> Path:
    """Export a checkpoint folder to ``out``; returns the path. Checked with onnx.checker.

    ``input_size`` (width, height) overrides the card's: the network is fully convolutional, so the same
    weights run at other sizes (the benchmark uses this; accuracy is only known at the card's size).
    """
    if opset < MIN_OPSET:
        raise ValueError(f"opset {opset} is below {MIN_OPSET}")
    model, card = load_checkpoint(checkpoint)
    if input_size is not None and input_size != card.input_size:
        card = replace(card, input_width=input_size[0], input_height=input_size[1],
                       metrics={"note": f"exported at {input_size[0]}x{input_size[1]}; metrics were measured at "
                                        f"{card.input_width}x{card.input_height}"})
    graph = CameraPixelsModel(NormalizedModel(model, mean=card.mean, std=card.std))
    example = (torch.zeros(1, card.input_height, card.input_width, 3, dtype=torch.uint8),
               torch.zeros(1, *state_shape(model, card.input_size)), torch.zeros(1, SMOOTHING_TERMS))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    names = list(graph.output_names)
    inputs = [INPUT_NAME, STATE_INPUT_NAME, SMOOTHING_INPUT_NAME]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
        torch.onnx.export(graph, example, str(out), dynamo=False, opset_version=opset, input_names=inputs,
                          output_names=names, dynamic_axes={name: {0: "batch"} for name in [*inputs, *names]})
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto)
    entry = proto.metadata_props.add()
    entry.key, entry.value = CARD_METADATA_KEY, json.dumps(card_to_dict(card))
    onnx.save(proto, str(out))
    return out
