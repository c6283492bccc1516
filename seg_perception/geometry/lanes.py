"""Lane boundaries in metres: the lane-marking mask on the flat ground of ``base_link``, as curves.

Per camera frame: the mask's connected components are projected onto the ground (a sample of each one's
pixels, undistorted), components that continue one another laterally are joined (the dashes of one
line), and each joined group gets a robust quadratic ``y = a + b x + c x^2``, refitted without its
outliers. A group of several components with gaps between them along x is ``dashed``; one continuous
component ``solid``. Lanes run along the road, so ``y`` as a function of ``x`` suits front, rear and side
cameras alike; a marking across the road (a stop line) is not a boundary and is left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import cv2
import numpy as np

from seg_perception.geometry.camera import GroundProjector

_SAMPLES_PER_COMPONENT = 400  # projected pixels per component: plenty for a quadratic, cheap for cv2
_JOIN_LATERAL_M = 0.35  # dashes of one line continue each other within this lateral offset
_JOIN_OVERLAP_M = 1.0  # ... and may overlap along x by this much (a line broken where it thins out)
_DASH_GAP_M = 1.0  # a gap along x longer than this between a group's pieces makes it dashed
# entry (j, k) of a polynomial's normal matrix is the sum of u^(j + k): five sums fill the 3x3
_HANKEL = np.add.outer(np.arange(3), np.arange(3))
_RIDGE = 1e-9 * np.eye(3)


@dataclass(frozen=True)
class LaneBoundary:
    points_xy: np.ndarray  # (N, 2) metres in base_link along the fitted curve, every ``step_m`` of x
    coefficients: tuple[float, float, float]  # y = a + b x + c x^2
    style: str  # "solid" | "dashed"
    confidence: float  # 0..1: inlier share, times the metres of marking seen up to 10 m
    length_m: float  # along the curve, from the nearest to the farthest marking seen


def _quadratic(coefficients: np.ndarray, x: np.ndarray | float) -> np.ndarray | float:
    """y = a + b x + c x^2 (numpy's polynomial classes cost more per call than the arithmetic)."""
    a, b, c = coefficients
    return a + (b + c * x) * x


def _median(values: np.ndarray) -> float:
    """np.median's value without its per-call overhead (a partial sort is all it takes)."""
    half = len(values) // 2
    if len(values) % 2:
        return float(np.partition(values, half)[half])
    low, high = np.partition(values, (half - 1, half))[half - 1:half + 1]
    return float((low + high) / 2)


def _fit(x: np.ndarray, y: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Robust quadratics (G, 3) of y(x), a + b x + c x^2, one per group of points (stored one after
    another, ``sizes`` each), and the inlier mask: least squares, then again without points beyond 3
    median absolute deviations (0.05 m at least). The groups' sums and solves are batched: on a few
    hundred points numpy's per-call overhead, not the arithmetic, is what costs."""
    starts = np.cumsum(sizes) - sizes
    spans = list(pairwise([*starts.tolist(), len(x)]))
    group = np.repeat(np.arange(len(sizes)), sizes)
    # a short group cannot tell a curve from a slant: fitted as a line, its c pinned to 0 (identity row/column)
    straight = np.maximum.reduceat(x, starts) - np.minimum.reduceat(x, starts) <= 8.0
    centre = np.add.reduceat(x, starts) / sizes  # about the centre: powers of tens of metres stay well conditioned
    u = x - centre[group]
    u2 = u * u
    # the normal equations need only the sums of u^0..u^4 and y u^0..u^2 over the points kept
    moments = np.stack([np.ones_like(u), u, u2, u2 * u, u2 * u2, y, y * u, y * u2])
    kept = np.ones(len(x), bool)
    for _ in range(2):
        sums = np.add.reduceat(moments * kept, starts, axis=1).T
        normal, rhs = sums[:, _HANKEL] + _RIDGE, sums[:, 5:]
        normal[straight, 2, :] = normal[straight, :, 2] = (0.0, 0.0, 1.0)
        rhs[straight, 2] = 0.0
        local = np.linalg.solve(normal, rhs[:, :, None])[:, :, 0]
        residual = np.abs(y - _quadratic(local[group].T, u))
        spread = [max(0.05, 3.0 * _median(residual[a:b][kept[a:b]])) for a, b in spans]
        kept = residual <= np.repeat(spread, sizes)
    # back to powers of x itself: l0 + l1 (x - m) + l2 (x - m)^2
    l0, l1, l2 = local.T
    return np.stack([l0 - l1 * centre + l2 * centre * centre, l1 - 2.0 * l2 * centre, l2], 1), kept


def _component_samples(lane_mask: np.ndarray, min_pixels: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Pixels (x, y) of the max-pooled mask, an even sample of each component of ``min_pixels`` or more,
    component after component, as full-resolution pixel coordinates of their centres; and the sample's
    size per component. None without any."""
    height, width = lane_mask.shape
    mask = lane_mask[:height // 2 * 2, :width // 2 * 2]
    # a boolean mask is read as its 0/1 bytes, without a converted copy
    mask = np.ascontiguousarray(mask.view(np.uint8) if mask.dtype == bool else mask, np.uint8)
    # a max-pool (any of the four marked) without touching the full-resolution mask twice: each pair of
    # bytes along a row read as one uint16, OR-ed with the row below, then saturated back to one byte
    pairs = mask.view(np.uint16)
    pooled = cv2.convertScaleAbs(cv2.bitwise_or(pairs[0::2], pairs[1::2]))
    # labelled only within the marking's bounding box (the sky and bonnet rows are empty): the same
    # components in the same scan order, at half the cost or less
    left, top, box_width, box_height = cv2.boundingRect(pooled)
    if box_width == 0:
        return None
    box = pooled[top:top + box_height, left:left + box_width]
    count, labels = cv2.connectedComponents(box, connectivity=8)  # no stats: they cost ~4x the labelling
    found = cv2.findNonZero(box).reshape(-1, 2)  # (x, y) rows, scan order; OpenCV versions differ in the extra axis
    component_of = labels[found[:, 1], found[:, 0]]
    order = np.argsort(component_of, kind="stable")  # grouped by component, each still in scan order
    sizes = np.bincount(component_of, minlength=count)
    ends = np.cumsum(sizes)  # component c is order[ends[c] - sizes[c]:ends[c]]
    samples = [order[ends[c] - sizes[c]:ends[c]:-(-sizes[c] // _SAMPLES_PER_COMPONENT)]  # an even, fixed sample
               for c in (np.flatnonzero(sizes[1:] >= min_pixels) + 1).tolist()]
    if not samples:
        return None
    # pooled pixel (i, j) covers full-resolution pixels 2i..2i+1: its centre is at 2i + 0.5
    centres = found[np.concatenate(samples)] * 2.0 + (2.0 * left + 0.5, 2.0 * top + 0.5)
    return centres, np.array([len(members) for members in samples])


def _pieces(ground: np.ndarray, valid: np.ndarray, lengths: np.ndarray) -> dict[int, tuple]:
    """Per usable piece (component) index: its x extent, its least-squares line (as quadratic coefficients)
    and its mean point (well determined even where the line is not). Computed for all pieces at once by
    segment sums; a piece across the road (a stop line or a crosswalk bar) is not a boundary."""
    starts = np.cumsum(lengths) - lengths
    seen = np.where(valid[:, None], ground, np.nan)  # fmin/fmax pass over NaN
    (x_min, y_min), (x_max, y_max) = np.fmin.reduceat(seen, starts).T, np.fmax.reduceat(seen, starts).T
    x, y = np.where(valid[:, None], ground, 0.0).T
    n, sx, sy, sxx, sxy = np.add.reduceat(np.stack([valid, x, y, x * x, x * y]), starts, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = (sxy - sx * sy / n) / np.maximum(sxx - sx * sx / n, 1e-12)
        intercept = (sy - slope * sx) / n
        usable = (n >= 3) & (x_max - x_min >= 0.5) & (y_max - y_min <= x_max - x_min)
    return {int(i): (float(x_min[i]), float(x_max[i]), (float(intercept[i]), float(slope[i]), 0.0),
                     float(sx[i] / n[i]), float(sy[i] / n[i])) for i in np.flatnonzero(usable)}


def _join(pieces: dict[int, tuple]) -> list[list[int]]:
    """Pieces (nearest first) that continue one another laterally, as groups: the dashes of one line."""
    groups: list[list[int]] = []
    for index in sorted(pieces, key=lambda i: pieces[i][0]):
        start, _, _, mean_x, mean_y = pieces[index]
        for group in groups:
            last = pieces[group[-1]]
            # the group's last piece, extrapolated, must pass laterally close to this piece's mean point
            if start > last[1] - _JOIN_OVERLAP_M and abs(_quadratic(last[2], mean_x) - mean_y) < _JOIN_LATERAL_M:
                group.append(index)
                break
        else:
            groups.append([index])
    return groups


def _boundaries(x: np.ndarray, y: np.ndarray, groups: list[list[int]], sizes: np.ndarray,
                pieces: dict[int, tuple], step_m: float) -> list[LaneBoundary]:
    """The groups' robust curves (points stored group after group, ``sizes`` each), each sampled every
    ``step_m`` of x over its inliers, and their styles."""
    coefficients, inliers = _fit(x, y, sizes)
    starts = np.cumsum(sizes) - sizes
    seen = np.where(inliers, x, np.nan)
    near, far = np.fmin.reduceat(seen, starts).tolist(), np.fmax.reduceat(seen, starts).tolist()
    share = (np.add.reduceat(inliers, starts, dtype=np.intp) / sizes).tolist()
    boundaries = []
    for group, c, x0, x1, inlier_share in zip(groups, coefficients, near, far, share, strict=True):
        xs = np.arange(x0, x1 + 1e-9, step_m) if x1 - x0 >= step_m else np.array([x0, x1])
        curve = np.stack([xs, _quadratic(c, xs)], 1)
        gaps = [pieces[b][0] - pieces[a][1] for a, b in pairwise(group)]
        style = "dashed" if any(gap > _DASH_GAP_M for gap in gaps) else "solid"
        marked_m = sum(pieces[i][1] - pieces[i][0] for i in group)  # metres of marking seen along x
        boundaries.append(LaneBoundary(points_xy=curve, coefficients=tuple(c.tolist()), style=style,
                                       confidence=inlier_share * min(1.0, marked_m / 10.0),
                                       length_m=float(np.hypot(*np.diff(curve, axis=0).T).sum())))
    return boundaries


def fit_lane_boundaries(lane_mask: np.ndarray, projector: GroundProjector, *, min_pixels: int = 3,
                        max_range_m: float = 60.0, step_m: float = 1.0) -> list[LaneBoundary]:
    """Boundaries in one (H, W) lane-marking mask (nonzero = marking) of the projector's camera.

    The mask is max-pooled 2x2 first (a one-pixel far line survives; components, pixels and Python work
    drop fourfold); ``min_pixels`` counts pooled pixels."""
    sampled = _component_samples(lane_mask, min_pixels)
    if sampled is None:
        return []
    pixels, lengths = sampled
    ground = projector.to_ground(pixels)
    valid = np.hypot(ground[:, 0], ground[:, 1]) <= max_range_m  # False for NaN (beyond the horizon) too
    pieces = _pieces(ground, valid, lengths)
    groups = _join(pieces)
    if not groups:
        return []
    # each valid point's group (-1: none), then the points group after group, each in its pixels' order
    group_of_piece = np.full(len(lengths), -1)
    for index, group in enumerate(groups):
        group_of_piece[group] = index
    group_of_point = np.where(valid, np.repeat(group_of_piece, lengths), -1)
    order = np.argsort(group_of_point, kind="stable")[np.count_nonzero(group_of_point < 0):]
    sizes = np.bincount(group_of_point[order], minlength=len(groups))
    return _boundaries(ground[order, 0], ground[order, 1], groups, sizes, pieces, step_m)
