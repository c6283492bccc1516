"""Scores of the outputs in metres (drivable grid, lane boundaries, obstacle positions and velocities) against
the synthetic world's exact ground truth in ``base_link``.

- **Lane boundaries.** For each camera that looks along the road (its yaw within 30 degrees of forward or
  backward), at stations 10, 20 and 40 m along its viewing direction: the lateral position of every visible
  ground-truth marking line against the predicted boundaries of that camera. Pairs are matched one to one,
  nearest first, within 0.5 m. The lateral error is that of the matched pairs; precision and recall count the
  matches. A ground-truth line is visible at a station when its point there projects into the image onto
  ground-truth road or lane-marking pixels: inside the view and not hidden by an obstacle.
- **Obstacle positions.** A predicted obstacle is matched to the ground-truth instance that covers most of its
  mask, at mask IoU >= 0.5. Its error is the distance between its ground contact and the truth's ground
  contact: the point of the true footprint nearest the base_link origin, which is what the bottom of a mask
  sees. Errors are reported against the true range, in range bins.
- **Velocities.** Matched obstacles whose estimate rests on at least 5 positions: the length of the difference
  between the estimate and the true velocity relative to base_link.
- **Grid.** Free-space IoU within 30 m of base_link between the predicted grid and the grid that the same
  cameras and the same lookups make from the ground-truth masks and contacts. Both grids see the same cells,
  so the score measures the masks and contacts, not the view. On the synthetic world the ground is flat, so
  the projection itself is exact.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from seg_perception.geometry.grid import FREE, CameraGridLookup, GridSpec, fuse

LANE_STATIONS_M = (10.0, 20.0, 40.0)
LANE_MATCH_M = 0.5
ALONG_ROAD_YAW_RAD = math.radians(30.0)
RANGE_BINS_M = ((0.0, 10.0), (10.0, 20.0), (20.0, 40.0), (40.0, math.inf))
MIN_INSTANCE_IOU = 0.5
MIN_VELOCITY_SAMPLES = 5
GRID_RANGE_M = 30.0
THING_INSTANCE_MIN = 1000  # Cityscapes instance ids: things are labelId * 1000 + k, stuff its labelId

# Issue 17's targets (held-out synthetic drives at 1024x512): name -> (summary path, comparison, bound)
TARGETS: dict[str, tuple[tuple[str, ...], str, float]] = {
    "lane lateral error within 20 m, median (m)": (("lanes", "within_20m", "median_lateral_error_m"), "<=", 0.15),
    "lane lateral error at 40 m, median (m)": (("lanes", "stations", "40", "median_lateral_error_m"), "<=", 0.4),
    "lane boundary recall within 20 m": (("lanes", "within_20m", "recall"), ">=", 0.9),
    "obstacle position error within 40 m, median (% of range)": (
        ("obstacles", "within_40m", "median_error_pct_of_range"), "<=", 5.0),
    "velocity error, tracks of >= 5 frames, median (m/s)": (("velocity", "median_error_mps"), "<=", 1.0),
    "free-space grid IoU within 30 m": (("grid", "free_iou"), ">=", 0.9),
}


@dataclass(frozen=True)
class TruthObstacle:
    instance_id: int
    track_id: int
    class_name: str
    contact_xy: np.ndarray  # (2,) metres in base_link
    range_m: float
    velocity_xy: np.ndarray  # (2,) m/s relative to base_link


@dataclass(frozen=True)
class TruthFrame:
    """One time step's ground truth in base_link (the rig's, shared by its cameras)."""

    stamp_ns: int
    lanes: tuple[np.ndarray, ...]  # (N, 2) polylines of the painted marking lines
    obstacles: Mapping[int, TruthObstacle]  # by instance id

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TruthFrame:
        """From the synthetic world's per-frame json (``gtGeometry``); KeyError/ValueError when malformed."""
        if data.get("frame_id") != "base_link":
            raise ValueError(f"ground truth must be in base_link, got frame {data.get('frame_id')!r}")
        lanes = tuple(np.asarray(lane["points_xy"], np.float64).reshape(-1, 2) for lane in data["lanes"])
        obstacles = {}
        for item in data["obstacles"]:
            contact = np.asarray(item["contact_xy"], np.float64).reshape(2)
            obstacles[int(item["instance_id"])] = TruthObstacle(
                instance_id=int(item["instance_id"]), track_id=int(item["track_id"]),
                class_name=str(item["class_name"]), contact_xy=contact, range_m=float(np.hypot(*contact)),
                velocity_xy=np.asarray(item["velocity_xy_mps"], np.float64).reshape(2))
        return cls(int(data["stamp_ns"]), lanes, obstacles)


# --------------------------------------------------------------------------------------------------- lanes
def along_road(yaw_rad: float) -> bool:
    """Whether a camera of this yaw looks along the road (forward or backward), where lane stations apply."""
    folded = abs(math.remainder(yaw_rad, math.pi))
    return folded <= ALONG_ROAD_YAW_RAD


def _in_camera_axes(points: np.ndarray, yaw_rad: float) -> np.ndarray:
    """base_link points rotated so that x runs along the camera's viewing direction."""
    c, s = math.cos(yaw_rad), math.sin(yaw_rad)
    return np.stack([c * points[:, 0] + s * points[:, 1], -s * points[:, 0] + c * points[:, 1]], 1)


def crossing(points: np.ndarray, station: float) -> tuple[float, int] | None:
    """Where a polyline (in camera axes) first crosses x = station: (lateral y, segment index), or None."""
    if len(points) < 2:
        return None
    offset = points[:, 0] - station
    spans = np.flatnonzero((offset[:-1] * offset[1:] <= 0) & (offset[:-1] != offset[1:]))
    if not len(spans):
        return None
    i = int(spans[0])
    t = offset[i] / (offset[i] - offset[i + 1])
    return float(points[i, 1] + t * (points[i + 1, 1] - points[i, 1])), i


def match_nearest(predicted: Sequence[float], truth: Sequence[float], within: float) -> list[tuple[int, int, float]]:
    """One-to-one pairs (prediction, truth, distance), nearest first, no farther apart than ``within``."""
    pairs = sorted((abs(p - t), i, j) for i, p in enumerate(predicted) for j, t in enumerate(truth))
    used_p, used_t, out = set(), set(), []
    for distance, i, j in pairs:
        if distance > within:
            break
        if i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
            out.append((i, j, distance))
    return out


@dataclass
class _Station:
    errors: list[float] = field(default_factory=list)
    truth: int = 0
    predicted: int = 0

    def merge(self, other: _Station) -> None:
        self.errors += other.errors
        self.truth += other.truth
        self.predicted += other.predicted

    def summary(self) -> dict[str, Any]:
        matched = len(self.errors)
        return {"truth": self.truth, "predicted": self.predicted, "matched": matched,
                "recall": _ratio(matched, self.truth), "precision": _ratio(matched, self.predicted),
                "median_lateral_error_m": _percentile(self.errors, 50),
                "p90_lateral_error_m": _percentile(self.errors, 90)}


def lane_stations(predicted: Iterable[np.ndarray], truth: Iterable[np.ndarray], *, yaw_rad: float,
                  visible: Callable[[np.ndarray], np.ndarray],
                  stations: Sequence[float] = LANE_STATIONS_M) -> dict[float, _Station]:
    """One camera's lane scores at each station: predicted and true polylines in base_link; ``visible`` says
    which (K, 2) base_link ground points that camera sees as ground (the caller's projection and labels)."""
    predicted = [_in_camera_axes(np.asarray(p, np.float64).reshape(-1, 2), yaw_rad) for p in predicted]
    truth = [np.asarray(t, np.float64).reshape(-1, 2) for t in truth]
    truth_axes = [_in_camera_axes(t, yaw_rad) for t in truth]
    out = {}
    for station in stations:
        lateral_pred = [hit[0] for p in predicted if (hit := crossing(p, station)) is not None]
        true_points, lateral_true = [], []
        for polyline, axes in zip(truth, truth_axes, strict=True):
            hit = crossing(axes, station)
            if hit is None:
                continue
            lateral, i = hit
            # the true point in base_link: the same fraction along the same segment
            t = (station - axes[i, 0]) / (axes[i + 1, 0] - axes[i, 0]) if axes[i + 1, 0] != axes[i, 0] else 0.0
            true_points.append(polyline[i] + t * (polyline[i + 1] - polyline[i]))
            lateral_true.append(lateral)
        if true_points:
            seen = np.asarray(visible(np.array(true_points)), bool)
            lateral_true = [y for y, ok in zip(lateral_true, seen, strict=True) if ok]
        scores = _Station(truth=len(lateral_true), predicted=len(lateral_pred))
        scores.errors = [d for _, _, d in match_nearest(lateral_pred, lateral_true, LANE_MATCH_M)]
        out[station] = scores
    return out


def ground_visibility(projector: Any, ground_labels: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """``visible`` for ``lane_stations``: the point projects inside the image onto ``ground_labels`` (bool
    (H, W): true road or lane-marking pixels), at the labels' resolution."""
    height, width = ground_labels.shape

    def visible(points: np.ndarray) -> np.ndarray:
        pixels = projector.to_pixels(points)
        with np.errstate(invalid="ignore"):
            columns, rows = np.rint(pixels[:, 0]), np.rint(pixels[:, 1])
            inside = (columns >= 0) & (columns < width) & (rows >= 0) & (rows < height)
        out = np.zeros(len(points), bool)
        out[inside] = ground_labels[rows[inside].astype(int), columns[inside].astype(int)]
        return out

    return visible


# ----------------------------------------------------------------------------------------------- obstacles
def match_instances(pred_instances: np.ndarray, obstacles: Sequence[Any], truth_instances: np.ndarray,
                    min_iou: float = MIN_INSTANCE_IOU) -> list[tuple[Any, int]]:
    """(obstacle, true instance id) for predicted obstacles whose mask overlaps one true thing instance at
    IoU >= min_iou; the masks must be the same size."""
    if pred_instances.shape != truth_instances.shape:
        raise ValueError(f"instance maps differ in size: {pred_instances.shape} and {truth_instances.shape}")
    true_ids, true_areas = np.unique(truth_instances, return_counts=True)
    area_of = dict(zip(true_ids.tolist(), true_areas.tolist(), strict=True))
    out = []
    for obstacle in obstacles:
        x, y, w, h = obstacle.bbox_xywh  # the mask lies inside its box: look there only
        window = pred_instances[y:y + h, x:x + w] == obstacle.instance_id
        area = int(window.sum())
        if not area:
            continue
        ids, counts = np.unique(truth_instances[y:y + h, x:x + w][window], return_counts=True)
        things = ids >= THING_INSTANCE_MIN
        if not things.any():
            continue
        best = int(np.argmax(np.where(things, counts, -1)))
        overlap, true_id = int(counts[best]), int(ids[best])
        if overlap / (area + area_of[true_id] - overlap) >= min_iou:
            out.append((obstacle, true_id))
    return out


# ---------------------------------------------------------------------------------------------------- grid
def free_space_iou_counts(predicted: np.ndarray, truth: np.ndarray, spec: GridSpec,
                          range_m: float = GRID_RANGE_M) -> tuple[int, int]:
    """(intersection, union) of FREE cells of two (height, width) grids, for cells centred within range_m."""
    rows, columns = np.indices((spec.height, spec.width))
    x = spec.x_min + (columns + 0.5) * spec.resolution_m
    y = spec.y_min + (rows + 0.5) * spec.resolution_m
    near = np.hypot(x, y) <= range_m
    pred_free, true_free = (predicted == FREE) & near, (truth == FREE) & near
    return int((pred_free & true_free).sum()), int((pred_free | true_free).sum())


def truth_grid(spec: GridSpec, lookups: Mapping[str, CameraGridLookup], drivable: Mapping[str, np.ndarray],
               obstacles: Mapping[str, np.ndarray], contacts: Iterable[np.ndarray]) -> np.ndarray:
    """The grid the cameras' lookups make from the true masks (drivable and obstacle pixels per camera) and the
    true ground contacts: what a perfect segmentation would publish."""
    votes = [lookups[camera].observe(drivable[camera], obstacles.get(camera)) for camera in lookups]
    return fuse(spec, votes, [tuple(c) for c in contacts])


# ------------------------------------------------------------------------------------------------ summary
def _ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def _percentile(values: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 4) if len(values) else None


def _bin_name(low: float, high: float) -> str:
    return f"{low:g}-{high:g} m" if math.isfinite(high) else f">{low:g} m"


@dataclass
class MetricOutputScores:
    """Accumulates the scores over frames (and bags: ``merge``); ``summary()`` is the report's section."""

    stations: dict[float, _Station] = field(default_factory=lambda: {s: _Station() for s in LANE_STATIONS_M})
    lane_frames: int = 0
    positions: list[tuple[float, float]] = field(default_factory=list)  # (true range, error m)
    # within 40 m, per true class: (error m, radial error m: + farther than the truth)
    by_class: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    obstacles_with_position: int = 0
    velocities: list[tuple[float, float]] = field(default_factory=list)  # (true range, |error| m/s), long tracks
    odometry_messages: int = 0  # the ego's motion known to the velocity filter (0: relative velocities only)
    grid_counts: list[tuple[int, int]] = field(default_factory=list)  # per step (intersection, union)

    def add_lanes(self, per_station: Mapping[float, _Station]) -> None:
        self.lane_frames += 1
        for station, scores in per_station.items():
            self.stations.setdefault(station, _Station()).merge(scores)

    def add_obstacles(self, matches: Iterable[tuple[Any, int]], truth: TruthFrame, with_position: int) -> None:
        self.obstacles_with_position += with_position
        for obstacle, true_id in matches:
            true = truth.obstacles.get(true_id)
            if true is None or obstacle.ground_xy_m is None:
                continue
            error = np.asarray(obstacle.ground_xy_m) - true.contact_xy
            self.positions.append((true.range_m, float(np.hypot(*error))))
            if true.range_m < 40.0:
                radial = float(np.hypot(*obstacle.ground_xy_m)) - true.range_m
                self.by_class.setdefault(true.class_name, []).append((float(np.hypot(*error)), radial))
            if obstacle.velocity_xy_mps is not None and obstacle.velocity_samples >= MIN_VELOCITY_SAMPLES:
                self.velocities.append((true.range_m, float(np.hypot(*(np.asarray(obstacle.velocity_xy_mps)
                                                                        - true.velocity_xy)))))

    def add_grid(self, counts: tuple[int, int]) -> None:
        self.grid_counts.append(counts)

    def merge(self, other: MetricOutputScores) -> None:
        for station, scores in other.stations.items():
            self.stations.setdefault(station, _Station()).merge(scores)
        self.lane_frames += other.lane_frames
        self.positions += other.positions
        for name, values in other.by_class.items():
            self.by_class.setdefault(name, []).extend(values)
        self.obstacles_with_position += other.obstacles_with_position
        self.velocities += other.velocities
        self.odometry_messages += other.odometry_messages
        self.grid_counts += other.grid_counts

    def empty(self) -> bool:
        return not (self.lane_frames or self.positions or self.grid_counts or self.obstacles_with_position)

    def summary(self) -> dict[str, Any]:
        near = _Station()
        for station, scores in self.stations.items():
            if station <= 20.0:
                near.merge(scores)
        lanes = {"frames": self.lane_frames, "match_within_m": LANE_MATCH_M,
                 "stations": {f"{s:g}": self.stations[s].summary() for s in sorted(self.stations)},
                 "within_20m": near.summary()}
        ranges = np.array([r for r, _ in self.positions])
        errors = np.array([e for _, e in self.positions])
        bins = {}
        for low, high in RANGE_BINS_M:
            inside = (ranges >= low) & (ranges < high)
            bins[_bin_name(low, high)] = _position_summary(ranges[inside], errors[inside])
        obstacles = {"with_position": self.obstacles_with_position, "matched": len(self.positions),
                     "min_instance_iou": MIN_INSTANCE_IOU, "bins": bins,
                     "within_40m": _position_summary(ranges[ranges < 40.0], errors[ranges < 40.0]),
                     # where the error comes from: a positive radial median is a contact placed too far
                     "within_40m_by_class": {
                         name: {"count": len(values), "median_error_m": _percentile([e for e, _ in values], 50),
                                "median_radial_error_m": _percentile([r for _, r in values], 50)}
                         for name, values in sorted(self.by_class.items())}}
        speed_ranges = np.array([r for r, _ in self.velocities])
        speed_errors = [e for _, e in self.velocities]
        velocity = {"min_samples": MIN_VELOCITY_SAMPLES, "count": len(self.velocities),
                    "odometry_messages": self.odometry_messages,
                    "median_error_mps": _percentile(speed_errors, 50), "p90_error_mps": _percentile(speed_errors, 90),
                    # far away one row of pixels spans metres of range: where the error comes from
                    "bins": {_bin_name(low, high): {
                        "count": int(((speed_ranges >= low) & (speed_ranges < high)).sum()),
                        "median_error_mps": _percentile([e for r, e in self.velocities if low <= r < high], 50)}
                        for low, high in RANGE_BINS_M}}
        intersection = sum(i for i, _ in self.grid_counts)
        union = sum(u for _, u in self.grid_counts)
        grid = {"range_m": GRID_RANGE_M, "steps": len(self.grid_counts), "free_iou": _ratio(intersection, union)}
        out = {"lanes": lanes, "obstacles": obstacles, "velocity": velocity, "grid": grid}
        out["targets"] = check_targets(out)
        return out


def _position_summary(ranges: np.ndarray, errors: np.ndarray) -> dict[str, Any]:
    relative = 100.0 * errors / np.maximum(ranges, 1e-6)
    return {"count": len(errors), "median_error_m": _percentile(errors, 50),
            "median_error_pct_of_range": _percentile(relative, 50), "p90_error_pct_of_range": _percentile(relative, 90)}


def check_targets(summary: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each of issue 17's targets: the measured value, the bound and whether it is met (None: not measured)."""
    out = {}
    for name, (path, comparison, bound) in TARGETS.items():
        value: Any = summary
        for key in path:
            value = value.get(key) if isinstance(value, Mapping) else None
        met = None if value is None else (value <= bound if comparison == "<=" else value >= bound)
        out[name] = {"value": value, "target": f"{comparison} {bound:g}", "met": met}
    return out
