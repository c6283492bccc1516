"""Camera geometry against the synthetic renderer's own projection (an independent implementation)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from seg_perception.geometry import GeometryError, GroundProjector, Intrinsics, Mount
from seg_perception.synth.camera import camera_model, place_camera


def _rig_geometry(name: str, width: int = 1024, height: int = 512, pitch_deg: float = 2.5):
    model = camera_model(name, width=width, height=height, mount_height_m=1.45, pitch_deg=pitch_deg)
    intrinsics = Intrinsics(width=width, height=height, matrix=model.intrinsic_matrix(), distortion=np.zeros(5))
    mount = Mount(z=model.mount_height_m, pitch=math.radians(model.pitch_deg), yaw=math.radians(model.yaw_deg))
    return model, GroundProjector(intrinsics, mount)


@pytest.mark.parametrize("name", ["front", "front_left", "rear", "right"])
def test_ground_points_round_trip_through_the_renderers_projection(name: str) -> None:
    model, projector = _rig_geometry(name)
    pose = place_camera(model, 0.0, 0.0, 0.0)  # the ego at the origin, heading along x: world = base_link
    heading = math.radians(model.yaw_deg)
    rng = np.random.default_rng(0)
    distance, lateral = rng.uniform(4.0, 80.0, 200), rng.uniform(-0.3, 0.3, 200)
    ground = np.stack([distance * np.cos(heading + lateral), distance * np.sin(heading + lateral)], 1)
    world = np.concatenate([ground, np.zeros((200, 1))], 1)
    pixels = pose.project(pose.to_camera(world))  # the renderer's projection
    error = np.hypot(*(projector.to_ground(pixels) - ground).T)
    assert (error <= 1e-6 * distance).all()
    np.testing.assert_allclose(projector.to_pixels(ground), pixels, atol=1e-6)


def test_above_the_horizon_behind_and_too_far_are_nan() -> None:
    model, projector = _rig_geometry("front", pitch_deg=2.0)
    horizon = model.horizon_row()
    points = projector.to_ground(np.array([[512.0, horizon - 5.0], [512.0, horizon + 0.01], [512.0, 500.0]]))
    assert np.isnan(points[0]).all()  # sky
    assert np.isnan(points[1]).all()  # meets the ground beyond max_range_m (200 m)
    assert np.isfinite(points[2]).all() and 0 < points[2, 0] < 30
    assert np.isnan(projector.to_pixels(np.array([[-10.0, 0.0]]))).all()  # behind a front camera


def test_distortion_is_removed_from_points() -> None:
    matrix = np.array([[500.0, 0.0, 319.5], [0.0, 500.0, 239.5], [0.0, 0.0, 1.0]])
    info = SimpleNamespace(width=640, height=480, k=matrix.ravel(), d=[-0.3, 0.1, 0.001, -0.001, 0.0],
                           distortion_model="plumb_bob")
    intrinsics = Intrinsics.from_camera_info(info)
    projector = GroundProjector(intrinsics, Mount(z=1.6, pitch=math.radians(8)))
    ground = np.array([[5.0, 2.0], [8.0, -3.5], [20.0, 0.0], [4.0, -2.5]])
    pixels = projector.to_pixels(ground)
    straight = GroundProjector(Intrinsics(640, 480, matrix, np.zeros(5)), Mount(z=1.6, pitch=math.radians(8)))
    assert np.abs(pixels - straight.to_pixels(ground)).max() > 5  # the lens moves them
    np.testing.assert_allclose(projector.to_ground(pixels), ground, atol=1e-6)


def test_scaled_intrinsics_see_the_same_ground() -> None:
    _, projector = _rig_geometry("front", width=2048, height=1024)
    half = GroundProjector(projector.intrinsics.scaled_to(1024, 512), projector.mount)
    pixels = np.array([[1000.0, 800.0], [300.0, 1000.0]])
    np.testing.assert_allclose(half.to_ground((pixels + 0.5) / 2 - 0.5), projector.to_ground(pixels), atol=1e-9)


@pytest.mark.parametrize(("fields", "message"), [
    ({"k": [0, 0, 0, 0, 500, 240, 0, 0, 1]}, "fx, fy > 0"),
    ({"distortion_model": "rational_polynomial", "d": [0] * 8}, "not supported"),
    ({"d": [0.1, 0.2]}, "4 or 5 coefficients"),
    ({"k": [500, 0, float("nan"), 0, 500, 240, 0, 0, 1]}, "finite"),
])
def test_bad_camera_info_is_refused_with_a_reason(fields: dict, message: str) -> None:
    info = {"width": 640, "height": 480, "k": [500, 0, 320, 0, 500, 240, 0, 0, 1], "d": [0.0] * 5,
            "distortion_model": "plumb_bob", **fields}
    with pytest.raises(GeometryError, match=message):
        Intrinsics.from_camera_info(SimpleNamespace(**info))
    with pytest.raises(GeometryError, match="above the ground"):
        Mount(z=0.0)


def test_pipeline_obstacles_in_metres_against_the_synthetic_ground_truth() -> None:
    """The demo model on a held-out drive, with the camera's exact geometry: vehicles' contacts against the
    exact ground truth, round trips through the projector, velocities once a track has two positions."""
    from pathlib import Path

    from seg_perception.inference.backends import TorchBackend
    from seg_perception.pipeline.pipeline import CameraFrame, CameraGeometry, PerceptionPipeline, PipelineSettings
    from seg_perception.postprocess.roles import role_mapping_for
    from seg_perception.synth import render_sequence

    backend = TorchBackend(Path(__file__).resolve().parents[1] / "models" / "demo")  # 512x256 input
    card = backend.card
    pipeline = PerceptionPipeline(backend, card, role_mapping_for(card.class_names, card.thing_ids),
                                  PipelineSettings(output_resolution="camera"))
    errors, with_velocity, pixels_only, cut_by_the_bottom = [], 0, 0, 0
    for step in render_sequence(seed=2000, sequence=3, num_frames=8, width=1024, height=512, cameras=("front",)):
        frame = step["front"]
        model = frame.camera
        geometry = CameraGeometry(Intrinsics(model.width, model.height, model.intrinsic_matrix(), np.zeros(5)),
                                  Mount(z=model.mount_height_m, pitch=math.radians(model.pitch_deg)))
        pipeline.set_geometry("front", geometry)
        (result,) = pipeline.process([CameraFrame("front", frame.image, frame.stamp_ns, "front")])
        projector = geometry.projector_for(1024, 512)
        for obstacle in result.obstacles:
            if obstacle.bbox_xywh[1] + obstacle.bbox_xywh[3] >= 512 and obstacle.class_name != "rider":
                cut_by_the_bottom += 1  # its ground contact is below the view: no position
                assert obstacle.ground_xy_m is None and obstacle.velocity_xy_mps is None
            if obstacle.ground_xy_m is None:
                pixels_only += 1
                continue
            x, y = obstacle.ground_xy_m
            assert obstacle.range_m == pytest.approx(math.hypot(x, y))
            assert obstacle.bearing_rad == pytest.approx(math.atan2(y, x))
            # the mask's bottom, below centre (a car's contact is its overhang nearer than its tyres)
            overhang = dict(geometry.overhangs_m).get(obstacle.class_name, 0.0)
            back = projector.to_pixels(np.array([(x + math.copysign(overhang, x), y)]))[0]
            bx, by, bw, bh = obstacle.bbox_xywh
            if obstacle.class_name != "rider":  # a rider's contact is its two-wheeler's (tested below)
                assert bx - 1 <= back[0] <= bx + bw and by + bh - 3 <= back[1] <= by + bh + 1
            with_velocity += obstacle.velocity_xy_mps is not None
            assert (obstacle.velocity_xy_mps is None) == (obstacle.velocity_samples < 2)
            mask = result.instances == obstacle.instance_id
            truth = max(frame.objects, key=lambda o: np.count_nonzero(mask & (frame.instance == o.instance_id)))
            overlap = np.count_nonzero(mask & (frame.instance == truth.instance_id))
            if obstacle.class_name in ("car", "truck", "bus") and overlap > 0.5 * np.count_nonzero(mask):
                true = next(o for o in frame.ground_truth["obstacles"] if o["instance_id"] == truth.instance_id)
                errors.append(math.dist(obstacle.ground_xy_m, true["contact_xy"]) / true["range_m"])
    # 512x256 input here (issue 17's <= 5 % target is for 1024x512 and all classes)
    assert len(errors) >= 20 and float(np.median(errors)) <= 0.11  # stage 7: 0.079, 0.115 without the overhang
    assert with_velocity >= 10
    assert cut_by_the_bottom >= 1  # this drive has obstacles cut by the image's bottom edge
    pipeline.set_geometry("front", None)
    (result,) = pipeline.process([CameraFrame("front", frame.image, frame.stamp_ns + 10**8, "front")])
    assert result.obstacles and all(o.ground_xy_m is None and o.range_m is None for o in result.obstacles)


def _road_mask(name: str, road: tuple[float, float, float, float]) -> np.ndarray:
    """Drivable where the renderer's own plane homography puts a pixel inside the road rectangle
    (x0, x1, y0, y1) of base_link: a mask made without our projector."""
    model = camera_model(name, width=512, height=256, mount_height_m=1.45, pitch_deg=2.5)
    pose = place_camera(model, 0.0, 0.0, 0.0)
    ys, xs = np.mgrid[0:256, 0:512]
    homogeneous = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)]).astype(np.float64)
    ground = pose.plane_homography(0.0) @ homogeneous
    rays = pose.rotation.T @ (np.linalg.inv(model.intrinsic_matrix()) @ homogeneous)
    ahead = rays[2] < 0  # the ray goes down: it meets the ground in front of the camera
    x, y = ground[0] / ground[2], ground[1] / ground[2]
    x0, x1, y0, y1 = road
    inside = ahead & (x >= x0) & (x < x1) & (y >= y0) & (y < y1)
    return inside.reshape(256, 512).astype(np.uint8) * 255


def test_drivable_grid_from_two_cameras_free_occupied_and_unknown() -> None:
    from seg_perception.geometry.grid import FREE, OCCUPIED, UNKNOWN, CameraGridLookup, GridSpec, fuse

    spec = GridSpec(resolution_m=0.5, x_min=-30.0, x_max=30.0, y_min=-10.0, y_max=10.0)
    road = (-40.0, 40.0, -3.5, 3.5)  # a straight road through the ego, 7 m wide
    observations = []
    for name in ("front", "rear"):
        _, projector = _rig_geometry(name, width=512, height=256)
        lookup = CameraGridLookup(projector, spec)
        mask = _road_mask(name, road)
        observations.append(lookup.observe(mask))
    grid = fuse(spec, observations, obstacles=[(12.0, 1.0)])
    assert grid.shape == (spec.height, spec.width) and grid.dtype == np.int8

    def cell(x: float, y: float) -> int:
        return int(grid[int((y - spec.y_min) / 0.5), int((x - spec.x_min) / 0.5)])

    assert cell(20.0, 0.0) == FREE and cell(-20.0, 0.0) == FREE and cell(8.0, -2.9) == FREE  # road, both ways
    assert cell(20.0, 6.0) == OCCUPIED and cell(-15.0, -7.0) == OCCUPIED  # seen beside the road
    assert cell(12.0, 1.0) == OCCUPIED and cell(12.5, 1.5) == OCCUPIED  # the obstacle's footprint
    assert cell(1.0, 9.5) == UNKNOWN  # beside the ego, outside both cameras' 70 degrees
    free = grid == FREE
    xs = spec.x_min + (np.arange(spec.width) + 0.5) * 0.5
    ys = spec.y_min + (np.arange(spec.height) + 0.5) * 0.5
    truth = (np.abs(ys)[:, None] < 3.5) & np.ones_like(xs, bool)[None, :]
    seen = grid != UNKNOWN
    iou = np.count_nonzero(free & truth & seen) / np.count_nonzero((free | truth) & seen)
    assert iou > 0.9  # the cells a camera sees: half-covered edge cells may go either way


def test_obstacle_pixels_are_not_projected_onto_the_road_behind_them() -> None:
    from seg_perception.geometry.grid import UNKNOWN, CameraGridLookup, GridSpec, fuse

    spec = GridSpec(resolution_m=0.5, x_min=0.0, x_max=40.0, y_min=-5.0, y_max=5.0, footprint_m=0.0)
    _, projector = _rig_geometry("front", width=512, height=256)
    lookup = CameraGridLookup(projector, spec)
    drivable = np.full((256, 512), 255, np.uint8)
    blocked = np.zeros((256, 512), np.uint8)
    blocked[:, 200:312] = 255  # a wall of obstacle pixels straight ahead
    grid = fuse(spec, [lookup.observe(drivable, not_ground=blocked)])
    ahead = grid[int(5 / 0.5), int(20 / 0.5)]
    assert ahead == UNKNOWN  # hidden, not free
    with pytest.raises(GeometryError, match="grid lookup made for 512x256"):
        lookup.observe(np.zeros((100, 100), np.uint8))
    with pytest.raises(GeometryError, match="empty"):
        GridSpec(x_min=1.0, x_max=1.0)


def _painted_lines(name: str, lines: list[tuple[float, float, float, float]], size=(1024, 512)) -> np.ndarray:
    """A lane mask with ground lines painted through the renderer's own plane homography: each line is
    (y offset m, width m, dash m, gap m) along x (gap 0: solid)."""
    model = camera_model(name, width=size[0], height=size[1], mount_height_m=1.45, pitch_deg=2.5)
    pose = place_camera(model, 0.0, 0.0, 0.0)
    ys, xs = np.mgrid[0:size[1], 0:size[0]]
    homogeneous = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)]).astype(np.float64)
    ground = pose.plane_homography(0.0) @ homogeneous
    rays = pose.rotation.T @ (np.linalg.inv(model.intrinsic_matrix()) @ homogeneous)
    x, y = ground[0] / ground[2], ground[1] / ground[2]
    mask = np.zeros(xs.size, bool)
    for offset, width, dash, gap in lines:
        on_line = np.abs(y - offset) < width / 2
        if gap > 0:
            on_line &= np.mod(x, dash + gap) < dash
        mask |= on_line & (rays[2] < 0)
    return mask.reshape(size[1], size[0]).astype(np.uint8) * 255


def test_lane_boundaries_in_metres_with_their_style() -> None:
    from seg_perception.geometry.lanes import fit_lane_boundaries

    _, projector = _rig_geometry("front")
    mask = _painted_lines("front", [(1.75, 0.15, 0.0, 0.0), (-1.75, 0.15, 3.0, 6.0), (5.25, 0.15, 0.0, 0.0)])
    boundaries = sorted(fit_lane_boundaries(mask, projector), key=lambda b: -b.coefficients[0])
    assert len(boundaries) == 3
    for boundary, offset, style in zip(boundaries, (5.25, 1.75, -1.75), ("solid", "solid", "dashed"), strict=True):
        assert np.abs(boundary.points_xy[:, 1] - offset).max() < 0.1, (offset, boundary.points_xy)
        assert boundary.points_xy[0, 0] < 10 and boundary.length_m > 15
        assert boundary.style == style and boundary.confidence > 0.5
    # a stop line across the road is not a boundary
    across = mask.copy()
    across |= _painted_lines("front", [(0.0, 6.0, 0.4, 30.0)]) & (np.arange(512)[:, None] > 300)
    assert len(fit_lane_boundaries(across, projector)) == 3


def test_lane_boundaries_alike_from_any_nonzero_mask_type_and_size() -> None:
    from seg_perception.geometry.lanes import fit_lane_boundaries

    _, projector = _rig_geometry("front")
    mask = _painted_lines("front", [(1.75, 0.15, 0.0, 0.0), (-1.75, 0.15, 3.0, 6.0)])
    odd = np.zeros((513, 1025), np.uint8)  # an odd last row and column are left out of the 2x2 pooling
    odd[:512, :1024] = mask

    def summary(boundaries):
        return [(b.coefficients, b.style, b.confidence, b.length_m) for b in boundaries]

    reference = summary(fit_lane_boundaries(mask, projector))
    assert len(reference) == 2
    for other in (mask > 0, mask // 255 * 7, odd):
        assert summary(fit_lane_boundaries(other, projector)) == reference
    for shape in [(1, 10), (10, 1), (0, 0)]:  # too small to pool: nothing, not an error
        assert fit_lane_boundaries(np.ones(shape, np.uint8), projector) == []


def _quaternion_xyzw(rotation: np.ndarray) -> tuple[float, float, float, float]:
    w = math.sqrt(max(0.0, 1 + np.trace(rotation))) / 2
    x = math.copysign(math.sqrt(max(0.0, 1 + rotation[0, 0] - rotation[1, 1] - rotation[2, 2])) / 2,
                      rotation[2, 1] - rotation[1, 2])
    y = math.copysign(math.sqrt(max(0.0, 1 - rotation[0, 0] + rotation[1, 1] - rotation[2, 2])) / 2,
                      rotation[0, 2] - rotation[2, 0])
    z = math.copysign(math.sqrt(max(0.0, 1 - rotation[0, 0] - rotation[1, 1] + rotation[2, 2])) / 2,
                      rotation[1, 0] - rotation[0, 1])
    return x, y, z, w


@pytest.mark.parametrize("mount", [Mount(1.2, -0.3, 1.5, roll=0.02, pitch=0.05, yaw=2.9),
                                   Mount(0.0, 0.0, 1.45, pitch=math.radians(2.0), yaw=math.radians(-55.0)),
                                   Mount(-0.8, 0.4, 2.0, roll=-0.1, pitch=0.3, yaw=-1.2)])
def test_mount_from_a_tf_transform_of_the_optical_frame(mount):
    back = Mount.from_transform((mount.x, mount.y, mount.z), _quaternion_xyzw(mount.rotation()))
    assert np.allclose([back.x, back.y, back.z, back.roll, back.pitch, back.yaw],
                       [mount.x, mount.y, mount.z, mount.roll, mount.pitch, mount.yaw], atol=1e-9)


def test_mount_from_the_usual_forward_optical_frame_and_a_body_frame():
    # the optical frame of a level forward camera, as robot descriptions publish it: rpy (-pi/2, 0, -pi/2)
    level = Mount.from_transform((0.0, 0.0, 1.5), (-0.5, 0.5, -0.5, 0.5))
    assert np.allclose([level.roll, level.pitch, level.yaw], 0.0, atol=1e-12)
    # a body frame (x forward) yawed 90 degrees to the left
    half = math.sqrt(0.5)
    left = Mount.from_transform((0.0, 0.0, 1.5), (0.0, 0.0, half, half), optical=False)
    assert left.yaw == pytest.approx(math.pi / 2) and abs(left.pitch) < 1e-12
    with pytest.raises(GeometryError, match="quaternion"):
        Mount.from_transform((0.0, 0.0, 1.5), (0.0, 0.0, 0.0, 0.0))


def test_a_rider_touches_the_ground_through_the_two_wheeler_under_it() -> None:
    from seg_perception.pipeline.pipeline import PerceptionPipeline

    names = ["road", "person", "rider", "car", "bicycle", "motorcycle"]
    pipeline = SimpleNamespace(card=SimpleNamespace(class_names=names))

    def info(class_id: int, box: tuple[int, int, int, int]) -> SimpleNamespace:
        x, y, w, h = box
        return SimpleNamespace(class_id=class_id, bbox_xywh=box, centroid_xy=(x + w / 2, y + h / 2))

    rider, bike = info(2, (100, 50, 20, 40)), info(4, (95, 75, 30, 30))  # feet at 90, the bike down to 105
    far_rider, far_bike = info(2, (300, 50, 10, 20)), info(5, (400, 60, 20, 20))  # its bike is elsewhere
    person, car = info(1, (200, 40, 10, 40)), info(3, (90, 70, 50, 40))  # a car behind: not a carrier
    carriers = PerceptionPipeline._carriers(pipeline, [rider, bike, far_rider, far_bike, person, car])
    assert carriers == {0: bike}


def test_ground_raised_by_a_sidewalk_is_met_nearer() -> None:
    model = camera_model("front", width=512, height=256, mount_height_m=1.45, pitch_deg=2.0)
    projector = GroundProjector(Intrinsics(512, 256, model.intrinsic_matrix(), np.zeros(5)),
                                Mount(x=1.0, z=1.45, pitch=math.radians(2.0)))
    road = np.array([[12.0, 2.0], [25.0, -3.0]])
    pixels = projector.to_pixels(road)
    raised = projector.to_ground(pixels, np.array([0.15, 0.0]))
    # the same ray meets a plane 0.15 m up at (z - 0.15) / z of the way from the camera
    assert raised[0] == pytest.approx(np.array([1.0, 0.0]) + (1.3 / 1.45) * (road[0] - [1.0, 0.0]))
    assert raised[1] == pytest.approx(road[1])
    assert projector.to_ground(pixels, 0.15) == pytest.approx(np.array([1.0, 0.0]) + (1.3 / 1.45) * (road - [1.0, 0.0]))


def test_people_on_a_raised_sidewalk_are_placed_nearer_with_its_height() -> None:
    """The demo model (1024x512 input) on a held-out drive with sidewalks 8-16 cm high: with a sidewalk height the
    people's ranges come closer to the renderer's distances than with flat ground."""
    from pathlib import Path

    from seg_perception.inference.backends import TorchBackend
    from seg_perception.pipeline.pipeline import CameraFrame, CameraGeometry, PerceptionPipeline, PipelineSettings
    from seg_perception.postprocess.roles import role_mapping_for
    from seg_perception.synth import render_sequence

    backend = TorchBackend(Path(__file__).resolve().parents[1] / "models" / "demo", input_size=(1024, 512))
    card = backend.card
    steps = list(render_sequence(seed=2000, sequence=0, num_frames=6, width=1024, height=512, cameras=("front",)))
    model = steps[0]["front"].camera
    errors = {}
    for height in (0.0, 0.12):
        pipeline = PerceptionPipeline(backend, card, role_mapping_for(card.class_names, card.thing_ids),
                                      PipelineSettings(output_resolution="camera"))
        pipeline.set_geometry("front", CameraGeometry(
            Intrinsics(model.width, model.height, model.intrinsic_matrix(), np.zeros(5)),
            Mount(z=model.mount_height_m, pitch=math.radians(model.pitch_deg)), sidewalk_height_m=height))
        errors[height] = []
        for step in steps:
            frame = step["front"]
            (result,) = pipeline.process([CameraFrame("front", frame.image, frame.stamp_ns, "front")])
            for obstacle in result.obstacles:
                mask = result.instances == obstacle.instance_id
                truth = max(frame.objects, key=lambda o: np.count_nonzero(mask & (frame.instance == o.instance_id)))
                if obstacle.class_name == "person" and obstacle.range_m is not None and truth.distance_m < 40 \
                        and np.count_nonzero(mask & (frame.instance == truth.instance_id)) > 0.5 * mask.sum():
                    errors[height].append((obstacle.range_m - truth.distance_m) / truth.distance_m)
    assert len(errors[0.12]) >= 10
    flat, raised = float(np.median(errors[0.0])), float(np.median(errors[0.12]))
    assert flat > 0.04 and abs(raised) < flat / 2  # flat ground places them too far; the sidewalk height fixes most


def test_riders_get_their_two_wheelers_contact_or_no_position() -> None:
    from seg_perception.geometry.motion import VelocityFilter
    from seg_perception.pipeline.pipeline import CameraFrame, CameraGeometry, Obstacle, PerceptionPipeline

    names = ["road", "person", "rider", "car", "bicycle", "motorcycle"]
    model = camera_model("front", width=512, height=256, mount_height_m=1.45, pitch_deg=2.0)
    geometry = CameraGeometry(Intrinsics(512, 256, model.intrinsic_matrix(), np.zeros(5)),
                              Mount(z=1.45, pitch=math.radians(2.0)))
    pipeline = object.__new__(PerceptionPipeline)  # only what _in_metres reads: no backend needed
    pipeline.card, pipeline.geometry, pipeline.motion = SimpleNamespace(class_names=names), {"front": geometry}, \
        VelocityFilter()

    def info(class_id: int, box: tuple[int, int, int, int]) -> SimpleNamespace:
        x, y, w, h = box
        return SimpleNamespace(class_id=class_id, bbox_xywh=box, centroid_xy=(x + w / 2, y + h / 2))

    infos = [info(2, (100, 120, 20, 40)), info(4, (95, 145, 30, 30)), info(2, (300, 120, 10, 20))]
    obstacles = tuple(Obstacle(instance_id=i + 1, track_id=i + 1, class_id=x.class_id, class_name=names[x.class_id],
                               score=1.0, bbox_xywh=x.bbox_xywh, area_px=1, centroid_xy=x.centroid_xy)
                      for i, x in enumerate(infos))
    frame = CameraFrame("front", np.zeros((256, 512, 3), np.uint8), 0, "front")
    rider, bike, alone = pipeline._in_metres(frame, obstacles, infos, geometry.projector_for(512, 256), (512, 256),
                                             np.zeros((256, 512), np.uint8))
    assert rider.ground_xy_m == pytest.approx(bike.ground_xy_m)  # the bicycle's bottom, not the rider's feet
    assert alone.ground_xy_m is None and alone.range_m is None  # its feet are off the ground: no position


def test_ground_with_steps_is_the_ground_and_the_ground_one_pixel_spans() -> None:
    """Far away a row spans metres along the line of sight, a column centimetres across it."""
    _, projector = _rig_geometry("front")
    pixels = np.array([[512.0, 300.0], [512.0, 270.0]])  # the second farther away
    ground, steps = projector.to_ground_with_steps(pixels, heights=0.1, pixel_size=(2.0, 2.0))
    np.testing.assert_allclose(ground, projector.to_ground(pixels, 0.1))
    row_step, column_step = np.array([0.0, 1.0]), np.array([1.0, 0.0])  # half a 2-px pixel either way
    down = projector.to_ground(pixels + row_step, 0.1) - projector.to_ground(pixels - row_step, 0.1)
    right = projector.to_ground(pixels + column_step, 0.1) - projector.to_ground(pixels - column_step, 0.1)
    np.testing.assert_allclose(steps[:, 0], down)
    np.testing.assert_allclose(steps[:, 1], right)
    row, column = np.hypot(*steps[:, 0].T), np.hypot(*steps[:, 1].T)
    assert (steps[:, 0, 0] < 0).all() and (row > 5 * column).all()  # a row down is nearer, and much longer
    # range per row grows as r^2, per column as r: their ratio as the range
    ranges = np.hypot(*ground.T)
    assert (row[1] / column[1]) / (row[0] / column[0]) == pytest.approx(ranges[1] / ranges[0], rel=0.1)
