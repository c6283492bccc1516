"""One sequence's world: road, scenery, agents, ego motion, and its state at any time."""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from seg_perception.datasets.labels import train_id
from seg_perception.synth.agents import (
    AgentMesher,
    Agents,
    Cyclist,
    EgoTrack,
    Motorcycle,
    Pedestrian,
    Vehicle,
    generate_agents,
    lane_speeds,
    make_ego,
)
from seg_perception.synth.camera import CameraModel, CameraPose, place_camera
from seg_perception.synth.config import ROAD_START_M, STREAM_LOOK, SceneConfig, stream
from seg_perception.synth.geometry import LocalMesh, Piece
from seg_perception.synth.objects import BLOCK_M, Placed, scenery_block
from seg_perception.synth.road import GROUND_RANGE_M, CrossSection, GroundPolys, Road, ground_polygons
from seg_perception.synth.shading import Look, make_look

VIEW_RANGE_M = 350.0  # vertical things farther than this from the ego are not drawn
PEOPLE_RANGE_M = 220.0  # pedestrians and cyclists beyond this would be a few pixels at most
CYCLIST_MAX_SPEED = 7.0


@dataclass(frozen=True)
class Backdrop:
    """Far hills or a city skyline: an elevation angle per world azimuth, with no parallax."""

    train_id: int
    rgb: tuple[float, float, float]
    elevation: np.ndarray  # radians, sampled every 360/len degrees of azimuth

    def at(self, azimuth: np.ndarray) -> np.ndarray:
        n = len(self.elevation)
        pos = (np.mod(azimuth, 2 * math.pi) / (2 * math.pi)) * n
        i0 = np.floor(pos).astype(int) % n
        frac = pos - np.floor(pos)
        return self.elevation[i0] * (1 - frac) + self.elevation[(i0 + 1) % n] * frac


@dataclass(frozen=True)
class WorldState:
    t: float
    ego_x: float
    ego_y: float
    ego_heading: float
    ego_s: float
    ego_speed: float
    ground: GroundPolys
    pieces: list[Piece]
    keys: np.ndarray  # (n, 3) sort/cull point of each piece
    radii: np.ndarray  # (n,)
    shadows: list[tuple[np.ndarray, bool]]  # (world polygon on the ground, is a contact shadow)


class World:
    def __init__(self, seed: int, sequence: int, cfg: SceneConfig, duration_s: float) -> None:
        self.cfg = cfg
        self.xs = CrossSection(cfg)
        self.look: Look = make_look(cfg)
        self.ego: EgoTrack = make_ego(cfg, self.xs, seed, sequence)
        s_end = self.ego.s(duration_s)
        fastest = max([abs(v) for v in lane_speeds(cfg, self.ego, seed, sequence)] + [CYCLIST_MAX_SPEED])
        agents_lo = max(ROAD_START_M + 20.0, -VIEW_RANGE_M - fastest * duration_s - 20.0)
        agents_hi = s_end + VIEW_RANGE_M + fastest * duration_s + 20.0
        self.road = Road(cfg.road_segments, end_s=max(agents_hi, s_end + GROUND_RANGE_M) + 50.0)
        self.agents: Agents = generate_agents(cfg, self.xs, self.ego, seed, sequence, agents_lo, agents_hi)
        self._build_scenery(seed, sequence, -VIEW_RANGE_M - 30.0, s_end + VIEW_RANGE_M + 30.0)
        self.backdrop = _backdrop(cfg, seed, sequence, self.look)
        self._meshes: dict[int, list[LocalMesh]] = {}

    def _build_scenery(self, seed: int, sequence: int, s_lo: float, s_hi: float) -> None:
        placed: list[Placed] = []
        shadows: list[tuple[float, np.ndarray]] = []
        for block in range(math.floor(s_lo / BLOCK_M), math.ceil(s_hi / BLOCK_M)):
            for side in (0, 1):
                items, block_shadows = scenery_block(self.cfg, self.xs, self.road, self.look, seed, sequence,
                                                     block, side)
                placed += items
                shadows += [((block + 0.5) * BLOCK_M, poly) for poly in block_shadows]
        placed.sort(key=lambda p: p.s)
        self._scenery = [p.piece for p in placed]
        self._scenery_s = [p.s for p in placed]
        self._scenery_keys = np.array([p.piece.key for p in placed]).reshape(-1, 3)
        self._scenery_radii = np.array([p.piece.radius for p in placed])
        shadows.sort(key=lambda x: x[0])
        self._shadow_s = [s for s, _ in shadows]
        self._shadows = [poly for _, poly in shadows]
        self._shadow_centres = np.array([p.mean(axis=0) for _, p in shadows]).reshape(-1, 3)
        self._shadow_radii = np.array([np.linalg.norm(p - p.mean(axis=0), axis=1).max() for _, p in shadows])

    def state(self, t: float, cameras: Sequence[CameraModel]) -> WorldState:
        """Everything at time t that the given cameras (on the ego) may see."""
        x, y, heading, s = self.ego.pose(self.road, t)
        poses = [place_camera(m, x, y, heading) for m in cameras]
        lo, hi = s - VIEW_RANGE_M, s + VIEW_RANGE_M
        i0, i1 = bisect_left(self._scenery_s, lo - 30.0), bisect_right(self._scenery_s, hi + 30.0)
        pieces = self._scenery[i0:i1]
        keys, radii = [self._scenery_keys[i0:i1]], [self._scenery_radii[i0:i1]]
        j0, j1 = bisect_left(self._shadow_s, lo - 60.0), bisect_right(self._shadow_s, hi + 60.0)
        seen = np.zeros(j1 - j0, bool)
        for pose in poses:
            seen |= pose.in_view(self._shadow_centres[j0:j1], self._shadow_radii[j0:j1], VIEW_RANGE_M)
        shadows = [(self._shadows[j0 + j], False) for j in np.flatnonzero(seen)]
        mesher = AgentMesher(self.road, self.xs, self.look, self.cfg.curb_height_m, self._meshes)
        for agent in self._agents_in_view(t, s, poses):
            if isinstance(agent, Vehicle):
                new = mesher.vehicle(agent, t)
            elif isinstance(agent, Pedestrian):
                new = [mesher.pedestrian(agent, t)]
            elif isinstance(agent, Motorcycle):
                new = [mesher.motorcycle(agent, t)]
            else:
                new = [mesher.cyclist(agent, t)]
            pieces = pieces + new
            keys.append(np.array([p.key for p in new]))
            radii.append(np.array([p.radius for p in new]))
        return WorldState(t, x, y, heading, s, self.ego.v(t), ground_polygons(self.road, self.xs, s), pieces,
                          np.concatenate(keys), np.concatenate(radii), shadows + mesher.shadows)

    def _agents_in_view(
        self, t: float, s_ego: float, poses: list[CameraPose]
    ) -> list[Vehicle | Pedestrian | Cyclist | Motorcycle]:
        """Agents whose bounding sphere any camera may see; only these get meshes."""
        agents: list[Vehicle | Pedestrian | Cyclist | Motorcycle] = []
        sd: list[tuple[float, float]] = []
        radius: list[float] = []
        for v in self.agents.vehicles:
            s = v.s(t)
            if abs(s - s_ego) < VIEW_RANGE_M:
                agents.append(v)
                sd.append((s, v.d))
                radius.append(0.5 * v.length + 3.0 * v.height + 1.0)
        for p in self.agents.pedestrians:
            s, d, _, _ = p.state(t)
            if abs(s - s_ego) < PEOPLE_RANGE_M:
                agents.append(p)
                sd.append((s, d))
                radius.append(3.0 * p.height + 1.0)
        for c in self.agents.cyclists:
            s = c.s(t)
            if abs(s - s_ego) < PEOPLE_RANGE_M:
                agents.append(c)
                sd.append((s, c.d))
                radius.append(7.0)
        for m in self.agents.motorcycles:  # opt-in variety only
            s = m.s(t)
            if abs(s - s_ego) < VIEW_RANGE_M:
                agents.append(m)
                sd.append((s, m.d))
                radius.append(7.0)
        if not agents:
            return []
        arr = np.array(sd)
        xy = self.road.point(arr[:, 0], arr[:, 1])
        centres = np.concatenate([xy, np.full((len(xy), 1), 1.0)], axis=1)
        r = np.array(radius)
        seen = np.zeros(len(agents), bool)
        for pose in poses:
            seen |= pose.in_view(centres, r, VIEW_RANGE_M)
        return [a for a, ok in zip(agents, seen, strict=True) if ok]


def _backdrop(cfg: SceneConfig, seed: int, sequence: int, look: Look) -> Backdrop | None:
    rng = stream(seed, sequence, STREAM_LOOK, 1)
    n = 1440
    az = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
    if cfg.environment == "urban":  # a skyline of far towers
        elev = np.zeros(n)
        i = 0
        while i < n:
            width = int(rng.integers(4, 24))
            elev[i:i + width] = rng.uniform(0.002, 0.03) if rng.random() < 0.8 else 0.0
            i += width + int(rng.integers(0, 6))
        rgb = tuple(float(c) for c in 0.55 * look.horizon + 0.45 * np.array([0.45, 0.45, 0.48]))
        return Backdrop(train_id("building"), rgb, elev)  # type: ignore[arg-type]
    if rng.random() < 0.25:
        return None
    elev = np.full(n, rng.uniform(0.004, 0.012))
    for k in (1, 2, 3, 5, 8, 13, 21):
        elev += rng.uniform(0.0, 0.012) / math.sqrt(k) * np.sin(k * az + rng.uniform(0, 2 * math.pi))
    elev = np.clip(elev, 0.002, None)
    rgb = tuple(float(c) for c in 0.6 * look.horizon + 0.4 * np.array([0.2, 0.3, 0.2]))
    return Backdrop(train_id("vegetation"), rgb, elev)  # type: ignore[arg-type]
