"""Intrinsics from ``sensor_msgs/CameraInfo``, the mount in ``base_link``, and pixels onto the ground.

Distortion is removed from points, not from images (``cv2.undistortPoints``): a mask is only ever
projected at the few pixels that matter, or once per pixel into a lookup table made at start-up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

_UNDISTORT_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-12)
DISTORTION_MODELS = ("plumb_bob", "none", "")  # "" : CameraInfo left at its defaults (no distortion)
# Rows of this matrix are the optical axes (x right, y down, z forward) in the camera body frame
# (x forward, y left, z up): optical x = -body y, optical y = -body z, optical z = body x.
_BODY_FROM_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


class GeometryError(ValueError):
    """Camera geometry that cannot be used (bad intrinsics, unknown distortion model, a mount below ground)."""


@dataclass(frozen=True)
class Intrinsics:
    """A pinhole camera with optional plumb_bob distortion (k1, k2, p1, p2, k3), as CameraInfo carries it."""

    width: int
    height: int
    matrix: np.ndarray  # 3x3 K
    distortion: np.ndarray  # (5,) plumb_bob coefficients; zeros without distortion

    def __post_init__(self) -> None:
        k = np.asarray(self.matrix, np.float64)
        if k.shape != (3, 3) or not np.isfinite(k).all() or k[0, 0] <= 0 or k[1, 1] <= 0:
            raise GeometryError(f"intrinsic matrix must be 3x3, finite, with fx, fy > 0; got {k.tolist()}")
        if self.width < 1 or self.height < 1:
            raise GeometryError(f"image size must be positive, got {self.width}x{self.height}")
        d = np.asarray(self.distortion, np.float64)
        if d.shape != (5,) or not np.isfinite(d).all():
            raise GeometryError(f"plumb_bob distortion needs 5 finite coefficients, got {d.tolist()}")
        object.__setattr__(self, "matrix", k)
        object.__setattr__(self, "distortion", d)

    @classmethod
    def from_camera_info(cls, info: Any) -> Intrinsics:
        """From a ``sensor_msgs/CameraInfo`` (or anything with its fields: width, height, k, d, distortion_model)."""
        model = str(info.distortion_model)
        coefficients = np.asarray(info.d, np.float64).ravel()
        if model not in DISTORTION_MODELS:
            raise GeometryError(f"distortion model {model!r} is not supported; use plumb_bob (or none)")
        if model == "plumb_bob" and coefficients.size not in (0, 4, 5):  # 4: k3 omitted, i.e. 0
            raise GeometryError(f"plumb_bob needs 4 or 5 coefficients, got {coefficients.size}")
        distortion = np.zeros(5)
        if model == "plumb_bob":
            distortion[:coefficients.size] = coefficients
        return cls(width=int(info.width), height=int(info.height),
                   matrix=np.asarray(info.k, np.float64).reshape(3, 3), distortion=distortion)

    @property
    def distorted(self) -> bool:
        return bool(self.distortion.any())

    def scaled_to(self, width: int, height: int) -> Intrinsics:
        """The same camera seen at another resolution (the model's input, say); pixel centres stay centres."""
        sx, sy = width / self.width, height / self.height
        k = self.matrix.copy()
        k[0, 0], k[0, 1], k[1, 1] = k[0, 0] * sx, k[0, 1] * sx, k[1, 1] * sy
        k[0, 2], k[1, 2] = (k[0, 2] + 0.5) * sx - 0.5, (k[1, 2] + 0.5) * sy - 0.5
        return Intrinsics(width=width, height=height, matrix=k, distortion=self.distortion)

    def normalised(self, pixels: np.ndarray) -> np.ndarray:
        """(N, 2) pixels -> (N, 2) undistorted normalised image coordinates (x/z, y/z in the optical frame)."""
        points = np.asarray(pixels, np.float64).reshape(-1, 1, 2)
        if points.shape[0] == 0:
            return np.zeros((0, 2))
        if not self.distorted:
            return (points.reshape(-1, 2) - self.matrix[:2, 2]) @ np.linalg.inv(self.matrix[:2, :2]).T
        # OpenCV's default 5 iterations leave 0.06 px at the corners of a strongly distorted lens
        return cv2.undistortPoints(points, self.matrix, self.distortion, None, np.eye(3), np.eye(3),
                                   _UNDISTORT_CRITERIA).reshape(-1, 2)

    def project(self, optical: np.ndarray) -> np.ndarray:
        """(N, 3) points in the optical frame (z > 0) -> (N, 2) pixels, distortion applied."""
        points = np.asarray(optical, np.float64).reshape(-1, 1, 3)
        if points.shape[0] == 0:
            return np.zeros((0, 2))
        pixels, _ = cv2.projectPoints(points, np.zeros(3), np.zeros(3), self.matrix, self.distortion)
        return pixels.reshape(-1, 2)


@dataclass(frozen=True)
class Mount:
    """The camera body's pose in ``base_link`` (metres, radians; roll, pitch, yaw as in REP-103, applied
    yaw, then pitch, then roll): a positive pitch looks down, a positive yaw to the left."""

    x: float = 0.0
    y: float = 0.0
    z: float = 1.5
    roll: float = 0.0
    pitch: float = 0.0
    yaw: float = 0.0

    def __post_init__(self) -> None:
        values = (self.x, self.y, self.z, self.roll, self.pitch, self.yaw)
        if not all(math.isfinite(v) for v in values):
            raise GeometryError(f"camera mount must be finite, got {values}")
        if self.z <= 0:
            raise GeometryError(f"camera mount height z must be above the ground (> 0), got {self.z}")

    @property
    def position(self) -> np.ndarray:
        return np.array([self.x, self.y, self.z])

    @classmethod
    def from_transform(cls, translation: tuple[float, float, float],
                       quaternion_xyzw: tuple[float, float, float, float], *, optical: bool = True) -> Mount:
        """The mount from a TF transform of the camera's frame in ``base_link`` (``/tf_static``): the image
        header's frame is the optical frame (z forward, x right, y down) unless ``optical`` is False (a REP-103
        body frame: x forward, y left, z up)."""
        q = np.asarray(quaternion_xyzw, np.float64)
        norm = float(np.linalg.norm(q))
        if not (math.isfinite(norm) and norm > 1e-9):
            raise GeometryError(f"camera transform rotation is not a quaternion: {tuple(quaternion_xyzw)}")
        x, y, z, w = q / norm
        rotation = np.array([
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ])
        body = rotation @ _BODY_FROM_OPTICAL.T if optical else rotation  # undo the optical axes
        # body = Rz(yaw) Ry(pitch) Rx(roll): the angles back out of its first column and last row
        pitch = math.asin(max(-1.0, min(1.0, -body[2, 0])))
        yaw = math.atan2(body[1, 0], body[0, 0])
        roll = math.atan2(body[2, 1], body[2, 2])
        return cls(*(float(v) for v in translation), roll=roll, pitch=pitch, yaw=yaw)

    def rotation(self) -> np.ndarray:
        """3x3 taking optical-frame directions to ``base_link``."""
        cr, sr = math.cos(self.roll), math.sin(self.roll)
        cp, sp = math.cos(self.pitch), math.sin(self.pitch)
        cy, sy = math.cos(self.yaw), math.sin(self.yaw)
        rz = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])
        ry = np.array([[cp, 0.0, sp], [0.0, 1.0, 0.0], [-sp, 0.0, cp]])
        rx = np.array([[1.0, 0.0, 0.0], [0.0, cr, -sr], [0.0, sr, cr]])
        return rz @ ry @ rx @ _BODY_FROM_OPTICAL


class GroundProjector:
    """Pixels of one camera onto the flat ground ``z = 0`` of ``base_link``, and back."""

    def __init__(self, intrinsics: Intrinsics, mount: Mount, *, max_range_m: float = 200.0) -> None:
        if not max_range_m > 0:
            raise GeometryError(f"max_range_m must be positive, got {max_range_m}")
        self.intrinsics, self.mount, self.max_range_m = intrinsics, mount, max_range_m
        self._rotation = mount.rotation()

    def rays(self, pixels: np.ndarray) -> np.ndarray:
        """(N, 2) pixels -> (N, 3) ray directions in ``base_link`` (not normalised)."""
        normalised = self.intrinsics.normalised(pixels)
        optical = np.concatenate([normalised, np.ones((normalised.shape[0], 1))], axis=1)
        return optical @ self._rotation.T

    def to_ground(self, pixels: np.ndarray, heights: np.ndarray | float = 0.0) -> np.ndarray:
        """(N, 2) pixels -> (N, 2) ground points (x, y) in metres; NaN where the ray does not meet the ground
        in front of the camera within ``max_range_m`` of the vehicle (at or above the horizon). ``heights``:
        of the ground each pixel sees above ``z = 0`` (a raised sidewalk, say), one for all or one per pixel."""
        rays = self.rays(pixels)
        height = self.mount.z - np.asarray(heights, np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(rays[:, 2] < -1e-9, height / -rays[:, 2], np.nan)
        points = self.mount.position[:2] + t[:, None] * rays[:, :2]
        too_far = np.hypot(points[:, 0], points[:, 1]) > self.max_range_m
        points[too_far] = np.nan
        return points

    def to_ground_with_steps(self, pixels: np.ndarray, heights: np.ndarray | float = 0.0,
                             pixel_size: tuple[float, float] = (1.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
        """``to_ground`` of (N, 2) pixels, and (N, 2, 2) the ground one pixel of ``pixel_size`` (width, height, in
        these pixels) spans there: per point, the displacement of one row down and of one column right. Far
        away a row spans metres of range and a column centimetres: how a pixel's error lands on the ground."""
        pixels = np.asarray(pixels, np.float64).reshape(-1, 2)
        w, h = pixel_size
        stencil = np.array([[0.0, 0.0], [0.0, 0.5 * h], [0.0, -0.5 * h], [0.5 * w, 0.0], [-0.5 * w, 0.0]])
        heights = np.broadcast_to(np.asarray(heights, np.float64), (len(pixels),))
        around = self.to_ground((pixels[:, None, :] + stencil).reshape(-1, 2), np.repeat(heights, 5))
        around = around.reshape(len(pixels), 5, 2)
        steps = np.stack([around[:, 1] - around[:, 2], around[:, 3] - around[:, 4]], axis=1)
        return around[:, 0], steps

    def to_pixels(self, ground: np.ndarray) -> np.ndarray:
        """(N, 2) ground points (x, y) -> (N, 2) pixels; NaN for points behind the camera."""
        ground = np.asarray(ground, np.float64).reshape(-1, 2)
        world = np.concatenate([ground, np.zeros((ground.shape[0], 1))], axis=1) - self.mount.position
        optical = world @ self._rotation  # inverse rotation: the matrix is orthonormal
        pixels = np.full((ground.shape[0], 2), np.nan)
        ahead = optical[:, 2] > 1e-6
        pixels[ahead] = self.intrinsics.project(optical[ahead])
        return pixels
