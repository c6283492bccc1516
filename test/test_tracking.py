"""ObstacleTracker on synthetic instance maps: ids stay with objects, new objects get fresh ids, none is reused."""

from __future__ import annotations

import numpy as np
import pytest

from seg_perception.pipeline.tracking import ObstacleTracker

CAR, PERSON = 13, 11
HEIGHT, WIDTH = 64, 128


def _instance_map(boxes: dict[int, tuple[int, int, int, int]], shape: tuple[int, int] = (HEIGHT, WIDTH)) -> np.ndarray:
    """uint16 map with instance id -> (x, y, w, h) boxes drawn in order (later ones on top)."""
    instances = np.zeros(shape, np.uint16)
    for instance_id, (x, y, w, h) in boxes.items():
        instances[y:y + h, x:x + w] = instance_id
    return instances


def test_moving_box_keeps_its_track_id() -> None:
    tracker = ObstacleTracker()
    track_ids = [tracker.update(_instance_map({1: (10 + 4 * step, 20, 24, 16)}), {1: CAR})[1] for step in range(8)]
    assert track_ids == [1] * 8


def test_crossing_objects_keep_their_ids_when_instance_numbering_swaps() -> None:
    tracker = ObstacleTracker(max_misses=2)
    history: dict[str, list[int]] = {"left": [], "right": []}
    for step in range(10):
        left_x, right_x = 8 + 6 * step, 96 - 6 * step  # they pass each other around step 7
        # the panoptic grouping numbers instances left to right, so the numbering swaps once they cross
        left_id, right_id = (1, 2) if left_x <= right_x else (2, 1)
        boxes = {left_id: (left_x, 10, 20, 20), right_id: (right_x, 34, 20, 20)}
        ids = tracker.update(_instance_map(boxes), {1: CAR, 2: CAR})
        history["left"].append(ids[left_id])
        history["right"].append(ids[right_id])
    assert len(set(history["left"])) == 1 and len(set(history["right"])) == 1
    assert history["left"][0] != history["right"][0]


def test_overlapping_crossing_prefers_the_larger_overlap() -> None:
    # the two boxes overlap in every frame; greedy by IoU must not hand one car's id to the other
    tracker = ObstacleTracker()
    first = tracker.update(_instance_map({1: (40, 20, 24, 20), 2: (56, 24, 24, 20)}), {1: CAR, 2: CAR})
    second = tracker.update(_instance_map({2: (44, 20, 24, 20), 1: (52, 24, 24, 20)}), {1: CAR, 2: CAR})
    assert second == {2: first[1], 1: first[2]}


def test_new_object_gets_a_fresh_id_and_a_lost_id_is_never_reused() -> None:
    tracker = ObstacleTracker()
    first = tracker.update(_instance_map({1: (10, 10, 20, 20), 2: (80, 10, 20, 20)}), {1: CAR, 2: CAR})
    assert sorted(first.values()) == [1, 2]
    # object 2 leaves, a new one appears elsewhere: it must not inherit the departed id
    second = tracker.update(_instance_map({1: (12, 10, 20, 20), 2: (50, 40, 16, 16)}), {1: CAR, 2: CAR})
    assert second[1] == first[1]
    assert second[2] not in first.values()
    # the departed object comes back where it was: with max_misses=0 it is a new track, not its old id
    third = tracker.update(_instance_map({1: (14, 10, 20, 20), 2: (80, 10, 20, 20)}), {1: CAR, 2: CAR})
    assert third[1] == first[1]
    assert third[2] not in {*first.values(), *second.values()}


def test_missed_track_is_recovered_within_max_misses() -> None:
    tracker = ObstacleTracker(max_misses=2)
    car = _instance_map({1: (30, 20, 24, 16)})
    original = tracker.update(car, {1: CAR})[1]
    tracker.update(np.zeros_like(car), {})
    tracker.update(np.zeros_like(car), {})
    assert tracker.update(car, {1: CAR})[1] == original  # missed twice: still known
    for _ in range(3):
        tracker.update(np.zeros_like(car), {})
    assert tracker.update(car, {1: CAR})[1] != original  # missed three times: forgotten


def test_class_mismatch_does_not_match() -> None:
    tracker = ObstacleTracker()
    car = tracker.update(_instance_map({1: (30, 20, 24, 16)}), {1: CAR})[1]
    person = tracker.update(_instance_map({1: (30, 20, 24, 16)}), {1: PERSON})[1]
    assert person != car


def test_low_overlap_is_not_matched() -> None:
    tracker = ObstacleTracker(iou_threshold=0.5)
    first = tracker.update(_instance_map({1: (10, 20, 20, 20)}), {1: CAR})[1]
    # shifted by half its width: IoU 1/3 < 0.5
    assert tracker.update(_instance_map({1: (20, 20, 20, 20)}), {1: CAR})[1] != first


def test_ids_in_the_map_without_a_class_are_ignored_and_every_classed_id_gets_a_track() -> None:
    tracker = ObstacleTracker()
    instances = _instance_map({1: (10, 10, 20, 20), 5: (60, 10, 20, 20)})
    ids = tracker.update(instances, {1: CAR, 3: PERSON})  # 3 has no pixels, 5 has no class
    assert set(ids) == {1, 3} and all(track_id >= 1 for track_id in ids.values())


def test_size_change_resets_but_the_id_counter_keeps_running() -> None:
    tracker = ObstacleTracker()
    box = {1: (10, 10, 20, 20)}
    first = tracker.update(_instance_map(box), {1: CAR})[1]
    assert tracker.update(_instance_map(box, (HEIGHT * 2, WIDTH)), {1: CAR})[1] > first
    again = tracker.update(_instance_map(box, (HEIGHT * 2, WIDTH)), {1: CAR})[1]
    tracker.reset()
    assert tracker.update(_instance_map(box, (HEIGHT * 2, WIDTH)), {1: CAR})[1] > again


def test_stride_one_and_empty_frames() -> None:
    tracker = ObstacleTracker(stride=1)
    assert tracker.update(np.zeros((HEIGHT, WIDTH), np.uint16), {}) == {}
    first = tracker.update(_instance_map({1: (10, 10, 3, 3)}), {1: CAR})[1]
    assert tracker.update(_instance_map({1: (11, 10, 3, 3)}), {1: CAR})[1] == first


@pytest.mark.parametrize(
    "kwargs",
    [{"iou_threshold": 0.0}, {"iou_threshold": 1.5}, {"iou_threshold": "0.3"}, {"stride": 0}, {"stride": 2.0},
     {"max_misses": -1}, {"max_misses": True}],
)
def test_invalid_arguments_raise(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ObstacleTracker(**kwargs)


def test_invalid_inputs_raise() -> None:
    tracker = ObstacleTracker()
    with pytest.raises(ValueError, match="integer map"):
        tracker.update(np.zeros((4, 4, 3), np.uint16), {})
    with pytest.raises(ValueError, match="integer map"):
        tracker.update(np.zeros((4, 4), np.float32), {})
    with pytest.raises(ValueError, match=">= 1"):
        tracker.update(np.zeros((4, 4), np.uint16), {0: CAR})


def _boxes(boxes: dict[int, tuple[int, int, int, int]]) -> dict[int, tuple[float, float, float, float]]:
    """The second stage's boxes (centre x, centre y, width, height) of _instance_map's (x, y, w, h)."""
    return {i: (x + w / 2, y + h / 2, float(w), float(h)) for i, (x, y, w, h) in boxes.items()}


def test_a_thin_fast_object_keeps_its_id_by_its_box_where_overlap_fails() -> None:
    """A person 6 px wide walking 5 px per frame overlaps its last mask at IoU < 0.3: by overlap alone it
    gets a new track every frame; with boxes, the second stage follows its predicted centre."""
    steps = [{1: (10 + 5 * k, 20, 6, 30)} for k in range(8)]
    by_overlap = ObstacleTracker(stride=1)
    assert len({by_overlap.update(_instance_map(b), {1: PERSON})[1] for b in steps}) == 8
    by_box = ObstacleTracker(stride=1)
    assert {by_box.update(_instance_map(b), {1: PERSON}, _boxes(b))[1] for b in steps} == {1}
    # it speeds up: still within half its height of where its last shift predicts it
    faster = {1: (10 + 5 * 7 + 12, 20, 6, 30)}
    assert by_box.update(_instance_map(faster), {1: PERSON}, _boxes(faster))[1] == 1


def test_the_box_stage_needs_the_class_a_similar_height_and_a_near_centre() -> None:
    tracker = ObstacleTracker(stride=1)
    start = {1: (40, 20, 6, 30)}
    first = tracker.update(_instance_map(start), {1: PERSON}, _boxes(start))[1]
    for boxes, classes in (({1: (48, 20, 6, 30)}, {1: CAR}),  # another class
                           ({1: (48, 5, 6, 50)}, {1: PERSON}),  # 1.7 times as tall
                           ({1: (60, 20, 6, 30)}, {1: PERSON})):  # 20 px away: two thirds of its height
        fresh = ObstacleTracker(stride=1)
        fresh.update(_instance_map(start), {1: PERSON}, _boxes(start))
        assert fresh.update(_instance_map(boxes), classes, _boxes(boxes))[1] != first, boxes
    # two candidates: the nearer predicted centre wins, one to one
    two = {1: (10, 20, 6, 30), 2: (60, 20, 6, 30)}
    tracker = ObstacleTracker(stride=1)
    ids = tracker.update(_instance_map(two), {1: PERSON, 2: PERSON}, _boxes(two))
    moved = {1: (67, 20, 6, 30), 2: (17, 20, 6, 30)}  # numbered the other way round
    assert tracker.update(_instance_map(moved), {1: PERSON, 2: PERSON}, _boxes(moved)) == {1: ids[2], 2: ids[1]}
