"""Rendering a world state through each camera of the rig into images with exact labels."""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cv2
import numpy as np

from seg_perception.datasets.labels import (
    LANE_MARKING,
    ROAD,
    label_ids_to_train_ids,
    train_id,
    train_ids_to_label_ids,
)
from seg_perception.synth.camera import (
    DEFAULT_HFOV_DEG,
    CameraModel,
    CameraPose,
    camera_model,
    check_size,
    place_camera,
)
from seg_perception.synth.config import STREAM_VARIETY, SceneConfig, describe_sequence, stream
from seg_perception.synth.geometry import Material
from seg_perception.synth.ground_truth import frame_ground_truth
from seg_perception.synth.raster import ONE, RAW_INSTANCE_LIMIT, SKY_PRIM, Canvas
from seg_perception.synth.shading import (
    Look,
    camera_effects,
    ground_texture,
    noise_tile,
    rain_streaks,
    sky_image,
)
from seg_perception.synth.world import VIEW_RANGE_M, Backdrop, World, WorldState

STAMP_ORIGIN_NS = 1_700_000_000 * 10**9
SEQUENCE_STAMP_STRIDE_NS = 3600 * 10**9  # sequences are an hour apart
SKY = train_id("sky")


@dataclass(frozen=True)
class ObjectInfo:
    """A thing instance visible in one frame."""

    instance_id: int  # value in SynthFrame.instance: labelId * 1000 + k, k the sequence-wide track id
    train_id: int
    visible_px: int
    full_px: int  # pixels it would cover (inside the image) if nothing were in front of it
    bbox: tuple[int, int, int, int]  # x0, y0, x1, y1 of the visible pixels; x1, y1 exclusive
    distance_m: float  # horizontal distance from the camera

    @property
    def track_id(self) -> int:
        return self.instance_id % 1000

    @property
    def occlusion(self) -> float:
        return 1.0 - self.visible_px / self.full_px if self.full_px else 0.0


@dataclass(frozen=True, eq=False)
class SynthFrame:
    """One camera's view of one time step, with its exact ground truth."""

    camera: CameraModel
    sequence: int
    index: int
    stamp_ns: int
    image: np.ndarray  # HxWx3 uint8 RGB
    semantic: np.ndarray  # HxW uint8 trainIds
    instance: np.ndarray  # HxW uint16 Cityscapes instanceIds: things labelId*1000+k, stuff their labelId
    drivable: np.ndarray  # HxW bool: road or lane marking (obstacles on the road cover it)
    lane: np.ndarray  # HxW bool: semantic == lane_marking
    objects: tuple[ObjectInfo, ...]  # visible thing instances, sorted by instance id
    ego_pose: tuple[float, float, float]  # world x, y (m) and heading (rad) of the ego
    ego_speed_mps: float
    # the step's lanes and obstacles in metres in base_link (see synth.ground_truth), shared by its cameras
    ground_truth: dict[str, Any] | None = None


def frame_stamp_ns(sequence: int, index: int, fps: float) -> int:
    return STAMP_ORIGIN_NS + sequence * SEQUENCE_STAMP_STRIDE_NS + round(index * 1e9 / fps)


def render_sequence(*, seed: int, sequence: int, num_frames: int, width: int, height: int,
                    cameras: Sequence[str | CameraModel] = ("front",), fps: float = 10.0,
                    config: SceneConfig | None = None,
                    hfov_deg: float = DEFAULT_HFOV_DEG,
                    variety: bool = False) -> Iterator[dict[str, SynthFrame]]:
    """Render ``num_frames`` time steps of sequence ``(seed, sequence)``; one dict camera name -> frame each.

    Cameras given by name are built with ``hfov_deg`` and the sequence's mount height and pitch (see
    ``describe_sequence``); ``CameraModel`` instances are used as they are. ``config`` overrides the
    sampled world parameters (e.g. ``dataclasses.replace(describe_sequence(s, q), num_lanes=2)``).
    ``variety=True`` renders ``describe_sequence(seed, sequence, variety=True)``: the opt-in harder scenes
    (motorcycles, crosswalks, dusk/night, rain); off by default so recorded datasets stay byte-identical.
    It is ignored when ``config`` is given (its ``variety`` field decides).
    """
    check_size(width, height)
    if num_frames < 0:
        raise ValueError(f"num_frames must be >= 0, got {num_frames}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    cfg = config if config is not None else describe_sequence(seed, sequence, variety=variety)
    rig = _rig(cameras, width, height, hfov_deg, cfg)
    return _frames(seed, sequence, num_frames, fps, cfg, rig)


def _rig(cameras: Sequence[str | CameraModel], width: int, height: int, hfov_deg: float,
         cfg: SceneConfig) -> tuple[CameraModel, ...]:
    if isinstance(cameras, str):
        cameras = (cameras,)
    if not cameras:
        raise ValueError("at least one camera is needed")
    rig = tuple(
        c
        if isinstance(c, CameraModel)
        else camera_model(
            c,
            width=width,
            height=height,
            hfov_deg=hfov_deg,
            mount_height_m=cfg.camera_height_m,
            pitch_deg=cfg.camera_pitch_deg,
        )
        for c in cameras
    )
    names = [c.name for c in rig]
    if len(set(names)) != len(names):
        raise ValueError(f"camera names repeat: {names}")
    for c in rig:
        if (c.width, c.height) != (width, height):
            raise ValueError(f"camera {c.name!r} is {c.width}x{c.height}, the sequence {width}x{height}")
    return rig


def _frames(seed: int, sequence: int, num_frames: int, fps: float, cfg: SceneConfig,
            rig: tuple[CameraModel, ...]) -> Iterator[dict[str, SynthFrame]]:
    world = World(seed, sequence, cfg, num_frames / fps)
    for index in range(num_frames):
        t = index / fps
        state = world.state(t, rig)
        stamp = frame_stamp_ns(sequence, index, fps)
        step = {}
        for model in rig:  # sensor noise per camera name: a view does not depend on the rest of the rig
            rng = np.random.default_rng((seed, sequence, 99, index, zlib.crc32(model.name.encode())))
            step[model.name] = render_view(world, state, model, rng, sequence, index, stamp)
        # closed-form trajectories only, no random stream: the rendered frames stay exactly as they were
        truth = frame_ground_truth(world, t, rig, (o for f in step.values() for o in f.objects), stamp)
        yield {name: dataclasses.replace(frame, ground_truth=truth) for name, frame in step.items()}


# ------------------------------------------------------------------------------------------------ one view
def render_view(
    world: World,
    state: WorldState,
    model: CameraModel,
    rng: np.random.Generator,
    sequence: int = 0,
    index: int = 0,
    stamp_ns: int = 0,
) -> SynthFrame:
    """One camera's frame: backdrop, ground, then vertical pieces far to near; colour and labels."""
    pose = place_camera(model, state.ego_x, state.ego_y, state.ego_heading)
    look = world.look
    canvas = Canvas(pose, Material((0.0, 0.0, 0.0), SKY))
    first_ground = int(np.clip(math.floor(model.horizon_row()) + 1, 0, model.height))
    if world.backdrop is not None:
        _draw_backdrop(canvas, world.backdrop, pose, look)
    ground_ids = _draw_ground(canvas, state, look, first_ground)
    _draw_pieces(canvas, state, pose)
    streaks = None
    if look.rain_streaks > 0:  # opt-in variety; its own stream, so the sensor noise stays as it was
        cfg = world.cfg
        streaks = stream(cfg.seed, cfg.sequence, STREAM_VARIETY, 2, index, zlib.crc32(model.name.encode()))
    image, semantic, instance = _compose(canvas, look, pose, first_ground, ground_ids, rng, streaks)
    lane = semantic == LANE_MARKING
    drivable = (semantic == ROAD) | lane
    return SynthFrame(camera=model, sequence=sequence, index=index, stamp_ns=stamp_ns, image=image,
                      semantic=semantic, instance=instance, drivable=drivable, lane=lane,
                      objects=_objects(canvas, instance),
                      ego_pose=(state.ego_x, state.ego_y, state.ego_heading), ego_speed_mps=state.ego_speed)


def _draw_backdrop(canvas: Canvas, backdrop: Backdrop, pose: CameraPose, look: Look) -> None:
    """Far hills or skyline: a polygon from the horizon up to the backdrop's elevation per azimuth."""
    m = pose.model
    u = np.arange(-4.0, m.width + 8.0, 4.0)
    azimuth = pose.heading + np.arctan((m.cx - u) / m.fx)
    elev = backdrop.at(azimuth)
    dirs = np.stack([np.cos(azimuth) * np.cos(elev), np.sin(azimuth) * np.cos(elev), np.sin(elev)], axis=1)
    cam = dirs @ pose.rotation.T
    if (cam[:, 2] <= 1e-3).any():
        return
    top = pose.project(cam)
    bottom_v = m.horizon_row() + 1.0
    poly = np.concatenate([top, [[top[-1, 0], bottom_v], [top[0, 0], bottom_v]]])
    pid = canvas.add_prim(Material(backdrop.rgb, backdrop.train_id, 0, 0.03), 0.6 * look.visibility_m)
    canvas.fill([np.round(poly * ONE).astype(np.int32)], pid)


def _draw_ground(canvas: Canvas, state: WorldState, look: Look, first_ground: int) -> tuple[int, int]:
    """Terrain below the horizon, then road-side strips, road, markings, curbs; then shadows.
    Returns the (contiguous) range of ground primitive ids."""
    prims = {key: canvas.add_prim(mat, 0.0) for key, mat in look.ground.items()}
    canvas.pid[first_ground:] = prims["terrain"]
    for key, poly in state.ground.layers:
        canvas.draw_ground(poly, prims[key])
    for key, polys in state.ground.dashes:
        canvas.draw_ground_batch(polys, prims[key])
    shaded = look.ambient / (look.ambient + look.direct * max(look.sun[2], 0.0))
    for poly, contact in state.shadows:
        canvas.draw_shadow(poly, 0.55 if contact else shaded)
    ids = sorted(prims.values())
    return ids[0], ids[-1] + 1


def _draw_pieces(canvas: Canvas, state: WorldState, pose: CameraPose) -> None:
    """Painter's order: pieces sorted by distance, farthest first."""
    if not state.pieces:
        return
    visible = np.flatnonzero(pose.in_view(state.keys, state.radii, VIEW_RANGE_M))
    dist = np.hypot(state.keys[visible, 0] - pose.position[0], state.keys[visible, 1] - pose.position[1])
    for j in np.argsort(-dist, kind="stable"):
        canvas.draw_piece(state.pieces[visible[j]], float(dist[j]))


@lru_cache(maxsize=4)
def _screen_texture(width: int, height: int) -> np.ndarray:
    tile = noise_tile(404, 1.0)
    reps = (height // tile.shape[0] + 1, width // tile.shape[1] + 1)
    return np.tile(tile, reps)[:height, :width] * np.float32(0.6)


def _compose(canvas: Canvas, look: Look, pose: CameraPose, first_ground: int, ground_ids: tuple[int, int],
             rng: np.random.Generator,
             streaks: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Primitive ids -> labels (table lookups) and colour (material x texture x shadow, then haze, sky,
    rain streaks if ``streaks`` is given: image only, the labels are already fixed)."""
    p = canvas.prims
    m = pose.model
    train_t = np.asarray(p.train, np.uint8)
    raw_inst = np.asarray(p.inst, np.int64)
    if raw_inst.max() >= RAW_INSTANCE_LIMIT:
        raise RuntimeError("instance value does not fit uint16")
    inst_t = np.where(raw_inst > 0, raw_inst, train_ids_to_label_ids(train_t)).astype(np.uint16)
    depth_t = np.asarray(p.depth, np.float64)
    haze_t = np.where(np.isfinite(depth_t), 1.0 - np.exp(-depth_t / look.visibility_m), 0.0).astype(
        np.float32
    )

    pid = canvas.pid
    idx = pid.astype(np.intp)
    semantic = np.take(train_t, idx)
    instance = np.take(inst_t, idx)
    is_ground = (pid >= ground_ids[0]) & (pid < ground_ids[1])

    # texture: anchored to the world on the ground, to the image elsewhere (faint there)
    depth_rows = pose.ground_depth_per_row()
    tex = np.where(
        is_ground, ground_texture(pose, first_ground, depth_rows), _screen_texture(m.width, m.height)
    )
    row_haze = (1.0 - np.exp(-np.minimum(depth_rows, 1e7) / look.visibility_m)).astype(np.float32)
    haze = np.take(haze_t, idx)
    np.copyto(haze, np.broadcast_to(row_haze[:, None], haze.shape), where=is_ground)
    shade = canvas.shade
    shade[~is_ground] = 1.0
    factor = np.take(np.asarray(p.texture, np.float32), idx)
    factor *= tex
    factor += 1.0
    factor *= shade
    factor *= 1.0 - haze
    rgb = np.take(np.asarray(p.rgb, np.float32), idx, axis=0)
    colour = cv2.multiply(rgb, cv2.merge([factor, factor, factor]))
    colour += cv2.merge([haze * float(c) for c in look.horizon])
    if first_ground > 0:
        sky_mask = pid[:first_ground] == SKY_PRIM
        if sky_mask.any():
            np.copyto(colour[:first_ground], sky_image(look, pose, first_ground), where=sky_mask[..., None])
    if streaks is not None:
        colour = rain_streaks(colour, look, streaks)
    return camera_effects(colour, look, rng), semantic, instance


def _objects(canvas: Canvas, instance: np.ndarray) -> tuple[ObjectInfo, ...]:
    """Visible thing instances with their visible and unoccluded areas and visible bounding boxes."""
    if not canvas.inst_ops:
        return ()
    counts = np.bincount(instance.ravel(), minlength=65536)
    visible = sorted(i for i in canvas.inst_ops if counts[i])
    out = []
    for inst, (n_full, (x0, y0, x1, y1)) in canvas.full_areas(visible).items():
        roi = instance[y0:y1, x0:x1] == inst
        rows, cols = np.flatnonzero(roi.any(axis=1)), np.flatnonzero(roi.any(axis=0))
        bbox = (x0 + int(cols[0]), y0 + int(rows[0]), x0 + int(cols[-1]) + 1, y0 + int(rows[-1]) + 1)
        out.append(ObjectInfo(inst, _train_of(inst), int(counts[inst]), n_full, bbox,
                              canvas.inst_depth[inst]))
    return tuple(out)


@lru_cache(maxsize=64)
def _train_of(instance_value: int) -> int:
    return int(label_ids_to_train_ids(np.array([instance_value // 1000], np.uint8))[0])

