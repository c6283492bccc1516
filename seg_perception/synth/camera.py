"""Pinhole cameras on the ego vehicle and the world -> pixel projection.

Conventions used throughout the synthetic world:

* World: metres, ground plane ``z = 0``, ``z`` up, headings counter-clockwise from the ``x`` axis.
* Camera: OpenCV optical frame, ``X`` right, ``Y`` down, ``Z`` forward; pixel ``(u, v)`` has its centre at
  integer coordinates (as OpenCV's rasteriser assumes), so the image centre is ``((W-1)/2, (H-1)/2)``.
* ``yaw_deg`` is the camera's heading relative to the ego's (positive = to the left), ``pitch_deg`` its
  downward tilt (positive = looking down). There is no roll, so every image row sees the ground at one
  depth and the horizon is a horizontal line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_HFOV_DEG = 70.0
DEFAULT_MOUNT_HEIGHT_M = 1.45
DEFAULT_PITCH_DEG = 2.0
NEAR_PLANE_M = 0.4  # geometry closer than this to the camera plane is clipped away
MIN_WIDTH, MIN_HEIGHT = 32, 16

# Heading of each named camera relative to the ego (deg, positive = left). All share the ego's position,
# as a roof-mounted rig would, so they see one world state from one point.
RIG_YAWS_DEG: dict[str, float] = {
    "front": 0.0,
    "front_left": 55.0,
    "front_right": -55.0,
    "left": 90.0,
    "right": -90.0,
    "rear_left": 125.0,
    "rear_right": -125.0,
    "rear": 180.0,
}


@dataclass(frozen=True)
class CameraModel:
    """Intrinsics and mounting of one camera of the rig (see the module docstring for conventions)."""

    name: str
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    mount_height_m: float
    yaw_deg: float
    pitch_deg: float

    def intrinsic_matrix(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def hfov_deg(self) -> float:
        return math.degrees(2.0 * math.atan(self.width / (2.0 * self.fx)))

    def horizon_row(self) -> float:
        """Image row of the horizon (where the ground plane vanishes)."""
        return self.cy - self.fy * math.tan(math.radians(self.pitch_deg))


def check_size(width: int, height: int) -> None:
    if width < MIN_WIDTH or height < MIN_HEIGHT:
        raise ValueError(f"image size {width}x{height} is too small; the renderer needs at least "
                         f"{MIN_WIDTH}x{MIN_HEIGHT}")


def camera_model(name: str, *, width: int, height: int, hfov_deg: float = DEFAULT_HFOV_DEG,
                 mount_height_m: float = DEFAULT_MOUNT_HEIGHT_M, pitch_deg: float = DEFAULT_PITCH_DEG,
                 yaw_deg: float | None = None) -> CameraModel:
    """A square-pixel camera with its principal point at the image centre.

    ``yaw_deg`` defaults to the rig position of ``name`` (see ``RIG_YAWS_DEG``); an unknown name then
    raises ``ValueError``.
    """
    check_size(width, height)
    if not 10.0 <= hfov_deg <= 150.0:
        raise ValueError(f"horizontal field of view {hfov_deg} deg is outside 10-150 deg")
    if yaw_deg is None:
        if name not in RIG_YAWS_DEG:
            raise ValueError(f"unknown camera {name!r}; known: {', '.join(RIG_YAWS_DEG)}")
        yaw_deg = RIG_YAWS_DEG[name]
    f = (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
    return CameraModel(name=name, width=width, height=height, fx=f, fy=f, cx=(width - 1) / 2.0,
                       cy=(height - 1) / 2.0, mount_height_m=mount_height_m, yaw_deg=yaw_deg,
                       pitch_deg=pitch_deg)


def default_rig(names: Sequence[str], *, width: int, height: int, hfov_deg: float = DEFAULT_HFOV_DEG,
                mount_height_m: float = DEFAULT_MOUNT_HEIGHT_M,
                pitch_deg: float = DEFAULT_PITCH_DEG) -> tuple[CameraModel, ...]:
    """Cameras for the named rig positions (``front``, ``front_left``, ``rear``, ... see ``RIG_YAWS_DEG``)."""
    if not names:
        raise ValueError("a rig needs at least one camera")
    if len(set(names)) != len(names):
        raise ValueError(f"camera names repeat: {list(names)}")
    return tuple(camera_model(n, width=width, height=height, hfov_deg=hfov_deg, mount_height_m=mount_height_m,
                              pitch_deg=pitch_deg) for n in names)


@dataclass(frozen=True)
class CameraPose:
    """A camera placed in the world: ``x_cam = R @ (p_world - position)``."""

    model: CameraModel
    position: np.ndarray  # (3,) world
    rotation: np.ndarray  # (3, 3) world -> camera, rows: right, down, forward
    heading: float  # world heading of the optical axis (rad)

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) world points -> (..., 3) camera coordinates."""
        return (points - self.position) @ self.rotation.T

    def project(self, cam_points: np.ndarray) -> np.ndarray:
        """(..., 3) camera coordinates (z > 0) -> (..., 2) pixel coordinates."""
        m = self.model
        z = cam_points[..., 2]
        return np.stack([m.fx * cam_points[..., 0] / z + m.cx, m.fy * cam_points[..., 1] / z + m.cy], axis=-1)

    def plane_homography(self, plane_z: float) -> np.ndarray:
        """3x3 H mapping homogeneous pixels to world (x, y) on the horizontal plane ``z = plane_z``.

        The pixel ray is ``d = R^T K^-1 p``; it meets the plane at ``position + t d`` with
        ``t = (plane_z - cz) / d_z``, which is linear in ``p`` up to the common factor ``d_z``.
        """
        a = self.rotation.T @ np.linalg.inv(self.model.intrinsic_matrix())
        cx, cy, cz = self.position
        dz = plane_z - cz
        return np.stack([cx * a[2] + dz * a[0], cy * a[2] + dz * a[1], a[2]])

    def in_view(self, points: np.ndarray, radii: np.ndarray, far: float) -> np.ndarray:
        """Which bounding spheres (centres (n, 3), radii (n,)) may show in this camera's image."""
        cam = self.to_camera(points)
        z, x = cam[:, 2], cam[:, 0]
        tan_half = (self.model.width / 2.0 + 2.0) / self.model.fx
        return (z + radii > NEAR_PLANE_M) & (z - radii < far) & (np.abs(x) - radii < (z + radii) * tan_half)

    def ground_depth_per_row(self, plane_z: float = 0.0) -> np.ndarray:
        """Camera-frame depth of the plane ``z = plane_z`` at every image row (inf above the horizon)."""
        m = self.model
        p = math.radians(m.pitch_deg)
        rows = (np.arange(m.height, dtype=np.float64) - m.cy) / m.fy
        denom = math.cos(p) * rows + math.sin(p)
        h = self.position[2] - plane_z
        with np.errstate(divide="ignore"):
            return np.where(denom > 1e-9, h / np.maximum(denom, 1e-9), np.inf)


def rotation_world_to_camera(heading: float, pitch: float) -> np.ndarray:
    """Rows: camera right, down and forward axes in world coordinates (no roll)."""
    ch, sh, cp, sp = math.cos(heading), math.sin(heading), math.cos(pitch), math.sin(pitch)
    forward = np.array([ch * cp, sh * cp, -sp])
    right = np.array([sh, -ch, 0.0])
    down = np.cross(forward, right)
    return np.stack([right, down, forward])


def place_camera(model: CameraModel, ego_x: float, ego_y: float, ego_heading: float,
                 ground_z: float = 0.0) -> CameraPose:
    heading = ego_heading + math.radians(model.yaw_deg)
    rotation = rotation_world_to_camera(heading, math.radians(model.pitch_deg))
    position = np.array([ego_x, ego_y, ground_z + model.mount_height_m])
    return CameraPose(model=model, position=position, rotation=rotation, heading=heading)
