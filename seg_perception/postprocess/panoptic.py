"""Panoptic-DeepLab style grouping: centres from the heatmap, thing pixels voted to their centre.

All steps are vectorised torch over the pixels of a whole batch (CPU or GPU, the same code), with a fixed
number of centres per image (``top_k``, trimmed to the most any image of the batch has), so the work and
the number of waits for the device do not grow with the number of images or instances.
"""

from __future__ import annotations

import functools
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


def _select_centers(heat: torch.Tensor, config: PanopticConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch of (N, H, W) heatmaps in [0, 1] -> (N, K) scores, flat pixel indices and validity, K = top_k
    (or fewer pixels), best first; ties in score by raster order, so every device numbers centres alike."""
    if config.peaks_only:
        peaks = heat > config.center_threshold
    else:
        pad = config.nms_kernel // 2
        pooled = F.max_pool2d(heat[:, None], kernel_size=config.nms_kernel, stride=1, padding=pad)[:, 0]
        peaks = (heat == pooled) & (heat > config.center_threshold)
    candidates = torch.where(peaks, heat, torch.full_like(heat, -1.0)).flatten(1)
    scores, flat = candidates.topk(min(config.top_k, candidates.shape[1]), dim=1)  # a fixed K: no sync
    flat, order = flat.sort(dim=1, stable=True)  # raster order, then a stable sort by score keeps it on ties
    scores, reorder = scores.gather(1, order).sort(dim=1, descending=True, stable=True)
    flat = flat.gather(1, reorder)
    return scores, flat, scores > config.center_threshold


def find_centers(center: torch.Tensor, config: PanopticConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Centres of one (H, W) heatmap in [0, 1]: (K, 2) integer (y, x) and (K,) scores, best first."""
    scores, flat, valid = (t[0] for t in _select_centers(center[None], config))
    scores, flat = scores[valid], flat[valid]
    width = center.shape[1]
    return torch.stack([flat // width, flat % width], 1), scores


@functools.lru_cache(maxsize=16)
def _thing_table(thing_ids: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """True at the thing class ids; made once per device (building it on a GPU is a copy from the host)."""
    table = torch.zeros(256, dtype=torch.bool)
    table[list(thing_ids)] = True
    return table.to(device)


def group_instances(
    semantic: torch.Tensor, center: torch.Tensor, offset: torch.Tensor, config: PanopticConfig,
) -> PanopticFrame:
    """One image: semantic (H, W) ids, centre heatmap (H, W) in [0, 1], offsets (2, H, W) as (dy, dx) in pixels."""
    return group_batch(semantic[None], center[None, None], offset[None], config)[0]


def group_batch(
    semantic: torch.Tensor, center: torch.Tensor, offset: torch.Tensor, config: PanopticConfig,
) -> list[PanopticFrame]:
    """A batch: semantic (N, H, W) class ids below 256, centre (N, 1, H, W) in [0, 1], offset (N, 2, H, W).

    The whole batch at once, in a fixed number of steps: on a GPU it waits for the device three times per
    batch (the thing pixels, the centre count, the instance table), whatever the number of images.
    """
    batch, height, width = semantic.shape
    device = semantic.device
    instances = torch.zeros((batch, height, width), dtype=torch.int32, device=device)
    scores, flat, valid = _select_centers(center[:, 0], config)
    thing_mask = _thing_table(config.thing_ids, device)[semantic.long()]
    pixels = thing_mask.nonzero()  # (P, 3): image, y, x
    used = int(valid.sum(1).max()) if pixels.shape[0] else 0  # centres of the fullest image
    if used == 0:
        return [PanopticFrame(semantic=semantic[i].clone(), instances=instances[i], infos=()) for i in range(batch)]
    scores, flat, valid = scores[:, :used], flat[:, :used], valid[:, :used]
    image, ys, xs = pixels.unbind(1)
    voted_y = ys.to(offset.dtype) + offset[image, 0, ys, xs]
    voted_x = xs.to(offset.dtype) + offset[image, 1, ys, xs]
    owner = _nearest_center(image, voted_y, voted_x, (flat // width).to(offset.dtype),
                            (flat % width).to(offset.dtype), valid)  # (P,) in 0..used-1
    owned = valid[image, owner]  # False only in an image without any centre
    slot = image * used + owner  # one bin per (image, centre)
    bins = batch * used

    # Majority vote of the semantic class inside each instance; ties go to the lower class id.
    pixel_class = semantic[image, ys, xs].long()
    votes = torch.zeros(bins * 256, dtype=torch.long, device=device)
    votes.index_add_(0, slot * 256 + pixel_class, owned.long())
    votes = votes.view(bins, 256)
    instance_class = votes.argmax(1)
    area = votes.sum(1)

    # Keep instances of sufficient area, renumbered 1..M per image in score order (centres are sorted by score).
    keep = (area >= max(1, config.min_area)) & valid.flatten()
    new_id = (torch.cumsum(keep.view(batch, used).long(), 1) * keep.view(batch, used)).flatten()
    pixel_id = torch.where(owned, new_id[slot], 0)
    kept = pixel_id > 0
    instances.index_put_((image, ys, xs), pixel_id.to(torch.int32))
    semantic = semantic.clone()
    semantic.index_put_((image, ys, xs), torch.where(kept, instance_class[slot], pixel_class).to(semantic.dtype))

    # Per instance: box, centroid; pixels of dropped instances go to a spare bin that is never read.
    spare = torch.where(kept, slot, bins)
    big = torch.iinfo(torch.long).max
    x0 = torch.full((bins + 1,), big, device=device).scatter_reduce(0, spare, xs, "amin")
    y0 = torch.full((bins + 1,), big, device=device).scatter_reduce(0, spare, ys, "amin")
    x1 = torch.full((bins + 1,), -1, device=device).scatter_reduce(0, spare, xs, "amax")
    y1 = torch.full((bins + 1,), -1, device=device).scatter_reduce(0, spare, ys, "amax")
    sum_x = torch.zeros(bins + 1, dtype=torch.float64, device=device).index_add_(0, spare, xs.double())
    sum_y = torch.zeros(bins + 1, dtype=torch.float64, device=device).index_add_(0, spare, ys.double())
    kept_area = area.double().clamp(min=1)
    table = torch.stack([
        keep.double(), instance_class.double(), scores.flatten().double(), x0[:bins].double(), y0[:bins].double(),
        x1[:bins].double(), y1[:bins].double(), area.double(), sum_x[:bins] / kept_area, sum_y[:bins] / kept_area,
    ], 1).cpu().tolist()  # one device sync for all instances of the batch

    frames = []
    for i in range(batch):
        infos = []
        for kept_bin, c, s, a, b, e, f, n, u, v in table[i * used:(i + 1) * used]:
            if kept_bin:
                infos.append(InstanceInfo(instance_id=len(infos) + 1, class_id=int(c), score=float(s),
                                          bbox_xywh=(int(a), int(b), int(e - a + 1), int(f - b + 1)),
                                          area_px=int(n), centroid_xy=(float(u), float(v))))
        frames.append(PanopticFrame(semantic=semantic[i], instances=instances[i], infos=tuple(infos)))
    return frames


def _nearest_center(image: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, center_y: torch.Tensor,
                    center_x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """For each voted point (of image ``image``), the index of the nearest valid centre of that image.

    Squared distances directly, not |c|^2 - 2 p.c: with |c|^2 near 5e6 at 2048x1024, float32 keeps that
    expansion only to half a square pixel. Computed in chunks of at most _MAX_DISTANCE_ELEMENTS (points x
    centres).
    """
    far = torch.tensor(float("inf"), device=ys.device, dtype=ys.dtype)
    chunk = max(1, _MAX_DISTANCE_ELEMENTS // center_y.shape[1])
    nearest = []
    for start in range(0, ys.shape[0], chunk):
        part = slice(start, start + chunk)
        which = image[part]
        distance = (ys[part, None] - center_y[which]).square() + (xs[part, None] - center_x[which]).square()
        nearest.append(torch.where(valid[which], distance, far).argmin(1))
    return torch.cat(nearest) if nearest else image.new_zeros(0)


def thing_ids_of(class_names: Sequence[str], thing_names: Sequence[str]) -> tuple[int, ...]:
    names = set(thing_names)
    return tuple(i for i, name in enumerate(class_names) if name in names)
