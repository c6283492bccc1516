"""3D drawing primitives grouped into pieces (the units of painter's ordering).

A piece owns one vertex array; its parts index into it: polygons (optionally back-face culled),
batches of same-material polygons (windows), thick 3D line segments (limbs, poles, bicycle frames),
camera-facing discs (heads, tree canopies) and thick closed loops (bicycle tyres). The rasteriser
projects every vertex of a piece at once and draws the parts in order (or sorted by depth when
``sort_parts`` is set), so colour, class and instance come from the same pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np


class Material(NamedTuple):
    """What a primitive paints: lit colour (0..1 RGB), trainId, instance value (0 = stuff).
    A NamedTuple because thousands are made per frame."""

    rgb: tuple[float, float, float]
    train_id: int
    instance: int = 0
    texture: float = 0.04  # amplitude of the surface noise
    emissive: bool = False  # lamps: not shaded by the sun


POLY, BATCH, LINE, DISC, LOOP = range(5)


class Part:
    __slots__ = ("back", "bias", "count", "k", "kind", "mat", "normal", "size", "start")

    def __init__(self, kind: int, start: int, count: int, mat: Material, *, normal: np.ndarray | None = None,
                 back: Material | None = None, size: float = 0.0, k: int = 0, bias: float = 0.0) -> None:
        self.kind, self.start, self.count, self.mat = kind, start, count, mat
        self.normal, self.back, self.size, self.k, self.bias = normal, back, size, k, bias


@dataclass(frozen=True)
class Piece:
    verts: np.ndarray  # (V, 3) world; part vertices first, then one centroid per part
    parts: tuple[Part, ...]
    key: np.ndarray  # (3,) point whose distance orders pieces (far first)
    radius: float  # bounding sphere around key, for culling
    sort_parts: bool = False  # draw parts far-to-near instead of in the given order
    small: bool = False  # drop the whole piece if any vertex is behind the near plane
    # per-part arrays, so the rasteriser culls and sorts a piece's parts with a few numpy calls
    starts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.intp))
    normals: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    offsets: np.ndarray = field(default_factory=lambda: np.zeros(0))  # normal . point, per part plane
    culled: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # has a normal
    bias: np.ndarray = field(default_factory=lambda: np.zeros(0))
    mats: tuple[Material, ...] | None = None  # per-part materials overriding part.mat (placed meshes)

    @property
    def n_real(self) -> int:
        """Number of vertices that belong to parts (the centroids follow them)."""
        return len(self.verts) - len(self.parts)


class PieceBuilder:
    def __init__(self) -> None:
        self._chunks: list[np.ndarray] = []
        self._n = 0
        self.parts: list[Part] = []

    def _add(self, verts: np.ndarray) -> int:
        verts = np.asarray(verts, dtype=np.float64).reshape(-1, 3)
        start = self._n
        self._chunks.append(verts)
        self._n += len(verts)
        return start

    def poly(self, verts: np.ndarray, mat: Material, *, normal: np.ndarray | None = None,
             back: Material | None = None, bias: float = 0.0, detail: float = 0.0) -> None:
        """A planar polygon; with ``normal`` it is drawn only when facing the camera (or with ``back``).
        ``detail`` (m): skipped where that size would be under ~1.5 px (lights, plates)."""
        verts = np.asarray(verts, dtype=np.float64)
        self.parts.append(Part(POLY, self._add(verts), len(verts), mat, normal=normal, back=back, bias=bias,
                               size=detail))

    def batch(self, polys: np.ndarray, mat: Material, *, normal: np.ndarray | None = None,
              detail: float = 0.0) -> None:
        """Many small polygons (n, k, 3) with one material, e.g. the windows of a facade."""
        if len(polys):
            n, k = polys.shape[:2]
            self.parts.append(Part(BATCH, self._add(polys), n, mat, normal=normal, k=k, size=detail))

    def line(self, p0: np.ndarray, p1: np.ndarray, radius: float, mat: Material, bias: float = 0.0) -> None:
        self.parts.append(Part(LINE, self._add(np.stack([p0, p1])), 2, mat, size=radius, bias=bias))

    def disc(self, centre: np.ndarray, radius: float, mat: Material, bias: float = 0.0) -> None:
        self.parts.append(Part(DISC, self._add(centre), 1, mat, size=radius, bias=bias))

    def loop(self, verts: np.ndarray, width: float, mat: Material, bias: float = 0.0) -> None:
        self.parts.append(Part(LOOP, self._add(verts), len(verts), mat, size=width, bias=bias))

    def build(self, key: np.ndarray, radius: float, *, sort_parts: bool = False,
              small: bool = False) -> Piece:
        verts = np.concatenate(self._chunks) if self._chunks else np.zeros((0, 3))
        parts = tuple(self.parts)
        starts = np.array([p.start for p in parts], np.intp)
        counts = np.diff(np.append(starts, len(verts)))
        centroids = np.add.reduceat(verts, starts, axis=0) / counts[:, None] if parts else np.zeros((0, 3))
        normals = np.array([(0.0, 0.0, 0.0) if p.normal is None else p.normal for p in parts], np.float64)
        normals = normals.reshape(-1, 3)
        return Piece(np.concatenate([verts, centroids]), parts, np.asarray(key, dtype=np.float64),
                     float(radius), sort_parts, small, starts=starts, normals=normals,
                     offsets=np.einsum("ij,ij->i", normals, verts[starts]) if parts else np.zeros(0),
                     culled=np.array([p.normal is not None for p in parts], bool),
                     bias=np.array([p.bias for p in parts], np.float64))


class LocalMesh:
    """A piece built once in an object's own frame (x forward, y left, z up) with unlit materials.
    Placing it each frame costs a matrix product and the per-face sun shading."""

    def __init__(self, piece: Piece) -> None:
        self.piece = piece
        self._shade = np.array([p.normal is not None and not p.mat.emissive for p in piece.parts], bool)

    def place(self, frame: Frame2D, light: Callable[[np.ndarray], np.ndarray]) -> Piece:
        p = self.piece
        normals = p.normals @ frame._m
        factors = np.where(self._shade, light(normals), 1.0).tolist()
        mats = tuple(Material((m.rgb[0] * f, m.rgb[1] * f, m.rgb[2] * f), m.train_id, m.instance, m.texture)
                     for m, f in zip((part.mat for part in p.parts), factors, strict=True))
        # a rotation about z and a shift: plane offsets move by normal . origin
        return Piece(frame.world(p.verts), p.parts, frame.world(p.key), p.radius, p.sort_parts, p.small,
                     p.starts, normals, p.offsets + normals @ frame.origin, p.culled, p.bias, mats)


class Frame2D:
    """A local frame on the ground: origin, heading; maps (forward, left, up) to world coordinates."""

    def __init__(self, x: float, y: float, heading: float, z: float = 0.0) -> None:
        self.origin = np.array([x, y, z])
        c, s = math.cos(heading), math.sin(heading)
        self.fwd = np.array([c, s, 0.0])
        self.left = np.array([-s, c, 0.0])
        self.heading = heading
        self._m = np.array([self.fwd, self.left, [0.0, 0.0, 1.0]])

    def world(self, local: np.ndarray) -> np.ndarray:
        """(..., 3) local (forward, left, up) -> world."""
        return np.asarray(local, dtype=np.float64) @ self._m + self.origin

    def normal(self, local: tuple[float, float, float]) -> np.ndarray:
        return local[0] * self.fwd + local[1] * self.left + np.array([0.0, 0.0, local[2]])


# Faces of an axis-aligned local box given by its 8 corners, indexed x * 4 + y * 2 + z (each 0 or 1).
# Vertical faces list bottom-start, bottom-end, top-end, top-start (what face_rect expects).
BOX_FACES = {
    "front": ((1, 0, 0), (4, 6, 7, 5)),
    "back": ((-1, 0, 0), (2, 0, 1, 3)),
    "left": ((0, 1, 0), (2, 3, 7, 6)),
    "right": ((0, -1, 0), (0, 4, 5, 1)),
    "top": ((0, 0, 1), (1, 5, 7, 3)),
}


def box_corners(x0: float, x1: float, y0: float, y1: float, z0: float, z1: float) -> np.ndarray:
    xs, ys, zs = (x0, x1), (y0, y1), (z0, z1)
    return np.array([[xs[i], ys[j], zs[k]] for i in (0, 1) for j in (0, 1) for k in (0, 1)])


def face_rect(face: str, corners: np.ndarray, u0: float, u1: float, v0: float, v1: float) -> np.ndarray:
    """A rectangle inside a box face in face coordinates u, v in [0, 1] (u along the face, v up)."""
    _, (ia, ib, _, id_) = BOX_FACES[face]
    a, b, d = corners[ia], corners[ib], corners[id_]
    us, vs = np.array([u0, u1, u1, u0])[:, None], np.array([v0, v0, v1, v1])[:, None]
    return a + (b - a) * us + (d - a) * vs


def circle_points(
    centre: np.ndarray, axis_u: np.ndarray, axis_v: np.ndarray, radius: float, n: int
) -> np.ndarray:
    """n points on a 3D circle spanned by two unit axes."""
    a = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return centre + radius * (np.cos(a)[:, None] * axis_u + np.sin(a)[:, None] * axis_v)
