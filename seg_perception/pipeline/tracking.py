"""Stable obstacle track ids across the frames of one camera, by mask overlap with the previous frames.

Each frame's instances are matched to the live tracks by mask IoU on a subsampled grid (``[::stride, ::stride]``):
all pair intersections of two instance maps come from a bincount of ``prev_id * (M_cur + 1) + cur_id``.
Past frames are kept sparse (the grid points that hold an instance, typically a small part of a road scene), since
pixels with ``prev_id == 0`` would only fill the background row, which is never used.
The counting runs in torch on the map's device (a GPU's, where the pipeline made the map): the past frames stay
there, and all counts of a frame (every past frame's intersections and the current areas) come from one bincount
and reach the host in one small copy; the greedy assignment then runs on those counts on the host.
The assignment is greedy by descending IoU, one-to-one, between equal class ids and only at IoU >= the threshold.
An unmatched instance starts a new track; track ids come from a counter that never goes back, so an id is never
reused (also not across ``reset``). A track may be missed for up to ``max_misses`` frames and still be matched
with its last-seen mask; after that it is forgotten.

With the instances' boxes (``update(..., boxes=...)``) a second stage matches what the overlap left over: a
thin person walking across the view, or anything near and moving fast in the image, overlaps its last mask
too little (IoU < 0.3 after a shift of a third of its width) and would start a new track every frame, and with
it a new velocity filter. There, an unmatched instance takes the unmatched track of its class whose box centre,
moved on by the track's last shift per frame, lies nearest, within ``max_centre_shift`` of the boxes' height,
and whose height is within a factor ``max_size_ratio``.

Instances too small to cover a grid point (less than about ``stride`` x ``stride`` px) cannot be matched by
overlap; with boxes the second stage matches them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import torch

Box = tuple[float, float, float, float]  # centre x, centre y, width, height (pixels of the instance map)


@dataclass
class _Track:
    class_id: int
    last_frame: int  # index of the frame where the track was last matched
    instance_id: int  # its instance id in that frame
    box: Box | None = None  # its box then (when boxes are given)
    shift: tuple[float, float] = (0.0, 0.0)  # how far its box centre moved per frame, at its last match


@dataclass(frozen=True)
class _SparseMap:
    """The instance pixels of one subsampled frame: background pixels only feed the unused background row."""

    pixel_index: torch.Tensor  # flat indices into the subsampled map, on the map's device
    instance_ids: torch.Tensor  # int64, >= 1, one per pixel index
    num_ids: int  # max id + 1


class ObstacleTracker:
    """Maps each frame's instance ids to track ids that stay the same for the same object."""

    def __init__(self, *, iou_threshold: float = 0.3, stride: int = 4, max_misses: int = 0,
                 max_centre_shift: float = 0.5, max_size_ratio: float = 1.5) -> None:
        if isinstance(iou_threshold, bool) or not isinstance(iou_threshold, Real) or not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold!r}")
        if isinstance(stride, bool) or not isinstance(stride, Integral) or stride < 1:
            raise ValueError(f"stride must be an integer >= 1, got {stride!r}")
        if isinstance(max_misses, bool) or not isinstance(max_misses, Integral) or max_misses < 0:
            raise ValueError(f"max_misses must be an integer >= 0, got {max_misses!r}")
        self.iou_threshold = float(iou_threshold)
        self.stride = int(stride)
        self.max_misses = int(max_misses)
        self.max_centre_shift, self.max_size_ratio = float(max_centre_shift), float(max_size_ratio)
        self._next_track_id = 1  # survives reset(): ids stay unique over the tracker's life
        self._frame_index = 0
        self._image_shape: tuple[int, int] | None = None
        self._device: torch.device | None = None
        self._tracks: dict[int, _Track] = {}  # track id -> state
        self._past_frames: dict[int, _SparseMap] = {}  # frame index -> a frame holding a live track's last mask

    def reset(self) -> None:
        """Forget all tracks (a new stream); the id counter keeps running."""
        self._tracks.clear()
        self._past_frames.clear()
        self._image_shape = None

    def update(self, instances: np.ndarray | torch.Tensor, class_ids: Mapping[int, int],
               boxes: Mapping[int, Box] | None = None) -> dict[int, int]:
        """Track id (>= 1) for every instance id in ``class_ids``; ``instances`` is the (H, W) map, 0 = none,
        a numpy array or a tensor on any device (the counting runs there). ``boxes``: instance id -> its box
        (centre x, centre y, width, height), for the second stage (module docstring)."""
        instances = _as_tensor(instances)
        if any(instance_id < 1 for instance_id in class_ids):
            raise ValueError(f"instance ids must be >= 1, got {sorted(class_ids)}")
        shape = tuple(instances.shape)
        if self._image_shape is not None and (shape != self._image_shape or instances.device != self._device):
            self.reset()  # another resolution: not the stream the tracks came from
        self._image_shape, self._device = shape, instances.device

        current = instances[:: self.stride, :: self.stride].reshape(-1).long()  # only read in this call, never kept
        pixel_index = current.nonzero().squeeze(1)
        instance_ids = current[pixel_index]
        low, high = instance_ids.aminmax() if instance_ids.numel() else (0, 0)
        low, high = int(low), int(high)
        if low < 0:
            raise ValueError("instance ids must be >= 0")
        num_ids = max([high, *class_ids]) + 1
        frame = self._frame_index
        self._frame_index += 1

        sparse = _SparseMap(pixel_index, instance_ids, num_ids)
        assignment = self._match(current, sparse, class_ids)
        boxes = boxes or {}
        assignment.update(self._match_boxes(frame, class_ids, boxes, assignment))
        for instance_id in sorted(class_ids):
            track_id = assignment.get(instance_id)
            if track_id is None:
                track_id = self._next_track_id
                self._next_track_id += 1
                assignment[instance_id] = track_id
            box, shift, before = boxes.get(instance_id), (0.0, 0.0), self._tracks.get(track_id)
            if box is not None and before is not None and before.box is not None:
                frames = frame - before.last_frame
                shift = ((box[0] - before.box[0]) / frames, (box[1] - before.box[1]) / frames)
            self._tracks[track_id] = _Track(int(class_ids[instance_id]), frame, instance_id, box, shift)

        # forget tracks missed too long, then the frames no live track refers to
        self._tracks = {t: s for t, s in self._tracks.items() if frame - s.last_frame <= self.max_misses}
        self._past_frames[frame] = sparse
        referenced = {s.last_frame for s in self._tracks.values()}
        self._past_frames = {f: m for f, m in self._past_frames.items() if f in referenced}
        return assignment

    def _counts(self, current: torch.Tensor, sparse: _SparseMap) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        """(current areas, past frame -> (previous id, current id) intersections), from one bincount and one copy."""
        num_current = sparse.num_ids
        codes, blocks, base = [sparse.instance_ids], [], num_current
        for frame, previous in self._past_frames.items():
            size = previous.num_ids * num_current
            codes.append(base + previous.instance_ids * num_current + current[previous.pixel_index])
            blocks.append((frame, previous.num_ids, base))
            base += size
        counts = torch.bincount(torch.cat(codes), minlength=base).cpu().numpy()
        intersections = {frame: counts[start:start + rows * num_current].reshape(rows, num_current)
                         for frame, rows, start in blocks}
        return counts[:num_current], intersections

    def _match(self, current: torch.Tensor, sparse: _SparseMap, class_ids: Mapping[int, int]) -> dict[int, int]:
        """Greedy one-to-one matching of current instance ids to live track ids (instance id -> track id)."""
        if not class_ids or not self._tracks:
            return {}
        num_current = sparse.num_ids
        current_class = np.full(num_current, -1, dtype=np.int64)
        current_class[list(class_ids)] = list(class_ids.values())
        current_area, intersections = self._counts(current, sparse)

        candidates: list[tuple[float, int, int, int]] = []  # (iou, last_frame, track id, current instance id)
        for frame, intersection in intersections.items():
            owners = {s.instance_id: t for t, s in self._tracks.items() if s.last_frame == frame}
            num_previous = intersection.shape[0]  # covers the owners: they were that frame's class_ids
            previous_area = intersection.sum(axis=1)  # exact: every previous instance pixel is counted once
            union = previous_area[:, None] + current_area[None, :] - intersection
            iou = intersection / np.maximum(union, 1)

            previous_class = np.full(num_previous, -1, dtype=np.int64)
            previous_class[list(owners)] = [self._tracks[t].class_id for t in owners.values()]
            # -1 marks background, ids without class and tracks of other frames: they never match
            allowed = (previous_class[:, None] == current_class[None, :]) & (previous_class[:, None] >= 0)
            allowed &= (intersection > 0) & (iou >= self.iou_threshold)
            for previous_id, current_id in zip(*np.nonzero(allowed), strict=True):
                candidates.append((float(iou[previous_id, current_id]), frame, owners[int(previous_id)],
                                   int(current_id)))

        # best overlap first; on ties the more recently seen track, then the older track id, for determinism
        candidates.sort(key=lambda c: (-c[0], -c[1], c[2], c[3]))
        assignment: dict[int, int] = {}
        taken_tracks: set[int] = set()
        for _, _, track_id, current_id in candidates:
            if current_id in assignment or track_id in taken_tracks:
                continue
            assignment[current_id] = track_id
            taken_tracks.add(track_id)
        return assignment


    def _match_boxes(self, frame: int, class_ids: Mapping[int, int], boxes: Mapping[int, Box],
                     taken: Mapping[int, int]) -> dict[int, int]:
        """The second stage: what overlap left unmatched, by predicted box centre (instance id -> track id)."""
        used = set(taken.values())
        free = {t: s for t, s in self._tracks.items() if t not in used and s.box is not None}
        candidates: list[tuple[float, int, int]] = []  # (centre distance / height, track id, instance id)
        for instance_id, class_id in class_ids.items():
            box = boxes.get(instance_id)
            if instance_id in taken or box is None:
                continue
            for track_id, track in free.items():
                last = track.box
                assert last is not None
                ratio = box[3] / max(last[3], 1e-6)
                if track.class_id != class_id or not 1 / self.max_size_ratio <= ratio <= self.max_size_ratio:
                    continue
                frames = frame - track.last_frame
                distance = np.hypot(box[0] - (last[0] + track.shift[0] * frames),
                                    box[1] - (last[1] + track.shift[1] * frames)) / max(box[3], last[3], 1.0)
                if distance <= self.max_centre_shift:
                    candidates.append((float(distance), track_id, instance_id))
        candidates.sort()
        out: dict[int, int] = {}
        for _, track_id, instance_id in candidates:
            if instance_id not in out and track_id not in used:
                out[instance_id] = track_id
                used.add(track_id)
        return out


def _as_tensor(instances: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(instances, torch.Tensor):
        tensor = instances
    else:
        array = np.asarray(instances)
        if not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"instances must be an (H, W) integer map, got {array.dtype} {array.shape}")
        tensor = torch.from_numpy(array.astype(np.int64, copy=False))
    if tensor.ndim != 2 or tensor.dtype.is_floating_point or tensor.dtype.is_complex or tensor.dtype == torch.bool:
        raise ValueError(f"instances must be an (H, W) integer map, got {tensor.dtype} {tuple(tensor.shape)}")
    return tensor
