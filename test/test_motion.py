"""The obstacle velocity filter (geometry/motion.py): convergence, the ego's motion taken out, outliers."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from seg_perception.geometry.motion import EgoMotion, VelocityFilter

STEP_NS = 100_000_000  # 10 Hz


def _ego_drive(steps: int, speed: float, yaw_rate: float):
    """The ego's world pose (x, y, heading) at each step of a drive at constant speed and turn rate."""
    poses, x, y, heading = [], 0.0, 0.0, 0.0
    for _ in range(steps):
        poses.append((x, y, heading))
        # exact arc over one step (straight when not turning)
        if yaw_rate:
            x += speed / yaw_rate * (math.sin(heading + yaw_rate * 0.1) - math.sin(heading))
            y -= speed / yaw_rate * (math.cos(heading + yaw_rate * 0.1) - math.cos(heading))
        else:
            x, y = x + speed * 0.1 * math.cos(heading), y + speed * 0.1 * math.sin(heading)
        heading += yaw_rate * 0.1
    return poses


def _in_base_link(point: np.ndarray, pose: tuple[float, float, float]) -> np.ndarray:
    x, y, heading = pose
    c, s = math.cos(heading), math.sin(heading)
    d = point - (x, y)
    return np.array([c * d[0] + s * d[1], -s * d[0] + c * d[1]])


def test_converges_on_a_constant_velocity_object_with_noisy_positions() -> None:
    rng = np.random.default_rng(1)
    motion = VelocityFilter()
    estimate = None
    for step in range(30):  # 3 s at 10 Hz, closing from 40 m at 5 m/s while drifting left at 1 m/s
        t = step * 0.1
        truth = np.array([40.0 - 5.0 * t, -2.0 + 1.0 * t])
        measured = truth + rng.normal(0.0, 0.03 * np.hypot(*truth), 2)
        estimate = motion.update("front", 7, tuple(measured), step * STEP_NS)
    assert estimate is not None and estimate.samples == 30 and estimate.velocity_xy_mps is not None
    assert estimate.velocity_xy_mps == pytest.approx((-5.0, 1.0), abs=1.0)
    assert estimate.over_ground_xy_mps is None  # no odometry: relative only
    assert motion.update("front", 7, (30.0, 0.0), int(5e9)).velocity_xy_mps is None  # 2 s of silence: new track
    assert motion.update("front", 7, (30.0, 0.0), int(4e9)).velocity_xy_mps is None  # a stamp going back: new track


@pytest.mark.parametrize("yaw_rate", [0.0, 0.15])
def test_with_odometry_a_standing_person_is_at_rest_over_the_ground(yaw_rate: float) -> None:
    """Seen from a car at 10 m/s (turning or not), a person standing 25 m ahead: with odometry the filter
    knows the world is still and people walk, so the velocity is right from the first frames; without, the
    first estimates start from 'moving with us'."""
    speed, steps = 10.0, 12
    poses = _ego_drive(steps, speed, yaw_rate)
    person = np.array([25.0, 4.0])
    steps_m = np.array([[0.8, 0.0], [0.0, 0.04]])  # one image row / column on the ground at 25 m

    def run(with_odometry: bool, seed: int) -> list[tuple[float, float | None]]:
        """(relative velocity error, over-ground speed) from the 5th position on, as eval scores."""
        rng = np.random.default_rng(seed)
        motion = VelocityFilter()
        out = []
        for k, pose in enumerate(poses):
            if with_odometry:
                motion.add_ego_motion(EgoMotion(k * STEP_NS, (speed, 0.0), yaw_rate))
            seen = _in_base_link(person, pose)
            measured = seen + rng.normal(0.0, 1.0, 2) * (steps_m[0] + steps_m[1])  # a pixel either way
            estimate = motion.update("front", 1, tuple(measured), k * STEP_NS, pixel_steps=steps_m, walker=True)
            # the truth's relative velocity: minus the ego's, minus its turn rate times the position
            relative = -np.array([speed, 0.0]) - yaw_rate * np.array([-seen[1], seen[0]])
            over_ground = None if estimate.over_ground_xy_mps is None else np.hypot(*estimate.over_ground_xy_mps)
            out.append((float(np.hypot(*(np.array(estimate.velocity_xy_mps or (np.nan, np.nan)) - relative))),
                        over_ground))
        return out[4:]

    compensated = [run(True, seed) for seed in range(30)]
    plain = [run(False, seed) for seed in range(30)]
    # relative = over ground - ego's - turn rate x position (the filter's position, within a metre)
    for error, over_ground in (pair for drive in compensated for pair in drive):
        assert error == pytest.approx(over_ground, abs=0.2 + yaw_rate * 1.5)
    first = [drive[0][0] for drive in compensated]
    assert np.median(first) < 1.0
    assert np.median(first) < np.median([drive[0][0] for drive in plain]) / 2
    assert np.median([error for drive in compensated for error, _ in drive]) < 0.6


def test_one_wild_contact_is_skipped_and_a_lasting_jump_restarts_the_track() -> None:
    motion = VelocityFilter()
    for k in range(10):  # 30 m ahead, closing at 5 m/s
        estimate = motion.update("front", 1, (30.0 - 0.5 * k, 0.0), k * STEP_NS)
    before = estimate.velocity_xy_mps
    wild = motion.update("front", 1, (10.0, 0.0), 10 * STEP_NS)  # an occluder's edge: 15 m too near
    assert wild.velocity_xy_mps == pytest.approx(before, abs=0.3) and wild.samples == 10
    back = motion.update("front", 1, (30.0 - 0.5 * 11, 0.0), 11 * STEP_NS)
    assert back.velocity_xy_mps == pytest.approx((-5.0, 0.0), abs=0.5) and back.samples == 11
    for k in range(12, 15):  # the track now follows something 15 m nearer, for good
        jumped = motion.update("front", 1, (10.0, 0.0), k * STEP_NS)
    assert jumped.samples == 1 and jumped.velocity_xy_mps is None  # restarted on the third in a row


def test_odometry_arriving_mid_track_restarts_it_and_stale_odometry_is_not_used() -> None:
    motion = VelocityFilter()
    for k in range(3):
        estimate = motion.update("front", 1, (20.0 - k, 0.0), k * STEP_NS)
    assert estimate.samples == 3
    motion.add_ego_motion(EgoMotion(3 * STEP_NS, (10.0, 0.0), 0.0))
    estimate = motion.update("front", 1, (17.0, 0.0), 3 * STEP_NS)
    assert estimate.samples == 1  # the state's velocity changes meaning: relative -> over the ground
    assert motion.ego_motion_at(3 * STEP_NS + int(0.2e9)) is not None
    assert motion.ego_motion_at(3 * STEP_NS + int(0.3e9)) is None  # older than max_odometry_gap_s
    motion.add_ego_motion(EgoMotion(STEP_NS, (9.0, 0.0), 0.0))  # out of order: kept sorted
    assert motion.ego_motion_at(STEP_NS).velocity_xy_mps == (9.0, 0.0)


def test_ego_motion_from_odometry_and_a_bad_twist() -> None:
    def odometry(vx: float, wz: float) -> SimpleNamespace:
        v3 = SimpleNamespace
        return SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(sec=3, nanosec=5)),
                               twist=SimpleNamespace(twist=SimpleNamespace(linear=v3(x=vx, y=0.5, z=0.0),
                                                                           angular=v3(x=0.0, y=0.0, z=wz))))

    assert EgoMotion.from_odometry(odometry(8.0, 0.1)) == EgoMotion(3_000_000_005, (8.0, 0.5), 0.1)
    with pytest.raises(ValueError, match="not finite"):
        EgoMotion.from_odometry(odometry(float("nan"), 0.1))
