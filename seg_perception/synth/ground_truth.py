"""Exact geometric ground truth of one time step, in metres in the vehicle frame ``base_link``.

``base_link`` follows REP-103: x forward, y left, z up, its origin on the ground under the ego position,
where every camera of the rig stands (at its ``mount_height_m``). Per step, as a JSON-able dict::

    {"frame_id": "base_link", "stamp_ns": int,
     "ego": {"speed_mps", "velocity_xy_mps", "yaw_rate_rps"},
     "lanes": [{"points_xy": [[x, y], ...], "style": "solid" | "dashed", "yellow": bool}],
     "obstacles": [{"track_id", "instance_id", "train_id", "class_name", "centre_xy", "heading_rad",
                    "length_m", "width_m", "contact_xy", "range_m", "bearing_rad",
                    "velocity_xy_mps", "velocity_over_ground_xy_mps"}]}

* ``lanes``: one polyline per painted marking line of the cross-section (a double centre line is two),
  sampled every metre of road arc length from 30 m behind to 80 m ahead of the ego.
* ``obstacles``: every thing instance some camera of the step sees (a cyclist's or motorcyclist's rider
  and vehicle are two, sharing one footprint). ``contact_xy`` is the footprint point nearest the origin:
  what a camera sees as the object's bottom. ``velocity_xy_mps`` is relative to ``base_link``, which moves
  and turns with the ego; ``velocity_over_ground_xy_mps`` is over the ground, in ``base_link`` axes.
* ``ego``: the vehicle's own motion, what its odometry would report: its velocity over the ground in
  ``base_link`` axes (``velocity_xy_mps``; y is not 0 while it changes lanes), its speed, its yaw rate.

Velocities, the ego's speed and its yaw rate are central differences of the world's own closed-form
trajectories over +-1 ms, exact to far below a millimetre per second.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from seg_perception.datasets.cityscapes import DatasetError
from seg_perception.datasets.labels import CLASSES, train_id
from seg_perception.synth.agents import (
    BICYCLE,
    MOTORCYCLE,
    PERSON,
    RIDER,
    Cyclist,
    Motorcycle,
    Pedestrian,
    Vehicle,
    instance_value,
)
from seg_perception.synth.camera import CameraModel, place_camera
from seg_perception.synth.world import World

if TYPE_CHECKING:  # render imports this module
    from seg_perception.synth.render import ObjectInfo

FRAME_ID = "base_link"
LANE_BEHIND_M = 30.0
LANE_AHEAD_M = 80.0
LANE_STEP_M = 1.0
DIFFERENCE_DT_S = 1e-3
# Footprints (length, width) of people and two-wheelers: those of their contact shadows in agents.py.
PEDESTRIAN_FOOTPRINT_M = (0.35, 0.45)
CYCLE_FOOTPRINT_M = (1.7, 0.5)
MOTORCYCLE_WIDTH_M = 0.7
LANE_STYLES = ("solid", "dashed")

Agent = Vehicle | Pedestrian | Cyclist | Motorcycle


# ------------------------------------------------------------------------------------------------ frames
@dataclass(frozen=True)
class EgoFrame:
    """``base_link`` at one instant: the ego's world position and heading."""

    x: float
    y: float
    heading: float

    @property
    def xy(self) -> tuple[float, float]:
        return self.x, self.y

    @classmethod
    def at(cls, world: World, t: float) -> EgoFrame:
        x, y, heading, _ = world.ego.pose(world.road, t)
        return cls(x, y, heading)

    def rotate_in(self, vectors: np.ndarray) -> np.ndarray:
        """(..., 2) world directions -> base_link axes."""
        c, s = math.cos(self.heading), math.sin(self.heading)
        v = np.asarray(vectors, np.float64)
        return np.stack([c * v[..., 0] + s * v[..., 1], -s * v[..., 0] + c * v[..., 1]], axis=-1)

    def to_base_link(self, points: np.ndarray) -> np.ndarray:
        """(..., 2) world points -> base_link points."""
        return self.rotate_in(np.asarray(points, np.float64) - (self.x, self.y))


def _wrap(angle: float) -> float:
    return math.atan2(math.sin(angle), math.cos(angle))


def _central_difference(f: Any, t: float) -> np.ndarray:
    """d/dt of a vector-valued f at t."""
    return (np.asarray(f(t + DIFFERENCE_DT_S)) - np.asarray(f(t - DIFFERENCE_DT_S))) / (2 * DIFFERENCE_DT_S)


# ------------------------------------------------------------------------------------------------ agents
def agent_pose(world: World, agent: Agent, t: float) -> tuple[float, float, float]:
    """World x, y and heading of an agent's footprint centre, placed as AgentMesher places its mesh."""
    yaw, flip = 0.0, False
    if isinstance(agent, Pedestrian):
        s, d, yaw, _ = agent.state(t)
    else:
        s, d = agent.s(t), agent.d
        flip = agent.flip if isinstance(agent, Vehicle) else agent.speed < 0
    x, y = world.road.point(s, d)
    heading = float(world.road.pose(s)[2]) + (math.pi if flip else 0.0) + yaw
    return float(x), float(y), heading


def footprint(agent: Agent) -> tuple[float, float]:
    """Length and width (m) of the agent on the ground."""
    if isinstance(agent, Vehicle):
        return agent.length, agent.width
    if isinstance(agent, Motorcycle):
        return agent.length, MOTORCYCLE_WIDTH_M
    if isinstance(agent, Cyclist):
        return CYCLE_FOOTPRINT_M
    return PEDESTRIAN_FOOTPRINT_M


def agent_instances(agent: Agent) -> tuple[int, ...]:
    """Instance values (labelId * 1000 + k) the agent paints: two for a rider on a bicycle or motorcycle."""
    if isinstance(agent, Vehicle):
        return (instance_value(train_id(agent.kind), agent.k),)
    if isinstance(agent, Pedestrian):
        return (instance_value(PERSON, agent.k),)
    if isinstance(agent, Cyclist):
        return instance_value(RIDER, agent.k_rider), instance_value(BICYCLE, agent.k_bike)
    return instance_value(RIDER, agent.k_rider), instance_value(MOTORCYCLE, agent.k_moto)


def nearest_footprint_point(centre: np.ndarray, heading: float, length: float, width: float) -> np.ndarray:
    """The point of a footprint rectangle (in base_link) nearest to the base_link origin."""
    c, s = math.cos(heading), math.sin(heading)
    along, across = np.array([c, s]), np.array([-s, c])
    to_origin = -np.asarray(centre, np.float64)
    u = float(np.clip(to_origin @ along, -length / 2, length / 2))
    v = float(np.clip(to_origin @ across, -width / 2, width / 2))
    return centre + u * along + v * across


# ------------------------------------------------------------------------------------------------ one step
def _lanes(world: World, ego: EgoFrame, s_ego: float) -> list[dict[str, Any]]:
    road = world.road
    s = s_ego + np.arange(-LANE_BEHIND_M, LANE_AHEAD_M + LANE_STEP_M / 2, LANE_STEP_M)
    s = s[(s >= road.s[0]) & (s <= road.end_s)]
    return [{"points_xy": ego.to_base_link(road.point(s, m.d)).tolist(),
             "style": "dashed" if m.dashed else "solid", "yellow": m.yellow}
            for m in world.xs.markings]


def _obstacle(world: World, ego: EgoFrame, t: float, agent: Agent, instance: int, train: int) -> dict[str, Any]:
    x, y, heading = agent_pose(world, agent, t)
    centre = ego.to_base_link((x, y))
    heading_bl = _wrap(heading - ego.heading)
    length, width = footprint(agent)
    contact = nearest_footprint_point(centre, heading_bl, length, width)

    def in_base_link(when: float) -> np.ndarray:  # base_link itself moves: the ego's pose at that time
        return EgoFrame.at(world, when).to_base_link(agent_pose(world, agent, when)[:2])

    over_ground = _central_difference(lambda when: agent_pose(world, agent, when)[:2], t)
    return {
        "track_id": instance % 1000, "instance_id": instance, "train_id": train,
        "class_name": CLASSES[train].name,
        "centre_xy": centre.tolist(), "heading_rad": heading_bl, "length_m": length, "width_m": width,
        "contact_xy": contact.tolist(), "range_m": float(np.hypot(*contact)),
        "bearing_rad": math.atan2(contact[1], contact[0]),
        "velocity_xy_mps": _central_difference(in_base_link, t).tolist(),
        "velocity_over_ground_xy_mps": ego.rotate_in(over_ground).tolist(),
    }


def _agents_by_instance(world: World, t: float, s_ego: float, ego: EgoFrame,
                        rig: Sequence[CameraModel]) -> dict[int, Agent]:
    """The agents the world meshed for this step (the only ones that can be seen), by instance value."""
    poses = [place_camera(m, ego.x, ego.y, ego.heading) for m in rig]
    return {value: agent for agent in world._agents_in_view(t, s_ego, poses) for value in agent_instances(agent)}


def frame_ground_truth(world: World, t: float, rig: Sequence[CameraModel], objects: Iterable[ObjectInfo],
                       stamp_ns: int) -> dict[str, Any]:
    """Ground truth of the step at time ``t`` (see the module docstring); ``objects``: the visible instances
    of all the step's camera frames (repeats are fine)."""
    x, y, heading, s_ego = world.ego.pose(world.road, t)
    ego = EgoFrame(x, y, heading)
    visible = {o.instance_id: o.train_id for o in objects}
    agents = _agents_by_instance(world, t, s_ego, ego, rig) if visible else {}
    unknown = sorted(set(visible) - set(agents))
    if unknown:
        raise RuntimeError(f"no agent behind visible instances {unknown} at t={t}")
    ego_velocity = _central_difference(lambda when: EgoFrame.at(world, when).xy, t)
    yaw_rate = _wrap(EgoFrame.at(world, t + DIFFERENCE_DT_S).heading
                     - EgoFrame.at(world, t - DIFFERENCE_DT_S).heading) / (2 * DIFFERENCE_DT_S)
    return {
        "frame_id": FRAME_ID, "stamp_ns": int(stamp_ns),
        "ego": {"speed_mps": float(np.hypot(*ego_velocity)), "velocity_xy_mps": ego.rotate_in(ego_velocity).tolist(),
                "yaw_rate_rps": yaw_rate},
        "lanes": _lanes(world, ego, s_ego),
        "obstacles": [_obstacle(world, ego, t, agents[i], i, visible[i]) for i in sorted(visible)],
    }


# ------------------------------------------------------------------------------------------------ reading
NUMBER, INTEGER, STRING, BOOLEAN, XY, XY_LIST, OBJECT, LIST = (
    "a number", "an integer", "a string", "true or false", "[x, y] numbers", "a list of [x, y]", "an object",
    "a list")
_TOP_FIELDS = {"frame_id": STRING, "stamp_ns": INTEGER, "ego": OBJECT, "lanes": LIST, "obstacles": LIST}
_EGO_FIELDS = {"speed_mps": NUMBER, "velocity_xy_mps": XY, "yaw_rate_rps": NUMBER}
_LANE_FIELDS = {"points_xy": XY_LIST, "style": STRING, "yellow": BOOLEAN}
_OBSTACLE_FIELDS = {
    "track_id": INTEGER, "instance_id": INTEGER, "train_id": INTEGER, "class_name": STRING, "centre_xy": XY,
    "heading_rad": NUMBER, "length_m": NUMBER, "width_m": NUMBER, "contact_xy": XY, "range_m": NUMBER,
    "bearing_rad": NUMBER, "velocity_xy_mps": XY, "velocity_over_ground_xy_mps": XY,
}


def _is(value: Any, kind: str) -> bool:
    if kind == NUMBER:  # bool is an int in Python, not a number in this file
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if kind == INTEGER:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == XY:
        return isinstance(value, list) and len(value) == 2 and all(_is(v, NUMBER) for v in value)
    if kind == XY_LIST:
        return isinstance(value, list) and all(_is(p, XY) for p in value)
    return isinstance(value, {STRING: str, BOOLEAN: bool, OBJECT: dict, LIST: list}[kind])


def _record_problem(record: Any, fields: dict[str, str], where: str) -> str | None:
    """What is wrong with one JSON object of the schema, or None."""
    if not isinstance(record, dict):
        return f"{where or 'the file'} should be an object, not {type(record).__name__}"
    prefix = f"{where}." if where else ""
    missing, unknown = sorted(set(fields) - set(record)), sorted(set(record) - set(fields))
    if missing:
        return f"{where or 'the top level'} lacks {', '.join(missing)}"
    if unknown:
        return f"{where or 'the top level'} has unknown keys {', '.join(unknown)}"
    for key, kind in fields.items():
        if not _is(record[key], kind):
            return f"{prefix}{key} should be {kind}, got {json.dumps(record[key])[:60]}"
    return None


def ground_truth_problem(data: Any) -> str | None:
    """The first thing that keeps ``data`` from being a step's ground truth (the module's schema), or None."""
    problem = _record_problem(data, _TOP_FIELDS, "") or _record_problem(data["ego"], _EGO_FIELDS, "ego")
    if problem is not None:
        return problem
    if data["frame_id"] != FRAME_ID:
        return f"frame_id should be {FRAME_ID!r}, got {data['frame_id']!r}"
    for i, lane in enumerate(data["lanes"]):
        problem = _record_problem(lane, _LANE_FIELDS, f"lanes[{i}]")
        if problem is not None:
            return problem
        if lane["style"] not in LANE_STYLES:
            return f"lanes[{i}].style should be one of {', '.join(LANE_STYLES)}, got {lane['style']!r}"
    for i, obstacle in enumerate(data["obstacles"]):
        problem = _record_problem(obstacle, _OBSTACLE_FIELDS, f"obstacles[{i}]")
        if problem is not None:
            return problem
    return None


def read_ground_truth(path: Path | str) -> dict[str, Any]:
    """A ``*_gtGeometry.json`` file, checked against the schema; DatasetError naming the file and the problem."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as error:
        raise DatasetError(f"{path}: cannot be read: {error.strerror or error}") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: not JSON: {error}") from error
    problem = ground_truth_problem(data)
    if problem is not None:
        raise DatasetError(f"{path}: not a ground-truth geometry file: {problem}")
    return data
