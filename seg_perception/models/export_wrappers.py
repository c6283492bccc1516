"""Wrappers for export: put input normalisation inside the graph so a runtime feeds camera pixels as they are."""

from __future__ import annotations

import torch
from torch import nn

from seg_perception.models.panoptic import ModelOutputs, PanopticNet

# ImageNet statistics on [0, 1] RGB, as the official DDRNet Cityscapes training normalises its input.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class NormalizedModel(nn.Module):
    """Takes (N, 3, H, W) RGB in 0..255 (uint8 or float), normalises it and runs a deploy-mode ``PanopticNet``.

    Returns the model's ``ModelOutputs`` fields as a plain tuple without the absent (None) ones, in the order
    of ``output_names``: exporters accept tensors only.
    """

    def __init__(
        self,
        model: PanopticNet,
        *,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        if not model.is_deploy:
            raise ValueError("NormalizedModel wraps deploy-mode models (build_model(..., deploy=True))")
        self.model = model
        mean_t = torch.tensor(mean).view(1, 3, 1, 1)
        std_t = torch.tensor(std).view(1, 3, 1, 1)
        # (x / 255 - mean) / std folded into one multiply-add; buffers, not weights, so not in the state dict.
        self.register_buffer("scale", 1.0 / (255.0 * std_t), persistent=False)
        self.register_buffer("shift", -mean_t / std_t, persistent=False)
        # Eval mode on the wrapper too: exporters restore the wrapper's mode onto the whole tree afterwards.
        self.eval()

    @property
    def output_names(self) -> tuple[str, ...]:
        names = ["semantic_logits", "semantic_ids"]
        if self.model.instance_head is not None:
            names += ["center", "offset"]
        return tuple(names)

    def forward(self, image: torch.Tensor, previous_logits: torch.Tensor | None = None,
                smoothing: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        # In the buffers' dtype: float32, or float16 when the whole wrapper was made half (the CUDA graph path).
        outputs = self.model(image.to(self.scale.dtype) * self.scale + self.shift, previous_logits, smoothing)
        assert isinstance(outputs, ModelOutputs)
        return tuple(tensor for tensor in outputs if tensor is not None)
