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


def _fit(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Robust quadratic (a, b, c) of y(x), and the inlier mask: least squares, then again without points
    beyond 3 median absolute deviations (0.05 m at least)."""
    x, y = points[:, 0], points[:, 1]
    degree = 2 if np.ptp(x) > 8.0 else 1  # a short piece cannot tell a curve from a slant
    centre = float(x.mean())  # fitted about the centre: powers of tens of metres stay well conditioned
    inliers = np.ones(len(x), bool)
    for _ in range(2):
        local = _polyfit(x[inliers] - centre, y[inliers], degree)
        residual = np.abs(y - np.polynomial.polynomial.polyval(x - centre, local))
        spread = max(0.05, 3.0 * float(np.median(residual[inliers])))
        inliers = residual <= spread
    # back to powers of x itself: y = sum local_k (x - centre)^k
    shifted = np.polynomial.polynomial.Polynomial(local)(np.polynomial.polynomial.Polynomial([-centre, 1.0]))
    return np.pad(shifted.coef, (0, 3 - len(shifted.coef))), inliers


def _line(points: np.ndarray) -> np.ndarray:
    """Least-squares (a, b, 0) of y = a + b x in closed form: a piece only needs its local direction."""
    x, y = points[:, 0], points[:, 1]
    dx = x - x.mean()
    slope = float((dx * (y - y.mean())).sum() / max((dx * dx).sum(), 1e-12))
    return np.array([y.mean() - slope * x.mean(), slope, 0.0])


def fit_lane_boundaries(lane_mask: np.ndarray, projector: GroundProjector, *, min_pixels: int = 3,
                        max_range_m: float = 60.0, step_m: float = 1.0) -> list[LaneBoundary]:
    """Boundaries in one (H, W) lane-marking mask (nonzero = marking) of the projector's camera.

    The mask is max-pooled 2x2 first (a one-pixel far line survives; components, pixels and Python work
    drop fourfold); ``min_pixels`` counts pooled pixels."""
    height, width = lane_mask.shape
    marked = (lane_mask[:height // 2 * 2, :width // 2 * 2] > 0).view(np.uint8) * np.uint8(255)
    # the 2x2 mean (of 0/255) is above 0 exactly where any of the four is marked: a max-pool in one call
    pooled = cv2.resize(marked, (width // 2, height // 2), interpolation=cv2.INTER_AREA) > 0
    count, labels, stats, _ = cv2.connectedComponentsWithStats(pooled.view(np.uint8), connectivity=8)
    rng = np.random.default_rng(0)  # which pixels are sampled must not change from run to run
    ys, xs = np.nonzero(pooled)  # every marking pixel once; grouped by component below, not searched per one
    component_of = labels[ys, xs]
    order = np.argsort(component_of, kind="stable")
    starts = np.searchsorted(component_of[order], np.arange(1, count + 1))
    sampled = []
    for component in range(1, count):
        if stats[component, cv2.CC_STAT_AREA] < min_pixels:
            continue
        members = order[starts[component - 1]:starts[component]]
        if len(members) > _SAMPLES_PER_COMPONENT:
            members = rng.choice(members, _SAMPLES_PER_COMPONENT, replace=False)
        sampled.append((component, members))
    if not sampled:
        return []
    every = np.concatenate([members for _, members in sampled])
    # pooled pixel (i, j) covers full-resolution pixels 2i..2i+1: its centre is at 2i + 0.5
    centres = np.stack([xs[every], ys[every]], 1).astype(np.float64) * 2.0 + 0.5
    ground_all = projector.to_ground(centres)  # one call for every component
    pieces = []  # (ground points (n, 2), x_min, x_max, coefficients)
    offset = 0
    for _, members in sampled:
        ground = ground_all[offset:offset + len(members)]
        offset += len(members)
        ground = ground[np.isfinite(ground).all(1) & (np.hypot(*ground.T) <= max_range_m)]
        if len(ground) < 3 or np.ptp(ground[:, 0]) < 0.5:
            continue
        if np.ptp(ground[:, 1]) > np.ptp(ground[:, 0]):
            continue  # across the road: a stop line or a crosswalk bar, not a boundary
        pieces.append((ground, float(ground[:, 0].min()), float(ground[:, 0].max()), _line(ground)))

    groups: list[list[int]] = []
    for index in sorted(range(len(pieces)), key=lambda i: pieces[i][1]):
        points, x_min, _, _ = pieces[index]
        for group in groups:
            last = pieces[group[-1]]
            # where this piece starts, the group's last piece (extrapolated) must be laterally close
            y_expected = np.polynomial.polynomial.polyval(x_min, last[3])
            y_here = float(points[np.argmin(points[:, 0]), 1])
            if x_min > last[1] and abs(y_expected - y_here) < _JOIN_LATERAL_M:
                group.append(index)
                break
        else:
            groups.append([index])

    boundaries = []
    for group in groups:
        points = np.concatenate([pieces[i][0] for i in group])
        coefficients, inliers = _fit(points)
        x0, x1 = float(points[inliers, 0].min()), float(points[inliers, 0].max())
        xs = np.arange(x0, x1 + 1e-9, step_m) if x1 - x0 >= step_m else np.array([x0, x1])
        curve = np.stack([xs, np.polynomial.polynomial.polyval(xs, coefficients)], 1)
        gaps = [pieces[b][1] - pieces[a][2] for a, b in pairwise(group)]
        style = "dashed" if any(gap > _DASH_GAP_M for gap in gaps) else "solid"
        marked = sum(pieces[i][2] - pieces[i][1] for i in group)  # metres of marking seen along x
        length = float(np.hypot(*np.diff(curve, axis=0).T).sum())
        boundaries.append(LaneBoundary(points_xy=curve, coefficients=tuple(float(c) for c in coefficients),
                                       style=style, confidence=float(inliers.mean() * min(1.0, marked / 10.0)),
                                       length_m=length))
    return boundaries
