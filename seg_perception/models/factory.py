"""``build_model``: the one place that wires a backbone to its heads. Builds architecture only (random init)."""

from __future__ import annotations

from typing import Literal, get_args

from torch import nn

from seg_perception.models.bisenetv2 import BiSeNetV2Backbone
from seg_perception.models.ddrnet import DDRNet23SlimBackbone
from seg_perception.models.heads import INSTANCE_STRIDES, InstanceHead, PreActSegHead, SegHead
from seg_perception.models.panoptic import PanopticNet

Arch = Literal["ddrnet23_slim", "bisenetv2"]
ARCHS: tuple[str, ...] = get_args(Arch)

# DDRNet-23-slim's head_planes; its auxiliary head has the same width.
DDRNET_HEAD_CHANNELS = 64
DDRNET_AUX_LOSS_WEIGHT = 0.4  # DDRNet paper
# BiSeNetV2: 1024-wide main head and 128-wide booster heads, as the widely used reimplementations.
BISENET_HEAD_CHANNELS = 1024
BISENET_BOOSTER_CHANNELS = 128
BISENET_BOOSTER_LOSS_WEIGHT = 1.0  # the paper's alpha
INSTANCE_HEAD_CHANNELS = 64


def build_model(*, arch: Arch, num_classes: int, deploy: bool = False, instance_head: bool = True,
                instance_stride: int = 8) -> PanopticNet:
    """A randomly initialised network; load weights with ``seg_perception.models.weights``.

    ``instance_stride`` 4 gives the instance head the backbone's 1/4 features (a card records it); 8 reads
    the /8 features the semantic head reads.

    ``deploy=True`` leaves out the auxiliary heads and returns ``ModelOutputs`` (argmax and sigmoid in the
    graph); ``deploy=False`` returns the training dict with auxiliary logits. See ``panoptic`` for the contract.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    if instance_stride not in INSTANCE_STRIDES:
        raise ValueError(f"instance_stride must be one of {INSTANCE_STRIDES}, got {instance_stride}")
    backbone: DDRNet23SlimBackbone | BiSeNetV2Backbone
    if arch == "ddrnet23_slim":
        backbone = DDRNet23SlimBackbone()
        semantic_head: nn.Module = PreActSegHead(backbone.out_channels, DDRNET_HEAD_CHANNELS, num_classes)
        aux_heads = [PreActSegHead(c, DDRNET_HEAD_CHANNELS, num_classes) for c in backbone.aux_channels]
        aux_weight = DDRNET_AUX_LOSS_WEIGHT
    elif arch == "bisenetv2":
        backbone = BiSeNetV2Backbone()
        semantic_head = SegHead(backbone.out_channels, BISENET_HEAD_CHANNELS, num_classes)
        aux_heads = [SegHead(c, BISENET_BOOSTER_CHANNELS, num_classes) for c in backbone.aux_channels]
        aux_weight = BISENET_BOOSTER_LOSS_WEIGHT
    else:
        raise ValueError(f"unknown arch {arch!r}; choose one of {ARCHS}")
    if deploy:
        aux_heads = []
    return PanopticNet(
        arch=arch,
        num_classes=num_classes,
        backbone=backbone,
        semantic_head=semantic_head,
        aux_heads=aux_heads,
        aux_loss_weights=[aux_weight] * len(aux_heads),
        instance_head=InstanceHead(backbone.out_channels, INSTANCE_HEAD_CHANNELS,
                                   detail_channels=backbone.detail_channels if instance_stride == 4 else 0)
        if instance_head else None,
        deploy=deploy,
    )
