"""The procedural driving world: deterministic, exact and self-consistent labels, correct projection,
temporally coherent sequences, every class of the brief, and rigs whose cameras share one world."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest

from seg_perception.datasets import labels
from seg_perception.synth import (
    CameraModel,
    SceneConfig,
    SynthFrame,
    camera_model,
    default_rig,
    describe_sequence,
    render_sequence,
)
from seg_perception.synth.camera import place_camera
from seg_perception.synth.road import CrossSection, Road, ground_polygons

SMALL = (256, 128)


def _render(seed: int, sequence: int, frames: int, size: tuple[int, int] = SMALL, cameras=("front",),
            **kwargs) -> list[dict[str, SynthFrame]]:
    return list(
        render_sequence(
            seed=seed,
            sequence=sequence,
            num_frames=frames,
            width=size[0],
            height=size[1],
            cameras=cameras,
            **kwargs,
        )
    )


def _empty_straight_road(seed: int = 5, sequence: int = 0) -> SceneConfig:
    """A straight road without traffic or sway: the road edges are exact straight lines in the image."""
    return dataclasses.replace(
        describe_sequence(seed, sequence), road_segments=((6000.0, 0.0),), ego_sway_m=0.0, car_density=0.0,
        parked_density=0.0, pedestrian_density=0.0, crossing_rate=0.0, cyclist_density=0.0)


# ------------------------------------------------------------------------------------------------ API
def test_rig_and_camera_models() -> None:
    rig = default_rig(["front", "front_left", "rear"], width=640, height=320, hfov_deg=90.0)
    assert [c.name for c in rig] == ["front", "front_left", "rear"]
    assert [c.yaw_deg for c in rig] == [0.0, 55.0, 180.0]
    k = rig[0].intrinsic_matrix()
    assert k.shape == (3, 3) and k[0, 0] == pytest.approx(320.0) and k[0, 2] == pytest.approx(319.5)
    assert k[1, 1] == k[0, 0] and k[1, 2] == pytest.approx(159.5) and k[2, 2] == 1.0
    assert rig[0].hfov_deg == pytest.approx(90.0)
    with pytest.raises(ValueError, match="unknown camera 'roof'"):
        default_rig(["roof"], width=640, height=320)
    with pytest.raises(ValueError, match="too small"):
        next(render_sequence(seed=0, sequence=0, num_frames=1, width=12, height=5))


def test_scene_configs_are_deterministic_and_varied() -> None:
    configs = [describe_sequence(seed, seq) for seed in range(10) for seq in range(4)]
    assert describe_sequence(3, 2) == describe_sequence(3, 2)
    assert {c.num_lanes for c in configs} == {1, 2, 3, 4}
    assert {c.environment for c in configs} == {"urban", "suburban", "rural"}
    assert {c.curved for c in configs} == {True, False}
    for c in configs:
        assert 0 <= c.ego_lane < c.num_lanes - c.oncoming_lanes
        assert c.lane_directions[c.ego_lane] == 1
    # markings: dashed and solid lines both occur, as painted polygons on the ground
    dashed = solid = 0
    for c in configs[:12]:
        ground = ground_polygons(Road(c.road_segments, 500.0), CrossSection(c), 0.0)
        dashed += len(ground.dashes)
        solid += sum(key.startswith("marking") for key, _ in ground.layers)
    assert dashed and solid


# ------------------------------------------------------------------------------------------------ determinism
def test_same_seed_same_bytes_other_seed_other_images() -> None:
    a = _render(7, 1, 3, cameras=("front", "rear"))
    b = _render(7, 1, 3, cameras=("front", "rear"))
    for sa, sb in zip(a, b, strict=True):
        for cam in ("front", "rear"):
            fa, fb = sa[cam], sb[cam]
            assert fa.image.tobytes() == fb.image.tobytes()
            assert fa.semantic.tobytes() == fb.semantic.tobytes()
            assert fa.instance.tobytes() == fb.instance.tobytes()
            assert fa.objects == fb.objects and fa.stamp_ns == fb.stamp_ns
    other = _render(8, 1, 1)[0]["front"]
    assert np.abs(other.image.astype(int) - a[0]["front"].image.astype(int)).mean() > 10
    # the first frames do not depend on how many frames are rendered, nor a view on the rest of the rig
    longer = _render(7, 1, 6, cameras=("front", "rear"))
    assert longer[2]["rear"].image.tobytes() == a[2]["rear"].image.tobytes()
    alone = _render(7, 1, 3, cameras=("rear",))
    assert alone[2]["rear"].image.tobytes() == a[2]["rear"].image.tobytes()


# ------------------------------------------------------------------------------------------------ labels
def _check_frame(f: SynthFrame) -> None:
    h, w = f.camera.height, f.camera.width
    assert f.image.shape == (h, w, 3) and f.image.dtype == np.uint8
    assert f.semantic.shape == (h, w) and f.semantic.dtype == np.uint8
    assert f.instance.shape == (h, w) and f.instance.dtype == np.uint16
    assert f.drivable.dtype == bool and f.lane.dtype == bool
    sem, inst = f.semantic, f.instance
    assert sem.max() < labels.NUM_CLASSES  # no ignore pixels anywhere
    thing = np.isin(sem, labels.THING_TRAIN_IDS)
    np.testing.assert_array_equal(inst >= 1000, thing)
    np.testing.assert_array_equal(
        labels.label_ids_to_train_ids((inst[thing] // 1000).astype(np.uint8)), sem[thing]
    )
    np.testing.assert_array_equal(inst[~thing], labels.train_ids_to_label_ids(sem[~thing]))
    np.testing.assert_array_equal(f.lane, sem == labels.LANE_MARKING)
    np.testing.assert_array_equal(f.drivable, (sem == labels.ROAD) | (sem == labels.LANE_MARKING))
    assert {o.instance_id for o in f.objects} == set(np.unique(inst[thing]).tolist())
    for o in f.objects:
        mask = inst == o.instance_id
        ys, xs = np.nonzero(mask)
        assert o.visible_px == mask.sum() > 0
        assert o.bbox == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert o.train_id == sem[ys[0], xs[0]] and o.train_id in labels.THING_TRAIN_IDS
        assert o.full_px >= o.visible_px
        assert 1 <= o.track_id <= 999


@pytest.mark.parametrize("seed, sequence", [(0, 2), (1, 0), (2, 2), (3, 1), (4, 0), (6, 3)])
def test_labels_are_consistent(seed: int, sequence: int) -> None:
    for step in _render(seed, sequence, 3, (320, 160), cameras=("front", "left", "rear")):
        for frame in step.values():
            _check_frame(frame)


# ------------------------------------------------------------------------------------------------ geometry
def test_ground_points_project_where_a_pinhole_puts_them() -> None:
    cam = camera_model("front", width=400, height=200, hfov_deg=80.0, mount_height_m=1.5, pitch_deg=0.0)
    pose = place_camera(cam, 10.0, -3.0, math.radians(30.0))
    heading = math.radians(30.0)
    for dist in (5.0, 20.0, 80.0):
        p = np.array([10.0 + dist * math.cos(heading), -3.0 + dist * math.sin(heading), 0.0])
        u, v = pose.project(pose.to_camera(p))
        assert u == pytest.approx(cam.cx) and v == pytest.approx(cam.cy + cam.fy * 1.5 / dist)
    tilted = place_camera(dataclasses.replace(cam, pitch_deg=3.0), 0.0, 0.0, 0.0)
    far = tilted.project(tilted.to_camera(np.array([1e7, 0.0, 1.5])))
    assert far[1] == pytest.approx(cam.cy - cam.fy * math.tan(math.radians(3.0)), abs=1e-3)
    assert dataclasses.replace(cam, pitch_deg=3.0).horizon_row() == pytest.approx(far[1], abs=1e-3)


def test_straight_road_converges_to_the_principal_point() -> None:
    """With zero pitch on a straight road, both road edges are image lines through (cx, cy) whose slopes
    follow from their lateral offsets and the camera height: u - cx = -(fx/fy) * d / h * (v - cy)."""
    cfg = _empty_straight_road()
    cam = CameraModel("front", 640, 320, 300.0, 300.0, 319.5, 159.5, 1.5, 0.0, 0.0)
    frame = _render(5, 0, 1, (640, 320), cameras=(cam,), config=cfg)[0]["front"]
    xs = CrossSection(cfg)
    ego_d = xs.lane_centre(cfg.ego_lane)
    rows, left, right = [], [], []
    for v in range(163, 320):  # from ~110 m ahead down to the bottom row
        cols = np.flatnonzero(frame.drivable[v])
        if len(cols) and cols[0] > 0 and cols[-1] < 639:  # both edges inside the image
            rows.append(v)
            left.append(cols[0] - 0.5)  # boundary between the last non-road and first road pixel
            right.append(cols[-1] + 0.5)
    assert len(rows) > 20
    lines = {}
    for name, edge, d in (
        ("left", left, xs.left.road_edge - ego_d),
        ("right", right, -xs.right.road_edge - ego_d),
    ):
        slope, icpt = np.polyfit(rows, edge, 1)
        assert slope == pytest.approx(-d / 1.5, rel=0.01), name
        lines[name] = (slope, icpt)
    (s1, c1), (s2, c2) = lines["left"], lines["right"]
    v0 = (c2 - c1) / (s1 - s2)
    assert v0 == pytest.approx(cam.cy, abs=1.0) and s1 * v0 + c1 == pytest.approx(cam.cx, abs=1.0)
    # the horizon: sky above row cy, ground below it, in a column of open road far ahead
    column = frame.semantic[:, 320]
    assert column[150] in (labels.train_id("sky"), labels.train_id("building"), labels.train_id("vegetation"))
    assert labels.CLASSES[column[170]].name in ("road", "lane_marking")


# ------------------------------------------------------------------------------------------------ time
def test_sequences_are_temporally_coherent() -> None:
    steps = _render(0, 2, 8, (320, 160), fps=10.0)
    frames = [s["front"] for s in steps]
    other = [s["front"] for s in _render(1, 1, 8, (320, 160))]
    stamps = [f.stamp_ns for f in frames]
    assert all(b - a == 100_000_000 for a, b in itertools.pairwise(stamps))
    img = [f.image.astype(np.int16) for f in frames]
    consecutive = np.mean([np.abs(a - b).mean() for a, b in itertools.pairwise(img)])
    across = np.mean([np.abs(a - b.image.astype(np.int16)).mean() for a, b in zip(img, other, strict=True)])
    assert consecutive < 0.5 * across, (consecutive, across)
    # objects keep their ids from frame to frame and move a bounded amount
    kept = seen = 0
    for a, b in itertools.pairwise(frames):
        now = {o.instance_id: o for o in b.objects}
        for o in a.objects:
            if o.visible_px < 30 or o.bbox[0] == 0 or o.bbox[2] == a.camera.width:
                continue
            seen += 1
            if o.instance_id in now:
                kept += 1
                c0 = np.array(o.bbox).reshape(2, 2).mean(axis=0)
                c1 = np.array(now[o.instance_id].bbox).reshape(2, 2).mean(axis=0)
                assert np.linalg.norm(c1 - c0) < 0.2 * a.camera.width
    assert seen >= 10 and kept >= 0.8 * seen
    # the ego advances smoothly along the road
    poses = np.array([f.ego_pose for f in frames])
    steps_m = np.linalg.norm(np.diff(poses[:, :2], axis=0), axis=1)
    speeds = np.array([f.ego_speed_mps for f in frames])
    np.testing.assert_allclose(steps_m, 0.5 * (speeds[1:] + speeds[:-1]) / 10.0, rtol=0.1)
    assert np.abs(np.diff(poses[:, 2])).max() < math.radians(3.0)
    assert np.abs(np.diff(steps_m)).max() < 0.1


# ------------------------------------------------------------------------------------------------ coverage
REQUIRED = ("road", "sidewalk", "building", "pole", "traffic sign", "vegetation", "terrain", "sky", "person",
            "rider", "car", "truck", "bus", "bicycle", "lane_marking")


def test_every_class_appears_and_things_get_occluded() -> None:
    seen: set[int] = set()
    occluded = 0
    for seed, sequence in [(0, 2), (1, 0), (0, 1), (3, 1), (2, 0)]:
        for step in _render(seed, sequence, 10, (384, 192), cameras=("front", "front_right")):
            for f in step.values():
                seen |= set(np.unique(f.semantic).tolist())
                occluded += sum(o.visible_px < o.full_px for o in f.objects)
    missing = [name for name in REQUIRED if labels.train_id(name) not in seen]
    assert not missing
    assert occluded > 0


# ------------------------------------------------------------------------------------------------ rigs
def test_cameras_of_a_rig_share_one_world() -> None:
    cams = ("front", "front_left")
    shared = 0
    for step in _render(0, 2, 6, (384, 192), cameras=cams, hfov_deg=90.0):
        front, left = step["front"], step["front_left"]
        assert front.stamp_ns == left.stamp_ns and front.ego_pose == left.ego_pose
        in_left = {o.instance_id: o for o in left.objects}
        for o in front.objects:
            other = in_left.get(o.instance_id)
            if other is None:
                continue
            assert other.train_id == o.train_id
            inside = [p for p in (o, other) if p.bbox[0] > 0 and p.bbox[2] < front.camera.width
                      and p.visible_px == p.full_px]
            if len(inside) == 2:  # whole in both views: it lies in the same direction from the ego
                shared += 1
                bearings = [
                    cam.yaw_deg + math.degrees(math.atan((cam.cx - 0.5 * (p.bbox[0] + p.bbox[2])) / cam.fx))
                    for cam, p in ((front.camera, o), (left.camera, other))
                ]
                assert bearings[0] == pytest.approx(bearings[1], abs=1.5)
    assert shared > 0
