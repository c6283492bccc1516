"""Road geometry: the centreline curve, the cross-section (lanes, markings, curbs, sidewalks) and the
ground surfaces as world-space polygons in road-aligned coordinates.

``s`` is the arc length along the reference line, ``d`` the lateral offset (positive = left of the driving
direction). The reference line is the middle of the carriageway's lanes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from seg_perception.synth.config import ROAD_START_M, SceneConfig

SAMPLE_M = 0.25  # centreline sampling step
SMOOTH_M = 30.0  # curvature is averaged over this length: clothoid-like transitions, no heading kinks
GROUND_RANGE_M = 600.0  # ground polygons reach this far ahead of and behind the ego
MARKING_RANGE_M = 300.0  # dashes beyond this would be sub-pixel anyway
CURB_WIDTH_M = 0.2
PARKING_WIDTH_M = 2.2
BIKE_LANE_WIDTH_M = 1.5
GRAVEL_WIDTH_M = 0.8


class Road:
    """A smooth centreline from piecewise-constant curvature, sampled densely; s = 0 is the origin,
    heading 0."""

    def __init__(self, segments: tuple[tuple[float, float], ...], end_s: float) -> None:
        layout_end = ROAD_START_M + sum(length for length, _ in segments)
        end_s = max(end_s, layout_end) + SMOOTH_M
        n = int(np.ceil((end_s - ROAD_START_M) / SAMPLE_M)) + 1
        self.s = ROAD_START_M + SAMPLE_M * np.arange(n)
        kappa = np.zeros(n)
        start = ROAD_START_M
        for length, k in segments:
            kappa[(self.s >= start) & (self.s < start + length)] = k
            start += length
        self.kappa = _moving_average(kappa, round(SMOOTH_M / SAMPLE_M))
        theta = _cumulative_trapezoid(self.kappa, SAMPLE_M)
        x = _cumulative_trapezoid(np.cos(theta), SAMPLE_M)
        y = _cumulative_trapezoid(np.sin(theta), SAMPLE_M)
        i0 = round(-ROAD_START_M / SAMPLE_M)  # index of s = 0
        self.theta, self.x, self.y = theta - theta[i0], x - x[i0], y - y[i0]
        rot = -theta[i0]
        self.x, self.y = (
            self.x * np.cos(rot) - self.y * np.sin(rot),
            self.x * np.sin(rot) + self.y * np.cos(rot),
        )

    @property
    def end_s(self) -> float:
        return float(self.s[-1])

    def pose(self, s: np.ndarray | float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Centreline x, y and heading at arc length(s) s."""
        return np.interp(s, self.s, self.x), np.interp(s, self.s, self.y), np.interp(s, self.s, self.theta)

    def curvature(self, s: np.ndarray | float) -> np.ndarray:
        return np.interp(s, self.s, self.kappa)

    def point(self, s: np.ndarray | float, d: np.ndarray | float) -> np.ndarray:
        """World (x, y) of road coordinates (s, d); broadcasts, returns shape (..., 2)."""
        x, y, th = self.pose(s)
        return np.stack(np.broadcast_arrays(x - d * np.sin(th), y + d * np.cos(th)), axis=-1)


def _moving_average(values: np.ndarray, window: int) -> np.ndarray:
    if window < 2:
        return values
    padded = np.concatenate(
        [np.full(window // 2, values[0]), values, np.full(window - window // 2 - 1, values[-1])]
    )
    c = np.concatenate([[0.0], np.cumsum(padded)])
    return (c[window:] - c[:-window]) / window


def _cumulative_trapezoid(values: np.ndarray, step: float) -> np.ndarray:
    out = np.zeros_like(values)
    out[1:] = np.cumsum((values[1:] + values[:-1]) * 0.5 * step)
    return out


@dataclass(frozen=True)
class Marking:
    d: float  # centre of the painted line
    width: float
    dashed: bool
    yellow: bool


@dataclass(frozen=True)
class Side:
    """Lateral layout of one road side, as distances |d| from the reference line."""

    sign: int  # -1 right, +1 left
    road_edge: float  # end of the drivable surface (curb face)
    curb_end: float
    sidewalk_end: float
    verge_end: float
    building_line: float


class CrossSection:
    """Where lanes, markings, curbs and sidewalks are, from a SceneConfig."""

    def __init__(self, cfg: SceneConfig) -> None:
        self.cfg = cfg
        n, w = cfg.num_lanes, cfg.lane_width_m
        self.lanes_right, self.lanes_left = -n * w / 2.0, n * w / 2.0
        self.bike_lane = (self.lanes_right - BIKE_LANE_WIDTH_M, self.lanes_right) if cfg.bike_lane else None
        right_edge = -self.lanes_right + (BIKE_LANE_WIDTH_M if cfg.bike_lane else 0.0)
        self.parking_right = (-(right_edge + PARKING_WIDTH_M), -right_edge) if cfg.parking_right else None
        right_edge += (PARKING_WIDTH_M if cfg.parking_right else 0.0) + cfg.shoulder_m
        self.parking_left = (self.lanes_left, self.lanes_left + PARKING_WIDTH_M) if cfg.parking_left else None
        left_edge = self.lanes_left + (PARKING_WIDTH_M if cfg.parking_left else 0.0) + cfg.shoulder_m
        self.sides = (self._side(-1, right_edge), self._side(1, left_edge))
        self.markings = self._markings()

    def _side(self, sign: int, edge: float) -> Side:
        cfg = self.cfg
        curb_end = edge + (CURB_WIDTH_M if cfg.curb_height_m > 0 else 0.0)
        sidewalk_end = curb_end + cfg.sidewalk_width_m
        verge_end = sidewalk_end + cfg.verge_width_m
        return Side(sign, edge, curb_end, sidewalk_end, verge_end, verge_end + cfg.building_setback_m)

    @property
    def right(self) -> Side:
        return self.sides[0]

    @property
    def left(self) -> Side:
        return self.sides[1]

    @property
    def road_span(self) -> tuple[float, float]:
        return -self.right.road_edge, self.left.road_edge

    def lane_centre(self, lane: int) -> float:
        return self.lanes_right + (lane + 0.5) * self.cfg.lane_width_m

    def _markings(self) -> tuple[Marking, ...]:
        cfg = self.cfg
        mw = cfg.marking_width_m
        out: list[Marking] = []
        if cfg.edge_lines or cfg.bike_lane:
            out.append(Marking(self.lanes_right + mw / 2, mw, False, False))
        if cfg.edge_lines:
            out.append(
                Marking(
                    self.lanes_left - mw / 2, mw, False, cfg.centre_line_yellow and not cfg.oncoming_lanes
                )
            )
        dirs = cfg.lane_directions
        for i in range(cfg.num_lanes - 1):
            d = self.lanes_right + (i + 1) * cfg.lane_width_m
            if dirs[i] == dirs[i + 1]:
                out.append(Marking(d, mw, cfg.lane_line == "dashed", False))
            elif cfg.centre_line == "double":
                gap = mw + 0.1
                out += [Marking(d - gap / 2, mw, False, cfg.centre_line_yellow),
                        Marking(d + gap / 2, mw, False, cfg.centre_line_yellow)]
            else:
                out.append(Marking(d, mw, cfg.centre_line == "dashed", cfg.centre_line_yellow))
        return tuple(out)


@lru_cache(maxsize=4)
def ground_offsets(reach: float = GROUND_RANGE_M) -> np.ndarray:
    """Sample positions relative to the ego along s: 0.5 m steps nearby, growing with distance (far
    chords stay sub-pixel), symmetric so that rear cameras get the same quality."""
    ahead = [0.0]
    while ahead[-1] < reach:
        ahead.append(ahead[-1] + float(np.clip(0.03 * ahead[-1], 0.5, 10.0)))
    a = np.array(ahead)
    return np.concatenate([-a[:0:-1], a])


@dataclass(frozen=True)
class GroundPolys:
    """Ground surfaces of one frame, world space, in drawing order (later covers earlier)."""

    layers: tuple[tuple[str, np.ndarray], ...]  # (material key, (k, 3) polygon)
    dashes: tuple[tuple[str, np.ndarray], ...]  # (material key, (n, k, 3) batch of dash polygons)


def ground_polygons(road: Road, xs: CrossSection, s_ego: float) -> GroundPolys:
    """Strips for sidewalks, curbs, road, bike lane, markings and curb faces around the ego."""
    cfg = xs.cfg
    s = np.clip(s_ego + ground_offsets(), road.s[0], road.end_s)
    s = s[np.concatenate([[True], np.diff(s) > 1e-6])]
    x, y, th = road.pose(s)
    sin, cos = np.sin(th), np.cos(th)

    def edge(d: float, z: float) -> np.ndarray:
        return np.stack([x - d * sin, y + d * cos, np.full_like(x, z)], axis=1)

    def strip(d0: float, d1: float, z0: float, z1: float | None = None) -> np.ndarray:
        return np.concatenate([edge(d1, z0 if z1 is None else z1), edge(d0, z0)[::-1]])

    layers: list[tuple[str, np.ndarray]] = []
    curb_h = cfg.curb_height_m
    for side in xs.sides:
        sg = side.sign
        if side.sidewalk_end > side.road_edge:
            layers.append(("sidewalk", strip(*sorted((sg * side.road_edge, sg * side.sidewalk_end)), curb_h)))
        else:  # rural: a gravel band between asphalt and grass
            layers.append(
                ("gravel", strip(*sorted((sg * side.road_edge, sg * (side.road_edge + GRAVEL_WIDTH_M))), 0.0))
            )
        if side.curb_end > side.road_edge:
            layers.append(("curb_top", strip(*sorted((sg * side.road_edge, sg * side.curb_end)), curb_h)))
    d0, d1 = xs.road_span
    layers.append(("road", strip(d0, d1, 0.0)))
    if xs.bike_lane is not None:
        layers.append(("bike_lane", strip(*xs.bike_lane, 0.0)))
    # before the markings, which stay on top: crosswalks are road, the lane-marking masks do not change
    layers += [("crosswalk", poly) for poly in crosswalk_polys(road, xs, s_ego)]
    for m in xs.markings:
        if not m.dashed:
            layers.append(
                (
                    "marking_yellow" if m.yellow else "marking",
                    strip(m.d - m.width / 2, m.d + m.width / 2, 0.0),
                )
            )
    if curb_h > 0:
        for side in xs.sides:  # the curb's vertical face: z from 0 (road) up to the sidewalk
            d = side.sign * side.road_edge
            face = strip(d, d, 0.0, curb_h) if side.sign > 0 else strip(d, d, curb_h, 0.0)
            layers.append(("curb_face", face))
    dashes = tuple((("marking_yellow" if m.yellow else "marking"), _dash_polys(road, m, s_ego, cfg))
                   for m in xs.markings if m.dashed)
    return GroundPolys(tuple(layers), tuple((k, v) for k, v in dashes if len(v)))


def _dash_polys(road: Road, m: Marking, s_ego: float, cfg: SceneConfig) -> np.ndarray:
    """(n, k, 3) dash polygons; long dashes get intermediate vertices so curves stay curved."""
    period = cfg.dash_length_m + cfg.dash_gap_m
    k0 = int(np.floor((s_ego - MARKING_RANGE_M) / period))
    k1 = int(np.ceil((s_ego + MARKING_RANGE_M) / period))
    starts = np.arange(k0, k1 + 1) * period
    starts = starts[(starts > road.s[0]) & (starts + cfg.dash_length_m < road.end_s)]
    n_sub = max(1, int(np.ceil(cfg.dash_length_m / 1.5)))
    t = np.linspace(0.0, cfg.dash_length_m, n_sub + 1)
    ss = starts[:, None] + t[None, :]  # (n, n_sub+1)
    left = road.point(ss, m.d + m.width / 2)
    right = road.point(ss, m.d - m.width / 2)[:, ::-1]
    poly2 = np.concatenate([left, right], axis=1)
    return np.concatenate([poly2, np.zeros((*poly2.shape[:-1], 1))], axis=-1)


def crosswalk_polys(road: Road, xs: CrossSection, s_ego: float) -> list[np.ndarray]:
    """Zebra bars (opt-in variety) near the ego: each crosswalk is a row of bars across the carriageway,
    every bar running along the road. Drawn as ground labelled ``road``; no intersections are modelled."""
    v = xs.cfg.variety
    if v is None or not v.crosswalks:
        return []
    d0, d1 = xs.road_span
    d0, d1 = d0 + 0.3, d1 - 0.3  # leave the gutters bare
    pitch = v.crosswalk_bar_m + v.crosswalk_gap_m
    n = max(1, int((d1 - d0 + v.crosswalk_gap_m) // pitch))
    offset = d0 + 0.5 * ((d1 - d0) - (n * pitch - v.crosswalk_gap_m))  # centre the bars on the road
    lefts = offset + pitch * np.arange(n)
    out = []
    for s0 in v.crosswalks:
        if abs(s0 - s_ego) > MARKING_RANGE_M or s0 < road.s[0] or s0 + v.crosswalk_length_m > road.end_s:
            continue
        ss = np.array([s0, s0 + v.crosswalk_length_m])
        for d in lefts:
            near, far = road.point(ss, d), road.point(ss, d + v.crosswalk_bar_m)
            quad = np.array([near[0], near[1], far[1], far[0]])
            out.append(np.concatenate([quad, np.zeros((4, 1))], axis=1))
    return out
