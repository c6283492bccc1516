"""Static scenery along the road: buildings, trees, hedges, walls, fences, poles, signs, traffic lights.

Scenery is generated per 50 m block and road side from its own random stream, so a block looks the same
however long the rendered sequence is. Large objects are split into narrow pieces because the painter's
order sorts whole pieces: a 30 m facade drawn as one piece would cover a lamp post standing in front of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from seg_perception.datasets.labels import train_id
from seg_perception.synth.config import STREAM_STATIC, SceneConfig, stream
from seg_perception.synth.geometry import (
    BOX_FACES,
    Frame2D,
    Material,
    Piece,
    PieceBuilder,
    box_corners,
    circle_points,
)
from seg_perception.synth.road import CrossSection, Road, Side
from seg_perception.synth.shading import Look

BLOCK_M = 50.0
BLOCK_TAG_OFFSET = 10_000  # random-stream tags must be non-negative; blocks behind s = 0 are negative
MAX_PIECE_M = 5.0  # facades are cut into pieces at most this wide

BUILDING, WALL, FENCE, POLE, LIGHT, SIGN, VEG = (train_id(n) for n in (
    "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation"))

FACADES = [(0.76, 0.7, 0.6), (0.6, 0.36, 0.28), (0.56, 0.55, 0.53), (0.84, 0.82, 0.77), (0.72, 0.62, 0.46),
           (0.45, 0.43, 0.41), (0.62, 0.66, 0.7), (0.8, 0.68, 0.55), (0.5, 0.3, 0.25)]
ROOFS = [(0.45, 0.22, 0.16), (0.3, 0.3, 0.33), (0.4, 0.32, 0.28)]
GREENS = [(0.16, 0.3, 0.11), (0.24, 0.38, 0.14), (0.14, 0.26, 0.13), (0.3, 0.41, 0.17), (0.2, 0.33, 0.18)]
UP = np.array([0.0, 0.0, 1.0])


@dataclass(frozen=True)
class Placed:
    """A static piece with the arc length it stands at (to select what is near the ego)."""

    s: float
    piece: Piece


def vary(
    rng: np.random.Generator, rgb: tuple[float, float, float], amount: float = 0.08
) -> tuple[float, float, float]:
    c = np.clip(np.asarray(rgb) * rng.uniform(1 - amount, 1 + amount) + rng.uniform(-0.03, 0.03, 3), 0.0, 1.0)
    return (float(c[0]), float(c[1]), float(c[2]))


def road_frame(road: Road, s: float, d: float, z: float = 0.0, flip: bool = False) -> Frame2D:
    x, y = road.point(s, d)
    th = float(road.pose(s)[2]) + (math.pi if flip else 0.0)
    return Frame2D(float(x), float(y), th, z)


class SceneryBuilder:
    """Builds the scenery pieces of one road side block."""

    def __init__(self, cfg: SceneConfig, xs: CrossSection, road: Road, look: Look) -> None:
        self.cfg, self.xs, self.road, self.look = cfg, xs, road, look
        self.shadows: list[np.ndarray] = []

    # -- helpers ---------------------------------------------------------------------------------
    def mat(self, rgb: tuple[float, float, float], normal: np.ndarray | tuple[float, float, float], tid: int,
            texture: float = 0.05) -> Material:
        return self.look.lit(rgb, normal, tid, 0, texture)

    def sun_shadow(self, footprint: np.ndarray, height: float, max_len: float = 60.0) -> np.ndarray | None:
        """Ground polygon shaded by a prism of this footprint (x, y) and height."""
        sun = self.look.sun
        if self.look.direct < 0.05 or sun[2] <= 0.05:
            return None
        length = min(height * math.hypot(sun[0], sun[1]) / sun[2], max_len)
        shift = -np.array([sun[0], sun[1]]) / max(math.hypot(sun[0], sun[1]), 1e-6) * length
        pts = np.concatenate([footprint, footprint + shift])
        hull = cv2.convexHull(pts.astype(np.float32)).reshape(-1, 2).astype(np.float64)
        return np.concatenate([hull, np.zeros((len(hull), 1))], axis=1)

    # -- buildings -------------------------------------------------------------------------------
    def building(
        self,
        rng: np.random.Generator,
        side: Side,
        s0: float,
        s1: float,
        d_front: float,
        depth: float,
        height: float,
        style: str,
    ) -> list[Placed]:
        road, sg = self.road, side.sign
        p0, p1 = road.point(s0, sg * d_front), road.point(s1, sg * d_front)
        mid_curve = road.point(0.5 * (s0 + s1), sg * d_front)
        chord = p1 - p0
        width = float(np.linalg.norm(chord))
        if width < 3.0:
            return []
        fwd = chord / width
        left = np.array([-fwd[1], fwd[0]])
        outward = -left if sg < 0 else left  # away from the road
        bulge = float(np.dot(mid_curve - 0.5 * (p0 + p1), outward))
        if bulge > 0:  # outer side of a bend: the chord would cut into the sidewalk
            p0 = p0 + outward * bulge
        frame = Frame2D(float(p0[0]), float(p0[1]), math.atan2(fwd[1], fwd[0]))
        y0, y1 = (-depth, 0.0) if sg < 0 else (0.0, depth)
        road_face = "left" if sg < 0 else "right"
        facade = vary(rng, FACADES[int(rng.integers(len(FACADES)))], 0.1)
        glass = vary(rng, (0.2, 0.26, 0.33), 0.25)
        glass2 = vary(rng, (0.42, 0.5, 0.58), 0.15)
        trim = vary(rng, (0.85, 0.84, 0.8) if rng.random() < 0.5 else (0.3, 0.3, 0.3), 0.1)
        floor_h = float(rng.uniform(2.8, 3.6))
        col_pitch = float(rng.uniform(2.4, 4.0))
        win_w = col_pitch * float(rng.uniform(0.35, 0.65))
        win_h = floor_h * float(rng.uniform(0.4, 0.6))
        shop = style == "urban" and rng.random() < 0.6
        n_cols = max(1, int((width - 1.0) // col_pitch))
        margin = (width - n_cols * col_pitch) / 2.0
        col_x = margin + col_pitch * (np.arange(n_cols) + 0.5)
        n_floors = max(1, int((height - 0.8) // floor_h))
        roof = style == "suburban"
        roof_rgb = vary(rng, ROOFS[int(rng.integers(len(ROOFS)))], 0.08)
        wall_top = height if not roof else height * 0.72

        out: list[Placed] = []
        n_pieces = max(1, math.ceil(width / MAX_PIECE_M))
        edges = np.linspace(0.0, width, n_pieces + 1)
        for i in range(n_pieces):
            xa, xb = edges[i], edges[i + 1]
            corners = frame.world(box_corners(xa, xb, y0, y1, 0.0, wall_top))
            b = PieceBuilder()
            faces = [road_face] + (["back"] if i == 0 else []) + (["front"] if i == n_pieces - 1 else [])
            for face in faces:
                n_local, idx = BOX_FACES[face]
                normal = frame.normal(n_local)
                b.poly(corners[list(idx)], self.mat(facade, normal, BUILDING, 0.06), normal=normal)
            # windows on the road-facing facade
            normal = frame.normal(BOX_FACES[road_face][0])
            cols = col_x[(col_x > xa) & (col_x <= xb)]
            rects, rects2 = [], []
            for f in range(n_floors):
                z0 = f * floor_h + (floor_h - win_h) * 0.55
                if f == 0 and shop:
                    lo = xa + 0.3 if i > 0 else xa + 0.8
                    hi = xb - 0.3 if i < n_pieces - 1 else xb - 0.8
                    if hi - lo > 1.0:
                        rects.append((lo, hi, 0.15, floor_h * 0.8))
                    continue
                if z0 + win_h > wall_top - 0.3:
                    break
                for cx in cols:
                    r = (cx - win_w / 2, cx + win_w / 2, z0, z0 + win_h)
                    (rects2 if rng.random() < 0.2 else rects).append(r)
            for group, colour in ((rects, glass), (rects2, glass2)):
                if group:
                    polys = np.stack([self._facade_rect(frame, road_face, y0, y1, *r) for r in group])
                    b.batch(polys, self.mat(colour, normal, BUILDING, 0.03), normal=normal, detail=win_h)
            # a darker plinth and a trim band under the roof line
            plinth = self._facade_rect(frame, road_face, y0, y1, xa, xb, 0.0, 0.35)
            b.poly(plinth, self.mat(tuple(c * 0.7 for c in facade), normal, BUILDING), normal=normal)  # type: ignore[arg-type]
            band = self._facade_rect(frame, road_face, y0, y1, xa, xb, wall_top - 0.35, wall_top)
            b.poly(band, self.mat(trim, normal, BUILDING), normal=normal)
            if roof:
                self._gable_roof(b, frame, (xa, xb, y0, y1, wall_top, height), i == 0, i == n_pieces - 1,
                                 roof_rgb, facade)
            key = frame.world(np.array([0.5 * (xa + xb), 0.5 * (y0 + y1), 0.0]))
            # the key sits on the facade line so that things in front of it sort nearer
            key_front = frame.world(np.array([0.5 * (xa + xb), 0.0, 0.0]))
            radius = math.hypot(xb - xa, depth, height)
            s_mid = 0.5 * (s0 + s1)
            out.append(Placed(s_mid, b.build(0.5 * (key + key_front), radius)))
        foot = frame.world(box_corners(0.0, width, y0, y1, 0.0, 0.0)[[0, 2, 6, 4]])[:, :2]
        shadow = self.sun_shadow(foot, height)
        if shadow is not None:
            self.shadows.append(shadow)
        return out

    def _facade_rect(self, frame: Frame2D, face: str, y0: float, y1: float, xa: float, xb: float, za: float,
                     zb: float) -> np.ndarray:
        y = y1 if face == "left" else y0
        local = np.array([[xa, y, za], [xb, y, za], [xb, y, zb], [xa, y, zb]])
        return frame.world(local)

    def _gable_roof(self, b: PieceBuilder, frame: Frame2D, box: tuple[float, ...], first: bool, last: bool,
                    colour: tuple[float, float, float], facade: tuple[float, float, float]) -> None:
        """Two roof slopes over box (x0, x1, y0, y1, eaves z, ridge z), gable triangles at the ends."""
        xa, xb, y0, y1, z0, z1 = box
        ym = 0.5 * (y0 + y1)
        for ya in (y0, y1):  # the two slopes
            local = np.array([[xa, ya, z0], [xb, ya, z0], [xb, ym, z1], [xa, ym, z1]])
            pts = frame.world(local)
            normal = np.cross(pts[1] - pts[0], pts[3] - pts[0])
            normal /= np.linalg.norm(normal)
            centre = frame.world(np.array([0.5 * (xa + xb), ym, z0]))
            if normal @ (pts[0] - centre) < 0:
                normal = -normal
            b.poly(pts, self.mat(colour, normal, BUILDING, 0.08), normal=normal)
        for x, sgn in ((xa, -1.0), (xb, 1.0)):
            if (x == xa and first) or (x == xb and last):
                tri = frame.world(np.array([[x, y0, z0], [x, y1, z0], [x, ym, z1]]))
                normal = frame.normal((sgn, 0.0, 0.0))
                b.poly(tri, self.mat(facade, normal, BUILDING), normal=normal)

    # -- vegetation ------------------------------------------------------------------------------
    def tree(self, rng: np.random.Generator, x: float, y: float, z: float, scale: float = 1.0,
             conifer: bool = False) -> Piece:
        b = PieceBuilder()
        green = vary(rng, GREENS[int(rng.integers(len(GREENS)))], 0.12)
        if rng.random() < 0.05:
            green = vary(rng, (0.5, 0.38, 0.12), 0.1)  # autumn
        trunk_h = float(rng.uniform(1.8, 3.5)) * scale
        crown_r = float(rng.uniform(1.4, 3.2)) * scale
        base = np.array([x, y, z])
        b.line(base, base + np.array([0.0, 0.0, trunk_h + crown_r * 0.6]), 0.1 + 0.05 * scale,
               self.mat((0.3, 0.25, 0.2), (1.0, 0.0, 0.0), VEG), bias=50.0)
        if conifer:
            for j in range(5):
                h = trunk_h * 0.6 + j * crown_r * 0.55
                r = crown_r * (1.0 - j * 0.17)
                shade = 0.8 + 0.06 * j
                b.disc(
                    base + np.array([0.0, 0.0, h]),
                    r * 0.75,
                    self.mat(tuple(c * shade for c in green), UP, VEG),  # type: ignore[arg-type]
                    bias=-0.01 * j,
                )
            top = trunk_h * 0.6 + 5 * crown_r * 0.55
        else:
            centre = base + np.array([0.0, 0.0, trunk_h + crown_r])
            for _ in range(int(rng.integers(4, 8))):
                off = rng.normal(0.0, 0.45, 3) * crown_r
                off[2] *= 0.7
                r = crown_r * float(rng.uniform(0.45, 0.75))
                light = 0.75 + 0.35 * (off[2] / crown_r + 0.5)
                colour = tuple(float(np.clip(c * light, 0, 1)) for c in green)
                b.disc(centre + off, r, self.mat(colour, UP, VEG, 0.08))  # type: ignore[arg-type]
            top = trunk_h + 2 * crown_r
        shadow = self.sun_shadow(
            circle_points(
                np.array([x, y, 0.0]), np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), crown_r * 0.8, 8
            )[:, :2],
            top * 0.7,
        )
        if shadow is not None:
            self.shadows.append(shadow)
        return b.build(base + np.array([0.0, 0.0, top / 2]), max(top, crown_r * 2), sort_parts=True)

    def hedge(self, rng: np.random.Generator, side: Side, s0: float, s1: float, d: float) -> Placed | None:
        road, sg = self.road, side.sign
        p0, p1 = road.point(s0, sg * d), road.point(s1, sg * d)
        length = float(np.linalg.norm(p1 - p0))
        if length < 1.0:
            return None
        fwd = (p1 - p0) / length
        frame = Frame2D(float(p0[0]), float(p0[1]), math.atan2(fwd[1], fwd[0]), self.cfg.curb_height_m)
        h, t = float(rng.uniform(0.8, 1.7)), float(rng.uniform(0.6, 1.2))
        y0, y1 = (-t, 0.0) if sg < 0 else (0.0, t)
        corners = frame.world(box_corners(0.0, length, y0, y1, 0.0, h))
        green = vary(rng, GREENS[int(rng.integers(len(GREENS)))], 0.1)
        b = PieceBuilder()
        for face in ("front", "back", "left", "right", "top"):
            n_local, idx = BOX_FACES[face]
            normal = frame.normal(n_local)
            b.poly(corners[list(idx)], self.mat(green, normal, VEG, 0.15), normal=normal)
        key = frame.world(np.array([length / 2, 0.0, 0.0]))
        return Placed(0.5 * (s0 + s1), b.build(key, length / 2 + t))

    def tree_line(self, rng: np.random.Generator, side: Side, s0: float, s1: float, d: float,
                  height: float) -> Placed:
        """A distant wood edge: a dark band of trunks and undergrowth topped by a row of crowns."""
        road, sg = self.road, side.sign
        ends = road.point(np.array([s0, s1]), sg * d)
        base_h = 0.5 * height
        green = vary(rng, (0.12, 0.21, 0.1), 0.15)
        b = PieceBuilder()
        quad = np.array([[ends[0, 0], ends[0, 1], 0.0], [ends[1, 0], ends[1, 1], 0.0],
                         [ends[1, 0], ends[1, 1], base_h], [ends[0, 0], ends[0, 1], base_h]])
        b.poly(quad, self.mat(tuple(c * 0.75 for c in green), UP, VEG, 0.2), bias=5.0)  # type: ignore[arg-type]
        n = max(2, int((s1 - s0) / (0.35 * height)) + 1)
        for s in np.linspace(s0, s1, n) + rng.uniform(-1.0, 1.0, n):
            r = height * float(rng.uniform(0.22, 0.36))
            x, y = road.point(float(s), sg * (d + float(rng.uniform(-0.5, 2.0))))
            colour = tuple(float(np.clip(c * rng.uniform(0.8, 1.25), 0, 1)) for c in green)
            b.disc(np.array([x, y, base_h + r * float(rng.uniform(0.1, 0.9))]), r,
                   self.mat(colour, UP, VEG, 0.12))  # type: ignore[arg-type]
        key = road.point(0.5 * (s0 + s1), sg * d)
        return Placed(0.5 * (s0 + s1), b.build(np.array([key[0], key[1], 0.0]),
                                               float(np.linalg.norm(ends[1] - ends[0])) / 2 + height,
                                               sort_parts=True))

    # -- walls and fences ------------------------------------------------------------------------
    def wall(self, rng: np.random.Generator, side: Side, s0: float, s1: float, d: float) -> list[Placed]:
        road, sg = self.road, side.sign
        out = []
        colour = vary(
            rng, [(0.7, 0.68, 0.64), (0.55, 0.35, 0.28), (0.5, 0.5, 0.5)][int(rng.integers(3))], 0.08
        )
        h = float(rng.uniform(0.5, 1.3))
        for a, c in _chunks(s0, s1, MAX_PIECE_M):
            p0, p1 = road.point(a, sg * d), road.point(c, sg * d)
            length = float(np.linalg.norm(p1 - p0))
            if length < 0.3:
                continue
            fwd = (p1 - p0) / length
            frame = Frame2D(float(p0[0]), float(p0[1]), math.atan2(fwd[1], fwd[0]), self.cfg.curb_height_m)
            corners = frame.world(box_corners(0.0, length, -0.12, 0.12, 0.0, h))
            b = PieceBuilder()
            for face in ("front", "back", "left", "right", "top"):
                n_local, idx = BOX_FACES[face]
                normal = frame.normal(n_local)
                b.poly(corners[list(idx)], self.mat(colour, normal, WALL, 0.1), normal=normal)
            out.append(
                Placed(0.5 * (a + c), b.build(frame.world(np.array([length / 2, 0, 0])), length / 2 + 1))
            )
        return out

    def fence(self, rng: np.random.Generator, side: Side, s0: float, s1: float, d: float) -> list[Placed]:
        road, sg = self.road, side.sign
        wooden = rng.random() < 0.5
        colour = vary(rng, (0.45, 0.34, 0.24) if wooden else (0.35, 0.37, 0.36), 0.1)
        m = self.mat(colour, (1.0, 0.0, 0.0), FENCE)
        h = float(rng.uniform(1.0, 1.6))
        z = self.cfg.curb_height_m
        out = []
        for a, c in _chunks(s0, s1, 8.0):
            b = PieceBuilder()
            posts = np.arange(a, c + 1e-6, 2.5 if wooden else 2.0)
            pts = road.point(posts, sg * d)
            for p in pts:
                b.line(np.array([p[0], p[1], z]), np.array([p[0], p[1], z + h]), 0.06 if wooden else 0.04, m)
            ends = road.point(np.array([a, c]), sg * d)
            for rail_z in ((0.35, 0.8) if wooden else (0.1, 0.55, 0.97)):
                e0 = np.array([ends[0, 0], ends[0, 1], z + rail_z * h])
                e1 = np.array([ends[1, 0], ends[1, 1], z + rail_z * h])
                b.line(e0, e1, 0.05 if wooden else 0.025, m)
            if not wooden:  # dense vertical bars of a metal railing
                bars = road.point(np.arange(a, c, 0.25), sg * d)
                for p in bars:
                    b.line(
                        np.array([p[0], p[1], z + 0.1 * h]), np.array([p[0], p[1], z + 0.97 * h]), 0.012, m
                    )
            key = road.point(0.5 * (a + c), sg * d)
            out.append(Placed(0.5 * (a + c), b.build(np.array([key[0], key[1], 0.0]), (c - a) / 2 + 1)))
        return out

    # -- poles, signs, lights --------------------------------------------------------------------
    def lamp(
        self,
        rng: np.random.Generator,
        side: Side,
        s: float,
        d: float,
        colour: tuple[float, float, float],
        height: float,
    ) -> Placed:
        sg, z = side.sign, self.cfg.curb_height_m
        f = road_frame(self.road, s, sg * d, z)
        b = PieceBuilder()
        m = self.mat(colour, (1.0, 0.0, 0.0), POLE)
        base, top = f.world(np.array([0.0, 0.0, 0.0])), f.world(np.array([0.0, 0.0, height]))
        b.line(base, top, 0.09, m)
        arm_end = f.world(np.array([0.0, -sg * 1.6, height + 0.15]))
        b.line(top, arm_end, 0.05, m)
        head0 = f.world(np.array([-0.25, -sg * 1.3, height + 0.05]))
        head1 = f.world(np.array([0.25, -sg * 1.9, height + 0.05]))
        b.line(head0, head1, 0.1, self.mat((0.5, 0.5, 0.48), UP, POLE))
        return Placed(s, b.build(f.world(np.array([0.0, 0.0, height / 2])), height / 2 + 2))

    def utility_pole(self, side: Side, s: float, d: float) -> Placed:
        f = road_frame(self.road, s, side.sign * d)
        b = PieceBuilder()
        m = self.mat((0.38, 0.3, 0.22), (1.0, 0.0, 0.0), POLE)
        h = 9.0
        b.line(f.world(np.zeros(3)), f.world(np.array([0.0, 0.0, h])), 0.13, m)
        b.line(f.world(np.array([0.0, -1.0, h - 0.6])), f.world(np.array([0.0, 1.0, h - 0.6])), 0.07, m)
        return Placed(s, b.build(f.world(np.array([0.0, 0.0, h / 2])), h / 2 + 1))

    def sign(self, rng: np.random.Generator, side: Side, s: float, d: float, facing_ego: bool) -> Placed:
        sg, z = side.sign, self.cfg.curb_height_m
        f = road_frame(self.road, s, sg * d, z, flip=not facing_ego)
        b = PieceBuilder()
        size = float(rng.uniform(0.55, 0.85))
        h = float(rng.uniform(2.0, 2.6))
        pole_m = self.mat((0.55, 0.56, 0.57), (1.0, 0.0, 0.0), POLE)
        b.line(f.world(np.zeros(3)), f.world(np.array([0.0, 0.0, h + size / 2])), 0.035, pole_m)
        centre = f.world(np.array([-0.06, 0.0, h + size / 2]))
        normal = -f.fwd  # faces traffic approaching along +forward
        u_axis = f.left * (-1.0)
        back = self.mat((0.6, 0.6, 0.62), f.fwd, SIGN)

        def plate(shape: np.ndarray, rgb: tuple[float, float, float], lift: float = 0.0) -> None:
            pts = centre + shape[:, :1] * u_axis + shape[:, 1:2] * UP + normal * lift
            b.poly(pts, self.mat(rgb, normal, SIGN, 0.02), normal=normal, back=back if lift == 0.0 else None)

        r = size / 2
        kind = int(rng.integers(6))
        red, white, blue, yellow = (
            (0.75, 0.08, 0.08),
            (0.92, 0.92, 0.9),
            (0.08, 0.25, 0.65),
            (0.95, 0.75, 0.1),
        )
        if kind == 0:  # prohibitory: red ring, white face
            plate(_ngon(r, 16), red)
            plate(_ngon(r * 0.78, 16), white, 0.01)
        elif kind == 1:  # no entry
            plate(_ngon(r, 16), red)
            plate(np.array([[-0.7, -0.15], [0.7, -0.15], [0.7, 0.15], [-0.7, 0.15]]) * r, white, 0.01)
        elif kind == 2:  # warning triangle
            plate(_ngon(r * 1.15, 3, math.pi / 2), red)
            plate(_ngon(r * 0.8, 3, math.pi / 2) + np.array([0.0, -0.02]), white, 0.01)
        elif kind == 3:  # mandatory: blue disc with a white arrow
            plate(_ngon(r, 16), blue)
            plate(np.array([[-0.12, -0.6], [0.12, -0.6], [0.12, 0.1], [0.35, 0.1], [0.0, 0.6], [-0.35, 0.1],
                            [-0.12, 0.1]]) * r, white, 0.01)
        elif kind == 4:  # stop
            plate(_ngon(r, 8, math.pi / 8), red)
            plate(np.array([[-0.6, -0.12], [0.6, -0.12], [0.6, 0.12], [-0.6, 0.12]]) * r, white, 0.01)
        else:  # priority road / information square
            if rng.random() < 0.5:
                plate(_ngon(r, 4), white)
                plate(_ngon(r * 0.7, 4), yellow, 0.01)
            else:
                plate(_ngon(r * 1.2, 4, math.pi / 4), blue)
                plate(_ngon(r * 0.5, 4, math.pi / 4), white, 0.01)
        return Placed(s, b.build(f.world(np.array([0.0, 0.0, h / 2])), h / 2 + size))

    def traffic_light(
        self, rng: np.random.Generator, side: Side, s: float, d: float, overhead: bool
    ) -> Placed:
        sg, z = side.sign, self.cfg.curb_height_m
        f = road_frame(self.road, s, sg * d, z)
        b = PieceBuilder()
        pole_m = self.mat((0.3, 0.32, 0.3), (1.0, 0.0, 0.0), POLE)
        h = float(rng.uniform(5.2, 6.0)) if overhead else float(rng.uniform(2.6, 3.2))
        b.line(f.world(np.zeros(3)), f.world(np.array([0.0, 0.0, h])), 0.09, pole_m)
        mounts = [(0.0, h - 0.5)]
        if overhead:
            reach = float(rng.uniform(3.0, 6.0))
            b.line(
                f.world(np.array([0.0, 0.0, h - 0.3])),
                f.world(np.array([0.0, -sg * reach, h - 0.3])),
                0.07,
                pole_m,
            )
            mounts.append((-sg * reach, h - 1.2))
        state = int(rng.integers(3))
        for lat, zc in mounts:
            self._light_head(b, f, lat, zc, state)
        return Placed(s, b.build(f.world(np.array([0.0, 0.0, h / 2])), h / 2 + 7))

    def _light_head(self, b: PieceBuilder, f: Frame2D, lat: float, zc: float, state: int) -> None:
        w, dep, hh = 0.34, 0.25, 0.95
        corners = f.world(box_corners(-dep / 2, dep / 2, lat - w / 2, lat + w / 2, zc - hh / 2, zc + hh / 2))
        housing = (0.12, 0.12, 0.12)
        for face in ("front", "back", "left", "right", "top"):
            n_local, idx = BOX_FACES[face]
            normal = f.normal(n_local)
            b.poly(corners[list(idx)], self.mat(housing, normal, LIGHT, 0.02), normal=normal)
        normal = -f.fwd
        lamps = [(0.9, 0.1, 0.08), (0.95, 0.65, 0.05), (0.1, 0.85, 0.35)]
        for i, rgb in enumerate(lamps):
            lit = i == state
            colour = rgb if lit else tuple(c * 0.25 for c in rgb)
            centre = f.world(np.array([-dep / 2 - 0.01, lat, zc + 0.3 - 0.3 * i]))
            pts = circle_points(centre, -f.left, UP, 0.11, 10)
            b.poly(pts, Material(colour, LIGHT, 0, 0.0) if lit else self.mat(colour, normal, LIGHT, 0.0),  # type: ignore[arg-type]
                   normal=normal)


def _ngon(r: float, n: int, phase: float = 0.0) -> np.ndarray:
    a = phase + np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    return np.stack([r * np.cos(a), r * np.sin(a)], axis=1)


def _chunks(s0: float, s1: float, step: float) -> list[tuple[float, float]]:
    n = max(1, math.ceil((s1 - s0) / step))
    e = np.linspace(s0, s1, n + 1)
    return [(float(e[i]), float(e[i + 1])) for i in range(n)]


def scenery_block(cfg: SceneConfig, xs: CrossSection, road: Road, look: Look, seed: int, sequence: int,
                  block: int, side_index: int) -> tuple[list[Placed], list[np.ndarray]]:
    """Scenery pieces (and the ground shadows they cast) of one 50 m block on one side."""
    rng = stream(seed, sequence, STREAM_STATIC, block + BLOCK_TAG_OFFSET, side_index)
    side = xs.sides[side_index]
    sb = SceneryBuilder(cfg, xs, road, look)
    s_lo, s_hi = block * BLOCK_M, (block + 1) * BLOCK_M
    s_lo, s_hi = max(s_lo, road.s[0] + 1.0), min(s_hi, road.end_s - 1.0)
    if s_hi - s_lo < 5.0:
        return [], []
    env = cfg.environment
    out: list[Placed] = []
    kappa = float(np.abs(road.curvature(np.linspace(s_lo, s_hi, 6))).max())
    max_width = 30.0 if kappa < 1e-4 else min(30.0, math.sqrt(8.0 / kappa * 0.4))

    # buildings (or a wood edge in the countryside)
    if env == "rural":
        if rng.random() < 0.85:
            d = side.building_line + float(rng.uniform(3.0, 25.0))
            for a, c in _chunks(s_lo, s_hi, 12.5):
                out.append(sb.tree_line(rng, side, a, c, d, float(rng.uniform(8.0, 16.0))))
        if rng.random() < 0.15:
            a = s_lo + float(rng.uniform(0.0, 20.0))
            out += sb.building(rng, side, a, a + min(float(rng.uniform(8.0, 16.0)), max_width),
                               side.building_line + float(rng.uniform(5.0, 20.0)), float(rng.uniform(8, 12)),
                               float(rng.uniform(4.0, 7.0)), "suburban")
    else:
        cursor = s_lo + float(rng.uniform(0.0, 3.0))
        while cursor < s_hi - 4.0:
            width = min(
                float(rng.uniform(8.0, 24.0) if env == "urban" else rng.uniform(9.0, 15.0)),
                max_width,
                s_hi - cursor,
            )
            if width < 4.0:
                break
            if rng.random() < (0.08 if env == "urban" else 0.3):  # empty lot
                cursor += width
                continue
            setback = 0.0 if env == "urban" else float(rng.uniform(0.0, 4.0))
            height = float(rng.uniform(9.0, 36.0) if env == "urban" else rng.uniform(5.5, 9.0))
            d_front = side.building_line + setback
            out += sb.building(
                rng, side, cursor, cursor + width, d_front, float(rng.uniform(10.0, 18.0)), height, env
            )
            if env == "suburban" and d_front - side.sidewalk_end > 2.5 and rng.random() < 0.6:
                edge = side.sidewalk_end + 0.6
                kind = rng.random()
                if kind < 0.45:
                    p = sb.hedge(rng, side, cursor, cursor + width - 1.0, edge)
                    if p is not None:
                        out.append(p)
                elif kind < 0.75:
                    out += sb.wall(rng, side, cursor, cursor + width - 1.0, edge)
                else:
                    out += sb.fence(rng, side, cursor, cursor + width - 1.0, edge)
            cursor += width + float(rng.uniform(0.0, 2.0) if env == "urban" else rng.uniform(2.0, 8.0))

    # trees
    if env != "urban" or side.verge_end - side.curb_end > 2.4 or rng.random() < 0.5:
        spacing = float(rng.uniform(8.0, 20.0))
        pos = s_lo + float(rng.uniform(0.0, spacing))
        while pos < s_hi:
            if rng.random() < 0.8:
                if env == "rural":
                    d = side.road_edge + float(rng.uniform(3.0, 10.0))
                elif cfg.verge_width_m >= 1.5:  # in the grass strip
                    d = side.sidewalk_end + cfg.verge_width_m / 2
                else:  # in a pit on the sidewalk, near the curb
                    d = side.curb_end + 0.8
                x, y = road.point(pos, side.sign * d)
                out.append(Placed(pos, sb.tree(rng, float(x), float(y), cfg.curb_height_m,
                                               float(rng.uniform(0.8, 1.3)),
                                               conifer=env == "rural" and rng.random() < 0.4)))
            pos += spacing * float(rng.uniform(0.7, 1.3))

    # poles: lamps in towns, utility poles in the country, at a fixed rhythm along the road
    spacing = 32.0 if env != "rural" else 45.0
    phase = 7.0 + 11.0 * side_index
    k0 = math.ceil((s_lo - phase) / spacing)
    lamp_colour = vary(rng, [(0.35, 0.36, 0.37), (0.2, 0.3, 0.22), (0.55, 0.56, 0.58)][cfg.seed % 3], 0.05)
    for k in range(k0, k0 + 3):
        s = phase + k * spacing
        if s_lo <= s < s_hi:
            if env == "rural":
                if side_index == 0:
                    out.append(sb.utility_pole(side, s, side.road_edge + 2.5))
            else:
                out.append(sb.lamp(rng, side, s, side.road_edge + 0.45, lamp_colour, 8.0))

    # signs and traffic lights
    if rng.random() < 0.55:
        s = float(rng.uniform(s_lo + 2.0, s_hi - 2.0))
        d = side.road_edge + (0.5 if side.sidewalk_end > side.road_edge else 1.2)
        facing = side_index == 0 or cfg.oncoming_lanes == 0 or rng.random() < 0.3
        out.append(sb.sign(rng, side, s, d, facing))
    if env != "rural" and rng.random() < 0.12:
        s = float(rng.uniform(s_lo + 2.0, s_hi - 2.0))
        out.append(
            sb.traffic_light(
                rng, side, s, side.road_edge + 0.5, overhead=side_index == 0 and rng.random() < 0.5
            )
        )
    return out, sb.shadows
