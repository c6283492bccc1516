"""Temporal consistency: flow warping of the previous prediction, pair mIoU, and the TC score on synthetic video."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from seg_perception.evaluation.temporal import (
    TemporalConsistencyMeter,
    pair_miou,
    temporal_consistency,
    warp_previous,
)

HEIGHT, WIDTH = 96, 128
NUM_CLASSES = 4
SHIFT_PX = 3  # per frame, well within what Farneback's pyramid follows
NUM_FRAMES = 5


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Smooth random RGB texture: blurred noise gives Farneback gradients everywhere."""
    noise = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), sigmaX=2.0)


def _stripes(height: int, width: int, period: int = 8) -> np.ndarray:
    """Vertical class stripes: boundaries every ``period`` px, so a misplaced shift costs a lot of IoU."""
    return np.broadcast_to((np.arange(width) // period % NUM_CLASSES).astype(np.uint8), (height, width)).copy()


@pytest.fixture(scope="module")
def panning() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A camera panning right over a static scene: the content moves SHIFT_PX to the left each frame."""
    margin = SHIFT_PX * NUM_FRAMES
    scene = _texture(np.random.default_rng(7), HEIGHT, WIDTH + margin)
    scene_labels = _stripes(HEIGHT, WIDTH + margin)
    images = [scene[:, t * SHIFT_PX: t * SHIFT_PX + WIDTH].copy() for t in range(NUM_FRAMES)]
    labels = [scene_labels[:, t * SHIFT_PX: t * SHIFT_PX + WIDTH].copy() for t in range(NUM_FRAMES)]
    return images, labels


def test_identical_static_frames_give_one() -> None:
    image = _texture(np.random.default_rng(1), HEIGHT, WIDTH)
    labels = _stripes(HEIGHT, WIDTH)
    result = temporal_consistency([image] * 3, [labels] * 3, num_classes=NUM_CLASSES)
    assert result.per_pair == (1.0, 1.0)
    assert result.mean == 1.0


def test_warp_follows_the_motion(panning) -> None:
    images, labels = panning
    warped = warp_previous(labels[0], images[0], images[1])
    assert warped.dtype == np.uint8 and warped.shape == labels[1].shape
    inside = warped != 255
    # the right border's content came from outside the previous frame (Farneback's flow fades at the very
    # corners, where it has no data, hence "nearly all")
    assert inside[:, -1].mean() < 0.1 and inside[:, : WIDTH - 2 * SHIFT_PX].all()
    assert np.mean(warped[inside] == labels[1][inside]) > 0.97


def test_labels_moving_with_the_image_are_consistent_and_static_labels_are_not(panning) -> None:
    images, labels = panning
    moving = temporal_consistency(images, labels, num_classes=NUM_CLASSES)
    static = temporal_consistency(images, [labels[0]] * NUM_FRAMES, num_classes=NUM_CLASSES)
    assert len(moving.per_pair) == NUM_FRAMES - 1
    assert moving.mean > 0.95
    assert static.mean < moving.mean - 0.3  # a 3 px mismatch on 8 px stripes: IoU about 5/11


def test_flickering_labels_lower_the_score(panning) -> None:
    images, labels = panning
    rng = np.random.default_rng(3)
    flickering = []
    for t, frame_labels in enumerate(labels):
        noisy = frame_labels.copy()
        if t % 2:  # every other frame, a third of the pixels get a random class
            flip = rng.random(noisy.shape) < 1 / 3
            noisy[flip] = rng.integers(0, NUM_CLASSES, size=int(flip.sum()))
        flickering.append(noisy)
    clean = temporal_consistency(images, labels, num_classes=NUM_CLASSES).mean
    noisy = temporal_consistency(images, flickering, num_classes=NUM_CLASSES).mean
    assert noisy < clean - 0.2


def test_pair_miou_hand_computed() -> None:
    warped = np.array([[0, 0, 1], [1, 2, 255]])
    current = np.array([[0, 1, 1], [1, 255, 3]])
    # valid pixels: (0,0) 0/0, (0,1) 0/1, (0,2) 1/1, (1,0) 1/1; class 0: 1/2, class 1: 2/3; 2 and 3 absent there
    assert pair_miou(warped, current, num_classes=4) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert math.isnan(pair_miou(np.full((2, 2), 255), np.zeros((2, 2), int), num_classes=4))
    assert pair_miou(np.zeros((2, 2), int), np.ones((2, 2), int), num_classes=2) == 0.0
    with pytest.raises(ValueError, match="outside"):
        pair_miou(np.full((2, 2), 5), np.zeros((2, 2), int), num_classes=4)


def test_meter_streams_frames(panning) -> None:
    images, labels = panning
    meter = TemporalConsistencyMeter(num_classes=NUM_CLASSES)
    assert meter.update(images[0], labels[0]) is None
    first_pair = meter.update(images[1], labels[1])
    assert first_pair is not None and first_pair > 0.95
    meter.end_stream()  # a new sequence: no pair across the break
    assert meter.update(images[3], labels[3]) is None
    meter.update(images[4], labels[4])
    assert len(meter.result().per_pair) == 2
    meter.reset()
    assert meter.result().per_pair == () and math.isnan(meter.result().mean)


def test_errors_name_the_problem(panning) -> None:
    images, labels = panning
    with pytest.raises(ValueError, match="3 images but 2 predictions"):
        temporal_consistency(images[:3], labels[:2], num_classes=NUM_CLASSES)
    with pytest.raises(ValueError, match="at least 2 frames"):
        temporal_consistency(images[:1], labels[:1], num_classes=NUM_CLASSES)
    with pytest.raises(ValueError, match="RGB image"):
        warp_previous(labels[0], images[0][..., 0], images[1])
    with pytest.raises(ValueError, match="differ in size"):
        warp_previous(labels[0], images[0], images[1][:-1])
    with pytest.raises(ValueError, match="do not match"):
        warp_previous(labels[0][:-1], images[0], images[1])
