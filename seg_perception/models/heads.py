"""Prediction heads: semantic segmentation heads and the proposal-free instance head.

All heads predict at the feature resolution; ``PanopticNet`` resizes their outputs to the input size.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from seg_perception.models.blocks import BNReLUConv, ConvBN, resize_to

INSTANCE_STRIDES = (4, 8)
_DETAIL_PROJECTION = 32  # channels the 1/4 features are projected to (Panoptic-DeepLab's instance decoder)


class PreActSegHead(nn.Module):
    """DDRNet's segmentation head: BN-ReLU-3x3 conv, then BN-ReLU-1x1 conv to class logits.

    Pre-activation because DDRNet's fused features are an un-activated sum of both branches.
    """

    def __init__(self, in_channels: int, mid_channels: int, num_classes: int) -> None:
        super().__init__()
        self.refine = BNReLUConv(in_channels, mid_channels, kernel_size=3)
        self.classify = BNReLUConv(mid_channels, num_classes, kernel_size=1, conv_bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.refine(x))


class SegHead(nn.Module):
    """BiSeNetV2's segmentation head: 3x3 conv-BN-ReLU, then a 1x1 conv to class logits."""

    def __init__(self, in_channels: int, mid_channels: int, num_classes: int) -> None:
        super().__init__()
        self.refine = ConvBN(in_channels, mid_channels)
        self.classify = nn.Conv2d(mid_channels, num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.refine(x))


class InstanceHead(nn.Module):
    """Panoptic-DeepLab style, class-agnostic: a centre heatmap (1 channel) and offsets to the centre (2 channels).

    Separate centre and offset branches, as Panoptic-DeepLab's separate prediction heads.
    Outputs are raw (centre logits, offsets in pixels); the caller applies the sigmoid and resizing.
    With ``detail_channels`` the head predicts at stride 4: the /8 features are upsampled and fused with
    projected 1/4 backbone features first (Panoptic-DeepLab's instance decoder), so instances a few pixels
    wide, which a stride-8 map cannot separate, get their own centres.
    """

    def __init__(self, in_channels: int, mid_channels: int = 64, *, detail_channels: int = 0) -> None:
        super().__init__()
        self.output_stride = 4 if detail_channels else 8
        branch_channels = in_channels
        if detail_channels:
            self.detail_projection = ConvBN(detail_channels, _DETAIL_PROJECTION, kernel_size=1)
            self.decoder = ConvBN(in_channels + _DETAIL_PROJECTION, mid_channels)
            branch_channels = mid_channels
        self.center = nn.Sequential(ConvBN(branch_channels, mid_channels), nn.Conv2d(mid_channels, 1, kernel_size=1))
        self.offset = nn.Sequential(ConvBN(branch_channels, mid_channels), nn.Conv2d(mid_channels, 2, kernel_size=1))

    def init_center_prior(self, prior: float = 0.01) -> None:
        """Start the heatmap near ``prior`` everywhere instead of 0.5: the target is almost all zero, and a 0.5 start
        makes the centre loss dominate the first steps of training (the focal-loss prior trick)."""
        nn.init.constant_(self.center[-1].bias, -math.log((1.0 - prior) / prior))

    def forward(self, x: torch.Tensor, detail: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.output_stride == 4:
            if detail is None:
                raise ValueError("a stride-4 instance head needs the backbone's 1/4 features")
            x = self.decoder(torch.cat([resize_to(x, detail.shape[-2:]), self.detail_projection(detail)], 1))
        return self.center(x), self.offset(x)
