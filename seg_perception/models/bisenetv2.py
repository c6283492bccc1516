"""BiSeNetV2 backbone (Yu et al. 2021, IJCV, "BiSeNet V2: Bilateral Network with Guided Aggregation for
Real-time Semantic Segmentation"), the paper's Table 1 instantiation (channel ratio 1/4, expansion 6).

    detail branch:   64 (/2), 64 (/4), 128 (/8) plain conv-BN-ReLU stages
    semantic branch: stem 16 (/4) -> GE 32 (/8) -> GE 64 (/16) -> GE 128 (/32) -> context embedding 128
    bilateral guided aggregation of the two -> 128 channels at /8
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seg_perception.models.blocks import ConvBN, resize_to
from seg_perception.models.panoptic import BackboneFeatures

EXPANSION = 6


class DetailBranch(nn.Module):
    """Wide and shallow, VGG-like (no residuals: they cost memory traffic at high resolution)."""

    def __init__(self, channels: tuple[int, int, int] = (64, 64, 128), convs_per_stage: tuple[int, ...] = (2, 3, 3)):
        super().__init__()
        self.quarter_depth = convs_per_stage[0] + convs_per_stage[1]  # the convs up to the 1/4 stage's output
        self.quarter_channels = channels[1]
        layers = []
        in_channels = 3
        for out_channels, num_convs in zip(channels, convs_per_stage, strict=True):
            for index in range(num_convs):
                layers.append(ConvBN(in_channels, out_channels, stride=2 if index == 0 else 1))
                in_channels = out_channels
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(1/8 features, 1/4 features)."""
        quarter = self.layers[:self.quarter_depth](x)
        return self.layers[self.quarter_depth:](quarter), quarter


class StemBlock(nn.Module):
    """Fast /4 downsampling: a strided conv, then a conv path and a max-pool path concatenated and fused."""

    def __init__(self, out_channels: int = 16) -> None:
        super().__init__()
        self.conv = ConvBN(3, out_channels, stride=2)
        self.conv_path = nn.Sequential(
            ConvBN(out_channels, out_channels // 2, kernel_size=1),
            ConvBN(out_channels // 2, out_channels, stride=2),
        )
        self.fuse = ConvBN(out_channels * 2, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        pooled = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
        return self.fuse(torch.cat([self.conv_path(x), pooled], dim=1))


class GatherExpand(nn.Module):
    """Gather-and-Expansion layer: a 3x3 conv gathers, a 3x3 depthwise conv with channel multiplier
    ``EXPANSION`` expands (strided layers add a second, plain depthwise conv), a 1x1 conv projects back;
    residual add, then ReLU. The strided layer's shortcut is a 3x3 depthwise-separable conv.

    Where the expansion happens follows the paper's Fig. 5 as the common reimplementations read it (the
    depthwise conv widens); the ReLU sits only after the gather conv and the sum, as drawn in Fig. 5.
    """

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1) -> None:
        super().__init__()
        mid = in_channels * EXPANSION
        self.gather = ConvBN(in_channels, in_channels)
        depthwise = [ConvBN(in_channels, mid, stride=stride, groups=in_channels, relu=False)]
        if stride == 2:
            depthwise.append(ConvBN(mid, mid, groups=mid, relu=False))
        self.expand = nn.Sequential(*depthwise)
        self.project = ConvBN(mid, out_channels, kernel_size=1, relu=False)
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                ConvBN(in_channels, in_channels, stride=stride, groups=in_channels, relu=False),
                ConvBN(in_channels, out_channels, kernel_size=1, relu=False),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu(self.project(self.expand(self.gather(x))) + identity)


class ContextEmbedding(nn.Module):
    """Global average pooling -> BN -> 1x1 conv-BN-ReLU, broadcast-added to the input, then a 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pooled_bn = nn.BatchNorm2d(channels)
        self.pooled_conv = ConvBN(channels, channels, kernel_size=1)
        self.fuse = ConvBN(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context = self.pooled_conv(self.pooled_bn(x.mean(dim=(2, 3), keepdim=True)))
        return self.fuse(x + context)


class SemanticBranch(nn.Module):
    """Narrow and deep, /32. Returns the CE output and the booster taps (stem, stage 3, stage 4, stage 5 before CE)."""

    def __init__(self, channels: tuple[int, int, int, int] = (16, 32, 64, 128)) -> None:
        super().__init__()
        stem, c3, c4, c5 = channels
        self.stem = StemBlock(stem)
        self.stage3 = nn.Sequential(GatherExpand(stem, c3, stride=2), GatherExpand(c3, c3))
        self.stage4 = nn.Sequential(GatherExpand(c3, c4, stride=2), GatherExpand(c4, c4))
        self.stage5 = nn.Sequential(GatherExpand(c4, c5, stride=2), *(GatherExpand(c5, c5) for _ in range(3)))
        self.context = ContextEmbedding(c5)
        self.tap_channels = channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        s2 = self.stem(x)
        s3 = self.stage3(s2)
        s4 = self.stage4(s3)
        s5 = self.stage5(s4)
        return self.context(s5), [s2, s3, s4, s5]


class BilateralGuidedAggregation(nn.Module):
    """Each branch gates the other: detail * sigmoid(up(semantic)) and down(detail) * sigmoid(semantic);
    the /32 product is upsampled, the two are summed and fused by a 3x3 conv."""

    def __init__(self, channels: int = 128) -> None:
        super().__init__()
        self.detail_keep = nn.Sequential(  # 3x3 depthwise conv-BN, 1x1 conv
            ConvBN(channels, channels, groups=channels, relu=False),
            nn.Conv2d(channels, channels, kernel_size=1, bias=False),
        )
        self.detail_down = ConvBN(channels, channels, stride=2, relu=False)  # then 3x3 avg-pool /2 in forward
        self.semantic_up = ConvBN(channels, channels, relu=False)  # then upsampled x4 in forward
        self.semantic_keep = nn.Sequential(
            ConvBN(channels, channels, groups=channels, relu=False),
            nn.Conv2d(channels, channels, kernel_size=1, bias=False),
        )
        self.fuse = ConvBN(channels, channels)

    def forward(self, detail: torch.Tensor, semantic: torch.Tensor) -> torch.Tensor:
        detail_down = F.avg_pool2d(self.detail_down(detail), kernel_size=3, stride=2, padding=1)
        high = self.detail_keep(detail) * torch.sigmoid(resize_to(self.semantic_up(semantic), detail.shape[-2:]))
        low = detail_down * torch.sigmoid(self.semantic_keep(semantic))
        return self.fuse(high + resize_to(low, detail.shape[-2:]))


class BiSeNetV2Backbone(nn.Module):
    """Returns the aggregated /8 features and the four booster taps of the semantic branch."""

    def __init__(self) -> None:
        super().__init__()
        self.detail = DetailBranch()
        self.semantic = SemanticBranch()
        self.aggregate = BilateralGuidedAggregation(128)
        self.out_channels = 128
        self.aux_channels = self.semantic.tap_channels
        self.detail_channels = self.detail.quarter_channels

    def forward(self, image: torch.Tensor) -> BackboneFeatures:
        semantic, taps = self.semantic(image)
        detail, quarter = self.detail(image)
        return BackboneFeatures(self.aggregate(detail, semantic), taps, quarter)
