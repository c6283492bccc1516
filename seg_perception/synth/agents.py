"""Moving things: the ego's own motion, vehicles (moving and parked), pedestrians and cyclists; with the
opt-in variety also motorcycles with riders in the traffic lanes.

Agents are generated per 50 m block in order of arc length and numbered as they are generated, so the
numbers (the instance and track ids) are stable across frames and do not depend on the sequence length.
Every agent moves on a closed-form trajectory, which makes any time step cheap and exactly repeatable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from seg_perception.datasets.labels import CLASSES, train_id
from seg_perception.synth.config import STREAM_AGENTS, STREAM_VARIETY, SceneConfig, stream
from seg_perception.synth.geometry import (
    BOX_FACES,
    Frame2D,
    LocalMesh,
    Material,
    Piece,
    PieceBuilder,
    box_corners,
    face_rect,
)
from seg_perception.synth.objects import BLOCK_M, BLOCK_TAG_OFFSET
from seg_perception.synth.road import CrossSection, Road
from seg_perception.synth.shading import Look

CAR, TRUCK, BUS, PERSON, RIDER, BICYCLE, MOTORCYCLE = (
    train_id(n) for n in ("car", "truck", "bus", "person", "rider", "bicycle", "motorcycle")
)
LABEL_ID = {c.train_id: c.label_id for c in CLASSES}
MAX_K = 999  # Cityscapes instance ids are labelId * 1000 + k
PAINTS = [
    ((0.9, 0.9, 0.9), 0.2),
    ((0.06, 0.06, 0.07), 0.15),
    ((0.6, 0.61, 0.63), 0.15),
    ((0.35, 0.36, 0.38), 0.12),
    ((0.1, 0.2, 0.45), 0.1),
    ((0.55, 0.06, 0.06), 0.09),
    ((0.12, 0.25, 0.16), 0.05),
    ((0.7, 0.62, 0.48), 0.05),
    ((0.85, 0.7, 0.1), 0.03),
    ((0.3, 0.15, 0.1), 0.06),
]
CLOTHES = [(0.1, 0.1, 0.12), (0.2, 0.25, 0.4), (0.55, 0.1, 0.1), (0.8, 0.8, 0.78), (0.35, 0.3, 0.25),
           (0.15, 0.35, 0.2), (0.6, 0.5, 0.35), (0.25, 0.25, 0.27), (0.7, 0.45, 0.1), (0.45, 0.2, 0.45)]
SKINS = [(0.92, 0.75, 0.62), (0.8, 0.6, 0.45), (0.55, 0.38, 0.26), (0.35, 0.24, 0.17)]
HAIR = [(0.08, 0.06, 0.05), (0.3, 0.2, 0.1), (0.6, 0.5, 0.3), (0.5, 0.5, 0.5)]
UP = np.array([0.0, 0.0, 1.0])


def instance_value(tid: int, k: int) -> int:
    return LABEL_ID[tid] * 1000 + k


# ------------------------------------------------------------------------------------------------ ego
@dataclass(frozen=True)
class EgoTrack:
    """Ego speed oscillates slowly around its mean; it sways a little around its lane centre."""

    speed: float
    variation: float
    period_s: float
    phase: float
    lane_d: float
    sway: float
    sway_period_s: float
    sway_phase: float

    def s(self, t: float) -> float:
        w = 2 * math.pi / self.period_s
        return self.speed * t - self.speed * self.variation / w * (
            math.cos(w * t + self.phase) - math.cos(self.phase)
        )

    def v(self, t: float) -> float:
        w = 2 * math.pi / self.period_s
        return self.speed * (1.0 + self.variation * math.sin(w * t + self.phase))

    def d(self, t: float) -> float:
        return self.lane_d + self.sway * math.sin(2 * math.pi * t / self.sway_period_s + self.sway_phase)

    def d_rate(self, t: float) -> float:
        w = 2 * math.pi / self.sway_period_s
        return self.sway * w * math.cos(w * t + self.sway_phase)

    @property
    def max_speed(self) -> float:
        return self.speed * (1.0 + self.variation)

    def time_at(self, s: float) -> float:
        """When the ego passes arc length s (>= 0); s(t) is strictly increasing."""
        lo, hi = 0.0, s / (self.speed * (1 - self.variation)) + 1.0
        for _ in range(50):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if self.s(mid) < s else (lo, mid)
        return 0.5 * (lo + hi)

    def pose(self, road: Road, t: float) -> tuple[float, float, float, float]:
        """x, y, heading, s at time t."""
        s = self.s(t)
        x, y = road.point(s, self.d(t))
        heading = float(road.pose(s)[2]) + math.atan2(self.d_rate(t), self.v(t))
        return float(x), float(y), heading, s


def make_ego(cfg: SceneConfig, xs: CrossSection, seed: int, sequence: int) -> EgoTrack:
    rng = stream(seed, sequence, STREAM_AGENTS, 0)
    return EgoTrack(
        speed=cfg.ego_speed_mps,
        variation=cfg.ego_speed_variation,
        period_s=float(rng.uniform(8.0, 20.0)),
        phase=float(rng.uniform(0, 2 * math.pi)),
        lane_d=xs.lane_centre(cfg.ego_lane),
        sway=cfg.ego_sway_m,
        sway_period_s=float(rng.uniform(5.0, 14.0)),
        sway_phase=float(rng.uniform(0, 2 * math.pi)),
    )


# ------------------------------------------------------------------------------------------------ agents
@dataclass(frozen=True)
class Vehicle:
    k: int
    kind: str  # "car" | "truck" | "bus"
    style: str  # car body style
    s0: float
    speed: float  # along s; negative drives towards the ego's start
    d: float
    flip: bool  # faces -s
    length: float
    width: float
    height: float
    paint: tuple[float, float, float]
    cargo: tuple[float, float, float]

    def s(self, t: float) -> float:
        return self.s0 + self.speed * t


@dataclass(frozen=True)
class Pedestrian:
    k: int
    s0: float
    d0: float
    speed: float  # along s (0: standing)
    height: float
    shirt: tuple[float, float, float]
    trousers: tuple[float, float, float]
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    phase: float
    crossing: tuple[float, float, float, float] | None  # t0, d_from, d_to, speed

    def state(self, t: float) -> tuple[float, float, float, float]:
        """s, d, heading relative to the road, distance walked."""
        if self.crossing is None:
            s = self.s0 + self.speed * t
            return s, self.d0, (math.pi if self.speed < 0 else 0.0), abs(self.speed) * t
        t0, d_from, d_to, v = self.crossing
        direction = 1.0 if d_to > d_from else -1.0
        heading = direction * math.pi / 2
        span = abs(d_to - d_from)
        walked = float(np.clip((t - t0) * v, 0.0, span))
        return self.s0, d_from + direction * walked, heading, walked


@dataclass(frozen=True)
class Cyclist:
    k_rider: int
    k_bike: int
    s0: float
    speed: float
    d: float
    z: float
    shirt: tuple[float, float, float]
    trousers: tuple[float, float, float]
    skin: tuple[float, float, float]
    frame_rgb: tuple[float, float, float]
    helmet: tuple[float, float, float] | None
    phase: float

    def s(self, t: float) -> float:
        return self.s0 + self.speed * t


@dataclass(frozen=True)
class Motorcycle:
    """A motorcycle and its rider (opt-in variety): two instances, like Cityscapes labels them. It rides in
    a traffic lane at the lane's speed, in a gap between that lane's vehicles, so it never runs into them."""

    k_rider: int
    k_moto: int
    s0: float
    speed: float
    d: float
    length: float
    body: tuple[float, float, float]
    jacket: tuple[float, float, float]
    trousers: tuple[float, float, float]
    helmet: tuple[float, float, float]

    def s(self, t: float) -> float:
        return self.s0 + self.speed * t


@dataclass
class Agents:
    vehicles: list[Vehicle]
    pedestrians: list[Pedestrian]
    cyclists: list[Cyclist]
    motorcycles: list[Motorcycle] = field(default_factory=list)


class _Ids:
    def __init__(self) -> None:
        self.n = 0

    def next(self) -> int:
        self.n += 1
        return (self.n - 1) % MAX_K + 1  # wraps only in sequences with more than 999 objects


def _pick(rng: np.random.Generator, table: list) -> tuple[float, float, float]:
    colour = table[int(rng.integers(len(table)))]
    return tuple(float(c) for c in np.clip(np.asarray(colour) * rng.uniform(0.85, 1.15), 0, 1))  # type: ignore[return-value]


def _paint(rng: np.random.Generator) -> tuple[float, float, float]:
    weights = np.array([w for _, w in PAINTS])
    rgb = PAINTS[int(rng.choice(len(PAINTS), p=weights / weights.sum()))][0]
    return tuple(
        float(c)
        for c in np.clip(np.asarray(rgb) * rng.uniform(0.9, 1.08) + rng.uniform(-0.02, 0.02, 3), 0, 1)
    )  # type: ignore[return-value]


def _vehicle(
    rng: np.random.Generator,
    cfg: SceneConfig,
    k: int,
    s0: float,
    speed: float,
    d: float,
    flip: bool,
    parked: bool = False,
) -> Vehicle:
    u = rng.random()
    kind = "car" if parked else ("bus" if u < cfg.bus_fraction else
                                 "truck" if u < cfg.bus_fraction + cfg.truck_fraction else "car")
    cargo = (0.9, 0.9, 0.88)
    style = ""
    if kind == "car":
        style = str(rng.choice(["sedan", "hatch", "suv", "van"], p=[0.4, 0.3, 0.2, 0.1]))
        length, width, height = {
            "sedan": (rng.uniform(4.3, 4.9), rng.uniform(1.75, 1.88), rng.uniform(1.38, 1.5)),
            "hatch": (rng.uniform(3.7, 4.2), rng.uniform(1.68, 1.8), rng.uniform(1.45, 1.56)),
            "suv": (rng.uniform(4.4, 4.9), rng.uniform(1.85, 1.95), rng.uniform(1.65, 1.85)),
            "van": (rng.uniform(4.8, 5.4), rng.uniform(1.9, 2.0), rng.uniform(1.9, 2.2)),
        }[style]
    elif kind == "truck":
        length, width, height = rng.uniform(6.5, 9.0), rng.uniform(2.3, 2.5), rng.uniform(3.0, 3.7)
        cargo = _pick(rng, [(0.92, 0.92, 0.9), (0.7, 0.7, 0.72), (0.2, 0.35, 0.6), (0.6, 0.15, 0.1)])
    else:
        length, width, height = rng.uniform(10.5, 12.5), 2.55, rng.uniform(3.0, 3.2)
    paint = _paint(rng) if kind != "bus" else _pick(rng, [(0.9, 0.85, 0.2), (0.9, 0.9, 0.9), (0.7, 0.1, 0.1),
                                                          (0.15, 0.35, 0.65)])
    return Vehicle(
        k, kind, style, s0, speed, d, flip, float(length), float(width), float(height), paint, cargo
    )


def _walker(rng: np.random.Generator, k: int, s0: float, d0: float, speed: float,
            crossing: tuple[float, float, float, float] | None = None) -> Pedestrian:
    return Pedestrian(
        k,
        s0,
        d0,
        speed,
        float(rng.uniform(1.55, 1.95)),
        _pick(rng, CLOTHES),
        _pick(rng, CLOTHES[:5]),
        _pick(rng, SKINS),
        _pick(rng, HAIR),
        float(rng.uniform(0, 2 * math.pi)),
        crossing,
    )


def lane_speeds(cfg: SceneConfig, ego: EgoTrack, seed: int, sequence: int) -> list[float]:
    """Signed speed of each lane. Vehicles in one lane share it, so they never run into each other, and
    the ego's lane is faster than the ego, so the ego never runs into them."""
    rng = stream(seed, sequence, STREAM_AGENTS, 1)
    out = []
    for lane, direction in enumerate(cfg.lane_directions):
        if lane == cfg.ego_lane:
            out.append(ego.max_speed + float(rng.uniform(0.5, 3.0)))
        elif direction > 0:
            out.append(ego.speed * float(rng.uniform(0.6, 1.35)))
        else:
            out.append(-ego.speed * float(rng.uniform(0.7, 1.2)))
    return out


def generate_agents(cfg: SceneConfig, xs: CrossSection, ego: EgoTrack, seed: int, sequence: int,
                    s_min: float, s_max: float) -> Agents:
    agents = Agents([], [], [])
    ids = _Ids()
    speeds = lane_speeds(cfg, ego, seed, sequence)
    for block in range(math.floor(s_min / BLOCK_M), math.ceil(s_max / BLOCK_M)):
        rng = stream(seed, sequence, STREAM_AGENTS, 2, block + BLOCK_TAG_OFFSET)
        lo, hi = block * BLOCK_M, (block + 1) * BLOCK_M
        _block_vehicles(rng, cfg, xs, speeds, ids, agents, lo, hi)
        _block_people(rng, cfg, xs, ego, ids, agents, lo, hi)
    if cfg.variety is not None and cfg.variety.motorcycle_density > 0:
        # after everything else, from their own stream: the other agents keep their ids and places
        _motorcycles(cfg, xs, speeds, ids, agents, seed, sequence, s_min, s_max)
    return agents


MOTO_COLOURS = [(0.06, 0.06, 0.07), (0.7, 0.05, 0.05), (0.1, 0.2, 0.6), (0.85, 0.85, 0.85), (0.9, 0.5, 0.05),
                (0.2, 0.45, 0.15), (0.5, 0.5, 0.52)]
HELMETS = [(0.05, 0.05, 0.05), (0.9, 0.9, 0.9), (0.7, 0.1, 0.1), (0.15, 0.2, 0.5), (0.85, 0.75, 0.1)]
MOTO_CLEARANCE_M = 3.0  # free road before and behind a motorcycle in its lane


def _motorcycles(cfg: SceneConfig, xs: CrossSection, speeds: list[float], ids: _Ids, agents: Agents, seed: int,
                 sequence: int, s_min: float, s_max: float) -> None:
    assert cfg.variety is not None
    taken: list[list[tuple[float, float]]] = [[] for _ in range(cfg.num_lanes)]
    for v in agents.vehicles:  # moving vehicles occupy [s0 - L/2, s0 + L/2] of their lane forever
        if v.speed != 0.0:
            lane = int(np.argmin([abs(v.d - xs.lane_centre(i)) for i in range(cfg.num_lanes)]))
            taken[lane].append((v.s0 - v.length / 2, v.s0 + v.length / 2))
    half_room = 0.5 * cfg.lane_width_m - 0.6
    for block in range(math.floor(s_min / BLOCK_M), math.ceil(s_max / BLOCK_M)):
        rng = stream(seed, sequence, STREAM_VARIETY, 1, block + BLOCK_TAG_OFFSET)
        for lane in range(cfg.num_lanes):
            for _ in range(int(rng.poisson(cfg.variety.motorcycle_density * BLOCK_M / 100.0))):
                length = float(rng.uniform(1.9, 2.3))
                s0 = float(rng.uniform(block * BLOCK_M, (block + 1) * BLOCK_M))
                d = xs.lane_centre(lane) + float(rng.uniform(-half_room, half_room))
                colours = (_pick(rng, MOTO_COLOURS), _pick(rng, CLOTHES), _pick(rng, CLOTHES[:5]),
                           _pick(rng, HELMETS))
                lo, hi = s0 - length / 2 - MOTO_CLEARANCE_M, s0 + length / 2 + MOTO_CLEARANCE_M
                if lane == cfg.ego_lane and lo < 15.0:  # nothing at or behind the ego in its own lane
                    continue
                if any(a < hi and b > lo for a, b in taken[lane]):
                    continue
                taken[lane].append((lo, hi))
                k_rider, k_moto = ids.next(), ids.next()
                agents.motorcycles.append(Motorcycle(k_rider, k_moto, s0, speeds[lane], d, length, *colours))


def _block_vehicles(
    rng: np.random.Generator,
    cfg: SceneConfig,
    xs: CrossSection,
    speeds: list[float],
    ids: _Ids,
    agents: Agents,
    lo: float,
    hi: float,
) -> None:
    mean_gap = 100.0 / max(cfg.car_density, 1e-3)
    for lane in range(cfg.num_lanes):
        cursor = lo + float(rng.exponential(mean_gap * 0.5))
        if lane == cfg.ego_lane:
            cursor = max(cursor, 15.0)  # nothing at or behind the ego in its own lane
        while True:
            v = _vehicle(rng, cfg, 0, 0.0, 0.0, 0.0, False)
            if cursor + v.length > hi:
                break
            d = xs.lane_centre(lane) + float(rng.uniform(-0.15, 0.15))
            s0 = cursor + v.length / 2
            agents.vehicles.append(_vehicle_at(v, ids.next(), s0, speeds[lane], d, speeds[lane] < 0))
            cursor += v.length + 6.0 + float(rng.exponential(mean_gap))
    for strip, flip in ((xs.parking_right, False), (xs.parking_left, True)):
        if strip is None or cfg.parked_density <= 0:
            continue
        cursor = lo + float(rng.uniform(0.0, 4.0))
        while True:
            v = _vehicle(rng, cfg, 0, 0.0, 0.0, 0.0, flip, parked=True)
            if cursor + v.length > hi:
                break
            if rng.random() < cfg.parked_density / 20.0:
                d = 0.5 * (strip[0] + strip[1]) + float(rng.uniform(-0.15, 0.15))
                agents.vehicles.append(_vehicle_at(v, ids.next(), cursor + v.length / 2, 0.0, d, flip))
            cursor += v.length + float(rng.uniform(0.6, 2.5))


def _vehicle_at(v: Vehicle, k: int, s0: float, speed: float, d: float, flip: bool) -> Vehicle:
    return Vehicle(k, v.kind, v.style, s0, speed, d, flip, v.length, v.width, v.height, v.paint, v.cargo)


def _block_people(rng: np.random.Generator, cfg: SceneConfig, xs: CrossSection, ego: EgoTrack, ids: _Ids,
                  agents: Agents, lo: float, hi: float) -> None:
    for side in xs.sides:
        width = side.sidewalk_end - side.curb_end
        if width < 0.8 or cfg.pedestrian_density <= 0:
            continue
        for _ in range(int(rng.poisson(cfg.pedestrian_density * BLOCK_M / 100.0))):
            d_lo, d_hi = side.curb_end + min(0.9, width / 2), side.sidewalk_end - min(0.35, width / 2)
            d = side.sign * float(rng.uniform(d_lo, max(d_lo, d_hi)))
            speed = 0.0 if rng.random() < 0.2 else float(rng.choice([-1, 1]) * rng.uniform(0.9, 1.6))
            agents.pedestrians.append(_walker(rng, ids.next(), float(rng.uniform(lo, hi)), d, speed))
    if cfg.crossing_rate > 0 and xs.right.sidewalk_end > xs.right.road_edge:
        for _ in range(int(rng.poisson(cfg.crossing_rate * BLOCK_M / 100.0))):
            s_c = float(rng.uniform(lo, hi))
            d_r, d_l = -(xs.right.curb_end + 0.4), xs.left.curb_end + 0.4
            d_from, d_to = (d_r, d_l) if rng.random() < 0.5 else (d_l, d_r)
            v = float(rng.uniform(1.1, 1.6))
            duration = abs(d_to - d_from) / v
            if s_c > 5.0:  # cross well before the ego arrives, or after it has passed
                t_arrive = ego.time_at(s_c)
                t0 = (t_arrive - duration - float(rng.uniform(1.5, 8.0)) if rng.random() < 0.6
                      else t_arrive + float(rng.uniform(0.5, 4.0)))
            else:
                t0 = float(rng.uniform(-5.0, 20.0))
            agents.pedestrians.append(_walker(rng, ids.next(), s_c, d_from, 0.0, (t0, d_from, d_to, v)))
    place = cfg.cycle_place
    if place == "none" or cfg.cyclist_density <= 0:
        return
    for _ in range(int(rng.poisson(cfg.cyclist_density * BLOCK_M / 100.0))):
        speed, z = float(rng.uniform(3.0, 7.0)), 0.0
        if place == "bike_lane":
            assert xs.bike_lane is not None
            d = 0.5 * (xs.bike_lane[0] + xs.bike_lane[1])
        elif place == "shoulder":
            if cfg.oncoming_lanes and rng.random() < 0.4:
                d, speed = xs.left.road_edge - 0.55, -speed
            else:
                d = -(xs.right.road_edge - 0.55)
        else:
            side = xs.sides[int(rng.integers(2))]
            d, z = side.sign * (side.curb_end + 0.6), cfg.curb_height_m
            speed *= float(rng.choice([-1, 1]))
        helmet = _pick(rng, CLOTHES) if rng.random() < 0.6 else None
        k_rider, k_bike = ids.next(), ids.next()
        agents.cyclists.append(
            Cyclist(
                k_rider,
                k_bike,
                float(rng.uniform(lo, hi)),
                speed,
                d,
                z,
                _pick(rng, CLOTHES),
                _pick(rng, CLOTHES[:5]),
                _pick(rng, SKINS),
                _pick(
                    rng, [(0.1, 0.1, 0.1), (0.7, 0.1, 0.1), (0.1, 0.3, 0.6), (0.8, 0.8, 0.8), (0.2, 0.5, 0.3)]
                ),
                helmet,
                float(rng.uniform(0, 2 * math.pi)),
            )
        )


# ------------------------------------------------------------------------------------------------ meshes
class AgentMesher:
    """Turns agents at a time t into pieces (and the ground shadows under them)."""

    def __init__(self, road: Road, xs: CrossSection, look: Look, curb_h: float,
                 cache: dict[int, list[LocalMesh]]) -> None:
        self.road, self.xs, self.look, self.curb_h = road, xs, look, curb_h
        self.shadows: list[tuple[np.ndarray, bool]] = []  # (world polygon, is contact shadow)
        self._cache = cache  # vehicle k -> its meshes in its own frame, built on first sight

    @staticmethod
    def _mat(rgb: tuple[float, float, float], normal: np.ndarray, tid: int, k: int,
             texture: float = 0.03) -> Material:
        """Unlit material: vehicles are shaded when placed; people are drawn unshaded."""
        del normal
        return Material(rgb, tid, instance_value(tid, k), texture)

    def _frame(self, s: float, d: float, flip: bool, z: float = 0.0, yaw: float = 0.0) -> Frame2D:
        x, y = self.road.point(s, d)
        th = float(self.road.pose(s)[2]) + (math.pi if flip else 0.0) + yaw
        return Frame2D(float(x), float(y), th, z)

    def _box(
        self,
        b: PieceBuilder,
        f: Frame2D,
        box: tuple[float, ...],
        rgb: tuple[float, float, float],
        tid: int,
        k: int,
        faces: tuple[str, ...] = ("front", "back", "left", "right", "top"),
    ) -> np.ndarray:
        corners_local = box_corners(*box)
        corners = f.world(corners_local)
        for face in faces:
            n_local, idx = BOX_FACES[face]
            normal = f.normal(n_local)
            b.poly(corners[list(idx)], self._mat(rgb, normal, tid, k), normal=normal)
        return corners

    def _rect(
        self,
        b: PieceBuilder,
        f: Frame2D,
        face: str,
        corners: np.ndarray,
        uv: tuple[float, float, float, float],
        rgb: tuple[float, float, float],
        tid: int,
        k: int,
        emissive: bool = False,
        lamp: bool = False,
    ) -> None:
        normal = f.normal(BOX_FACES[face][0])
        if lamp and self.look.lamp_gain != 1.0:  # variety's dusk/night: lamps glow, unshaded
            rgb, emissive = (rgb[0] * self.look.lamp_gain, rgb[1] * self.look.lamp_gain,
                             rgb[2] * self.look.lamp_gain), True
        mat = Material(rgb, tid, instance_value(tid, k), 0.02, emissive=emissive)
        b.poly(face_rect(face, corners, *uv), mat, normal=normal, detail=0.3)  # lights, plates, windows

    def _wheels(self, b: PieceBuilder, f: Frame2D, xs_axles: list[float], half_w: float, r: float, tid: int,
                k: int) -> None:
        for side in (1.0, -1.0):
            normal = f.normal((0.0, side, 0.0))
            tyre, rim = (
                self._mat((0.07, 0.07, 0.075), normal, tid, k),
                self._mat((0.5, 0.5, 0.52), normal, tid, k),
            )
            for x in xs_axles:
                c = f.world(np.array([x, side * (half_w + 0.01), r]))
                a = np.linspace(0, 2 * np.pi, 12, endpoint=False)
                ring = c + r * (np.cos(a)[:, None] * f.fwd + np.sin(a)[:, None] * UP)
                b.poly(ring, tyre, normal=normal)
                b.poly(c + 0.55 * (ring - c) + 0.005 * normal, rim, normal=normal)

    def _shadow(self, f: Frame2D, length: float, width: float, height: float) -> None:
        foot = f.world(box_corners(-length / 2, length / 2, -width / 2, width / 2, 0.0, 0.0)[[0, 2, 6, 4]])[
            :, :2
        ]
        sun = self.look.sun
        if self.look.direct > 0.05 and sun[2] > 0.05:
            horiz = math.hypot(sun[0], sun[1])
            shift = (
                -np.array([sun[0], sun[1]])
                / max(horiz, 1e-6)
                * min(height * 0.6 * horiz / sun[2], 3 * height)
            )
            pts = np.concatenate([foot, foot + shift]).astype(np.float32)
            hull = cv2.convexHull(pts).reshape(-1, 2).astype(np.float64)
            self.shadows.append((np.concatenate([hull, np.zeros((len(hull), 1))], axis=1), False))
        centre = foot.mean(axis=0)
        contact = centre + (foot - centre) * 0.95
        self.shadows.append((np.concatenate([contact, np.zeros((4, 1))], axis=1), True))

    # -- vehicles ------------------------------------------------------------------------------------
    def vehicle(self, v: Vehicle, t: float) -> list[Piece]:
        f = self._frame(v.s(t), v.d, v.flip)
        self._shadow(f, v.length, v.width, v.height)
        meshes = self._cache.get(v.k)
        if meshes is None:
            local = Frame2D(0.0, 0.0, 0.0)
            built = [self._car(v, local)] if v.kind == "car" else (
                self._truck(v, local) if v.kind == "truck" else self._bus(v, local))
            meshes = self._cache[v.k] = [LocalMesh(p) for p in built]
        return [m.place(f, self.look.light_many) for m in meshes]

    def _car(self, v: Vehicle, f: Frame2D) -> Piece:
        L, W, H, k = v.length, v.width, v.height, v.k
        b = PieceBuilder()
        belt = 0.6 * H if v.style in ("suv", "van") else 0.55 * H + 0.12
        body = self._box(b, f, (-L / 2, L / 2, -W / 2, W / 2, 0.17, belt), v.paint, CAR, k)
        dark, glass = (0.05, 0.05, 0.05), (0.1, 0.12, 0.15)
        self._rect(b, f, "front", body, (0.25, 0.75, 0.1, 0.45), dark, CAR, k)
        for u0 in (0.04, 0.78):
            self._rect(b, f, "front", body, (u0, u0 + 0.18, 0.55, 0.8), (0.85, 0.85, 0.78), CAR, k, lamp=True)
            self._rect(
                b, f, "back", body, (u0, u0 + 0.18, 0.5, 0.78), (0.6, 0.04, 0.03), CAR, k, emissive=True, lamp=True
            )
        self._rect(b, f, "back", body, (0.4, 0.6, 0.2, 0.42), (0.85, 0.85, 0.82), CAR, k)
        xb0, xb1, xr0, xr1 = {"sedan": (-0.38, 0.22, -0.25, 0.05), "hatch": (-0.47, 0.2, -0.44, 0.0),
                              "suv": (-0.47, 0.2, -0.45, 0.05), "van": (-0.49, 0.3, -0.48, 0.18)}[v.style]
        wb, wr = W * 0.46, W * 0.39
        base = [(xb0 * L, -wb, belt), (xb1 * L, -wb, belt), (xb1 * L, wb, belt), (xb0 * L, wb, belt)]
        roof = [(xr0 * L, -wr, H), (xr1 * L, -wr, H), (xr1 * L, wr, H), (xr0 * L, wr, H)]
        cab = f.world(np.array(base + roof))
        centre = cab.mean(axis=0)
        quads = ((1, 2, 6, 5), (3, 0, 4, 7), (0, 1, 5, 4), (2, 3, 7, 6))  # windscreen, rear window, sides
        windows = []
        for idx in quads:
            pts = cab[list(idx)]
            normal = _outward_normal(pts, centre)
            b.poly(pts, self._mat(v.paint, normal, CAR, k), normal=normal)
            c = pts.mean(axis=0)
            inset = c + (pts - c) * np.array([[0.86], [0.86], [0.82], [0.82]])
            windows.append((inset, normal))
        roof_pts = cab[[4, 5, 6, 7]]
        b.poly(roof_pts, self._mat(v.paint, UP, CAR, k), normal=UP)
        for inset, normal in windows:
            b.poly(inset, self._mat(glass, normal, CAR, k, 0.02), normal=normal)
        axle = L / 2 - max(0.7, 0.18 * L)
        self._wheels(b, f, [axle, -axle], W / 2, 0.32, CAR, k)
        return b.build(f.origin, L / 2 + 1.0)

    def _truck(self, v: Vehicle, f: Frame2D) -> list[Piece]:
        L, W, H, k = v.length, v.width, v.height, v.k
        cab_len, cab_h = 2.2, min(H, 3.0)
        b = PieceBuilder()
        cab = self._box(b, f, (L / 2 - cab_len, L / 2, -W / 2, W / 2, 0.45, cab_h), v.paint, TRUCK, k)
        self._rect(b, f, "front", cab, (0.06, 0.94, 0.55, 0.92), (0.1, 0.12, 0.15), TRUCK, k)
        self._rect(b, f, "front", cab, (0.25, 0.75, 0.08, 0.35), (0.15, 0.15, 0.15), TRUCK, k)
        for u0 in (0.03, 0.83):
            self._rect(b, f, "front", cab, (u0, u0 + 0.14, 0.1, 0.22), (0.9, 0.9, 0.8), TRUCK, k, lamp=True)
        for face in ("left", "right"):
            self._rect(b, f, face, cab, (0.45, 0.9, 0.55, 0.9) if face == "left" else (0.1, 0.55, 0.55, 0.9),
                       (0.1, 0.12, 0.15), TRUCK, k)
        self._wheels(b, f, [L / 2 - 1.2], W / 2, 0.5, TRUCK, k)
        cab_piece = b.build(f.world(np.array([L / 2 - cab_len / 2, 0.0, 0.0])), cab_len + 2.0)
        b = PieceBuilder()
        self._box(
            b,
            f,
            (-L / 2 + 0.3, L / 2 - cab_len, -W / 2 + 0.2, W / 2 - 0.2, 0.5, 1.0),
            (0.1, 0.1, 0.1),
            TRUCK,
            k,
        )
        box = self._box(b, f, (-L / 2, L / 2 - cab_len - 0.3, -W / 2, W / 2, 1.0, H), v.cargo, TRUCK, k)
        for u0 in (0.02, 0.88):
            self._rect(
                b, f, "back", box, (u0, u0 + 0.1, 0.02, 0.08), (0.6, 0.04, 0.03), TRUCK, k, emissive=True,
                lamp=True,
            )
        self._wheels(b, f, [-L / 2 + 1.5, -L / 2 + 2.6], W / 2, 0.5, TRUCK, k)
        box_piece = b.build(f.world(np.array([-cab_len / 2, 0.0, 0.0])), L / 2 + 1.0)
        return [cab_piece, box_piece]

    def _bus(self, v: Vehicle, f: Frame2D) -> list[Piece]:
        L, W, H, k = v.length, v.width, v.height, v.k
        z0, n_sec = 0.3, 3
        edges = np.linspace(-L / 2, L / 2, n_sec + 1)
        glass = (0.1, 0.12, 0.15)
        pieces = []
        for i in range(n_sec):
            x0, x1 = edges[i], edges[i + 1]
            faces = (
                ("left", "right", "top")
                + (("back",) if i == 0 else ())
                + (("front",) if i == n_sec - 1 else ())
            )
            b = PieceBuilder()
            corners = self._box(b, f, (x0, x1, -W / 2, W / 2, z0, H), v.paint, BUS, k, faces)
            v_lo, v_hi = (1.2 - z0) / (H - z0), (H - 0.45 - z0) / (H - z0)
            for face in ("left", "right"):
                normal = f.normal(BOX_FACES[face][0])
                panes = []
                n_panes = max(1, int((x1 - x0) // 1.7))
                for j in range(n_panes):
                    u0 = (j + 0.06) / n_panes
                    u1 = (j + 0.94) / n_panes
                    panes.append(face_rect(face, corners, u0, u1, v_lo, v_hi))
                b.batch(np.stack(panes), self._mat(glass, normal, BUS, k, 0.02), normal=normal)
            if i == n_sec - 1:
                self._rect(b, f, "front", corners, (0.04, 0.96, 0.25, 0.8), glass, BUS, k)
                self._rect(
                    b, f, "front", corners, (0.15, 0.85, 0.84, 0.95), (0.9, 0.55, 0.1), BUS, k, emissive=True
                )
                for u0 in (0.04, 0.82):
                    self._rect(b, f, "front", corners, (u0, u0 + 0.14, 0.05, 0.12), (0.9, 0.9, 0.8), BUS, k,
                               lamp=True)
                self._rect(b, f, "right", corners, (0.05, 0.3, 0.03, 0.85), (0.15, 0.17, 0.2), BUS, k)
            if i == 0:
                self._rect(b, f, "back", corners, (0.08, 0.92, 0.55, 0.85), glass, BUS, k)
                for u0 in (0.04, 0.86):
                    self._rect(b, f, "back", corners, (u0, u0 + 0.1, 0.08, 0.2), (0.6, 0.04, 0.03), BUS, k,
                               emissive=True, lamp=True)
            axles = [x for x in (L / 2 - 2.5, -L / 2 + 3.0) if x0 <= x < x1]
            self._wheels(b, f, axles, W / 2, 0.5, BUS, k)
            pieces.append(b.build(f.world(np.array([0.5 * (x0 + x1), 0.0, 0.0])), (x1 - x0) / 2 + 2.0))
        return pieces

    # -- people ------------------------------------------------------------------------------------
    def pedestrian(self, p: Pedestrian, t: float) -> Piece:
        """Legs and arms swinging with the distance walked, a box torso, a head; all in one transform."""
        s, d, yaw, walked = p.state(t)
        on_road = abs(d) < (self.xs.right.road_edge if d < 0 else self.xs.left.road_edge)
        f = self._frame(s, d, False, 0.0 if on_road else self.curb_h, yaw)
        self._shadow(f, 0.35, 0.45, p.height)
        moving = (p.speed != 0.0) or (
            p.crossing is not None and 0 < walked < abs(p.crossing[2] - p.crossing[1])
        )
        swing = 0.42 * math.sin(p.phase + 2 * math.pi * walked / 1.4) if moving else 0.0
        h, k = p.height, p.k
        hip, shoulder, leg, arm = 0.52 * h, 0.81 * h, 0.5 * h, 0.36 * h
        c, sn, ca = math.cos(swing), math.sin(swing), math.cos(0.8 * swing)
        limbs = [[0.0, 0.09, hip], [leg * sn, 0.09, hip - leg * c],
                 [0.0, -0.09, hip], [-leg * sn, -0.09, hip - leg * c],
                 [0.0, 0.2, shoulder - 0.03], [-0.8 * arm * sn, 0.25, shoulder - 0.03 - arm * ca],
                 [0.0, -0.2, shoulder - 0.03], [0.8 * arm * sn, -0.25, shoulder - 0.03 - arm * ca],
                 [0.0, 0.0, 0.925 * h + 0.02], [0.0, 0.0, 0.925 * h - 0.01]]
        torso = box_corners(-0.11, 0.11, -0.19, 0.19, hip - 0.05, shoulder)[_BOX_IDX].reshape(-1, 3)
        pts = f.world(np.concatenate([np.array(limbs), torso]))
        normals = _BOX_NORMALS @ f._m
        trousers, shirt = self._mat(p.trousers, UP, PERSON, k, 0.05), self._mat(p.shirt, UP, PERSON, k, 0.05)
        b = PieceBuilder()
        for j, (mat, radius) in enumerate(
            ((trousers, 0.065), (trousers, 0.065), (shirt, 0.045), (shirt, 0.045))
        ):
            b.line(pts[2 * j], pts[2 * j + 1], radius, mat)
        for j in range(5):
            b.poly(pts[10 + 4 * j:14 + 4 * j], shirt, normal=normals[j], bias=-0.02)
        b.disc(pts[8], 0.105, self._mat(p.hair, UP, PERSON, k), bias=-0.3)
        b.disc(pts[9], 0.095, self._mat(p.skin, UP, PERSON, k), bias=-0.31)
        return b.build(f.world(np.array([0.0, 0.0, h / 2])), h / 2 + 0.3, sort_parts=True, small=True)

    def cyclist(self, c: Cyclist, t: float) -> Piece:
        """A bicycle instance (wheels, frame, bar) and a rider instance pedalling on it, as one piece whose
        parts are depth-sorted, so the near leg covers the frame and the far leg hides behind it."""
        s = c.s(t)
        f = self._frame(s, c.d, c.speed < 0, c.z)
        self._shadow(f, 1.7, 0.5, 1.7)
        rk, bk = c.k_rider, c.k_bike
        crank = c.phase + abs(s - c.s0) / _WHEEL_R * 0.4  # the crank turns ~0.4 times per wheel turn
        hip = _SEAT + np.array([0.02, 0.0, 0.1])
        shoulder = hip + np.array([0.32, 0.0, 0.48])
        rider_pts = []
        for side, ph in ((1.0, crank), (-1.0, crank + math.pi)):
            pedal = _BB + np.array([0.17 * math.cos(ph), side * 0.12, 0.17 * math.sin(ph)])
            h_side = hip + np.array([0.0, side * 0.1, 0.0])
            rider_pts += [
                h_side,
                _knee(h_side, pedal, 0.46, 0.46),
                pedal,
                shoulder + np.array([0.0, side * 0.19, 0.0]),
                _BAR + np.array([0.0, side * 0.25, 0.0]),
            ]
        head = shoulder + np.array([0.1, 0.0, 0.24])
        rider_pts += [hip, shoulder, head, head + np.array([-0.01, 0.0, 0.04])]
        n_bike = len(_BIKE_LOCAL)
        pts = f.world(np.concatenate([_BIKE_LOCAL, np.array(rider_pts)]))
        tyre, frame_m = (
            self._mat((0.06, 0.06, 0.06), UP, BICYCLE, bk),
            self._mat(c.frame_rgb, UP, BICYCLE, bk),
        )
        dark = self._mat((0.12, 0.12, 0.12), UP, BICYCLE, bk)
        spokes = self._mat((0.32, 0.32, 0.33), UP, BICYCLE, bk)
        b = PieceBuilder()
        for w0 in (0, 14):  # Cityscapes labels through-visible wheel area as bicycle: spinning spokes, a tyre
            b.poly(pts[w0:w0 + 14], spokes)
            b.loop(pts[w0:w0 + 14], 0.03, tyre)
        for i0, i1, radius, mat in _BIKE_LINES:
            b.line(pts[i0], pts[i1], radius, frame_m if mat == 0 else dark)
        r = pts[n_bike:]
        trousers, shirt = self._mat(c.trousers, UP, RIDER, rk, 0.05), self._mat(c.shirt, UP, RIDER, rk, 0.05)
        for j in (0, 5):
            b.line(r[j], r[j + 1], 0.07, trousers)
            b.line(r[j + 1], r[j + 2], 0.055, trousers)
            b.line(r[j + 3], r[j + 4], 0.045, shirt)
        b.line(r[10], r[11], 0.17, shirt, bias=-0.01)
        if c.helmet is not None:
            b.disc(r[13], 0.13, self._mat(c.helmet, UP, RIDER, rk), bias=-0.3)
        b.disc(r[12], 0.1, self._mat(c.skin, UP, RIDER, rk), bias=-0.29 if c.helmet is None else -0.2)
        return b.build(f.world(np.array([0.0, 0.0, 0.9])), 1.4, sort_parts=True, small=True)

    def motorcycle(self, m: Motorcycle, t: float) -> Piece:
        """A motorcycle instance (wheels, engine, tank, seat, fork, bars, lamps) and its rider instance
        (helmet, jacket, arms to the bars, legs to the pegs), as one depth-sorted piece like a cyclist."""
        s = m.s(t)
        f = self._frame(s, m.d, m.speed < 0)
        self._shadow(f, m.length, 0.7, 1.5)
        mk, rk = m.k_moto, m.k_rider
        scale = m.length / 2.1
        pts = f.world(_MOTO_LOCAL * np.array([scale, 1.0, 1.0]))
        dark = self._mat((0.06, 0.06, 0.06), UP, MOTORCYCLE, mk)
        metal = self._mat((0.45, 0.45, 0.47), UP, MOTORCYCLE, mk)
        body = self._mat(m.body, UP, MOTORCYCLE, mk)
        lamp = self.look.lamp_gain
        head_rgb, tail_rgb = (0.9 * lamp, 0.9 * lamp, 0.82 * lamp), (0.6 * lamp, 0.04 * lamp, 0.03 * lamp)
        b = PieceBuilder()
        for w0 in (0, _MOTO_RING):  # wheel discs (rim and brake seen through) and fat tyres
            b.poly(pts[w0:w0 + _MOTO_RING], metal)
            b.loop(pts[w0:w0 + _MOTO_RING], 0.06, dark)
        for i0, i1, radius, kind in _MOTO_LINES:
            b.line(pts[i0], pts[i1], radius, (body, dark, metal)[kind])
        b.disc(pts[_MOTO_HEADLIGHT], 0.085, self._mat(head_rgb, UP, MOTORCYCLE, mk), bias=-0.05)
        b.disc(pts[_MOTO_TAILLIGHT], 0.05, self._mat(tail_rgb, UP, MOTORCYCLE, mk), bias=-0.05)
        r = f.world(_RIDER_LOCAL * np.array([scale, 1.0, 1.0]))
        jacket, trousers = self._mat(m.jacket, UP, RIDER, rk, 0.05), self._mat(m.trousers, UP, RIDER, rk, 0.05)
        for j in (0, 5):  # hip-knee-peg, shoulder-hand; per side
            b.line(r[j], r[j + 1], 0.085, trousers)
            b.line(r[j + 1], r[j + 2], 0.07, trousers)
            b.line(r[j + 3], r[j + 4], 0.055, jacket)
        b.line(r[10], r[11], 0.2, jacket, bias=-0.01)
        b.disc(r[12], 0.16, self._mat(m.helmet, UP, RIDER, rk), bias=-0.3)
        return b.build(f.world(np.array([0.0, 0.0, 0.8])), 0.5 * m.length + 0.8, sort_parts=True, small=True)


def _moto_local() -> tuple[np.ndarray, list[tuple[int, int, float, int]], np.ndarray]:
    """Motorcycle and rider points in the motorcycle's frame (2.1 m long), and the thick lines joining the
    motorcycle's points: (from, to, radius, 0 body / 1 dark / 2 metal)."""
    a = np.linspace(0, 2 * np.pi, _MOTO_RING, endpoint=False)
    ring = 0.31 * np.stack([np.cos(a), np.zeros_like(a), np.sin(a)], axis=1)
    rear, front = np.array([-0.72, 0.0, 0.31]), np.array([0.72, 0.0, 0.31])
    joints = [rear, front,
              (-0.15, 0.0, 0.42), (0.3, 0.0, 0.47),  # engine
              (0.05, 0.0, 0.8), (0.42, 0.0, 0.86),  # tank
              (-0.58, 0.0, 0.84), (0.0, 0.0, 0.82),  # seat
              (-0.92, 0.0, 0.76),  # tail
              (0.58, 0.1, 0.98), (0.58, -0.1, 0.98),  # fork tops
              (0.55, 0.36, 1.03), (0.55, -0.36, 1.03),  # bar ends
              (-0.2, -0.22, 0.32), (-0.85, -0.24, 0.5),  # exhaust
              (0.7, 0.0, 0.86), (-0.93, 0.0, 0.8)]  # headlight, tail light
    pts = np.concatenate([ring + rear, ring + front, np.array(joints, np.float64)])
    n = 2 * _MOTO_RING
    rh, fh, e0, e1, t0, t1, s0, s1, tail, fl, fr, bl, br, x0, x1, _, _ = range(n, n + 17)
    lines = [(rh, e0, 0.05, 2), (e0, e1, 0.17, 1), (t0, t1, 0.14, 0), (s0, s1, 0.11, 1), (s0, tail, 0.08, 0),
             (fh + 0, fl, 0.035, 2), (fh + 0, fr, 0.035, 2), (bl, br, 0.025, 1), (x0, x1, 0.05, 2)]
    rider = []
    for side in (1.0, -1.0):
        rider += [(-0.22, side * 0.15, 0.98), (0.18, side * 0.23, 0.78), (-0.02, side * 0.21, 0.36),
                  (0.08, side * 0.2, 1.42), (0.55, side * 0.33, 1.04)]
    rider += [(-0.2, 0.0, 1.0), (0.08, 0.0, 1.42), (0.2, 0.0, 1.63)]  # hip, shoulder, helmet
    return pts, lines, np.array(rider, np.float64)


_BOX_IDX = np.array([BOX_FACES[n][1] for n in ("front", "back", "left", "right", "top")])
_BOX_NORMALS = np.array([BOX_FACES[n][0] for n in ("front", "back", "left", "right", "top")], np.float64)
_WHEEL_R = 0.34
_BB, _SEAT, _HEAD_TUBE = np.array([0.0, 0.0, 0.3]), np.array([-0.14, 0.0, 0.88]), np.array([0.4, 0.0, 0.82])
_BAR = _HEAD_TUBE + np.array([0.05, 0.0, 0.12])


def _bike_local() -> tuple[np.ndarray, list[tuple[int, int, float, int]]]:
    """Bicycle points in its own frame: two wheel rings, hubs, frame joints, bar ends, saddle."""
    a = np.linspace(0, 2 * np.pi, 14, endpoint=False)
    ring = _WHEEL_R * np.stack([np.cos(a), np.zeros_like(a), np.sin(a)], axis=1)
    rear, front = np.array([-0.52, 0.0, _WHEEL_R]), np.array([0.52, 0.0, _WHEEL_R])
    offsets = np.array([[0, 0.28, 0], [0, -0.28, 0], [-0.1, 0, 0.04], [0.1, 0, 0.04]])
    joints = [rear, front, _BB, _SEAT, _HEAD_TUBE, _BAR + offsets[0], _BAR + offsets[1], _SEAT + offsets[2],
              _SEAT + offsets[3]]
    pts = np.concatenate([ring + rear, ring + front, np.array(joints)])
    r, f, bb, st, ht, bl, br, s0, s1 = range(28, 37)
    lines = [(r, bb, 0.022, 0), (r, st, 0.022, 0), (bb, st, 0.022, 0), (st, ht, 0.022, 0), (bb, ht, 0.022, 0),
             (ht, f, 0.022, 0), (ht, bl, 0.018, 1), (ht, br, 0.018, 1), (s0, s1, 0.04, 1)]
    return pts, lines


_BIKE_LOCAL, _BIKE_LINES = _bike_local()
_MOTO_RING = 14
_MOTO_LOCAL, _MOTO_LINES, _RIDER_LOCAL = _moto_local()
_MOTO_HEADLIGHT, _MOTO_TAILLIGHT = len(_MOTO_LOCAL) - 2, len(_MOTO_LOCAL) - 1


def _outward_normal(pts: np.ndarray, centre: np.ndarray) -> np.ndarray:
    n = np.cross(pts[1] - pts[0], pts[3] - pts[0])
    n /= np.linalg.norm(n)
    return n if n @ (pts.mean(axis=0) - centre) > 0 else -n


def _knee(hip: np.ndarray, foot: np.ndarray, thigh: float, shin: float) -> np.ndarray:
    """Knee of a two-link leg in the x-z plane, bending forwards."""
    v = foot - hip
    dist = float(np.clip(np.linalg.norm(v), 1e-3, thigh + shin - 1e-3))
    along = (thigh ** 2 - shin ** 2 + dist ** 2) / (2 * dist)
    height = math.sqrt(max(thigh ** 2 - along ** 2, 0.0))
    u = v / np.linalg.norm(v)
    perp = np.array([-u[2], 0.0, u[0]])  # rotate in x-z plane
    if perp[0] < 0:
        perp = -perp
    return hip + u * along + perp * height
