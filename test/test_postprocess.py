"""Panoptic grouping and role masks on exact inputs (no network): ground truth in, ground truth out."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seg_perception.datasets import labels
from seg_perception.datasets.targets import instance_targets
from seg_perception.models.panoptic import center_peaks
from seg_perception.postprocess.panoptic import PanopticConfig, find_centers, group_batch, group_instances
from seg_perception.postprocess.roles import RoleConfigError, load_role_config, resolve_roles, role_masks
from seg_perception.ros_io.environment import config_file

CAR, PERSON, ROAD, SIDEWALK, POLE = (labels.train_id(n) for n in ("car", "person", "road", "sidewalk", "pole"))
CONFIG = PanopticConfig(thing_ids=labels.THING_TRAIN_IDS, min_area=10)


def _scene() -> tuple[np.ndarray, np.ndarray]:
    """Road with two cars side by side (touching), a person, and a tiny car fragment."""
    semantic = np.full((60, 90), ROAD, np.int64)
    semantic[:10] = SIDEWALK
    instance = np.full((60, 90), 7, np.int32)  # labelId of road for stuff
    blobs = [((20, 40), (10, 30), CAR, 26000), ((20, 40), (30, 55), CAR, 26001), ((5, 30), (70, 76), PERSON, 24003)]
    for (y0, y1), (x0, x1), cls, inst in blobs:
        semantic[y0:y1, x0:x1] = cls
        instance[y0:y1, x0:x1] = inst
    semantic[50:52, 80:83] = CAR  # 6 px: below min_area
    instance[50:52, 80:83] = 26004
    return semantic, instance


def _as_network_outputs(semantic: np.ndarray, instance: np.ndarray):
    targets = instance_targets(instance, sigma=3.0)
    return torch.from_numpy(semantic), torch.from_numpy(targets.center), torch.from_numpy(targets.offset)


def test_ground_truth_targets_group_back_into_the_ground_truth_instances() -> None:
    semantic, instance = _scene()
    sem, center, offset = _as_network_outputs(semantic, instance)
    frame = group_instances(sem, center, offset, CONFIG)

    assert len(frame.infos) == 3  # the 6-px fragment is below min_area
    for info in frame.infos:
        mask = frame.instances.numpy() == info.instance_id
        gt_ids = np.unique(instance[mask])
        assert len(gt_ids) == 1, "an instance mixes ground-truth objects"
        assert mask.sum() == (instance == gt_ids[0]).sum(), "an instance lost pixels"
        expected_class = labels.label_ids_to_train_ids(np.array([gt_ids[0] // 1000], np.uint8))[0]
        assert info.class_id == expected_class
        ys, xs = np.nonzero(mask)
        assert info.bbox_xywh == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
        assert info.area_px == mask.sum()
        assert info.centroid_xy == pytest.approx((xs.mean(), ys.mean()))
        assert info.score == pytest.approx(1.0)
    assert (frame.instances.numpy()[instance == 26004] == 0).all()
    assert (frame.semantic.numpy() == semantic).all(), "exact semantics must not change"
    assert [i.instance_id for i in frame.infos] == [1, 2, 3]


def test_majority_vote_relabels_a_minority_of_wrong_classes() -> None:
    semantic, instance = _scene()
    sem, center, offset = _as_network_outputs(semantic, instance)
    noisy = sem.clone()
    noisy[20:24, 10:30] = labels.train_id("truck")  # 80 of 400 car pixels mislabelled
    frame = group_instances(noisy, center, offset, CONFIG)
    first_car = frame.instances[30, 20]
    assert frame.infos[int(first_car) - 1].class_id == CAR
    assert int(frame.semantic[21, 15]) == CAR


def test_no_centers_or_no_things_give_no_instances() -> None:
    semantic, instance = _scene()
    sem, center, offset = _as_network_outputs(semantic, instance)
    empty = group_instances(sem, torch.zeros_like(center), offset, CONFIG)
    assert empty.infos == () and int(empty.instances.max()) == 0
    stuff_only = torch.full_like(sem, ROAD)
    assert group_instances(stuff_only, center, offset, CONFIG).infos == ()


def test_center_nms_threshold_and_top_k() -> None:
    heat = torch.zeros(50, 50)
    heat[10, 10], heat[11, 11], heat[30, 30], heat[40, 5] = 0.9, 0.8, 0.5, 0.05
    coords, scores = find_centers(heat, PanopticConfig(thing_ids=(1,), nms_kernel=5, center_threshold=0.1))
    assert coords.tolist() == [[10, 10], [30, 30]] and scores.tolist() == pytest.approx([0.9, 0.5])
    coords, _ = find_centers(heat, PanopticConfig(thing_ids=(1,), nms_kernel=5, top_k=1))
    assert coords.tolist() == [[10, 10]]
    with pytest.raises(ValueError, match="nms_kernel"):
        PanopticConfig(thing_ids=(1,), nms_kernel=4)


def test_centre_nms_in_the_graph_finds_the_same_centres() -> None:
    """Deploy graphs zero the non-maxima (center_peaks); grouping then skips its own pooling."""
    torch.manual_seed(0)
    heat = torch.nn.functional.avg_pool2d(torch.rand(1, 1, 64, 96), 5, 1, 2)[0, 0]  # smooth, many local maxima
    pooled = find_centers(heat, PanopticConfig(thing_ids=(1,), center_threshold=0.45))
    in_graph = find_centers(center_peaks(heat[None, None])[0, 0],
                            PanopticConfig(thing_ids=(1,), center_threshold=0.45, peaks_only=True))
    assert len(pooled[0]) > 3
    assert torch.equal(pooled[0], in_graph[0]) and torch.equal(pooled[1], in_graph[1])


def test_batch_matches_single_images() -> None:
    semantic, instance = _scene()
    sem, center, offset = _as_network_outputs(semantic, instance)
    flipped = [t.flip(-1) for t in (sem, center, offset)]
    flipped[2] = flipped[2] * torch.tensor([1.0, -1.0])[:, None, None]  # dx changes sign under a flip
    batch = group_batch(torch.stack([sem, flipped[0]]), torch.stack([center, flipped[1]])[:, None],
                        torch.stack([offset, flipped[2]]), CONFIG)
    assert len(batch) == 2 and len(batch[0].infos) == len(batch[1].infos) == 3
    assert (batch[1].instances.flip(-1) > 0).eq(batch[0].instances > 0).all()


def test_role_masks_from_the_shipped_config() -> None:
    roles = load_role_config(config_file("classes.yaml"))
    mapping = resolve_roles(roles, labels.CLASS_NAMES, labels.THING_TRAIN_IDS)
    assert mapping.drivable == (ROAD, labels.LANE_MARKING)
    assert mapping.missing == {"drivable": ("parking",)}  # not in our label space: skipped, recorded
    assert set(labels.THING_TRAIN_IDS) < set(mapping.obstacles) and POLE in mapping.obstacles
    semantic, _ = _scene()
    semantic[45:47, 0:90] = labels.LANE_MARKING
    semantic[0:5, 0:3] = POLE
    masks = role_masks(torch.from_numpy(semantic)[None], mapping)
    assert masks["drivable"][0].numpy().sum() == np.isin(semantic, [ROAD, labels.LANE_MARKING]).sum()
    assert (masks["lane"][0].numpy() == (semantic == labels.LANE_MARKING)).all()
    assert masks["obstacles"][0, 0, 0] and masks["obstacles"][0, 30, 20] and not masks["obstacles"][0, 45, 0]
    assert not (masks["drivable"] & masks["obstacles"]).any()


def test_a_model_without_lane_class_has_no_lane_role() -> None:
    roles = load_role_config(config_file("classes.yaml"))
    cityscapes_only = labels.CLASS_NAMES[:19]
    mapping = resolve_roles(roles, cityscapes_only, labels.THING_TRAIN_IDS)
    assert mapping.unavailable_roles() == ("lane",)
    masks = role_masks(torch.zeros(1, 4, 4, dtype=torch.long), mapping)
    assert "lane" not in masks, "an unavailable role must not be an empty mask pretending to be a result"


def test_bad_role_config_names_the_file(tmp_path) -> None:
    bad = tmp_path / "classes.yaml"
    bad.write_text("roles: {drivable: road, lane: [], obstacles: {things: true, static: []}}")
    with pytest.raises(RoleConfigError, match=r"classes\.yaml.*drivable"):
        load_role_config(bad)


def test_min_area_scales_with_the_model_input() -> None:
    assert PanopticConfig.for_input((13,), (1024, 512)).min_area == 32
    assert PanopticConfig.for_input((13,), (512, 256)).min_area == 8
    assert PanopticConfig.for_input((13,), (2048, 1024)).min_area == 128
    assert PanopticConfig.for_input((13,), (128, 64)).min_area == 4


def test_an_image_groups_the_same_alone_and_beside_a_busier_one() -> None:
    """The batch is padded to the centre count of its fullest image; padding must not change any result."""
    semantic, instance = _scene()
    sem, center, offset = _as_network_outputs(semantic, instance)
    busy_sem, busy_center, busy_offset = sem.clone(), center.clone(), offset.clone()
    busy_sem[45:60, :] = CAR  # a row of extra cars, each with its own centre
    for x in range(5, 90, 12):
        busy_center[52, x] = 0.9
        busy_offset[:, 45:60, max(0, x - 6):x + 6] = 0.0
    alone = group_instances(sem, center, offset, CONFIG)
    beside = group_batch(torch.stack([busy_sem, sem]), torch.stack([busy_center, center])[:, None],
                         torch.stack([busy_offset, offset]), CONFIG)
    assert len(beside[0].infos) > len(alone.infos) == 3
    assert beside[1].infos == alone.infos
    assert torch.equal(beside[1].instances, alone.instances) and torch.equal(beside[1].semantic, alone.semantic)


def test_equal_centre_scores_are_numbered_in_raster_order() -> None:
    heat = torch.zeros(40, 40)
    heat[30, 5] = heat[5, 30] = heat[5, 10] = heat[20, 20] = 0.7  # saturated peaks tie (e.g. float16 outputs)
    coords, scores = find_centers(heat, PanopticConfig(thing_ids=(1,), peaks_only=True))
    assert coords.tolist() == [[5, 10], [5, 30], [20, 20], [30, 5]] and scores.tolist() == pytest.approx([0.7] * 4)
