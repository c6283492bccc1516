"""Obstacle velocity from consecutive ground positions: a constant-velocity Kalman filter per track.

The measurement is the ground contact in ``base_link``. Its noise comes from the pixels: the mask's lower edge
moves by a pixel or two from frame to frame, and flat-ground projection turns one row far away into metres
of range (at 40 m, 1.5 m for a 1024x512 camera of 70 degrees at 1.45 m) while one column stays centimetres
wide. So each measurement's covariance is the pixel noise carried through the projection at that contact
(``pixel_steps``): long along the line of sight, narrow across it.

``base_link`` moves with the vehicle. With its motion (odometry: ``add_ego_motion``) each track's state is
its position in the current ``base_link`` and its velocity over the ground, in ``base_link`` axes; the
prediction moves and turns the position by the ego's own motion. Walking people are then held to walking
speeds from their first position on, and everything static stays at rest, where without odometry a new
track starts from "moving with us". The published velocity stays relative to ``base_link`` (what the
position does in that frame: over-ground velocity minus the ego's, minus its turn rate times the position);
the over-ground one comes with it. Without odometry the state's velocity is the relative one, as before.
"""

from __future__ import annotations

import bisect
import functools
import math
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from seg_perception.ros_io.stamps import stamp_ns


@dataclass(frozen=True)
class EgoMotion:
    """The vehicle's own motion at one instant (nav_msgs/Odometry's twist in base_link)."""

    stamp_ns: int
    velocity_xy_mps: tuple[float, float]  # base_link's velocity over the ground, in base_link axes
    yaw_rate_rps: float  # counter-clockwise

    @classmethod
    def from_odometry(cls, msg: Any) -> EgoMotion:
        """From a nav_msgs/Odometry whose twist is base_link's (its child_frame_id); ValueError when not finite."""
        linear, angular = msg.twist.twist.linear, msg.twist.twist.angular
        values = (float(linear.x), float(linear.y), float(angular.z))
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"odometry twist is not finite: linear ({values[0]}, {values[1]}), yaw rate {values[2]}")
        return cls(stamp_ns(msg.header.stamp), (values[0], values[1]), values[2])


@dataclass(frozen=True)
class MotionEstimate:
    velocity_xy_mps: tuple[float, float] | None  # relative to base_link; None before a second position
    over_ground_xy_mps: tuple[float, float] | None  # base_link axes; None without odometry for this track
    samples: int  # positions the estimate rests on


@dataclass
class _Track:
    state: np.ndarray  # (4,) x, y in base_link; vx, vy over the ground (compensated) or relative (not)
    covariance: np.ndarray  # (4, 4)
    stamp_ns: int
    compensated: bool
    updates: int = 1
    rejected: int = 0  # measurements in a row too far from the prediction to be this object's


@dataclass
class VelocityFilter:
    """One filter per (camera, track id); tracks not updated for ``forget_after_s`` are dropped."""

    # m/s^2: how fast velocities may change. Vehicles brake and turn harder than people walk; without
    # odometry the ego's own accelerations and turns show in every relative velocity too.
    acceleration_sigma: float = 4.0
    walker_acceleration_sigma: float = 2.0
    pixel_sigma: float = 2.0  # frame-to-frame noise of a mask's lower edge, in pixels of the model's masks
    position_sigma_m: float = 0.1  # on top of it: the flat-ground model's own error near the camera
    # Velocity over the ground before the first motion is seen (odometry known): people walk, vehicles may
    # do anything. Without odometry the relative velocity starts unknown (this much either way).
    walker_speed_sigma_mps: float = 2.0
    speed_sigma_mps: float = 15.0
    forget_after_s: float = 1.0
    max_odometry_gap_s: float = 0.25  # odometry this far outside a step's interval is stale: not used
    # A measurement whose squared Mahalanobis distance from the prediction exceeds this (chi-square, 2
    # degrees of freedom: 1 in 1000 for a true one) is another object's contact, or none (an occluder's
    # edge, two masks run together): skipped, so one bad frame cannot throw the velocity off for seconds.
    # ``max_rejected`` of them in a row restart the track: it was the object that moved.
    gate: float = 13.8
    max_rejected: int = 2
    _tracks: dict[tuple[str, int], _Track] = field(default_factory=dict)
    _ego: list[EgoMotion] = field(default_factory=list)  # sorted by stamp
    _ego_stamps: list[int] = field(default_factory=list)  # theirs, for bisect
    # odometry arrives on another thread (the node's callbacks) than the frames' updates
    _ego_lock: threading.Lock = field(default_factory=threading.Lock)

    def add_ego_motion(self, motion: EgoMotion) -> None:
        """Odometry, in any order (a few seconds are kept); any thread."""
        with self._ego_lock:
            index = bisect.bisect(self._ego_stamps, motion.stamp_ns)
            if index and self._ego_stamps[index - 1] == motion.stamp_ns:
                self._ego[index - 1] = motion
            else:
                self._ego.insert(index, motion)
                self._ego_stamps.insert(index, motion.stamp_ns)
            old = bisect.bisect_left(self._ego_stamps, self._ego_stamps[-1] - int(5e9))
            if old:
                del self._ego[:old], self._ego_stamps[:old]

    def ego_motion_at(self, stamp_ns: int, half_width_ns: int = 0) -> EgoMotion | None:
        """The odometry nearest to ``stamp_ns``, if it is within ``half_width_ns`` + ``max_odometry_gap_s``
        of it (the middle of a step and half its length: odometry from anywhere in the step will do)."""
        with self._ego_lock:
            if not self._ego:
                return None
            index = bisect.bisect(self._ego_stamps, stamp_ns)
            best = min(self._ego[max(index - 1, 0):index + 1], key=lambda m: abs(m.stamp_ns - stamp_ns))
        return best if abs(best.stamp_ns - stamp_ns) <= half_width_ns + self.max_odometry_gap_s * 1e9 else None

    def update(self, camera: str, track_id: int, position: tuple[float, float], stamp_ns: int, *,
               pixel_steps: np.ndarray | None = None, walker: bool = False) -> MotionEstimate:
        """Fold in one measured position. ``pixel_steps``: (2, 2) ground displacement (m) of one image row and of
        one image column at the contact (rows of the array); None: a range-proportional guess. ``walker``: a
        person (a walking-speed prior, gentler accelerations)."""
        key = (camera, track_id)
        measured = np.asarray(position, np.float64)
        noise = self._measurement_noise(measured, pixel_steps)
        track = self._tracks.get(key)
        if track is not None and not 0 < (stamp_ns - track.stamp_ns) <= self.forget_after_s * 1e9:
            track = None  # too old, or a stamp going backwards (a bag loop): start again
        if track is not None:
            ego = self.ego_motion_at((track.stamp_ns + stamp_ns) // 2, (stamp_ns - track.stamp_ns) // 2)
            if (ego is not None) != track.compensated:
                track = None  # odometry came or went: the state's velocity changed meaning
        if track is None:
            compensated = self.ego_motion_at(stamp_ns) is not None
            speed_sigma = self.walker_speed_sigma_mps if (walker and compensated) else self.speed_sigma_mps
            covariance = np.zeros((4, 4))
            covariance[:2, :2] = noise
            covariance[2, 2] = covariance[3, 3] = speed_sigma**2
            self._tracks[key] = _Track(np.array([*measured, 0.0, 0.0]), covariance, stamp_ns, compensated)
            return MotionEstimate(None, None, 1)
        dt = (stamp_ns - track.stamp_ns) * 1e-9
        ego_velocity, yaw_rate = (np.zeros(2), 0.0) if ego is None else (np.asarray(ego.velocity_xy_mps),
                                                                          ego.yaw_rate_rps)
        transition, turn, process = _prediction(dt, yaw_rate)
        sigma = self.walker_acceleration_sigma if walker else self.acceleration_sigma
        state = transition @ track.state
        state[:2] -= turn @ ego_velocity * dt
        covariance = transition @ track.covariance @ transition.T + process * sigma**2
        innovation = measured - state[:2]
        spread_inverse = _inverse_2x2(covariance[:2, :2] + noise)
        if track.updates >= 3 and float(innovation @ spread_inverse @ innovation) > self.gate:
            track.rejected += 1
            if track.rejected > self.max_rejected:
                del self._tracks[key]
                return self.update(camera, track_id, position, stamp_ns, pixel_steps=pixel_steps, walker=walker)
            track.state, track.covariance, track.stamp_ns = state, covariance, stamp_ns  # the prediction
        else:
            gain = covariance[:, :2] @ spread_inverse  # covariance H^T S^-1, H picking x and y
            track.state = state + gain @ innovation
            track.covariance = covariance - gain @ covariance[:2, :]
            track.stamp_ns, track.updates, track.rejected = stamp_ns, track.updates + 1, 0
        x, y, vx, vy = track.state
        if not track.compensated:
            return MotionEstimate((float(vx), float(vy)), None, track.updates)
        relative = np.array([vx, vy]) - ego_velocity - yaw_rate * np.array([-y, x])
        return MotionEstimate((float(relative[0]), float(relative[1])), (float(vx), float(vy)), track.updates)

    def _measurement_noise(self, measured: np.ndarray, pixel_steps: np.ndarray | None) -> np.ndarray:
        if pixel_steps is None or not np.isfinite(pixel_steps).all():
            spread = self.position_sigma_m + 0.03 * float(np.hypot(*measured))
            return np.eye(2) * spread**2
        (r0, r1), (c0, c1) = pixel_steps  # sum of the outer products of the two steps, plus the floor
        k, floor = self.pixel_sigma**2, self.position_sigma_m**2
        cross = k * (r0 * r1 + c0 * c1)
        return np.array([[k * (r0 * r0 + c0 * c0) + floor, cross], [cross, k * (r1 * r1 + c1 * c1) + floor]])

    def forget_older_than(self, stamp_ns: int) -> None:
        horizon = stamp_ns - self.forget_after_s * 1e9
        self._tracks = {k: t for k, t in self._tracks.items() if t.stamp_ns >= horizon}

    def reset(self, camera: str | None = None) -> None:
        self._tracks = {k: t for k, t in self._tracks.items() if camera is not None and k[0] != camera}


@functools.lru_cache(maxsize=256)
def _prediction(dt: float, yaw_rate: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(transition, turn, process noise per unit acceleration variance) over dt; cached, since a camera's
    steps repeat the same dt and odometry's yaw rate (the arrays are only read)."""
    # base_link turns by yaw_rate * dt: what stays put in the world turns the other way in it
    c, s = math.cos(-yaw_rate * dt), math.sin(-yaw_rate * dt)
    turn = np.array([[c, -s], [s, c]])
    transition = np.zeros((4, 4))
    transition[:2, :2], transition[:2, 2:], transition[2:, 2:] = turn, turn * dt, turn
    # white-acceleration process noise (piecewise constant acceleration over dt)
    g = np.array([[dt * dt / 2, 0.0], [0.0, dt * dt / 2], [dt, 0.0], [0.0, dt]])
    return transition, turn, g @ g.T


def _inverse_2x2(matrix: np.ndarray) -> np.ndarray:
    (a, b), (c, d) = matrix
    return np.array([[d, -b], [-c, a]]) / (a * d - b * c)
