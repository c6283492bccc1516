"""Building blocks shared by the architectures: conv+BN(+ReLU), pre-activation convs, ResNet blocks, stages."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def resize_to(x: torch.Tensor, size: torch.Size | tuple[int, int]) -> torch.Tensor:
    """Bilinear resize to an exact (H, W); sizes, not scale factors, so odd inputs line up."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ConvBN(nn.Module):
    """Conv2d -> BatchNorm2d -> optional ReLU; padding keeps 'same' size for stride 1 and ceil(n/s) otherwise."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        relu: bool = True,
        conv_bias: bool = False,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            groups=groups,
            bias=conv_bias,
        )
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return F.relu(x) if self.relu else x


class BNReLUConv(nn.Module):
    """Pre-activation conv (BN -> ReLU -> Conv2d), as DDRNet's DAPPM and segmentation head use."""

    def __init__(self, in_channels: int, out_channels: int, *, kernel_size: int, conv_bias: bool = False) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(in_channels)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=conv_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.relu(self.bn(x)))


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs). ``relu_out=False`` leaves the sum un-activated for a later fusion."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, *, stride: int = 1, relu_out: bool = True) -> None:
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = ConvBN(in_channels, channels, stride=stride)
        self.conv2 = ConvBN(channels, out_channels, relu=False)
        self.shortcut = _projection(in_channels, out_channels, stride=stride)
        self.relu_out = relu_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.conv2(self.conv1(x)) + identity
        return F.relu(out) if self.relu_out else out


class Bottleneck(nn.Module):
    """ResNet bottleneck (1x1 -> 3x3 -> 1x1) with DDRNet's expansion of 2 (not ResNet's 4)."""

    expansion = 2

    def __init__(self, in_channels: int, channels: int, *, stride: int = 1, relu_out: bool = False) -> None:
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = ConvBN(in_channels, channels, kernel_size=1)
        self.conv2 = ConvBN(channels, channels, stride=stride)
        self.conv3 = ConvBN(channels, out_channels, kernel_size=1, relu=False)
        self.shortcut = _projection(in_channels, out_channels, stride=stride)
        self.relu_out = relu_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.conv3(self.conv2(self.conv1(x))) + identity
        return F.relu(out) if self.relu_out else out


def _projection(in_channels: int, out_channels: int, *, stride: int) -> ConvBN | None:
    """1x1 strided conv+BN on the shortcut when the residual changes shape, else identity (None)."""
    if stride == 1 and in_channels == out_channels:
        return None
    return ConvBN(in_channels, out_channels, kernel_size=1, stride=stride, relu=False)


def make_stage(
    block: type[BasicBlock] | type[Bottleneck],
    *,
    in_channels: int,
    channels: int,
    num_blocks: int,
    stride: int = 1,
) -> nn.Sequential:
    """``num_blocks`` residual blocks, the first one strided.

    As in DDRNet, the stage output is not ReLU-activated (the last block skips it): the caller activates it
    where it is consumed, because the un-activated value is what the bilateral fusions add to.
    """
    blocks = []
    for index in range(num_blocks):
        is_last = index == num_blocks - 1
        blocks.append(
            block(
                in_channels if index == 0 else channels * block.expansion,
                channels,
                stride=stride if index == 0 else 1,
                relu_out=not is_last,
            )
        )
    return nn.Sequential(*blocks)
