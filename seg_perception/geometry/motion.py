"""Obstacle velocity from consecutive ground positions: a constant-velocity Kalman filter per track.

State (x, y, vx, vy) in ``base_link``. The measurement is the ground-contact point, whose error grows with
range on flat-ground projection (a pixel spans more ground far away), so its noise is set per measurement
from the range. Velocities are relative to the vehicle (``base_link`` moves with it): add the ego's own
velocity for ground speed when odometry is at hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

_H = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])


@dataclass
class _Track:
    state: np.ndarray  # (4,) x, y, vx, vy
    covariance: np.ndarray  # (4, 4)
    stamp_ns: int
    updates: int = 1


@dataclass
class VelocityFilter:
    """One filter per (camera, track id); tracks not updated for ``forget_after_s`` are dropped."""

    acceleration_sigma: float = 3.0  # m/s^2: how fast traffic may change its velocity
    position_sigma_m: float = 0.2  # measurement noise at zero range ...
    position_sigma_per_m: float = 0.03  # ... growing by this much per metre of range
    forget_after_s: float = 1.0
    _tracks: dict[tuple[str, int], _Track] = field(default_factory=dict)

    def update(self, camera: str, track_id: int, position: tuple[float, float],
               stamp_ns: int) -> tuple[tuple[float, float] | None, int]:
        """Fold in one measured position; returns (velocity (vx, vy) or None before a second position, the
        number of positions the track's estimate rests on)."""
        key = (camera, track_id)
        measured = np.asarray(position, np.float64)
        sigma = self.position_sigma_m + self.position_sigma_per_m * float(np.hypot(*measured))
        noise = np.eye(2) * sigma**2
        track = self._tracks.get(key)
        if track is not None and not 0 < (stamp_ns - track.stamp_ns) <= self.forget_after_s * 1e9:
            track = None  # too old, or a stamp going backwards (a bag loop): start again
        if track is None:
            covariance = np.diag([sigma**2, sigma**2, 100.0, 100.0])  # velocity unknown: wide prior
            self._tracks[key] = _Track(np.array([*measured, 0.0, 0.0]), covariance, stamp_ns)
            return None, 1
        dt = (stamp_ns - track.stamp_ns) * 1e-9
        transition = np.array([[1.0, 0.0, dt, 0.0], [0.0, 1.0, 0.0, dt], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
        # white-acceleration process noise (piecewise constant acceleration over dt)
        g = np.array([[dt * dt / 2, 0.0], [0.0, dt * dt / 2], [dt, 0.0], [0.0, dt]])
        state = transition @ track.state
        covariance = transition @ track.covariance @ transition.T + g @ g.T * self.acceleration_sigma**2
        innovation = measured - _H @ state
        gain = covariance @ _H.T @ np.linalg.inv(_H @ covariance @ _H.T + noise)
        track.state = state + gain @ innovation
        track.covariance = (np.eye(4) - gain @ _H) @ covariance
        track.stamp_ns, track.updates = stamp_ns, track.updates + 1
        return (float(track.state[2]), float(track.state[3])), track.updates

    def forget_older_than(self, stamp_ns: int) -> None:
        horizon = stamp_ns - self.forget_after_s * 1e9
        self._tracks = {k: t for k, t in self._tracks.items() if t.stamp_ns >= horizon}

    def reset(self, camera: str | None = None) -> None:
        self._tracks = {k: t for k, t in self._tracks.items() if camera is not None and k[0] != camera}
