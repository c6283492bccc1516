"""``PanopticNet``: a backbone with a semantic head, an optional instance head and training-only auxiliary heads.

Output contract (H, W = input size; every output is resized bilinearly to it):

* Training mode (``deploy=False``) returns ``TrainingOutputs``, a dict:
    ``"semantic"``: (N, C, H, W) float class logits;
    ``"aux"``: list of (N, C, H, W) float logits of the auxiliary heads (the papers' deep supervision);
    ``"center"``: (N, 1, H, W) float centre-heatmap *logits* (apply a sigmoid for [0, 1]);
    ``"offset"``: (N, 2, H, W) float offsets, channel 0 = dy, channel 1 = dx, in input pixels, pointing from
    each pixel to the centre of its instance (same convention as ``datasets.targets.instance_targets``).
  ``"center"`` and ``"offset"`` are absent when the model has no instance head.
* Deploy mode (``deploy=True``) returns ``ModelOutputs`` (a NamedTuple, exports as 4 outputs):
    ``semantic_logits`` (N, C, h, w) float at the semantic head's own resolution (1/8 of the input for
    DDRNet), after temporal smoothing: the state a caller feeds back as ``previous_logits`` next frame;
    ``semantic_ids`` (N, H, W) uint8, the argmax of those logits resized to the input, computed in the graph
    (a card has at most 256 classes; a quarter of int32's bytes, an eighth of int64's, to move and keep);
    ``center`` (N, 1, H, W) float in [0, 1] (sigmoid applied), non-maxima of each CENTER_NMS_KERNEL
    neighbourhood set to 0 (centre NMS belongs in the graph: a 7x7 max-pool at full resolution took 25 of
    the 31 ms of CPU grouping at 1024x512), or None without an instance head;
    ``offset`` (N, 2, H, W) float as in training, or None without an instance head.
  ``semantic_logits``, ``center`` and ``offset`` are float32 also when the network runs in float16: the
  state is blended and fed back in float32, and the grouping's pixel coordinates need float32.
  Deploy models carry no auxiliary heads (neither parameters nor outputs).

Inputs are (N, 3, H, W) float RGB, already normalised with the ImageNet mean/std (see ``NormalizedModel``).

Temporal smoothing lives in the deploy graph, at the head's low resolution where it costs next to nothing.
``smoothing`` is (N, 2) per image: an exponential weight w in [0, 1) and a label prior b >= 0 (logits):
``logits = (1 - w) * current + w * previous + b * onehot(argmax(previous))``. The prior is a hysteresis: a
pixel keeps last frame's class unless the new evidence beats it by b, which steadies flickering pixels
without washing out confident new detections (an exponential average alone cost thin classes several
mIoU points in our measurements; docs/BENCHMARKS.md). w = b = 0 (or no ``previous_logits``) gives exactly
the unsmoothed result; the caller sets both to 0 after a reset (bag loop, gap, new image size).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, NotRequired, Protocol, TypedDict

import torch
from torch import nn

from seg_perception.models.blocks import resize_to
from seg_perception.models.heads import InstanceHead


class BackboneFeatures(NamedTuple):
    shared: torch.Tensor  # what the semantic and instance heads read
    aux: list[torch.Tensor]  # inputs of the auxiliary heads, in the order of ``PanopticNet.aux_heads``
    detail: torch.Tensor | None = None  # 1/4-resolution features, for an instance head at stride 4


class Backbone(Protocol):
    out_channels: int
    aux_channels: tuple[int, ...]
    detail_channels: int  # channels of ``BackboneFeatures.detail``

    def __call__(self, image: torch.Tensor) -> BackboneFeatures: ...


class ModelOutputs(NamedTuple):
    """Deploy-mode outputs; see the module docstring for the exact contract."""

    semantic_logits: torch.Tensor
    semantic_ids: torch.Tensor
    center: torch.Tensor | None
    offset: torch.Tensor | None


class TrainingOutputs(TypedDict):
    semantic: torch.Tensor
    aux: list[torch.Tensor]
    center: NotRequired[torch.Tensor]
    offset: NotRequired[torch.Tensor]


class PanopticNet(nn.Module):
    def __init__(
        self,
        *,
        arch: str,
        num_classes: int,
        backbone: nn.Module,
        semantic_head: nn.Module,
        aux_heads: Sequence[nn.Module],
        aux_loss_weights: Sequence[float],
        instance_head: InstanceHead | None,
        deploy: bool,
    ) -> None:
        super().__init__()
        if deploy and aux_heads:
            raise ValueError("a deploy-mode model carries no auxiliary heads")
        if len(aux_loss_weights) != len(aux_heads):
            raise ValueError(f"{len(aux_heads)} auxiliary heads but {len(aux_loss_weights)} loss weights")
        self.arch = arch
        self.num_classes = num_classes
        self.backbone = backbone
        self.semantic_head = semantic_head
        self.aux_heads = nn.ModuleList(aux_heads)
        # The papers' weights of the auxiliary losses relative to the main one, in ``aux_heads`` order.
        self.aux_loss_weights = tuple(aux_loss_weights)
        self.instance_head = instance_head
        self.is_deploy = deploy
        self.apply(_init_weights)
        if instance_head is not None:
            instance_head.init_center_prior()
        if deploy:
            self.eval()  # batch statistics make no sense at inference; train() remains possible for fine-tuning

    def to_deploy(self) -> PanopticNet:
        """Switch to deploy mode in place, for good: drops the auxiliary heads and sets eval mode."""
        self.aux_heads = nn.ModuleList()
        self.aux_loss_weights = ()
        self.is_deploy = True
        return self.eval()

    def forward(self, image: torch.Tensor, previous_logits: torch.Tensor | None = None,
                smoothing: torch.Tensor | None = None) -> TrainingOutputs | ModelOutputs:
        size = image.shape[-2:]
        features = self.backbone(image)
        semantic_small = self.semantic_head(features.shared)
        if previous_logits is not None:
            if not self.is_deploy or smoothing is None:
                raise ValueError("previous_logits is for deploy mode and needs smoothing weights, one per image")
            semantic_small = smooth_logits(semantic_small.float(), previous_logits.float(), smoothing.float())
        semantic = resize_to(semantic_small, size)
        center = offset = None
        if self.instance_head is not None:
            center_logits, offset_small = self.instance_head(features.shared, features.detail)
            # Offsets are learnt directly in input pixels (losses compare them after this resize); no rescaling.
            center, offset = resize_to(center_logits, size), resize_to(offset_small, size)

        if self.is_deploy:
            return ModelOutputs(
                semantic_logits=semantic_small.float(),
                semantic_ids=semantic.argmax(dim=1).to(torch.uint8),
                center=None if center is None else center_peaks(center.float().sigmoid()),
                offset=None if offset is None else offset.float(),
            )

        aux = [resize_to(head(x), size) for head, x in zip(self.aux_heads, features.aux, strict=True)]
        outputs = TrainingOutputs(semantic=semantic, aux=aux)
        if center is not None and offset is not None:
            outputs["center"] = center
            outputs["offset"] = offset
        return outputs


CENTER_NMS_KERNEL = 7  # pixels; PanopticConfig.nms_kernel's default, so grouping can skip its own pooling


def center_peaks(heatmap: torch.Tensor, kernel: int = CENTER_NMS_KERNEL) -> torch.Tensor:
    """The heatmap where it is the maximum of its kernel x kernel neighbourhood, else 0."""
    pooled = nn.functional.max_pool2d(heatmap, kernel_size=kernel, stride=1, padding=kernel // 2)
    return heatmap * (heatmap == pooled).to(heatmap.dtype)


def smooth_logits(current: torch.Tensor, previous: torch.Tensor, smoothing: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) logits blended with the previous frame's; ``smoothing`` (N, 2) = (weight, label prior)."""
    weight, prior = smoothing[:, 0].view(-1, 1, 1, 1), smoothing[:, 1].view(-1, 1, 1, 1)
    # One-hot of the previous argmax by comparison with the max (ONNX- and TensorRT-friendly); an all-zero
    # state marks every class, a constant that leaves the argmax alone.
    previous_label = (previous == previous.amax(dim=1, keepdim=True)).to(current.dtype)
    return (1.0 - weight) * current + weight * previous + prior * previous_label


def _init_weights(module: nn.Module) -> None:
    # He initialisation for ReLU networks (as DDRNet's reference code); BN starts as the identity.
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
