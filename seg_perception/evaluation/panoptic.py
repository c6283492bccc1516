"""Panoptic quality (PQ, SQ, RQ) with the Cityscapes rules, plus conversions between panoptic encodings.

Input format (per image, prediction and ground truth alike)
-----------------------------------------------------------
* ``semantic``: integer map of trainIds in ``[0, num_classes)``; ``ignore_index`` (255) is VOID.
* ``instance``: integer map (int32), the instance id of thing pixels; ``0`` means "no instance". Ignored on
  stuff pixels: every stuff class forms a single segment per image.

A segment is a connected-or-not set of pixels with the same (class, instance id) for things, the same class for
stuff. Ground-truth thing pixels with instance id 0 are a *crowd* region of their class (``iscrowd``), as in the
Cityscapes instanceIds encoding where a thing pixel without an instance is stored as its bare labelId (< 1000);
``gt_crowd_mask`` marks further ground-truth thing pixels as crowd (crowd marks on stuff pixels are ignored, as in
``createPanopticImgs``). All crowd pixels of one class form one crowd region. In the prediction, thing pixels with
instance id 0 are an ordinary segment (one per class).

``cityscapes_instance_ids_to_panoptic`` turns a Cityscapes ``*_instanceIds.png`` (labelId*1000+k for things,
labelId otherwise) into this format; ``panoptic_to_cityscapes_instance_ids`` and ``panoptic_to_coco`` go back to
the files the official tools read.

Matching and scores (``cityscapesscripts.evaluation.evalPanopticSemanticLabeling``, Kirillov et al. 2019)
------------------------------------------------------------------------------------------------------------
Per image and class, a predicted segment p and a non-crowd GT segment g of the same class match (TP) iff
``IoU(p, g) > 0.5`` with ``IoU = |p ∩ g| / (|p| + |g| - |p ∩ g| - |p ∩ VOID_gt|)``: the predicted pixels that
fall on GT VOID are removed from the union (predicted pixels on a GT crowd region are not). IoU > 0.5 makes the
matching unique without any assignment step. Unmatched non-crowd GT segments are FN. An unmatched predicted
segment is a FP unless more than half of its pixels lie on GT VOID or on the GT crowd region of its own class,
in which case it is ignored. Predicted VOID pixels (``ignore_index``) form no segment.

Per class, over the whole data set: ``PQ = sum IoU(TP) / (TP + FP/2 + FN/2)``, ``SQ = sum IoU(TP) / TP`` (0 without
TP), ``RQ = TP / (TP + FP/2 + FN/2)``, so ``PQ = SQ * RQ``. ``all``/``things``/``stuff`` are unweighted means over the
classes of the group with ``TP + FP + FN > 0``; classes without any segment in GT or prediction are left out
(per class they are NaN here; the official script prints 0 for them, and also leaves them out of the means).
All values are fractions in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from seg_perception.datasets.labels import (
    CLASS_NAMES,
    IGNORE_TRAIN_ID,
    NUM_CLASSES,
    THING_TRAIN_IDS,
    label_ids_to_train_ids,
    train_ids_to_label_ids,
)
from seg_perception.evaluation._arrays import check_same_shape, to_bool, to_int64

CITYSCAPES_INSTANCE_OFFSET = 1000  # instanceIds: labelId * 1000 + k for thing instances, k = 0, 1, ...


class PanopticLabels(NamedTuple):
    """One image in our panoptic format."""

    semantic: np.ndarray  # uint8 trainIds, 255 = VOID
    instance: np.ndarray  # int32, 0 = no instance / stuff
    crowd: np.ndarray  # bool, thing pixels that belong to a crowd region (ground truth only)


@dataclass(frozen=True)
class Segments:
    """The segments of one image: ``index`` maps each pixel to a segment (-1 = VOID)."""

    index: np.ndarray  # same shape as the input, int64, -1 for VOID
    cls: np.ndarray  # (S,) class id
    instance: np.ndarray  # (S,) instance id (0 for stuff and crowd regions)
    area: np.ndarray  # (S,) pixel count
    crowd: np.ndarray  # (S,) bool


def _thing_lut(num_classes: int, thing_ids: tuple[int, ...] | np.ndarray) -> np.ndarray:
    lut = np.zeros(num_classes, dtype=bool)
    ids = np.asarray(thing_ids, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= num_classes):
        raise ValueError(f"thing ids {ids.tolist()} outside [0, {num_classes})")
    lut[ids] = True
    return lut


_DENSE_LIMIT = 1 << 22  # key ranges up to this size are counted with bincount (O(N)), larger ones with np.unique


def _dense_ids(key: np.ndarray, key_range: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct non-negative keys (sorted), their counts, and per element the rank of its key (-1 for key < 0)."""
    flat = key.ravel()
    on = flat >= 0
    key_range = max(int(key_range), 1)
    if key_range <= _DENSE_LIMIT:
        counts_all = np.bincount(flat[on], minlength=key_range)
        uniq = np.nonzero(counts_all)[0]
        rank = np.full(key_range, -1, dtype=np.int64)
        rank[uniq] = np.arange(uniq.size)
        index = np.where(on, rank[np.where(on, flat, 0)], -1)
        return uniq, counts_all[uniq], index.reshape(key.shape)
    uniq, inverse, counts = np.unique(flat[on], return_inverse=True, return_counts=True)
    index = np.full(flat.shape, -1, dtype=np.int64)
    index[on] = inverse.ravel()
    return uniq, counts, index.reshape(key.shape)


def extract_segments(
    semantic: Any, instance: Any, *, num_classes: int = NUM_CLASSES, thing_ids: tuple[int, ...] = THING_TRAIN_IDS,
    ignore_index: int = IGNORE_TRAIN_ID, crowd_mask: Any = None, zero_instance_is_crowd: bool = False,
) -> Segments:  # fmt: skip
    """Segments of one image in our format (see the module docstring); vectorised (one bincount or np.unique).

    ``zero_instance_is_crowd``: thing pixels with instance id 0 are a crowd region (ground truth); otherwise they
    are one ordinary segment per class (prediction). ``crowd_mask`` adds crowd pixels (thing classes only).
    """
    sem = to_int64(semantic, "semantic")
    inst = to_int64(instance, "instance")
    crowd = None if crowd_mask is None else to_bool(crowd_mask, "crowd_mask")
    check_same_shape(semantic=sem, instance=inst, crowd_mask=crowd)
    valid = (sem >= 0) & (sem < num_classes)
    bad = ~valid & (sem != ignore_index)
    if bad.any():
        raise ValueError(f"semantic ids outside [0, {num_classes}) and not {ignore_index}: "
                         f"{np.unique(sem[bad])[:10].tolist()}")
    sem_v = np.where(valid, sem, 0)
    thing = _thing_lut(num_classes, thing_ids)[sem_v] & valid
    if (inst[thing] < 0).any():
        raise ValueError("negative instance ids on thing pixels")
    is_crowd = np.zeros(sem.shape, dtype=bool)
    if zero_instance_is_crowd:
        is_crowd |= thing & (inst == 0)
    if crowd is not None:
        is_crowd |= thing & crowd
    # Sub-key per pixel: 0 for stuff and crowd, instance + 1 for (non-crowd) thing pixels.
    sub = np.where(thing & ~is_crowd, inst + 1, 0)
    k = int(sub.max(initial=0)) + 1
    uniq, counts, index = _dense_ids(np.where(valid, sem_v * k + sub, -1), num_classes * k)
    cls = uniq // k
    sub_u = uniq % k
    thing_seg = _thing_lut(num_classes, thing_ids)[cls]
    return Segments(
        index=index, cls=cls, instance=np.where(sub_u > 0, sub_u - 1, 0),
        area=counts.astype(np.int64), crowd=thing_seg & (sub_u == 0),  # non-crowd thing pixels have sub >= 1
    )  # fmt: skip


@dataclass
class _ClassStats:
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    iou_sum: np.ndarray


def match_segments(
    pred: Segments, gt: Segments, num_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cityscapes/COCO matching of one image; returns per-class (tp, fp, fn, iou_sum) arrays of length C."""
    n_p, n_g = pred.cls.size, gt.cls.size
    gi = np.where(gt.index >= 0, gt.index, n_g).ravel()
    pi = np.where(pred.index >= 0, pred.index, n_p).ravel()
    # Sparse intersection table: one entry per (GT segment or VOID, predicted segment or VOID) that overlap.
    pairs, inter, _ = _dense_ids(gi * (n_p + 1) + pi, (n_g + 1) * (n_p + 1))
    g, p = np.divmod(pairs, n_p + 1)
    on_void = (g == n_g) & (p < n_p)
    void_p = np.bincount(p[on_void], weights=inter[on_void], minlength=n_p)  # predicted pixels on GT VOID
    both = (g < n_g) & (p < n_p)
    g, p, inter = g[both], p[both], inter[both]
    same = gt.cls[g] == pred.cls[p]
    # union > 0: |pred| >= inter + void_p, so union >= |gt| >= inter > 0
    iou = inter / (pred.area[p] + gt.area[g] - inter - void_p[p])
    m = same & ~gt.crowd[g] & (iou > 0.5)  # unique: a segment cannot have IoU > 0.5 with two disjoint ones
    tp = np.bincount(gt.cls[g[m]], minlength=num_classes)
    iou_sum = np.bincount(gt.cls[g[m]], weights=iou[m], minlength=num_classes)
    gt_matched = np.zeros(n_g, dtype=bool)
    gt_matched[g[m]] = True
    pred_matched = np.zeros(n_p, dtype=bool)
    pred_matched[p[m]] = True
    fn = np.bincount(gt.cls[~gt_matched & ~gt.crowd], minlength=num_classes)
    # Unmatched predictions: ignored if > half of them lies on GT VOID or on the crowd region of their class.
    crowd = same & gt.crowd[g]  # at most one crowd region per class
    on_crowd = np.bincount(p[crowd], weights=inter[crowd], minlength=n_p)
    ignored = (void_p + on_crowd) / np.maximum(pred.area, 1) > 0.5
    fp = np.bincount(pred.cls[~pred_matched & ~ignored], minlength=num_classes)
    return tp, fp, fn, iou_sum


class PanopticQuality:
    """Accumulates PQ statistics over images; ``compute`` returns per-class and aggregate PQ/SQ/RQ.

    ``update(pred_sem, pred_inst, gt_sem, gt_inst, gt_crowd_mask=None)`` takes one image (HxW arrays or tensors)
    in the format of the module docstring.
    """

    def __init__(
        self, num_classes: int = NUM_CLASSES, thing_ids: tuple[int, ...] = THING_TRAIN_IDS,
        ignore_index: int = IGNORE_TRAIN_ID, class_names: tuple[str, ...] | None = None,
        gt_zero_instance_is_crowd: bool = True,
    ) -> None:  # fmt: skip
        self.num_classes = int(num_classes)
        self.thing_ids = tuple(int(t) for t in thing_ids)
        self._is_thing = _thing_lut(self.num_classes, self.thing_ids)
        self.ignore_index = ignore_index
        if class_names is None:
            class_names = CLASS_NAMES[:num_classes] if num_classes <= len(CLASS_NAMES) else ()
        self.class_names = tuple(class_names) or tuple(str(i) for i in range(self.num_classes))
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {self.num_classes} classes")
        self.gt_zero_instance_is_crowd = gt_zero_instance_is_crowd
        self.reset()

    def reset(self) -> None:
        c = self.num_classes
        self._stats = _ClassStats(np.zeros(c, np.int64), np.zeros(c, np.int64), np.zeros(c, np.int64), np.zeros(c))
        self.num_images = 0

    def _segments(self, sem: Any, inst: Any, crowd: Any, zero_is_crowd: bool) -> Segments:
        return extract_segments(
            sem, inst, num_classes=self.num_classes, thing_ids=self.thing_ids, ignore_index=self.ignore_index,
            crowd_mask=crowd, zero_instance_is_crowd=zero_is_crowd,
        )  # fmt: skip

    def update(self, pred_sem: Any, pred_inst: Any, gt_sem: Any, gt_inst: Any, gt_crowd_mask: Any = None) -> None:
        pred = self._segments(pred_sem, pred_inst, None, False)
        gt = self._segments(gt_sem, gt_inst, gt_crowd_mask, self.gt_zero_instance_is_crowd)
        if pred.index.shape != gt.index.shape:
            raise ValueError(f"prediction {pred.index.shape} and ground truth {gt.index.shape} differ in shape")
        tp, fp, fn, iou_sum = match_segments(pred, gt, self.num_classes)
        self._stats.tp += tp
        self._stats.fp += fp
        self._stats.fn += fn
        self._stats.iou_sum += iou_sum
        self.num_images += 1

    def merge(self, other: PanopticQuality) -> None:
        if other.num_classes != self.num_classes:
            raise ValueError("cannot merge accumulators with different class counts")
        for name in ("tp", "fp", "fn", "iou_sum"):
            setattr(self._stats, name, getattr(self._stats, name) + getattr(other._stats, name))
        self.num_images += other.num_images

    def compute(self) -> dict[str, Any]:
        """``{"all"|"things"|"stuff": {"pq", "sq", "rq", "n"}, "per_class": {class_id: {...}}, "num_images"}``.

        Per class: name, is_thing, pq, sq, rq (NaN where TP+FP+FN == 0), tp, fp, fn, iou_sum.
        Aggregates: means over the classes of the group with TP+FP+FN > 0 (NaN if none); ``n`` counts them.
        """
        s = self._stats
        tp, fp, fn = s.tp.astype(np.float64), s.fp.astype(np.float64), s.fn.astype(np.float64)
        denom = tp + 0.5 * fp + 0.5 * fn
        counted = (s.tp + s.fp + s.fn) > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            pq = np.where(counted, s.iou_sum / denom, np.nan)
            sq = np.where(counted, np.where(tp > 0, s.iou_sum / np.maximum(tp, 1), 0.0), np.nan)
            rq = np.where(counted, tp / denom, np.nan)
        out: dict[str, Any] = {}
        for name, group in (("all", np.ones_like(counted)), ("things", self._is_thing), ("stuff", ~self._is_thing)):
            sel = counted & group
            n = int(sel.sum())
            out[name] = {
                "pq": float(pq[sel].mean()) if n else float("nan"),
                "sq": float(sq[sel].mean()) if n else float("nan"),
                "rq": float(rq[sel].mean()) if n else float("nan"),
                "n": n,
            }
        out["per_class"] = {
            c: {
                "name": self.class_names[c], "is_thing": bool(self._is_thing[c]), "pq": float(pq[c]),
                "sq": float(sq[c]), "rq": float(rq[c]), "tp": int(s.tp[c]), "fp": int(s.fp[c]), "fn": int(s.fn[c]),
                "iou_sum": float(s.iou_sum[c]),
            }
            for c in range(self.num_classes)
        }
        out["num_images"] = self.num_images
        return out


# --------------------------------------------------------------------------------------------------------------
# Conversions
# --------------------------------------------------------------------------------------------------------------


def cityscapes_instance_ids_to_panoptic(instance_ids: Any, lane_mask: Any = None) -> PanopticLabels:
    """Cityscapes ``*_gtFine_instanceIds.png`` array -> our format.

    ``labelId*1000 + k`` (thing instance k = 0, 1, ...) becomes instance id ``k + 1``; a thing pixel stored as its
    bare labelId (< 1000) is crowd (instance 0, ``crowd`` True); labelIds not evaluated (void, caravan, ...) become
    255. ``lane_mask`` (optional) relabels its pixels as lane_marking, as ``labels.label_ids_to_train_ids`` does.
    """
    ids = to_int64(instance_ids, "instance_ids")
    if (ids < 0).any():
        raise ValueError("negative Cityscapes instance ids")
    is_inst = ids >= CITYSCAPES_INSTANCE_OFFSET
    label = np.where(is_inst, ids // CITYSCAPES_INSTANCE_OFFSET, ids)
    if label.max(initial=0) > 255:
        raise ValueError("Cityscapes labelIds above 255")
    sem = label_ids_to_train_ids(label.astype(np.uint8), lane_mask)
    thing = _thing_lut(NUM_CLASSES, THING_TRAIN_IDS)[np.where(sem < NUM_CLASSES, sem, 0)] & (sem < NUM_CLASSES)
    inst = np.where(thing & is_inst, ids % CITYSCAPES_INSTANCE_OFFSET + 1, 0).astype(np.int32)
    return PanopticLabels(sem, inst, thing & ~is_inst)


def panoptic_to_cityscapes_instance_ids(semantic: Any, instance: Any, crowd: Any = None) -> np.ndarray:
    """Our format -> Cityscapes instanceIds (int32; save as uint16 PNG). Inverse of the function above.

    Thing pixels with instance ``i > 0`` (and not crowd) become ``labelId*1000 + i - 1``; all others their labelId
    (VOID -> 0, lane_marking -> road). Instance ids must be <= 1000.
    """
    sem = to_int64(semantic, "semantic")
    inst = to_int64(instance, "instance")
    crowd_m = np.zeros(sem.shape, bool) if crowd is None else to_bool(crowd, "crowd")
    check_same_shape(semantic=sem, instance=inst, crowd=crowd_m)
    valid = (sem >= 0) & (sem < NUM_CLASSES)
    sem_v = np.where(valid, sem, IGNORE_TRAIN_ID)
    label = train_ids_to_label_ids(sem_v.astype(np.uint8)).astype(np.int32)
    thing = _thing_lut(NUM_CLASSES, THING_TRAIN_IDS)[np.where(valid, sem, 0)] & valid & (inst > 0) & ~crowd_m
    if (inst[thing] > CITYSCAPES_INSTANCE_OFFSET).any():
        raise ValueError(f"instance ids above {CITYSCAPES_INSTANCE_OFFSET} do not fit the Cityscapes encoding")
    return np.where(thing, label * CITYSCAPES_INSTANCE_OFFSET + inst - 1, label).astype(np.int32)


def panoptic_to_coco(
    semantic: Any, instance: Any, crowd: Any = None, *, category_ids: np.ndarray | None = None,
    num_classes: int = NUM_CLASSES, thing_ids: tuple[int, ...] = THING_TRAIN_IDS, zero_instance_is_crowd: bool = False,
) -> tuple[np.ndarray, list[dict[str, Any]]]:  # fmt: skip
    """Our format -> COCO panoptic: (segment id map int32, 0 = VOID; ``segments_info`` list for the JSON).

    ``category_ids`` maps trainId -> category id (array indexed by trainId); by default the Cityscapes labelIds
    (``labels.train_ids_to_label_ids``: lane_marking -> road), the ids the official panoptic evaluator uses.
    Classes mapped to the same category are merged into one segment per (category, instance). Segment ids are
    1..n in order of (category, instance). ``crowd``/``zero_instance_is_crowd`` mark ground-truth crowd regions
    (``iscrowd: 1``), as in ``extract_segments``. Pixels outside ``[0, num_classes)`` are VOID.
    """
    sem = to_int64(semantic, "semantic")
    if category_ids is None:
        lut = train_ids_to_label_ids(np.arange(256, dtype=np.uint8)).astype(np.int64)
    else:
        lut = np.asarray(category_ids, dtype=np.int64)
    valid = (sem >= 0) & (sem < num_classes)
    sem_v = np.where(valid, sem, 0)
    cat = lut[sem_v]
    valid &= cat >= 0  # a negative category drops the class (VOID)
    n_cat = int(cat[valid].max(initial=0)) + 1
    # Re-segment on the category map (classes sharing a category merge), thing status from the trainId.
    cat_thing = np.zeros(n_cat, dtype=bool)
    cat_thing[cat[valid & _thing_lut(num_classes, thing_ids)[sem_v]]] = True
    seg = extract_segments(
        np.where(valid, cat, n_cat), instance, num_classes=n_cat, thing_ids=tuple(np.nonzero(cat_thing)[0].tolist()),
        ignore_index=n_cat, crowd_mask=crowd, zero_instance_is_crowd=zero_instance_is_crowd,
    )  # fmt: skip
    id_map = (seg.index + 1).astype(np.int32)  # VOID -> 0
    h, w = id_map.shape
    flat = seg.index.ravel()
    on = flat >= 0
    rows, cols = np.divmod(np.nonzero(on)[0], w)
    s = flat[on]
    n = seg.cls.size
    y0 = np.full(n, h, np.int64)
    x0 = np.full(n, w, np.int64)
    y1 = np.full(n, -1, np.int64)
    x1 = np.full(n, -1, np.int64)
    np.minimum.at(y0, s, rows)
    np.minimum.at(x0, s, cols)
    np.maximum.at(y1, s, rows)
    np.maximum.at(x1, s, cols)
    infos = [
        {
            "id": i + 1, "category_id": int(seg.cls[i]), "area": int(seg.area[i]),
            "bbox": [int(x0[i]), int(y0[i]), int(x1[i] - x0[i] + 1), int(y1[i] - y0[i] + 1)],
            "iscrowd": int(seg.crowd[i]),
        }
        for i in range(n)
    ]
    return id_map, infos


def id_map_to_rgb(id_map: Any) -> np.ndarray:
    """COCO panoptic segment ids -> RGB PNG array (R + 256 G + 256^2 B = id)."""
    ids = to_int64(id_map, "id_map")
    if (ids < 0).any() or (ids >= 256**3).any():
        raise ValueError("segment ids must be in [0, 256^3)")
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)


def rgb_to_id_map(rgb: Any) -> np.ndarray:
    """RGB COCO panoptic PNG array -> segment ids (int64)."""
    a = to_int64(rgb, "rgb")
    return a[..., 0] + 256 * a[..., 1] + 65536 * a[..., 2]
