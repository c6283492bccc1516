"""The synthetic world's geometric ground truth in base_link (lanes, obstacles, velocities): it agrees with
the rendered pixels through the project's own camera geometry, with its own motion over time, and it is
written to Cityscapes folders (gtGeometry json) and to bags (/labels/lanes, /labels/obstacles)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from seg_perception.bags.reader import bag_topics, read_messages
from seg_perception.datasets import labels
from seg_perception.datasets.cityscapes import DatasetError, geometry_path
from seg_perception.datasets.synthetic import (
    GROUND_TRUTH_LANES_TOPIC,
    GROUND_TRUTH_OBSTACLES_TOPIC,
    bag_path,
    camera_mount,
    city_name,
    write_synthetic,
)
from seg_perception.geometry.camera import GroundProjector, Intrinsics, Mount
from seg_perception.synth import CameraModel, SynthFrame, describe_sequence, render_sequence
from seg_perception.synth.ground_truth import ground_truth_problem, read_ground_truth
from seg_perception.synth.road import CrossSection

SIZE = (256, 128)
VEHICLES = {labels.train_id(n) for n in ("car", "truck", "bus")}
GROUND = [labels.train_id("road"), labels.LANE_MARKING]


def _render(seed: int, sequence: int, frames: int, cameras=("front",), **kwargs) -> list[dict[str, SynthFrame]]:
    return list(render_sequence(seed=seed, sequence=sequence, num_frames=frames, width=SIZE[0], height=SIZE[1],
                                cameras=cameras, **kwargs))


def _projector(camera: CameraModel) -> GroundProjector:
    """The camera as the perception pipeline would know it: intrinsics and its mount in base_link."""
    intrinsics = Intrinsics(camera.width, camera.height, camera.intrinsic_matrix(), np.zeros(5))
    return GroundProjector(intrinsics, Mount(**camera_mount(camera)), max_range_m=1e4)


def _obstacles(frame: SynthFrame) -> dict[int, dict]:
    assert frame.ground_truth is not None
    return {o["instance_id"]: o for o in frame.ground_truth["obstacles"]}


@pytest.fixture(scope="module")
def drive() -> list[dict[str, SynthFrame]]:
    """Two steps of a suburban street with cars near and far, seen by a front and a rear camera."""
    return _render(1, 0, 2, cameras=("front", "rear"))


# ------------------------------------------------------------------------------------------------ content
def test_every_visible_instance_is_an_obstacle_with_its_own_ids(drive: list[dict[str, SynthFrame]]) -> None:
    for step in drive:
        truth = step["front"].ground_truth
        assert truth is step["rear"].ground_truth  # one step, one ground truth
        assert ground_truth_problem(truth) is None
        assert truth["frame_id"] == "base_link" and truth["stamp_ns"] == step["front"].stamp_ns
        visible = {o.instance_id: o.train_id for frame in step.values() for o in frame.objects}
        obstacles = _obstacles(step["front"])
        assert visible and set(obstacles) == set(visible)
        for instance, o in obstacles.items():
            assert o["track_id"] == instance % 1000 and o["train_id"] == visible[instance]
            assert o["class_name"] == labels.CLASSES[o["train_id"]].name
            assert o["range_m"] == pytest.approx(math.hypot(*o["contact_xy"]))
            assert o["bearing_rad"] == pytest.approx(math.atan2(o["contact_xy"][1], o["contact_xy"][0]))
            # the contact is on the footprint's outline, no farther from its centre than a corner
            offset = np.subtract(o["contact_xy"], o["centre_xy"])
            assert np.hypot(*offset) <= 0.5 * math.hypot(o["length_m"], o["width_m"]) + 1e-9
            assert o["range_m"] <= math.hypot(*o["centre_xy"])


def test_lanes_are_the_cross_section_markings_around_the_ego(drive: list[dict[str, SynthFrame]]) -> None:
    cfg = describe_sequence(1, 0)
    markings = CrossSection(cfg).markings
    lanes = drive[0]["front"].ground_truth["lanes"]
    assert [(lane["style"], lane["yellow"]) for lane in lanes] == [
        ("dashed" if m.dashed else "solid", m.yellow) for m in markings]
    for lane in lanes:
        points = np.array(lane["points_xy"])
        assert len(points) == 111  # 30 m behind to 80 m ahead, every metre of arc length
        steps = np.hypot(*np.diff(points, axis=0).T)
        assert np.all(np.abs(steps - 1.0) < 0.05)  # (1 - curvature * offset) m along a line off the centre
        assert points[0, 0] == pytest.approx(-30.0, abs=0.5) and points[-1, 0] == pytest.approx(80.0, abs=2.0)


def test_lanes_on_a_straight_road_are_exact_lines_at_the_marking_offsets() -> None:
    cfg = dataclasses.replace(describe_sequence(5, 0), road_segments=((6000.0, 0.0),), ego_sway_m=0.0,
                              car_density=0.0)
    (step,) = _render(5, 0, 1, config=cfg)
    xs = CrossSection(cfg)
    ego_d = xs.lane_centre(cfg.ego_lane)
    for lane, marking in zip(step["front"].ground_truth["lanes"], xs.markings, strict=True):
        points = np.array(lane["points_xy"])
        np.testing.assert_allclose(points[:, 0], np.arange(-30.0, 81.0), atol=1e-6)
        np.testing.assert_allclose(points[:, 1], marking.d - ego_d, atol=1e-6)


def test_double_centre_line_is_two_polylines() -> None:
    cfg = dataclasses.replace(describe_sequence(2, 0), num_lanes=2, oncoming_lanes=1, ego_lane=0,
                              centre_line="double", edge_lines=True, car_density=0.0)
    (step,) = _render(2, 0, 1, config=cfg)
    lanes = step["front"].ground_truth["lanes"]
    assert len(lanes) == 4  # two edge lines and both lines of the double centre line
    lateral = sorted(float(np.interp(10.0, *np.array(lane["points_xy"]).T)) for lane in lanes)
    gap = cfg.marking_width_m + 0.1
    assert lateral[2] - lateral[1] == pytest.approx(gap, abs=0.01)


# ------------------------------------------------------------------------------------------------ pixels
def test_vehicle_contact_projects_to_the_bottom_of_its_pixels(drive: list[dict[str, SynthFrame]]) -> None:
    """End to end: the contact point through GroundProjector (Intrinsics + Mount from the rig) lands on the
    lowest row of the instance in the instance image, inside its columns."""
    checked = 0
    for step in drive:
        for frame in step.values():
            projector, obstacles = _projector(frame.camera), _obstacles(frame)
            for info in frame.objects:
                o = obstacles[info.instance_id]
                x0, _, x1, y1 = info.bbox
                # far enough that wheels and body stand close to the footprint's outline, wholly in view
                if info.train_id not in VEHICLES or not 12.0 < o["range_m"] < 80.0 or info.occlusion > 0.05:
                    continue
                if x0 == 0 or y1 == SIZE[1] or x1 == SIZE[0]:
                    continue
                u, v = projector.to_pixels(np.array([o["contact_xy"]]))[0]
                assert abs(v - (y1 - 1)) <= 2.5, (frame.camera.name, o)
                assert x0 - 1.0 <= u <= x1, (frame.camera.name, o)
                rows, cols = np.nonzero(frame.instance == info.instance_id)
                assert rows.max() == y1 - 1 and cols.min() == x0
                checked += 1
    assert checked >= 3


@pytest.mark.parametrize(("seed", "sequence"), [(1, 0), (7, 0)])
def test_lane_polylines_project_onto_lane_marking_pixels(seed: int, sequence: int) -> None:
    """Solid lines sampled within 30 m land on lane-marking pixels wherever the road there is not hidden."""
    cfg = dataclasses.replace(describe_sequence(seed, sequence), edge_lines=True)
    (step,) = _render(seed, sequence, 1, config=cfg)
    frame = step["front"]
    projector = _projector(frame.camera)
    on_marking = seen = 0
    for lane in frame.ground_truth["lanes"]:
        if lane["style"] != "solid":  # dashes leave gaps the polyline spans
            continue
        points = np.array(lane["points_xy"])
        points = points[(points[:, 0] > 2.0) & (np.hypot(*points.T) < 30.0)]
        pixels = np.round(projector.to_pixels(points)).astype(int)
        inside = (pixels[:, 0] >= 0) & (pixels[:, 0] < SIZE[0]) & (pixels[:, 1] >= 0) & (pixels[:, 1] < SIZE[1])
        semantic = frame.semantic[pixels[inside, 1], pixels[inside, 0]]
        visible = np.isin(semantic, GROUND)  # not behind a car, a pedestrian ...
        seen += int(visible.sum())
        on_marking += int((semantic[visible] == labels.LANE_MARKING).sum())
    assert seen >= 40
    assert on_marking >= 0.9 * seen


# ------------------------------------------------------------------------------------------------ motion
def test_velocities_agree_with_positions_over_time(drive: list[dict[str, SynthFrame]]) -> None:
    """velocity_xy_mps is the rate of change of centre_xy in the moving base_link: compare with the finite
    difference over one frame (0.1 s) against the mean of the two frames' velocities."""
    first, second = _obstacles(drive[0]["front"]), _obstacles(drive[1]["front"])
    dt = (drive[1]["front"].stamp_ns - drive[0]["front"].stamp_ns) / 1e9
    compared = 0
    for instance in set(first) & set(second):
        a, b = first[instance], second[instance]
        moved = (np.array(b["centre_xy"]) - np.array(a["centre_xy"])) / dt
        mean = 0.5 * (np.array(a["velocity_xy_mps"]) + np.array(b["velocity_xy_mps"]))
        assert np.linalg.norm(moved - mean) <= 0.02 * np.linalg.norm(mean) + 0.02, (instance, moved, mean)
        compared += 1
    assert compared >= 5


def test_relative_and_ground_velocities_obey_rigid_frame_kinematics(drive: list[dict[str, SynthFrame]]) -> None:
    """v_relative = v_ground - v_ego - omega x r in base_link (the ego moves along its x axis)."""
    for step in drive:
        truth = step["front"].ground_truth
        speed, omega = truth["ego"]["speed_mps"], truth["ego"]["yaw_rate_rps"]
        for o in truth["obstacles"]:
            x, y = o["centre_xy"]
            vx, vy = o["velocity_over_ground_xy_mps"]
            expected = np.array([vx - speed + omega * y, vy - omega * x])
            np.testing.assert_allclose(o["velocity_xy_mps"], expected, atol=0.02)


def test_ego_speed_and_yaw_rate_match_its_poses(drive: list[dict[str, SynthFrame]]) -> None:
    (x0, y0, h0), (x1, y1, h1) = drive[0]["front"].ego_pose, drive[1]["front"].ego_pose
    dt = 0.1
    ego = [step["front"].ground_truth["ego"] for step in drive]
    assert math.hypot(x1 - x0, y1 - y0) / dt == pytest.approx(np.mean([e["speed_mps"] for e in ego]), rel=0.01)
    assert (h1 - h0) / dt == pytest.approx(np.mean([e["yaw_rate_rps"] for e in ego]), abs=2e-3)


def test_rider_and_motorcycle_are_two_obstacles_on_one_footprint() -> None:
    (step,) = _render(5, 0, 1, variety=True)
    obstacles = step["front"].ground_truth["obstacles"]
    riders = [o for o in obstacles if o["class_name"] == "rider"]
    motorcycles = {o["track_id"]: o for o in obstacles if o["class_name"] == "motorcycle"}
    assert riders
    for rider in riders:
        motorcycle = motorcycles[rider["track_id"] + 1]  # numbered rider first, then its motorcycle
        for key in ("centre_xy", "heading_rad", "contact_xy", "velocity_xy_mps", "velocity_over_ground_xy_mps"):
            assert rider[key] == motorcycle[key]


# ------------------------------------------------------------------------------------------------ outputs
def test_cityscapes_folder_holds_the_geometry_and_reads_back(tmp_path: Path) -> None:
    write_synthetic(tmp_path, fmt="cityscapes", sequences=1, frames=2, width=96, height=48, seed=3,
                    cameras=("front", "rear"), split="val", show_progress=False)
    rendered = list(render_sequence(seed=3, sequence=0, num_frames=2, width=96, height=48,
                                    cameras=("front", "rear")))
    for step in rendered:
        for camera, frame in step.items():
            path = geometry_path(tmp_path, "val", city_name(camera), 0, frame.index)
            assert path == (tmp_path / "gtGeometry" / "val" / city_name(camera) /
                            f"{city_name(camera)}_000000_{frame.index:06d}_gtGeometry.json")
            assert read_ground_truth(path) == frame.ground_truth


def test_malformed_geometry_files_name_the_file_and_the_problem(tmp_path: Path) -> None:
    (step,) = _render(3, 0, 1)
    truth = step["front"].ground_truth
    assert truth["obstacles"], "the check of obstacle fields needs one"

    def write(name: str, data: object) -> Path:
        path = tmp_path / name
        path.write_text(data if isinstance(data, str) else json.dumps(data))
        return path

    with pytest.raises(DatasetError, match=r"missing\.json: cannot be read"):
        read_ground_truth(tmp_path / "missing.json")
    with pytest.raises(DatasetError, match=r"cut\.json: not JSON"):
        read_ground_truth(write("cut.json", json.dumps(truth)[:100]))
    with pytest.raises(DatasetError, match=r"list\.json: .*the file should be an object"):
        read_ground_truth(write("list.json", [1, 2]))
    with pytest.raises(DatasetError, match=r"no_lanes\.json: .*lacks lanes"):
        read_ground_truth(write("no_lanes.json", {k: v for k, v in truth.items() if k != "lanes"}))
    with pytest.raises(DatasetError, match=r"frame\.json: .*frame_id should be 'base_link', got 'map'"):
        read_ground_truth(write("frame.json", {**truth, "frame_id": "map"}))
    bad_lane = {**truth, "lanes": [{**truth["lanes"][0], "style": "dotted"}]}
    with pytest.raises(DatasetError, match=r"style\.json: .*lanes\[0\]\.style should be one of solid, dashed"):
        read_ground_truth(write("style.json", bad_lane))
    bad_point = {**truth, "obstacles": [{**truth["obstacles"][0], "contact_xy": [1.0]}]}
    with pytest.raises(DatasetError, match=r"point\.json: .*obstacles\[0\]\.contact_xy should be \[x, y\] numbers"):
        read_ground_truth(write("point.json", bad_point))
    extra = {**truth, "ego": {**truth["ego"], "pitch": 0.0}}
    with pytest.raises(DatasetError, match=r"extra\.json: .*ego has unknown keys pitch"):
        read_ground_truth(write("extra.json", extra))


def test_bag_carries_the_geometry_topics_and_the_rig(tmp_path: Path) -> None:
    cameras = ("front", "rear")
    write_synthetic(tmp_path, fmt="bag", sequences=1, frames=2, width=96, height=48, seed=3, cameras=cameras,
                    show_progress=False)
    bag = bag_path(tmp_path, 0)
    rendered = {step["front"].stamp_ns: step for step in render_sequence(
        seed=3, sequence=0, num_frames=2, width=96, height=48, cameras=cameras)}
    topics = bag_topics(bag)
    assert topics[GROUND_TRUTH_LANES_TOPIC] == ("seg_perception_msgs/msg/LaneBoundaryArray", 2)
    assert topics[GROUND_TRUTH_OBSTACLES_TOPIC] == ("seg_perception_msgs/msg/ObstacleList", 2)

    seen = set()
    for topic, log_ns, msg in read_messages(bag, [GROUND_TRUTH_LANES_TOPIC, GROUND_TRUTH_OBSTACLES_TOPIC]):
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        assert stamp == log_ns and msg.header.frame_id == "base_link"
        truth = rendered[stamp]["front"].ground_truth
        if topic == GROUND_TRUTH_LANES_TOPIC:
            assert [b.style for b in msg.boundaries] == [lane["style"] for lane in truth["lanes"]]
            for boundary, lane in zip(msg.boundaries, truth["lanes"], strict=True):
                points = np.array([[p.x, p.y, p.z] for p in boundary.points])
                np.testing.assert_allclose(points[:, :2], lane["points_xy"])
                assert not points[:, 2].any() and boundary.confidence == 1.0 and boundary.camera == ""
                assert boundary.length_m == pytest.approx(np.hypot(*np.diff(points[:, :2], axis=0).T).sum())
        else:
            assert msg.ground_frame_id == "base_link" and (msg.image_width, msg.image_height) == (0, 0)
            assert [o.instance_id for o in msg.obstacles] == [o["instance_id"] for o in truth["obstacles"]]
            for o, expected in zip(msg.obstacles, truth["obstacles"], strict=True):
                assert (o.track_id, o.class_id, o.class_name) == (
                    expected["track_id"], expected["train_id"], expected["class_name"])
                assert o.has_position and o.has_velocity and o.score == 1.0 and o.velocity_samples == 0
                np.testing.assert_allclose([o.position.x, o.position.y, o.position.z], [*expected["contact_xy"], 0])
                np.testing.assert_allclose([o.velocity.x, o.velocity.y], expected["velocity_xy_mps"])
                assert o.range_m == pytest.approx(expected["range_m"], rel=1e-6)
        seen.add((topic, stamp))
    assert len(seen) == 4

    metadata = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    meta = json.loads(metadata["custom_data"]["seg_perception.synth"])
    camera = next(iter(rendered.values()))["rear"].camera
    assert set(meta["rig"]) == set(cameras)
    assert meta["rig"]["rear"] == {"x": 0.0, "y": 0.0, "z": camera.mount_height_m, "roll": 0.0,
                                   "pitch": math.radians(camera.pitch_deg), "yaw": math.pi}
    assert Mount(**meta["rig"]["front"]).yaw == 0.0

    from seg_perception.replay.play import default_topics

    types = {topic: msgtype for topic, (msgtype, _) in topics.items()}
    assert GROUND_TRUTH_LANES_TOPIC not in default_topics(types)  # ground truth is not camera data to play
