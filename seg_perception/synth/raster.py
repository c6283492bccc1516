"""Painter's-algorithm rasteriser into a primitive-id buffer.

Every drawn primitive gets an id; the buffer holds, per pixel, the id of the last (nearest) primitive
drawn there. Colour, trainId and instance images are then table lookups of that one buffer, so the
labels are exactly the rendered pixels. Thing instances also remember their draw calls, replayed on
an empty mask to measure how large they would be without occluders (``full_px``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from seg_perception.synth.camera import NEAR_PLANE_M, CameraPose
from seg_perception.synth.geometry import BATCH, DISC, LINE, LOOP, POLY, Material, Piece

SHIFT = 4  # sub-pixel bits for OpenCV drawing
ONE = 1 << SHIFT
_LIMIT = float(1 << 28)  # fixed-point coordinate clamp, far inside int32
SKY_PRIM = 0  # the sky is primitive 0: pixels nothing was drawn on
RAW_INSTANCE_LIMIT = 1 << 16  # instance values are stored as uint16


def clip_near(points: np.ndarray, near: float = NEAR_PLANE_M) -> np.ndarray | None:
    """Sutherland-Hodgman clip of a camera-space polygon (k, 3) against z > near; None if nothing is left.

    Vectorised: for each edge (i -> i+1) emit the crossing point (if it crosses) and then the end
    vertex (if it is inside), which is the classic algorithm's output order.
    """
    z = points[:, 2]
    inside = z > near
    if inside.all():
        return points
    if not inside.any():
        return None
    nxt = np.roll(points, -1, axis=0)
    inside_next = np.roll(inside, -1)
    crosses = inside != inside_next
    dz = nxt[:, 2] - z
    t = np.where(crosses, (near - z) / np.where(crosses, dz, 1.0), 0.0)
    hits = points + t[:, None] * (nxt - points)
    hits[:, 2] = np.where(crosses, near + 1e-6, hits[:, 2])
    out = np.empty((2 * len(points), 3))
    out[0::2], out[1::2] = hits, nxt
    keep = np.empty(2 * len(points), bool)
    keep[0::2], keep[1::2] = crosses, inside_next
    res = out[keep]
    return res if len(res) >= 3 else None


@dataclass
class Prims:
    """Per-primitive table, indexed by the values in ``Canvas.pid``."""

    rgb: list[tuple[float, float, float]]
    train: list[int]
    inst: list[int]
    texture: list[float]
    depth: list[float]  # distance for haze (inf: none)


class Canvas:
    """Draw targets of one camera image."""

    def __init__(self, pose: CameraPose, sky: Material) -> None:
        self.pose = pose
        m = pose.model
        self.w, self.h = m.width, m.height
        self.pid = np.zeros((m.height, m.width), np.uint16)
        self._f16 = np.array([m.fx, m.fy]) * ONE
        self._c16 = np.array([m.cx, m.cy]) * ONE
        self.shade = np.ones((m.height, m.width), np.float32)
        self.prims = Prims([], [], [], [], [])
        self.add_prim(sky, math.inf)
        self.inst_ops: dict[int, list[tuple]] = {}
        self.inst_depth: dict[int, float] = {}  # instance -> distance of its nearest drawn piece
        self._depth = 0.0

    # -- primitive table -------------------------------------------------------------------------
    def add_prim(self, mat: Material, depth: float) -> int:
        p = self.prims
        if len(p.rgb) >= 65535:
            raise RuntimeError("too many primitives in one image")
        p.rgb.append(mat.rgb)
        p.train.append(mat.train_id)
        p.inst.append(mat.instance)
        p.texture.append(mat.texture)
        p.depth.append(depth)
        return len(p.rgb) - 1

    # -- projection ------------------------------------------------------------------------------
    def _to_px(self, cam: np.ndarray) -> np.ndarray:
        """Camera points (n, 3) -> fixed-point pixels (n, 2); points behind the near plane give garbage
        (callers clip or skip them)."""
        uv = cam[:, :2] * (self._f16 / np.maximum(cam[:, 2:3], NEAR_PLANE_M))
        uv += self._c16
        np.clip(uv, -_LIMIT, _LIMIT, out=uv)
        return np.rint(uv, out=uv).astype(np.int32)

    def _poly_px(self, cam: np.ndarray) -> np.ndarray | None:
        clipped = clip_near(cam)
        return None if clipped is None else self._to_px(clipped)

    # -- drawing ---------------------------------------------------------------------------------
    def _record(self, mat: Material, op: tuple) -> None:
        if mat.instance:
            self.inst_ops.setdefault(mat.instance, []).append(op)
            self.inst_depth[mat.instance] = min(self.inst_depth.get(mat.instance, math.inf), self._depth)

    def fill(self, polys: list[np.ndarray], pid: int, mat: Material | None = None) -> None:
        cv2.fillPoly(self.pid, polys, pid, cv2.LINE_8, SHIFT)
        if mat is not None and mat.instance:
            self._record(mat, ("poly", polys))

    def draw_ground(self, world_poly: np.ndarray, pid: int) -> None:
        px = self._poly_px(self.pose.to_camera(world_poly))
        if px is not None:
            self.fill([px], pid)

    def draw_ground_batch(self, world_polys: np.ndarray, pid: int) -> None:
        n, k = world_polys.shape[:2]
        cam = self.pose.to_camera(world_polys.reshape(-1, 3))
        ok = (cam[:, 2] > NEAR_PLANE_M).reshape(n, k).all(axis=1)
        if ok.any():
            self.fill(list(self._to_px(cam).reshape(n, k, 2)[ok]), pid)

    def draw_shadow(self, world_poly: np.ndarray, value: float) -> None:
        px = self._poly_px(self.pose.to_camera(world_poly))
        if px is not None:
            cv2.fillPoly(self.shade, [px], value, cv2.LINE_8, SHIFT)

    def draw_piece(self, piece: Piece, depth: float) -> None:
        """Draw a piece's parts: culled by their normals, clipped at the near plane, in order or sorted."""
        self._depth = depth
        cam = self.pose.to_camera(piece.verts)
        z = cam[:, 2]
        n_real = piece.n_real
        if piece.small and z[:n_real].min() <= NEAR_PLANE_M:
            return
        px = self._to_px(cam)
        facing = ~piece.culled | (piece.normals @ self.pose.position > piece.offsets)
        zmin = np.minimum.reduceat(z[:n_real], piece.starts) if n_real else z
        order = np.argsort(-(z[n_real:] + piece.bias), kind="stable") if piece.sort_parts else range(len(piece.parts))
        fx = self.pose.model.fx
        min_detail = 1.5 * depth / fx  # details smaller than this (m) would be under 1.5 px
        mats = piece.mats
        for i in order:
            part = piece.parts[i]
            mat = part.mat if mats is None else mats[i]
            if not facing[i]:
                if part.back is None:
                    continue
                mat = part.back
            kind, s, n = part.kind, part.start, part.count
            if kind == POLY:
                if part.size and part.size < min_detail:
                    continue
                if zmin[i] > NEAR_PLANE_M:
                    poly = px[s:s + n]
                else:
                    poly = self._poly_px(cam[s:s + n])
                    if poly is None:
                        continue
                self.fill([poly], self.add_prim(mat, depth), mat)
            elif kind == BATCH:
                if part.size and part.size < min_detail:
                    continue
                k = part.k
                if zmin[i] > NEAR_PLANE_M:
                    self.fill(list(px[s:s + n * k].reshape(n, k, 2)), self.add_prim(mat, depth), mat)
                else:
                    ok = (z[s:s + n * k].reshape(n, k) > NEAR_PLANE_M).all(axis=1)
                    if ok.any():
                        self.fill(list(px[s:s + n * k].reshape(n, k, 2)[ok]), self.add_prim(mat, depth), mat)
            elif kind == LINE:
                if zmin[i] > NEAR_PLANE_M:
                    thick = max(1, round(part.size * fx / (0.25 * (z[s] + z[s + 1]))))
                    p0, p1 = (int(px[s, 0]), int(px[s, 1])), (int(px[s + 1, 0]), int(px[s + 1, 1]))
                    self._draw_line(p0, p1, thick, mat, self.add_prim(mat, depth))
                else:
                    self._clipped_line(cam[s], cam[s + 1], part.size, mat, self.add_prim(mat, depth))
            elif kind == DISC:
                zc = z[s]
                if zc > NEAR_PLANE_M + part.size:
                    r = max(ONE // 2, round(part.size * fx / zc * ONE))
                    c = (int(px[s, 0]), int(px[s, 1]))
                    cv2.circle(self.pid, c, r, self.add_prim(mat, depth), -1, cv2.LINE_8, SHIFT)
                    self._record(mat, ("circle", c, r))
            elif kind == LOOP and zmin[i] > NEAR_PLANE_M:
                thick = max(1, round(2 * part.size * fx / float(z[n_real + i])))
                pts = [px[s:s + n]]
                cv2.polylines(self.pid, pts, True, self.add_prim(mat, depth), thick, cv2.LINE_8, SHIFT)
                self._record(mat, ("loop", pts, thick))

    def _draw_line(self, p0: tuple[int, int], p1: tuple[int, int], thick: int, mat: Material,
                   pid: int) -> None:
        cv2.line(self.pid, p0, p1, pid, thick, cv2.LINE_8, SHIFT)
        self._record(mat, ("line", p0, p1, thick))

    def _clipped_line(self, a: np.ndarray, b: np.ndarray, radius: float, mat: Material, pid: int) -> None:
        if a[2] <= NEAR_PLANE_M and b[2] <= NEAR_PLANE_M:
            return
        if a[2] <= NEAR_PLANE_M:
            a, b = b, a
        if b[2] <= NEAR_PLANE_M:  # cut the segment at the near plane
            t = (a[2] - NEAR_PLANE_M - 1e-6) / (a[2] - b[2])
            b = a + t * (b - a)
        thick = max(1, round(radius * self.pose.model.fx / (0.25 * (a[2] + b[2]))))
        pa, pb = self._to_px(np.stack([a, b]))
        self._draw_line((int(pa[0]), int(pa[1])), (int(pb[0]), int(pb[1])), thick, mat, pid)

    # -- instance areas --------------------------------------------------------------------------
    def full_areas(self, instances: list[int]) -> dict[int, tuple[int, tuple[int, int, int, int]]]:
        """instance -> (pixels it would cover with nothing in front, clipped bbox of its draw calls)."""
        out: dict[int, tuple[int, tuple[int, int, int, int]]] = {}
        scratch = np.zeros((self.h, self.w), np.uint8)
        for inst in instances:
            ops = self.inst_ops[inst]
            x0, y0, x1, y1 = self.w, self.h, 0, 0
            for op in ops:
                if op[0] == "poly":
                    cv2.fillPoly(scratch, op[1], 1, cv2.LINE_8, SHIFT)
                    pts = np.concatenate(op[1])
                    lo, hi, pad = pts.min(axis=0), pts.max(axis=0), 1
                elif op[0] == "circle":
                    cv2.circle(scratch, op[1], op[2], 1, -1, cv2.LINE_8, SHIFT)
                    c = np.array(op[1])
                    lo, hi, pad = c - op[2], c + op[2], 1
                elif op[0] == "loop":
                    cv2.polylines(scratch, op[1], True, 1, op[2], cv2.LINE_8, SHIFT)
                    lo, hi, pad = op[1][0].min(axis=0), op[1][0].max(axis=0), op[2]
                else:
                    cv2.line(scratch, op[1], op[2], 1, op[3], cv2.LINE_8, SHIFT)
                    pts = np.array([op[1], op[2]])
                    lo, hi, pad = pts.min(axis=0), pts.max(axis=0), op[3]
                x0, y0 = min(x0, (int(lo[0]) >> SHIFT) - pad - 1), min(y0, (int(lo[1]) >> SHIFT) - pad - 1)
                x1, y1 = max(x1, (int(hi[0]) >> SHIFT) + pad + 2), max(y1, (int(hi[1]) >> SHIFT) + pad + 2)
            x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, self.w), min(y1, self.h)
            if x1 <= x0 or y1 <= y0:
                continue
            roi = scratch[y0:y1, x0:x1]
            count = int(np.count_nonzero(roi))
            if count:
                out[inst] = (count, (x0, y0, x1, y1))
            roi[:] = 0
        return out
