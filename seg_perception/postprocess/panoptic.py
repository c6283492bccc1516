"""Panoptic-DeepLab style grouping: centres from the heatmap, thing pixels voted to their centre.

All steps are vectorised torch over pixels (CPU or GPU); Python loops only run over images of a batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Pixels x centres distance matrices are computed in chunks of this many elements.
_MAX_DISTANCE_ELEMENTS = 1 << 24


@dataclass(frozen=True)
class PanopticConfig:
    thing_ids: tuple[int, ...]
    center_threshold: float = 0.1  # heatmap value a centre needs
    nms_kernel: int = 7  # a centre is the maximum of its kernel x kernel neighbourhood
    top_k: int = 64  # at most this many centres per image
    min_area: int = 32  # smaller thing segments get no instance id (their pixels keep their class)
    peaks_only: bool = False  # the heatmap is already NMS'd (deploy graphs do it), skip the pooling

    def __post_init__(self) -> None:
        if self.nms_kernel < 1 or self.nms_kernel % 2 == 0:
            raise ValueError(f"nms_kernel must be odd and positive, got {self.nms_kernel}")
        if not 0.0 <= self.center_threshold <= 1.0 or self.top_k < 1 or self.min_area < 0:
            raise ValueError(f"invalid panoptic settings: {self}")


    @classmethod
    def for_input(cls, thing_ids: Sequence[int], input_size: tuple[int, int]) -> PanopticConfig:
        """Defaults for a deploy model's outputs at an input size (centre NMS done in the graph); the minimum
        area is 32 px at 1024x512 and scales with image area."""
        scale = input_size[0] * input_size[1] / (1024 * 512)
        return cls(thing_ids=tuple(thing_ids), min_area=max(4, round(32 * scale)), peaks_only=True)


@dataclass(frozen=True)
class InstanceInfo:
    instance_id: int  # value in the instance map, 1..M
    class_id: int
    score: float  # centre heatmap peak
    bbox_xywh: tuple[int, int, int, int]  # pixels, inclusive of the extreme pixels
    area_px: int
    centroid_xy: tuple[float, float]


@dataclass(frozen=True)
class PanopticFrame:
    semantic: torch.Tensor  # (H, W) class ids, the input's dtype; thing pixels of an instance carry its voted class
    instances: torch.Tensor  # (H, W) int32, 0 = no instance
    infos: tuple[InstanceInfo, ...]


def find_centers(center: torch.Tensor, config: PanopticConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Centres of one (H, W) heatmap in [0, 1]: (K, 2) integer (y, x) and (K,) scores, best first."""
    if config.peaks_only:
        peaks = center > config.center_threshold
    else:
        pad = config.nms_kernel // 2
        pooled = F.max_pool2d(center[None, None], kernel_size=config.nms_kernel, stride=1, padding=pad)[0, 0]
        peaks = (center == pooled) & (center > config.center_threshold)
    scores = center[peaks]
    coords = peaks.nonzero()
    if scores.numel() > config.top_k:
        scores, order = scores.topk(config.top_k)
        coords = coords[order]
    else:
        scores, order = scores.sort(descending=True)
        coords = coords[order]
    return coords, scores


def _nearest_center(points: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centre for each (P, 2) point; |p - c|^2 = |p|^2 - 2 p.c + |c|^2, |p|^2 is constant."""
    center_norm = (centers * centers).sum(1)
    chunk = max(1, _MAX_DISTANCE_ELEMENTS // max(1, centers.shape[0]))
    nearest = [
        (center_norm[None, :] - 2.0 * part @ centers.T).argmin(1) for part in points.split(chunk)
    ]
    return torch.cat(nearest) if nearest else points.new_zeros(0, dtype=torch.long)


def group_instances(
    semantic: torch.Tensor, center: torch.Tensor, offset: torch.Tensor, config: PanopticConfig,
) -> PanopticFrame:
    """One image: semantic (H, W) ids, centre heatmap (H, W) in [0, 1], offsets (2, H, W) as (dy, dx) in pixels."""
    height, width = semantic.shape
    device = semantic.device
    instances = torch.zeros((height, width), dtype=torch.int32, device=device)
    semantic = semantic.clone()
    thing_mask = torch.isin(semantic, torch.tensor(config.thing_ids, device=device, dtype=semantic.dtype))
    centers, scores = find_centers(center, config)
    if centers.shape[0] == 0 or not bool(thing_mask.any()):
        return PanopticFrame(semantic=semantic, instances=instances, infos=())

    pixel_yx = thing_mask.nonzero()  # (P, 2)
    voted_centers = pixel_yx.to(offset.dtype) + offset[:, pixel_yx[:, 0], pixel_yx[:, 1]].T
    owner = _nearest_center(voted_centers, centers.to(offset.dtype))  # (P,) in 0..K-1

    # Majority vote of the semantic class inside each instance.
    num_classes = int(semantic.max()) + 1
    num_centers = centers.shape[0]
    pixel_class = semantic[pixel_yx[:, 0], pixel_yx[:, 1]]
    votes = torch.bincount(owner * num_classes + pixel_class, minlength=num_centers * num_classes)
    instance_class = votes.view(num_centers, num_classes).argmax(1)
    area = torch.bincount(owner, minlength=num_centers)

    # Keep instances of sufficient area, renumbered 1..M in score order (centres are sorted by score).
    keep = area >= max(1, config.min_area)
    new_id = torch.cumsum(keep.long(), 0) * keep
    pixel_id = new_id[owner]
    kept_pixels = pixel_id > 0
    ys, xs = pixel_yx[kept_pixels, 0], pixel_yx[kept_pixels, 1]
    instances[ys, xs] = pixel_id[kept_pixels].to(torch.int32)
    semantic[ys, xs] = instance_class[owner[kept_pixels]].to(semantic.dtype)

    count = int(keep.sum())
    if count == 0:
        return PanopticFrame(semantic=semantic, instances=instances, infos=())
    ids = pixel_id[kept_pixels] - 1  # 0-based for scatter
    big = torch.iinfo(torch.long).max
    x0 = torch.full((count,), big, device=device).scatter_reduce(0, ids, xs, "amin")
    y0 = torch.full((count,), big, device=device).scatter_reduce(0, ids, ys, "amin")
    x1 = torch.full((count,), -1, device=device).scatter_reduce(0, ids, xs, "amax")
    y1 = torch.full((count,), -1, device=device).scatter_reduce(0, ids, ys, "amax")
    kept_area = torch.bincount(ids, minlength=count)
    cx = torch.bincount(ids, weights=xs.double(), minlength=count) / kept_area
    cy = torch.bincount(ids, weights=ys.double(), minlength=count) / kept_area

    table = torch.stack([
        instance_class[keep].double(), scores[keep].double(), x0.double(), y0.double(), x1.double(), y1.double(),
        kept_area.double(), cx, cy,
    ], 1).cpu().tolist()  # one device sync for all instances
    infos = tuple(
        InstanceInfo(instance_id=i + 1, class_id=int(c), score=float(s),
                     bbox_xywh=(int(a), int(b), int(e - a + 1), int(f - b + 1)), area_px=int(n),
                     centroid_xy=(float(u), float(v)))
        for i, (c, s, a, b, e, f, n, u, v) in enumerate(table)
    )
    return PanopticFrame(semantic=semantic, instances=instances, infos=infos)


def group_batch(
    semantic: torch.Tensor, center: torch.Tensor, offset: torch.Tensor, config: PanopticConfig,
) -> list[PanopticFrame]:
    """A batch: semantic (N, H, W), centre (N, 1, H, W) in [0, 1], offset (N, 2, H, W)."""
    return [group_instances(semantic[i], center[i, 0], offset[i], config) for i in range(semantic.shape[0])]


def thing_ids_of(class_names: Sequence[str], thing_names: Sequence[str]) -> tuple[int, ...]:
    names = set(thing_names)
    return tuple(i for i, name in enumerate(class_names) if name in names)
