"""DDRNet-23-slim backbone (Hong et al. 2021, "Deep Dual-resolution Networks for Real-time and Accurate
Semantic Segmentation of Road Scenes"), channel plan of the authors' ``DualResNet`` with planes=32,
spp_planes=128, head_planes=64.

Layout (strides relative to the input):

    stem (2 strided 3x3 convs, /4) -> layer1 (32, /4) -> layer2 (64, /8)
    low-resolution branch:  low_layer3 (128, /16) -> low_layer4 (256, /32) -> low_layer5 (bottleneck, 512, /64) -> DAPPM
    high-resolution branch: high_layer3 (64, /8)  -> high_layer4 (64, /8)  -> high_layer5 (bottleneck, 128, /8)
    bilateral fusions after stage 3 and stage 4; the DAPPM context (128) is upsampled and added to the /8 branch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seg_perception.models.blocks import BasicBlock, BNReLUConv, Bottleneck, ConvBN, make_stage, resize_to
from seg_perception.models.panoptic import BackboneFeatures


class BilateralFusion(nn.Module):
    """Exchange between the branches: low->high by 1x1 conv+BN then bilinear upsampling, high->low by
    strided 3x3 conv+BN (one per factor of 2, ReLU between). Both read the pre-fusion values."""

    def __init__(self, *, high_channels: int, low_channels: int, downsample_steps: int) -> None:
        super().__init__()
        self.low_to_high = ConvBN(low_channels, high_channels, kernel_size=1, relu=False)
        steps = []
        channels = high_channels
        for step in range(downsample_steps):
            is_last = step == downsample_steps - 1
            # The official code widens only in the last step (64 -> 128 -> 256 for the /32 branch).
            out_channels = low_channels if is_last else low_channels // 2
            steps.append(ConvBN(channels, out_channels, stride=2, relu=not is_last))
            channels = out_channels
        self.high_to_low = nn.Sequential(*steps)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fused_low = low + self.high_to_low(F.relu(high))
        fused_high = high + resize_to(self.low_to_high(F.relu(low)), high.shape[-2:])
        return fused_low, fused_high


class DAPPM(nn.Module):
    """Deep Aggregation Pyramid Pooling Module: context at 1/2, 1/4, 1/8 and global scale of the /64 map,
    each upsampled, added to the previous scale and refined by a 3x3 conv (the hierarchical residual part),
    then concatenated, compressed and added to a 1x1 shortcut."""

    # (kernel, stride) of the average pools; padding kernel // 2, count_include_pad as in the paper's code.
    POOLS = ((5, 2), (9, 4), (17, 8))

    def __init__(self, in_channels: int, branch_channels: int, out_channels: int) -> None:
        super().__init__()
        self.scale0 = BNReLUConv(in_channels, branch_channels, kernel_size=1)
        # Three strided average pools plus a global pool.
        self.pooled = nn.ModuleList(
            BNReLUConv(in_channels, branch_channels, kernel_size=1) for _ in range(len(self.POOLS) + 1)
        )
        self.process = nn.ModuleList(
            BNReLUConv(branch_channels, branch_channels, kernel_size=3) for _ in range(len(self.POOLS) + 1)
        )
        self.compression = BNReLUConv(branch_channels * (len(self.POOLS) + 2), out_channels, kernel_size=1)
        self.shortcut = BNReLUConv(in_channels, out_channels, kernel_size=1)

    def _pool(self, x: torch.Tensor, index: int) -> torch.Tensor:
        if index == len(self.POOLS):
            return F.adaptive_avg_pool2d(x, 1)
        kernel, stride = self.POOLS[index]
        return F.avg_pool2d(x, kernel, stride=stride, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        scales = [self.scale0(x)]
        for index, (reduce, process) in enumerate(zip(self.pooled, self.process, strict=True)):
            coarse = resize_to(reduce(self._pool(x, index)), size)
            scales.append(process(coarse + scales[-1]))
        return self.compression(torch.cat(scales, dim=1)) + self.shortcut(x)


class DDRNet23SlimBackbone(nn.Module):
    """Returns the fused /8 features (``out_channels``) and, for the auxiliary head, the /8 branch after the
    stage-3 fusion (``aux_channels``).

    Upsampling targets the /8 map's actual size, where the official code uses input // 8; the two agree for
    sizes divisible by 8, and this way inputs of any size work (strided convs round up).
    """

    def __init__(self, *, width: int = 32, spp_width: int = 128) -> None:
        super().__init__()
        high = width * 2
        # The official stem convs carry a bias (followed by BN, so it is redundant); kept for its checkpoints.
        self.stem = nn.Sequential(
            ConvBN(3, width, stride=2, conv_bias=True),
            ConvBN(width, width, stride=2, conv_bias=True),
        )
        self.layer1 = make_stage(BasicBlock, in_channels=width, channels=width, num_blocks=2)
        self.layer2 = make_stage(BasicBlock, in_channels=width, channels=width * 2, num_blocks=2, stride=2)

        self.low_layer3 = make_stage(BasicBlock, in_channels=width * 2, channels=width * 4, num_blocks=2, stride=2)
        self.high_layer3 = make_stage(BasicBlock, in_channels=width * 2, channels=high, num_blocks=2)
        self.fuse3 = BilateralFusion(high_channels=high, low_channels=width * 4, downsample_steps=1)

        self.low_layer4 = make_stage(BasicBlock, in_channels=width * 4, channels=width * 8, num_blocks=2, stride=2)
        self.high_layer4 = make_stage(BasicBlock, in_channels=high, channels=high, num_blocks=2)
        self.fuse4 = BilateralFusion(high_channels=high, low_channels=width * 8, downsample_steps=2)

        self.low_layer5 = make_stage(Bottleneck, in_channels=width * 8, channels=width * 8, num_blocks=1, stride=2)
        self.high_layer5 = make_stage(Bottleneck, in_channels=high, channels=high, num_blocks=1)
        self.dappm = DAPPM(width * 8 * Bottleneck.expansion, spp_width, width * 4)

        self.out_channels = high * Bottleneck.expansion
        self.aux_channels = (high,)
        self.detail_channels = width  # layer1, at 1/4

    def forward(self, image: torch.Tensor) -> BackboneFeatures:
        quarter = F.relu(self.layer1(self.stem(image)))
        x = self.layer2(quarter)
        low = self.low_layer3(F.relu(x))
        high = self.high_layer3(F.relu(x))
        low, high = self.fuse3(low, high)
        after_stage3 = high

        low = self.low_layer4(F.relu(low))
        high = self.high_layer4(F.relu(high))
        low, high = self.fuse4(low, high)

        high = self.high_layer5(F.relu(high))
        context = self.dappm(self.low_layer5(F.relu(low)))
        fused = high + resize_to(context, high.shape[-2:])
        return BackboneFeatures(fused, [after_stage3], quarter)
