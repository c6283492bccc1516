"""Scores of the outputs in metres (evaluation/metric_outputs.py) on hand-made inputs with known answers."""

import math
from types import SimpleNamespace

import numpy as np
import pytest

from seg_perception.evaluation.metric_outputs import (
    MetricOutputScores,
    TruthFrame,
    TruthObstacle,
    along_road,
    crossing,
    free_space_iou_counts,
    lane_stations,
    match_instances,
    match_nearest,
)
from seg_perception.geometry.grid import FREE, OCCUPIED, UNKNOWN, GridSpec


def line(y: float, x0: float = -30.0, x1: float = 80.0) -> np.ndarray:
    x = np.arange(x0, x1 + 0.5, 1.0)
    return np.stack([x, np.full_like(x, y)], 1)


def everywhere(points: np.ndarray) -> np.ndarray:
    return np.ones(len(points), bool)


def test_crossing_interpolates_and_misses_outside_the_polyline():
    polyline = np.array([[0.0, 0.0], [10.0, 1.0], [30.0, 3.0]])
    assert crossing(polyline, 20.0)[0] == pytest.approx(2.0)
    assert crossing(polyline, 40.0) is None
    assert crossing(polyline[:1], 0.0) is None


def test_match_nearest_is_one_to_one_and_nearest_first():
    pairs = match_nearest([0.0, 0.1, 5.0], [0.05, 3.7], within=0.5)
    assert pairs == [(0, 0, pytest.approx(0.05))]  # 0.1 is also near 0.05 but 0.0 took it first (equal distance)


def test_lane_stations_score_matched_lines_and_count_misses():
    truth = [line(1.75), line(-1.75)]
    predicted = [line(1.8, 2.0, 45.0), line(-1.6, 2.0, 25.0), line(5.0, 2.0, 45.0)]
    scores = lane_stations(predicted, truth, yaw_rad=0.0, visible=everywhere)
    near = scores[10.0]
    assert (near.truth, near.predicted) == (2, 3)
    assert sorted(near.errors) == pytest.approx([0.05, 0.15])
    far = scores[40.0]  # the -1.6 line ends at 25 m: one truth line unmatched there
    assert (far.truth, far.predicted, len(far.errors)) == (2, 2, 1)
    summary = far.summary()
    assert summary["recall"] == 0.5 and summary["precision"] == 0.5


def test_hidden_truth_is_not_counted():
    truth = [line(1.75), line(-1.75)]
    left_only = lane_stations([line(1.75, 2.0, 45.0)], truth, yaw_rad=0.0, visible=lambda p: p[:, 1] > 0)
    assert left_only[20.0].truth == 1 and left_only[20.0].errors == [0.0]


def test_rear_camera_stations_run_backwards():
    truth = [line(1.75), line(-1.75)]
    predicted = [line(1.95, -25.0, -2.0)]
    scores = lane_stations(predicted, truth, yaw_rad=math.pi, visible=everywhere)
    assert scores[10.0].truth == 2 and scores[10.0].errors == pytest.approx([0.2])
    assert scores[40.0].predicted == 0


def test_along_road():
    assert along_road(0.0) and along_road(math.pi) and along_road(-math.pi + 0.1)
    assert not along_road(math.pi / 2) and not along_road(math.radians(55))


def obstacle(instance_id: int, bbox, xy=None, velocity=None, samples=0):
    return SimpleNamespace(instance_id=instance_id, bbox_xywh=bbox, ground_xy_m=xy, velocity_xy_mps=velocity,
                           velocity_samples=samples)


def test_match_instances_by_mask_iou():
    truth = np.zeros((20, 20), np.int64)
    truth[2:10, 2:10] = 26001  # a car
    truth[12:18, 12:18] = 24002  # a person
    truth[0:2, :] = 7  # road (stuff)
    pred = np.zeros((20, 20), np.uint16)
    pred[2:10, 2:9] = 1  # most of the car
    pred[12:14, 12:14] = 2  # a corner of the person: IoU 4/36
    pred[0:2, 0:5] = 3  # on the road only
    matches = match_instances(pred, [obstacle(1, (2, 2, 7, 8)), obstacle(2, (12, 12, 2, 2)),
                                     obstacle(3, (0, 0, 5, 2))], truth)
    assert [(o.instance_id, t) for o, t in matches] == [(1, 26001)]
    with pytest.raises(ValueError, match="differ in size"):
        match_instances(pred[:10], [], truth)


def test_free_space_iou_within_range():
    spec = GridSpec(resolution_m=1.0, x_min=0.0, x_max=40.0, y_min=-5.0, y_max=5.0)
    truth = np.full((spec.height, spec.width), FREE, np.int8)
    predicted = truth.copy()
    predicted[:, 10:20] = OCCUPIED  # 100 of the 300 free cells within 30 m are missed
    predicted[:, 35:] = UNKNOWN  # beyond 30 m: not scored
    intersection, union = free_space_iou_counts(predicted, truth, spec, range_m=30.0)
    near = sum(1 for r in range(10) for c in range(40) if math.hypot(c + 0.5, -5 + r + 0.5) <= 30.0)
    assert union == near and intersection == near - 100


def test_summary_scores_positions_velocities_and_targets():
    truth = TruthFrame(0, (), {
        26001: TruthObstacle(26001, 1, "car", np.array([20.0, 0.0]), 20.0, np.array([2.0, 0.0])),
        26002: TruthObstacle(26002, 2, "car", np.array([5.0, 0.0]), 5.0, np.array([0.0, 0.0])),
    })
    scores = MetricOutputScores()
    scores.add_obstacles([(obstacle(1, (0, 0, 1, 1), (20.5, 0.0), (2.5, 0.0), 6), 26001),
                          (obstacle(2, (0, 0, 1, 1), (5.0, 0.2), (3.0, 0.0), 2), 26002)], truth, with_position=3)
    other = MetricOutputScores()
    other.add_grid((90, 100))
    scores.merge(other)
    summary = scores.summary()
    assert summary["obstacles"]["bins"]["20-40 m"]["median_error_pct_of_range"] == pytest.approx(2.5)
    assert summary["obstacles"]["bins"]["0-10 m"]["median_error_m"] == pytest.approx(0.2)
    assert summary["obstacles"]["within_40m"]["count"] == 2 and summary["obstacles"]["with_position"] == 3
    by_class = summary["obstacles"]["within_40m_by_class"]
    assert by_class["car"]["count"] == 2 and by_class["car"]["median_radial_error_m"] == pytest.approx(0.252, abs=1e-3)
    assert summary["velocity"]["count"] == 1  # the second estimate rests on 2 positions only
    assert summary["velocity"]["median_error_mps"] == pytest.approx(0.5)
    assert summary["grid"]["free_iou"] == 0.9
    targets = summary["targets"]
    assert targets["velocity error, tracks of >= 5 frames, median (m/s)"]["met"] is True
    assert targets["free-space grid IoU within 30 m"]["met"] is True
    assert targets["lane boundary recall within 20 m"]["met"] is None  # no lane frames: not measured


def test_truth_from_json_needs_base_link():
    data = {"frame_id": "base_link", "stamp_ns": 5, "lanes": [{"points_xy": [[0, 1], [1, 1]]}],
            "obstacles": [{"instance_id": 26001, "track_id": 1, "class_name": "car", "contact_xy": [3, 4],
                           "velocity_xy_mps": [1, 0]}]}
    truth = TruthFrame.from_json(data)
    assert truth.obstacles[26001].range_m == pytest.approx(5.0) and truth.lanes[0].shape == (2, 2)
    with pytest.raises(ValueError, match="base_link"):
        TruthFrame.from_json({**data, "frame_id": "front_optical_frame"})
