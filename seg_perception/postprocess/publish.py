"""What leaves the device: the published maps of one frame, made where the network's outputs are.

Class ids and instance ids are resized to the output size and the role masks looked up on the device of
the outputs (CPU or GPU, the same code); only uint8/uint16 maps at the output resolution and one small
vector of instance areas cross to the host. No int64 image and no full-resolution float map does.
From a GPU, all maps of a batch cross in one go: asynchronous copies into one page-locked host block
(PyTorch caches those), then one wait. On the CPU the maps are the arrays themselves, nothing is copied.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch


def nearest_indices(source: int, target: int, device: torch.device) -> torch.Tensor:
    """The source index of every target pixel, as OpenCV's INTER_NEAREST picks it: floor(i / (target / source))."""
    scale = 1.0 / (target / source)  # the same double arithmetic as OpenCV, so the maps are bit-identical
    positions = torch.arange(target, dtype=torch.float64, device=device) * scale
    return positions.floor_().long().clamp_(max=source - 1)


def resize_nearest(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """An (H, W) map of any dtype at ``size`` (width, height), nearest neighbour."""
    width, height = size
    rows = nearest_indices(image.shape[0], height, image.device)
    cols = nearest_indices(image.shape[1], width, image.device)
    return image.index_select(0, rows).index_select(1, cols)


@dataclass(frozen=True)
class HostMaps:
    semantic: np.ndarray  # (H, W) uint8 class ids at the output resolution
    instances: np.ndarray  # (H, W) uint16 instance ids, 0 = none
    masks: dict[str, np.ndarray]  # role -> (H, W) uint8 0/255
    areas: np.ndarray  # pixels of each instance id at the output resolution (index 0: no instance)


class MapMaker:
    """Role masks from class ids by one table lookup per role, on whatever device the ids are."""

    def __init__(self, role_tables: Mapping[str, np.ndarray]) -> None:
        self._tables = {role: torch.from_numpy(np.asarray(table, np.uint8)) for role, table in role_tables.items()}
        self._on_device: dict[torch.device, dict[str, torch.Tensor]] = {}

    def _tables_on(self, device: torch.device) -> dict[str, torch.Tensor]:
        if device not in self._on_device:
            self._on_device[device] = {role: table.to(device) for role, table in self._tables.items()}
        return self._on_device[device]

    def _make(self, semantic: torch.Tensor, instances: torch.Tensor, output_size: tuple[int, int] | None,
              num_instances: int) -> dict[str, torch.Tensor]:
        semantic = semantic.to(torch.uint8)  # narrow first: resizing and copying move a quarter of the bytes
        instances = instances.to(torch.int16)
        if output_size is not None and output_size != (semantic.shape[1], semantic.shape[0]):
            semantic = resize_nearest(semantic, output_size)
            instances = resize_nearest(instances, output_size)
        index = semantic.long()
        maps = {"semantic": semantic, "instances": instances,
                "areas": torch.bincount(instances.flatten().long(), minlength=num_instances + 1)}
        maps |= {f"mask:{role}": table[index] for role, table in self._tables_on(semantic.device).items()}
        return maps

    def to_host(self, frames: Sequence[tuple[torch.Tensor, torch.Tensor, tuple[int, int] | None, int]],
                ) -> list[HostMaps]:
        """Per frame ``(semantic, instances, output_size, num_instances)``: (H, W) integer maps on one device,
        ``output_size`` (width, height) or None to keep theirs. Class ids must be below 256 and instance ids
        below 32768."""
        made = [self._make(*frame) for frame in frames]
        if made and made[0]["semantic"].device.type == "cuda":
            made = copy_to_host_block(made, pinned=True)
        return [HostMaps(semantic=m["semantic"].numpy(), instances=m["instances"].numpy().view(np.uint16),
                         masks={key.removeprefix("mask:"): t.numpy() for key, t in m.items()
                                if key.startswith("mask:")},
                         areas=m["areas"].numpy())
                for m in made]


def copy_to_host_block(made: list[dict[str, torch.Tensor]], *, pinned: bool) -> list[dict[str, torch.Tensor]]:
    """Every tensor into one host block (page-locked when ``pinned``, so the copies are asynchronous), then a
    single wait for all of them. The host tensors are views of the block, which lives as long as any of them."""
    layout, total = [], 0
    for maps in made:
        for tensor in maps.values():
            layout.append(total)
            total += -(-tensor.numel() * tensor.element_size() // 8) * 8  # 8-byte aligned, for the int64 areas
    block = torch.empty(total, dtype=torch.uint8, pin_memory=pinned)
    host, offsets = [], iter(layout)
    for maps in made:
        copies = {}
        for key, tensor in maps.items():
            start = next(offsets)
            size = tensor.numel() * tensor.element_size()
            target = block[start:start + size].view(tensor.dtype).view(tensor.shape)
            copies[key] = target.copy_(tensor.contiguous(), non_blocking=pinned)
        host.append(copies)
    device = next(iter(made[0].values())).device
    if device.type == "cuda":
        torch.cuda.current_stream(device).synchronize()
    return host
