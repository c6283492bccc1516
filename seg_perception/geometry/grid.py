"""The drivable-area grid: every camera's drivable mask on the flat ground of ``base_link``, fused.

Each camera gets a lookup table once (per image size): the pixel that sees the centre of every grid cell
in its view (the inverse of the image-to-ground homography, lens distortion included). Going from cells to
pixels leaves no holes far away, where one pixel row spans more ground than a cell. A frame then costs a
gather and two ``np.bincount`` over that table. Fused over the cameras, a cell is
- ``FREE`` (0) where the cameras that see it mostly see drivable ground there,
- ``OCCUPIED`` (100) where they mostly see other ground (sidewalk, terrain), and around every
  obstacle's ground contact (``footprint_m``), whatever the mask says there,
- ``UNKNOWN`` (-1) where no camera sees the ground: out of view, or hidden behind an obstacle, whose pixels
  are not ground and so are left out rather than projected onto the road behind it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from seg_perception.geometry.camera import GeometryError, GroundProjector

FREE, OCCUPIED, UNKNOWN = 0, 100, -1


@dataclass(frozen=True)
class GridSpec:
    """Cells of ``resolution_m`` covering x in [x_min, x_max) and y in [y_min, y_max) of base_link."""

    resolution_m: float = 0.2
    x_min: float = -20.0
    x_max: float = 60.0
    y_min: float = -20.0
    y_max: float = 20.0
    footprint_m: float = 1.0  # half-width of the square marked occupied around an obstacle's ground contact

    def __post_init__(self) -> None:
        values = (self.resolution_m, self.x_min, self.x_max, self.y_min, self.y_max, self.footprint_m)
        if not all(math.isfinite(v) for v in values) or self.resolution_m <= 0 or self.footprint_m < 0:
            raise GeometryError(f"grid needs a finite positive resolution and footprint, got {values}")
        if self.x_max <= self.x_min or self.y_max <= self.y_min:
            raise GeometryError(f"grid extent is empty: x [{self.x_min}, {self.x_max}), y [{self.y_min}, {self.y_max})")
        if self.width * self.height > 25_000_000:
            raise GeometryError(f"grid of {self.width}x{self.height} cells is too large; coarsen the resolution")

    @property
    def width(self) -> int:  # cells along x (the OccupancyGrid's width: its x axis is base_link's x)
        return math.ceil((self.x_max - self.x_min) / self.resolution_m - 1e-9)

    @property
    def height(self) -> int:  # cells along y
        return math.ceil((self.y_max - self.y_min) / self.resolution_m - 1e-9)

    def cells(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) ground points -> (N,) flat cell index (row y, column x), -1 outside the grid or NaN."""
        points = np.asarray(points, np.float64).reshape(-1, 2)
        with np.errstate(invalid="ignore"):
            column = np.floor((points[:, 0] - self.x_min) / self.resolution_m)
            row = np.floor((points[:, 1] - self.y_min) / self.resolution_m)
            inside = (column >= 0) & (column < self.width) & (row >= 0) & (row < self.height)
        index = np.full(points.shape[0], -1, np.int64)
        index[inside] = row[inside].astype(np.int64) * self.width + column[inside].astype(np.int64)
        return index


class CameraGridLookup:
    """For one camera and image size: the pixel that sees each grid cell's centre, for the cells in view."""

    def __init__(self, projector: GroundProjector, spec: GridSpec) -> None:
        width, height = projector.intrinsics.width, projector.intrinsics.height
        rows, columns = np.divmod(np.arange(spec.width * spec.height), spec.width)
        centres = np.stack([spec.x_min + (columns + 0.5) * spec.resolution_m,
                            spec.y_min + (rows + 0.5) * spec.resolution_m], 1)
        pixels = projector.to_pixels(centres)  # NaN behind the camera
        with np.errstate(invalid="ignore"):
            in_image = (pixels[:, 0] > -0.5) & (pixels[:, 0] < width - 0.5) & (pixels[:, 1] > -0.5) \
                & (pixels[:, 1] < height - 0.5)
        in_range = np.hypot(centres[:, 0], centres[:, 1]) <= projector.max_range_m
        keep = np.flatnonzero(in_image & in_range)
        # A distortion polynomial can fold points far outside the view back into the image: keep a cell
        # only if its pixel sees it again.
        back = projector.to_ground(pixels[keep])
        keep = keep[np.hypot(*(back - centres[keep]).T) < 0.5 * spec.resolution_m]
        self.spec, self.image_size = spec, (width, height)
        self.cells = keep
        self.pixel_cols = np.rint(pixels[keep, 0]).astype(np.int64)
        self.pixel_rows = np.rint(pixels[keep, 1]).astype(np.int64)

    def observe(self, drivable: np.ndarray, not_ground: np.ndarray | None = None) -> CameraVotes:
        """This camera's votes for (H, W) masks at its image size: drivable or other ground per cell in view;
        cells whose pixel is ``not_ground`` (an obstacle) get no vote: the ground there is hidden."""
        if drivable.shape != (self.image_size[1], self.image_size[0]):
            raise GeometryError(f"mask of {drivable.shape[1]}x{drivable.shape[0]} for a grid lookup made for "
                                f"{self.image_size[0]}x{self.image_size[1]} images")
        is_drivable = drivable[self.pixel_rows, self.pixel_cols] > 0
        ground = (np.ones_like(is_drivable) if not_ground is None
                  else not_ground[self.pixel_rows, self.pixel_cols] == 0)
        return CameraVotes(self.cells, ground & is_drivable, ground & ~is_drivable)


@dataclass(frozen=True)
class CameraVotes:
    cells: np.ndarray  # flat cell indices, each once
    free: np.ndarray  # bool per cell: drivable ground seen there
    other: np.ndarray  # bool per cell: other ground seen there


def fuse(spec: GridSpec, votes: Iterable[CameraVotes], obstacles: Sequence[tuple[float, float]] = ()) -> np.ndarray:
    """(height, width) int8 grid (row = y, column = x) from every camera's votes and the obstacles' ground
    contacts."""
    size = spec.width * spec.height
    free, other = np.zeros(size, np.uint8), np.zeros(size, np.uint8)
    for camera in votes:  # a camera's cells are unique, so plain indexing adds its votes
        free[camera.cells] += camera.free
        other[camera.cells] += camera.other
    grid = np.where(free > other, FREE, OCCUPIED).astype(np.int8)
    grid[(free | other) == 0] = UNKNOWN  # no camera sees the ground there
    grid = grid.reshape(spec.height, spec.width)
    reach = spec.footprint_m
    for x, y in obstacles:
        c0, c1 = (np.floor((np.array([x - reach, x + reach]) - spec.x_min) / spec.resolution_m)).astype(int)
        r0, r1 = (np.floor((np.array([y - reach, y + reach]) - spec.y_min) / spec.resolution_m)).astype(int)
        grid[max(r0, 0):max(r1 + 1, 0), max(c0, 0):max(c1 + 1, 0)] = OCCUPIED
    return grid


class GridFuser:
    """Every camera's latest votes and obstacle contacts; the grid fuses those not older than ``max_age_s``
    than the newest, so cameras that arrive in different batches still meet in one grid."""

    def __init__(self, spec: GridSpec, *, max_age_s: float = 0.5) -> None:
        self.spec, self.max_age_ns = spec, int(max_age_s * 1e9)
        self._latest: dict[str, tuple[int, CameraVotes, tuple[tuple[float, float], ...]]] = {}

    def update(self, camera: str, stamp_ns: int, votes: CameraVotes,
               obstacles: Sequence[tuple[float, float]]) -> None:
        self._latest[camera] = (stamp_ns, votes, tuple(obstacles))

    def grid(self) -> tuple[np.ndarray, int] | None:
        """(grid, stamp of its newest camera frame), or None before any camera has geometry."""
        if not self._latest:
            return None
        newest = max(stamp for stamp, _, _ in self._latest.values())
        fresh = [(votes, obstacles) for stamp, votes, obstacles in self._latest.values()
                 if 0 <= newest - stamp <= self.max_age_ns]
        return fuse(self.spec, [v for v, _ in fresh], [xy for _, obstacles in fresh for xy in obstacles]), newest

    def forget(self, camera: str) -> None:
        self._latest.pop(camera, None)
