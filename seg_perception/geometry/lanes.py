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


@dataclass(frozen=True)
class LaneBoundary:
    points_xy: np.ndarray  # (N, 2) metres in base_link along the fitted curve, every ``step_m`` of x
    coefficients: tuple[float, float, float]  # y = a + b x + c x^2
    style: str  # "solid" | "dashed"
    confidence: float  # 0..1: inlier share, times the metres of marking seen up to 10 m
    length_m: float  # along the curve, from the nearest to the farthest marking seen


def _polyfit(x: np.ndarray, y: np.ndarray, degree: int) -> np.ndarray:
    """Least-squares polynomial coefficients (low order first) from the normal equations: a few hundred
    points and a 3x3 solve, far cheaper per call than numpy's general lstsq on small inputs."""
    powers = np.stack([x**k for k in range(degree + 1)])
    return np.linalg.solve(powers @ powers.T + 1e-9 * np.eye(degree + 1), powers @ y)


def _quadratic(coefficients: np.ndarray, x: np.ndarray | float) -> np.ndarray | float:
    """y = a + b x + c x^2 (numpy's polynomial classes cost more per call than the arithmetic)."""
    a, b, c = coefficients
    return a + (b + c * x) * x


def _fit(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Robust quadratic (a, b, c) of y(x), and the inlier mask: least squares, then again without points
    beyond 3 median absolute deviations (0.05 m at least)."""
    x, y = points[:, 0], points[:, 1]
    degree = 2 if np.ptp(x) > 8.0 else 1  # a short piece cannot tell a curve from a slant
    centre = float(x.mean())  # fitted about the centre: powers of tens of metres stay well conditioned
    inliers = np.ones(len(x), bool)
    for _ in range(2):
        local = np.pad(_polyfit(x[inliers] - centre, y[inliers], degree), (0, 2 - degree))
        residual = np.abs(y - _quadratic(local, x - centre))
        spread = max(0.05, 3.0 * float(np.median(residual[inliers])))
        inliers = residual <= spread
    # back to powers of x itself: l0 + l1 (x - m) + l2 (x - m)^2
    l0, l1, l2 = local
    return np.array([l0 - l1 * centre + l2 * centre * centre, l1 - 2.0 * l2 * centre, l2]), inliers


def fit_lane_boundaries(lane_mask: np.ndarray, projector: GroundProjector, *, min_pixels: int = 3,
                        max_range_m: float = 60.0, step_m: float = 1.0) -> list[LaneBoundary]:
    """Boundaries in one (H, W) lane-marking mask (nonzero = marking) of the projector's camera.

    The mask is max-pooled 2x2 first (a one-pixel far line survives; components, pixels and Python work
    drop fourfold); ``min_pixels`` counts pooled pixels."""
    height, width = lane_mask.shape
    _, marked = cv2.threshold(np.ascontiguousarray(lane_mask[:height // 2 * 2, :width // 2 * 2], np.uint8), 0, 255,
                              cv2.THRESH_BINARY)
    # the 2x2 mean (of 0/255) is above 0 exactly where any of the four is marked: a max-pool in one call
    pooled = cv2.resize(marked, (width // 2, height // 2), interpolation=cv2.INTER_AREA)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(pooled, connectivity=8)
    found = cv2.findNonZero(pooled)  # every marking pixel once; grouped by component below, not searched per one
    if found is None:
        return []
    found = found.reshape(-1, 2)  # (x, y) rows; OpenCV versions differ in the extra axis
    xs, ys = found[:, 0], found[:, 1]
    component_of = labels[ys, xs]
    order = np.argsort(component_of, kind="stable")
    bounds = np.searchsorted(component_of[order], np.arange(1, count + 1))
    segments = []
    for component in range(1, count):
        if stats[component, cv2.CC_STAT_AREA] >= min_pixels:
            members = order[bounds[component - 1]:bounds[component]]
            segments.append(members[::-(-len(members) // _SAMPLES_PER_COMPONENT)])  # an even, fixed sample
    if not segments:
        return []
    lengths = np.array([len(members) for members in segments])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    every = np.concatenate(segments)
    # pooled pixel (i, j) covers full-resolution pixels 2i..2i+1: its centre is at 2i + 0.5
    ground = projector.to_ground(np.stack([xs[every], ys[every]], 1).astype(np.float64) * 2.0 + 0.5)
    x, y = ground[:, 0], ground[:, 1]
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(x) & np.isfinite(y) & (np.hypot(x, y) <= max_range_m)
    # every piece's extent and least-squares line at once, by segment sums (no Python loop over pixels)
    x_min, x_max = (np.fmin.reduceat(np.where(valid, x, np.nan), starts),
                    np.fmax.reduceat(np.where(valid, x, np.nan), starts))
    y_min, y_max = (np.fmin.reduceat(np.where(valid, y, np.nan), starts),
                    np.fmax.reduceat(np.where(valid, y, np.nan), starts))
    x0, y0 = np.where(valid, x, 0.0), np.where(valid, y, 0.0)
    n = np.add.reduceat(valid.astype(np.float64), starts)
    sx, sy = np.add.reduceat(x0, starts), np.add.reduceat(y0, starts)
    sxx, sxy = np.add.reduceat(x0 * x0, starts), np.add.reduceat(x0 * y0, starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = (sxy - sx * sy / n) / np.maximum(sxx - sx * sx / n, 1e-12)
        intercept = (sy - slope * sx) / n
        # across the road (a stop line or a crosswalk bar) is not a boundary
        usable = (n >= 3) & (x_max - x_min >= 0.5) & (y_max - y_min <= x_max - x_min)
    piece_of_point = np.repeat(np.arange(len(segments)), lengths)
    # per piece: x extent, its line, and its mean point (well determined even where the line is not)
    pieces = {int(i): (float(x_min[i]), float(x_max[i]), np.array([intercept[i], slope[i], 0.0]),
                       float(sx[i] / n[i]), float(sy[i] / n[i])) for i in np.flatnonzero(usable)}

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

    boundaries = []
    for group in groups:
        points = ground[valid & np.isin(piece_of_point, group)]
        coefficients, inliers = _fit(points)
        x0, x1 = float(points[inliers, 0].min()), float(points[inliers, 0].max())
        xs = np.arange(x0, x1 + 1e-9, step_m) if x1 - x0 >= step_m else np.array([x0, x1])
        curve = np.stack([xs, _quadratic(coefficients, xs)], 1)
        gaps = [pieces[b][0] - pieces[a][1] for a, b in pairwise(group)]
        style = "dashed" if any(gap > _DASH_GAP_M for gap in gaps) else "solid"
        marked_m = sum(pieces[i][1] - pieces[i][0] for i in group)  # metres of marking seen along x
        length = float(np.hypot(*np.diff(curve, axis=0).T).sum())
        boundaries.append(LaneBoundary(points_xy=curve, coefficients=tuple(float(c) for c in coefficients),
                                       style=style, confidence=float(inliers.mean() * min(1.0, marked_m / 10.0)),
                                       length_m=length))
    return boundaries
