"""Tests for seg_perception.evaluation: hand-computed cases and a cross-check with the official cityscapesscripts."""

from __future__ import annotations

import json
import math
import multiprocessing
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from seg_perception.datasets import labels
from seg_perception.evaluation import (
    BinaryIoU,
    ConfusionMatrix,
    LaneFScore,
    PanopticQuality,
    YolopSegMetrics,
    binary_iou,
    cityscapes_instance_ids_to_panoptic,
    drivable_area_iou,
    extract_segments,
    id_map_to_rgb,
    lane_fscore,
    lane_iou,
    mask_boundary,
    panoptic_to_cityscapes_instance_ids,
    panoptic_to_coco,
    rgb_to_id_map,
    yolop_batch_metrics,
)

# ---------------------------------------------------------------------------------------------------------------
# Semantic
# ---------------------------------------------------------------------------------------------------------------

GT_2x3 = np.array([[0, 0, 1], [1, 2, 255]])
PRED_2x3 = np.array([[0, 1, 1], [2, 2, 0]])


def test_confusion_matrix_hand_computed() -> None:
    cm = ConfusionMatrix(3)
    cm.update(PRED_2x3, GT_2x3)
    s = cm.compute()
    np.testing.assert_array_equal(s.confusion, [[1, 1, 0], [0, 1, 1], [0, 0, 1]])  # ignored pixel skipped
    np.testing.assert_allclose(s.iou, [1 / 2, 1 / 3, 1 / 2])
    assert s.miou == pytest.approx((1 / 2 + 1 / 3 + 1 / 2) / 3)
    assert s.miou_present == pytest.approx(s.miou)
    assert s.pixel_acc == pytest.approx(3 / 5)
    np.testing.assert_allclose(s.acc, [1 / 2, 1 / 2, 1])
    assert s.mean_acc == pytest.approx(2 / 3)
    assert s.fwiou == pytest.approx(2 / 5 * 1 / 2 + 2 / 5 * 1 / 3 + 1 / 5 * 1 / 2)
    assert s.as_dict()["iou/road"] == pytest.approx(0.5)  # default names from our label space


def test_confusion_matrix_absent_and_false_positive_classes() -> None:
    cm = ConfusionMatrix(5, class_names=("a", "b", "c", "d", "e"))
    pred = PRED_2x3.copy()
    pred[0, 0] = 3  # class 3 predicted on a class-0 pixel, absent from GT; class 4 absent everywhere
    cm.update(pred, GT_2x3)
    s = cm.compute()
    assert np.isnan(s.iou[4]) and s.iou[3] == 0.0
    np.testing.assert_allclose(s.iou[:3], [0.0, 1 / 3, 1 / 2])
    assert s.miou == pytest.approx((0 + 1 / 3 + 1 / 2 + 0) / 4)  # Cityscapes: NaN (class 4) excluded, FP-only 0
    assert s.miou_present == pytest.approx((0 + 1 / 3 + 1 / 2) / 3)  # only classes with GT
    assert np.isnan(s.acc[3]) and s.mean_acc == pytest.approx((0 + 1 / 2 + 1) / 3)


def test_confusion_matrix_invalid_predictions_are_false_negatives() -> None:
    cm = ConfusionMatrix(3)
    cm.update(np.array([[0, 255, -1]]), np.array([[0, 0, 0]]))
    s = cm.compute()
    assert s.iou[0] == pytest.approx(1 / 3) and s.pixel_acc == pytest.approx(1 / 3)
    assert s.invalid_pred.tolist() == [2, 0, 0] and s.gt_pixels.tolist() == [3, 0, 0]


def test_confusion_matrix_rejects_unknown_gt_and_shape_mismatch() -> None:
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="outside"):
        cm.update(np.zeros((1, 2), int), np.array([[0, 7]]))
    with pytest.raises(ValueError, match="shape"):
        cm.update(np.zeros((2, 2), int), np.zeros((2, 3), int))
    with pytest.raises(TypeError):
        cm.update(np.full((1, 2), 0.5), np.zeros((1, 2), int))


def test_confusion_matrix_accumulates_and_accepts_torch() -> None:
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 5, (3, 16, 20))
    gt[:, :2] = 255
    pred = np.where(rng.random(gt.shape) < 0.7, gt, rng.integers(0, 5, gt.shape))
    one = ConfusionMatrix(5)
    one.update(pred, gt)
    per_image = ConfusionMatrix(5)
    for i in range(3):
        per_image.update(torch.from_numpy(pred[i]), torch.from_numpy(gt[i]).to(torch.uint8))
    merged = ConfusionMatrix(5)
    merged.merge(per_image)
    np.testing.assert_array_equal(one.matrix, per_image.matrix)
    np.testing.assert_array_equal(one.matrix, merged.matrix)
    assert one.compute().miou == pytest.approx(per_image.compute().miou)
    # Brute-force reference for the confusion matrix
    valid = gt != 255
    ref = np.zeros((5, 5), int)
    for g, p in zip(gt[valid], pred[valid], strict=True):
        ref[g, p] += 1
    np.testing.assert_array_equal(one.matrix, ref)


# ---------------------------------------------------------------------------------------------------------------
# Panoptic: hand-computed cases (classes: 0 = road (stuff), 1 = car (thing), 2 = person (thing))
# ---------------------------------------------------------------------------------------------------------------


def _pq() -> PanopticQuality:
    return PanopticQuality(num_classes=3, thing_ids=(1, 2), class_names=("road", "car", "person"))


def _blank(h: int = 10, w: int = 10) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((h, w), np.int64), np.zeros((h, w), np.int64)


def test_pq_one_tp_one_fp_one_fn() -> None:
    gt_sem, gt_inst = _blank()
    gt_sem[0:5, 0:5], gt_inst[0:5, 0:5] = 1, 1  # car A, 25 px
    gt_sem[6:8, 6:10], gt_inst[6:8, 6:10] = 1, 2  # car B, 8 px, not predicted -> FN
    pred_sem, pred_inst = _blank()
    pred_sem[0:5, 0:3], pred_inst[0:5, 0:3] = 1, 7  # inside A: IoU 15/25 = 0.6 -> TP
    pred_sem[8:10, 0:4], pred_inst[8:10, 0:4] = 1, 9  # on road -> FP
    pq = _pq()
    pq.update(pred_sem, pred_inst, gt_sem, gt_inst)
    r = pq.compute()
    car = r["per_class"][1]
    assert (car["tp"], car["fp"], car["fn"]) == (1, 1, 1)
    assert car["sq"] == pytest.approx(0.6) and car["rq"] == pytest.approx(0.5) and car["pq"] == pytest.approx(0.3)
    road_iou = 59 / (67 + 77 - 59)  # GT road 67 px, predicted road 77 px, 59 in common
    assert r["per_class"][0]["pq"] == pytest.approx(road_iou)
    assert r["things"] == {"pq": pytest.approx(0.3), "sq": pytest.approx(0.6), "rq": pytest.approx(0.5), "n": 1}
    assert r["stuff"]["pq"] == pytest.approx(road_iou) and r["stuff"]["n"] == 1
    assert r["all"]["pq"] == pytest.approx((0.3 + road_iou) / 2) and r["all"]["n"] == 2
    assert math.isnan(r["per_class"][2]["pq"])  # person: no segment anywhere, excluded from the means


def test_pq_iou_threshold_is_strict_and_matching_unique() -> None:
    gt_sem, gt_inst = _blank()
    gt_sem[0:2, 0:10], gt_inst[0:2, 0:10] = 1, 1  # 20 px
    pred_sem, pred_inst = _blank()
    pred_sem[0:1, 0:10], pred_inst[0:1, 0:10] = 1, 1  # 10 px inside: IoU exactly 0.5 -> no match
    pq = _pq()
    pq.update(pred_sem, pred_inst, gt_sem, gt_inst)
    car = pq.compute()["per_class"][1]
    assert (car["tp"], car["fp"], car["fn"]) == (0, 1, 1) and car["sq"] == 0.0 and car["pq"] == 0.0


def test_pq_void_pixels_leave_the_union_and_can_excuse_false_positives() -> None:
    gt_sem, gt_inst = _blank()
    gt_sem[0:4, 0:5], gt_inst[0:4, 0:5] = 1, 1  # car 20 px
    gt_sem[4:6, 0:5] = 255  # VOID 10 px below it
    gt_sem[7:10, 0:4] = 255  # VOID 12 px
    pred_sem, pred_inst = _blank()
    pred_sem[0:6, 0:5], pred_inst[0:6, 0:5] = 1, 3  # car + all the void below: IoU 20/(30+20-20-10) = 1
    pred_sem[7:9, 2:7], pred_inst[7:9, 2:7] = 1, 4  # 10 px, 4 on void -> not mostly void -> FP
    pred_sem[9:10, 0:7], pred_inst[9:10, 0:7] = 1, 5  # 7 px, 4 on void -> mostly void -> ignored
    pred_sem[5, 6:8] = 255  # predicted VOID: no segment, and a road FN pixel-wise does not matter to PQ
    pq = _pq()
    pq.update(pred_sem, pred_inst, gt_sem, gt_inst)
    car = pq.compute()["per_class"][1]
    assert (car["tp"], car["fp"], car["fn"]) == (1, 1, 0)
    assert car["iou_sum"] == pytest.approx(1.0)


def test_pq_crowd_regions() -> None:
    gt_sem, gt_inst = _blank()
    gt_sem[0:3, 0:4] = 1  # car crowd: thing pixels without instance id (Cityscapes convention), 12 px
    gt_sem[5:7, 0:5], gt_inst[5:7, 0:5] = 1, 1  # car instance, 10 px
    gt_sem[5:7, 5:10] = 1  # a second crowd patch of the same class (same crowd region), 10 px
    pred_sem, pred_inst = _blank()
    pred_sem[0:2, 0:4], pred_inst[0:2, 0:4] = 1, 1  # 8 px on the crowd, 2 on road -> ignored
    pred_sem[2:3, 0:4], pred_inst[2:3, 0:4] = 2, 1  # person on the car crowd: crowd of another class -> FP
    pred_sem[5:7, 0:10], pred_inst[5:7, 0:10] = 1, 2  # instance + 10 crowd px: IoU 10/20 = 0.5 -> no match;
    # then 10/20 on crowd is not > 0.5 -> FP, and the GT instance is a FN
    pq = _pq()
    pq.update(pred_sem, pred_inst, gt_sem, gt_inst)
    r = pq.compute()["per_class"]
    assert (r[1]["tp"], r[1]["fp"], r[1]["fn"]) == (0, 1, 1)
    assert (r[2]["tp"], r[2]["fp"], r[2]["fn"]) == (0, 1, 0)
    # A crowd region alone, unpredicted: no FN; predicted exactly: no TP, no FP.
    for pred_on_crowd in (False, True):
        gt_sem, gt_inst = _blank()
        gt_sem[0:3, 0:4] = 1
        pred_sem, pred_inst = _blank()
        if pred_on_crowd:
            pred_sem[0:3, 0:4], pred_inst[0:3, 0:4] = 1, 5
        pq = _pq()
        pq.update(pred_sem, pred_inst, gt_sem, gt_inst)
        car = pq.compute()["per_class"][1]
        assert (car["tp"], car["fp"], car["fn"]) == (0, 0, 0) and math.isnan(car["pq"])


def test_pq_explicit_crowd_mask_and_prediction_zero_instances() -> None:
    gt_sem, gt_inst = _blank()
    gt_sem[0:4, 0:5], gt_inst[0:4, 0:5] = 1, 1
    crowd = np.zeros((10, 10), bool)
    crowd[0:4, 0:5] = True  # the instance is declared crowd
    crowd[8:10, :] = True  # on stuff: no effect
    pred_sem, pred_inst = _blank()
    pred_sem[0:4, 0:5] = 1  # prediction thing pixels with instance 0: one ordinary segment
    pq = _pq()
    pq.update(pred_sem, pred_inst, gt_sem, gt_inst, gt_crowd_mask=crowd)
    r = pq.compute()["per_class"]
    assert (r[1]["tp"], r[1]["fp"], r[1]["fn"]) == (0, 0, 0)
    assert (r[0]["tp"], r[0]["fp"], r[0]["fn"]) == (1, 0, 0)  # road untouched by the crowd mask
    pq = _pq()
    pq.update(pred_sem, pred_inst, gt_sem, gt_inst)  # without the mask: a plain TP with IoU 1
    assert pq.compute()["per_class"][1]["tp"] == 1


def test_pq_accumulates_over_images_and_accepts_torch() -> None:
    gt_sem, gt_inst = _blank()
    gt_sem[0:5, 0:5], gt_inst[0:5, 0:5] = 1, 1
    pred_sem, pred_inst = _blank()
    pred_sem[0:5, 0:3], pred_inst[0:5, 0:3] = 1, 1
    pq = _pq()
    pq.update(torch.from_numpy(pred_sem), torch.from_numpy(pred_inst).int(), gt_sem, gt_inst)
    pq.update(gt_sem, gt_inst, gt_sem, gt_inst)  # perfect image
    car = pq.compute()["per_class"][1]
    assert (car["tp"], car["fp"], car["fn"]) == (2, 0, 0) and car["sq"] == pytest.approx(0.8)
    other = _pq()
    other.update(np.zeros((10, 10), int), np.zeros((10, 10), int), gt_sem, gt_inst)  # missed car
    pq.merge(other)
    car = pq.compute()["per_class"][1]
    assert (car["tp"], car["fn"]) == (2, 1) and pq.num_images == 3
    pq.update(np.full((10, 10), 255), pred_inst, np.full((10, 10), 255), gt_inst)  # all VOID: nothing counted
    assert pq.compute()["per_class"][1]["tp"] == 2 and pq.num_images == 4
    with pytest.raises(ValueError, match="outside"):
        pq.update(np.full((10, 10), 3), pred_inst, gt_sem, gt_inst)


def test_extract_segments_matches_brute_force() -> None:
    rng = np.random.default_rng(1)
    sem = rng.choice([0, 1, 2, 255], size=(12, 14))
    inst = rng.integers(0, 4, size=sem.shape)
    seg = extract_segments(sem, inst, num_classes=3, thing_ids=(1, 2), zero_instance_is_crowd=True)
    expected = {}
    for y, x in np.ndindex(sem.shape):
        s, i = int(sem[y, x]), int(inst[y, x])
        if s == 255:
            assert seg.index[y, x] == -1
            continue
        key = (s, 0, False) if s == 0 else (s, 0, True) if i == 0 else (s, i, False)
        expected[key] = expected.get(key, 0) + 1
        k = seg.index[y, x]
        assert (seg.cls[k], seg.instance[k], bool(seg.crowd[k])) == key
    rows = zip(seg.cls, seg.instance, seg.crowd, seg.area, strict=True)
    got = {(int(c), int(i), bool(cr)): int(a) for c, i, cr, a in rows}
    assert got == expected
    # Huge instance ids take the np.unique path instead of bincount: same segments, same PQ.
    big = extract_segments(sem, inst * 10**7, num_classes=3, thing_ids=(1, 2), zero_instance_is_crowd=True)
    np.testing.assert_array_equal(big.index, seg.index)
    np.testing.assert_array_equal(big.instance, seg.instance * 10**7)
    pred_sem = np.where(rng.random(sem.shape) < 0.2, 0, sem)
    results = []
    for scale in (1, 10**7):
        pq = _pq()
        pq.update(pred_sem, inst * scale, sem, inst * scale)
        results.append(pq.compute()["per_class"])
    assert results[0] == results[1]


def test_cityscapes_instance_id_conversions_round_trip() -> None:
    ids = np.array([[7, 7, 26000, 26001], [24, 24, 24002, 0], [29000, 23, 33000, 1]])
    p = cityscapes_instance_ids_to_panoptic(ids)
    assert p.semantic.tolist() == [[0, 0, 13, 13], [11, 11, 11, 255], [255, 10, 18, 255]]
    assert p.instance.tolist() == [[0, 0, 1, 2], [0, 0, 3, 0], [0, 0, 1, 0]]
    assert p.crowd.tolist() == [[False, False, False, False], [True, True, False, False], [False] * 4]
    back = panoptic_to_cityscapes_instance_ids(p.semantic, p.instance, p.crowd)
    assert back.tolist() == [[7, 7, 26000, 26001], [24, 24, 24002, 0], [0, 23, 33000, 0]]  # caravan -> void
    lane = np.zeros(ids.shape, bool)
    lane[0, 0] = True
    assert cityscapes_instance_ids_to_panoptic(ids, lane).semantic[0, 0] == labels.LANE_MARKING


def test_panoptic_to_coco_segments_and_rgb() -> None:
    sem = np.array([[0, 0, 13, 13], [19, 11, 11, 255]])  # road, car, lane (-> road category), person, void
    inst = np.array([[0, 0, 4, 4], [0, 2, 0, 0]])
    id_map, infos = panoptic_to_coco(sem, inst)
    assert [(s["category_id"], s["area"], s["iscrowd"]) for s in infos] == [(7, 3, 0), (24, 1, 0), (24, 1, 0),
                                                                            (26, 2, 0)]
    assert infos[3]["bbox"] == [2, 0, 2, 1]
    assert id_map[1, 3] == 0 and id_map[0, 0] == id_map[1, 0]  # lane merged into the road segment
    np.testing.assert_array_equal(rgb_to_id_map(id_map_to_rgb(id_map * 70001)), id_map * 70001)
    _, gt_infos = panoptic_to_coco(sem, inst, zero_instance_is_crowd=True)
    assert [s["iscrowd"] for s in gt_infos] == [0, 1, 0, 0]
    void_map, void_infos = panoptic_to_coco(np.full((3, 4), 255), np.zeros((3, 4), int))
    assert void_infos == [] and not void_map.any()


# ---------------------------------------------------------------------------------------------------------------
# Binary IoU, lane F-score, YOLOP protocol
# ---------------------------------------------------------------------------------------------------------------


def test_binary_iou() -> None:
    pred = np.array([[1, 1, 0, 0]])
    gt = np.array([[1, 0, 1, 0]])
    assert binary_iou(pred, gt) == pytest.approx(1 / 3)
    assert drivable_area_iou(pred, gt, valid=np.array([[1, 1, 0, 1]])) == pytest.approx(1 / 2)
    assert lane_iou(pred, np.array([[1, 255, 1, 0]]), ignore_index=255) == pytest.approx(1 / 2)
    assert lane_iou(pred.astype(np.uint8) * 255, gt * 255) == pytest.approx(1 / 3)  # 0/255 masks, no ignore
    assert math.isnan(binary_iou(np.zeros((2, 2)), np.zeros((2, 2))))
    acc = BinaryIoU()
    acc.update(torch.tensor(pred), torch.tensor(gt).bool())
    acc.update(gt, gt)
    s = acc.compute()
    assert (s.tp, s.fp, s.fn, s.tn) == (3, 1, 1, 3)
    assert s.iou == pytest.approx(3 / 5) and s.precision == pytest.approx(3 / 4) and s.accuracy == pytest.approx(6 / 8)
    assert drivable_area_iou(np.stack([pred, gt]), np.stack([gt, gt])) == pytest.approx(s.iou)


def _vertical_line(col: int, width: int, shape: tuple[int, int] = (100, 100)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[10:90, col : col + width] = True
    return m


def test_lane_fscore_tolerances() -> None:
    gt = _vertical_line(50, 2)
    one = lane_fscore(_vertical_line(51, 2), gt)  # shifted by 1 px
    assert one[1].fscore == pytest.approx(1.0)
    three = lane_fscore(_vertical_line(53, 1), _vertical_line(50, 1))  # 1-px lines 3 px apart
    assert three[1].fscore == 0.0 and three[2].fscore == 0.0 and three[5].fscore == pytest.approx(1.0)
    partial = lane_fscore(_vertical_line(52, 2), gt)  # shift 2: half of each line is within 1 px
    assert partial[1].precision == pytest.approx(0.5) and partial[1].recall == pytest.approx(0.5)
    assert partial[2].fscore == pytest.approx(1.0)
    # Diagonal neighbours are sqrt(2) away: not within 1 px (disk(1) is a cross), within 2 px.
    a, b = np.zeros((5, 5), bool), np.zeros((5, 5), bool)
    a[1, 1], b[2, 2] = True, True
    r = lane_fscore(b, a, thresholds=(1, 2))
    assert r[1].fscore == 0.0 and r[2].fscore == 1.0


def test_lane_fscore_empty_masks_follow_bdd100k() -> None:
    empty, gt = np.zeros((20, 20), bool), _vertical_line(5, 2, (20, 20))
    r = lane_fscore(empty, empty)[1]
    assert (r.precision, r.recall, r.fscore) == (1.0, 1.0, 1.0)
    r = lane_fscore(empty, gt)[1]
    assert (r.precision, r.recall, r.fscore) == (1.0, 0.0, 0.0)
    r = lane_fscore(gt, empty)[1]
    assert (r.precision, r.recall, r.fscore) == (0.0, 1.0, 0.0)


def test_lane_tolerance_equals_disk_dilation() -> None:
    """Our distance-transform test is BDD100K's binary_dilation(mask, disk(d)) (disk: dx^2 + dy^2 <= d^2)."""
    rng = np.random.default_rng(2)
    gt = rng.random((40, 50)) < 0.02
    pred = rng.random((40, 50)) < 0.03
    for d in (1, 2, 5):
        yy, xx = np.mgrid[-d : d + 1, -d : d + 1]
        disk = (yy**2 + xx**2 <= d * d).astype(np.uint8)
        gt_dil = cv2.dilate(gt.astype(np.uint8), disk, borderValue=0).astype(bool)
        pred_dil = cv2.dilate(pred.astype(np.uint8), disk, borderValue=0).astype(bool)
        precision = (pred & gt_dil).sum() / pred.sum()
        recall = (gt & pred_dil).sum() / gt.sum()
        r = lane_fscore(pred, gt, thresholds=(d,))[d]
        assert r.precision == pytest.approx(precision) and r.recall == pytest.approx(recall)


def test_lane_fscore_boundary_mode() -> None:
    square = np.zeros((40, 40), bool)
    square[10:30, 10:30] = True
    ring = mask_boundary(square)
    assert ring.sum() == 76 and not ring[11:29, 11:29].any()
    holed = square.copy()
    holed[18:22, 18:22] = False  # a 4x4 hole: its 16 rim pixels are 7+ px from the outer boundary
    r = lane_fscore(holed, square, mode="boundary")
    p = 76 / 92
    assert r[5].precision == pytest.approx(p) and r[5].recall == 1.0
    assert r[5].fscore == pytest.approx(2 * p / (p + 1))
    assert lane_fscore(holed, square)[1].precision == 1.0  # mask mode: every predicted pixel is a GT pixel


def test_lane_fscore_accumulator() -> None:
    gt = np.stack([_vertical_line(50, 1), _vertical_line(50, 1)])
    pred = np.stack([_vertical_line(53, 1), _vertical_line(50, 1)])
    acc = LaneFScore()
    acc.update(torch.from_numpy(pred), torch.from_numpy(gt))  # a batch of two images
    acc.update(np.zeros((100, 100), bool), np.zeros((100, 100), bool))  # empty/empty: F = 1
    r = acc.compute()
    assert r["num_images"] == 3
    assert r["fscore_1px"] == pytest.approx(2 / 3) and r["fscore_2px"] == pytest.approx(2 / 3)
    assert r["fscore_5px"] == pytest.approx(1.0)
    assert r["precision_1px"] == pytest.approx(2 / 3) and r["recall_1px"] == pytest.approx(2 / 3)


def test_yolop_protocol() -> None:
    gt = np.array([[1, 0], [0, 0]])
    pred = np.array([[1, 1], [0, 0]])
    m = yolop_batch_metrics(pred, gt)
    assert m["acc"] == pytest.approx(3 / 4) and m["iou"] == pytest.approx(1 / 2)
    assert m["miou"] == pytest.approx((2 / 3 + 1 / 2) / 2) and m["line_acc"] == pytest.approx(1.0)
    acc = YolopSegMetrics()
    acc.update(pred, gt)  # batch of one
    acc.update(np.zeros((2, 2, 2)), np.stack([gt, gt]))  # batch of two: nothing found, one confusion matrix
    r = acc.compute()
    assert r["num_images"] == 3
    assert r["line_acc"] == pytest.approx((1 * 1 + 2 * 0) / 3)
    assert r["iou"] == pytest.approx((1 * 0.5 + 2 * 0) / 3)
    assert r["miou"] == pytest.approx((1 * m["miou"] + 2 * (6 / 8) / 2) / 3)
    assert r["acc"] == pytest.approx((1 * 0.75 + 2 * 0.75) / 3)
    assert yolop_batch_metrics(pred, gt, valid=np.array([[1, 0], [1, 1]]))["iou"] == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------------------------
# Cross-check with the official cityscapesscripts evaluators
# ---------------------------------------------------------------------------------------------------------------

H, W = 128, 256
CITY = "testcity"
LID = {name: i for name, i in [
    ("unlabeled", 0), ("ego", 1), ("static", 4), ("ground", 6), ("road", 7), ("sidewalk", 8), ("parking", 9),
    ("building", 11), ("wall", 12), ("fence", 13), ("pole", 17), ("sign", 20), ("vegetation", 21), ("terrain", 22),
    ("sky", 23), ("person", 24), ("rider", 25), ("car", 26), ("truck", 27), ("bus", 28), ("caravan", 29),
    ("bicycle", 33),
]}  # fmt: skip


def _make_gt(rng: np.random.Generator, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Cityscapes labelIds (uint8) and instanceIds (int32) of one synthetic street scene."""
    lab = np.full((H, W), LID["sky"], np.int32)
    lab[rng.integers(20, 35) :, :] = LID["building"]
    x = int(rng.integers(0, W - 80))
    cv2.ellipse(lab, (x + 40, 55), (40, 25), 0, 0, 360, LID["vegetation"], -1)
    lab[70:, :] = LID["sidewalk"]
    road_top = int(rng.integers(78, 90))
    pts = np.array([[40, H], [W - 40, H], [W // 2 + 20, road_top], [W // 2 - 20, road_top]], np.int32)
    lab[road_top:, 30 : W - 30] = LID["road"]
    cv2.fillPoly(lab, [pts], LID["road"])
    lab[95:110, 0:25] = LID["terrain"]
    if index % 2:
        lab[60:72, 150:230] = LID["fence"]
    if index % 3 == 0:
        lab[50:70, 0:40] = LID["wall"]
    lab[30:80, 200:203] = LID["pole"]
    lab[28:36, 196:208] = LID["sign"]
    lab[H - 6 :, :] = LID["ego"]  # void
    lab[100:108, 230:250] = LID["parking"]  # not evaluated -> void
    vx, vy = int(rng.integers(0, W - 20)), int(rng.integers(36, 60))
    lab[vy : vy + 6, vx : vx + 14] = LID["unlabeled"]
    lab[62:68, 100:112] = LID["static"]
    ids = lab.copy()
    counters: dict[int, int] = {}

    def add(name: str, y0: int, x0: int, h: int, w: int, ellipse: bool = False) -> None:
        lid = LID[name]
        mask = np.zeros((H, W), np.uint8)
        if ellipse:
            cv2.ellipse(mask, (x0 + w // 2, y0 + h // 2), (w // 2, h // 2), 0, 0, 360, 1, -1)
        else:
            mask[y0 : y0 + h, x0 : x0 + w] = 1
        k = counters.get(lid, 0)
        counters[lid] = k + 1
        lab[mask > 0] = lid
        ids[mask > 0] = lid * 1000 + k

    for _ in range(int(rng.integers(2, 5))):
        add("car", int(rng.integers(78, 100)), int(rng.integers(30, W - 70)), int(rng.integers(12, 22)),
            int(rng.integers(24, 40)), ellipse=bool(rng.integers(0, 2)))
    for _ in range(int(rng.integers(1, 4))):
        add("person", int(rng.integers(60, 80)), int(rng.integers(0, W - 10)), int(rng.integers(18, 30)),
            int(rng.integers(5, 10)))
    add("bicycle", 88, int(rng.integers(5, 40)), 10, 16)
    if index % 2 == 0:
        add("truck", 72, int(rng.integers(60, 150)), 26, 44)
    if index % 3 == 1:
        add("rider", 70, 20, 20, 8)
        add("bus", 50, 100, 30, 60)
    if index in (0, 3):  # a crowd of people: person pixels without instance id
        lab[66:84, 110:150] = LID["person"]
        ids[66:84, 110:150] = LID["person"]
    if index == 4:  # a crowd of cars
        lab[84:96, 180:228] = LID["car"]
        ids[84:96, 180:228] = LID["car"]
    if index == 2:  # caravan: an instance class that is not evaluated -> void
        lab[75:95, 200:240] = LID["caravan"]
        ids[75:95, 200:240] = LID["caravan"] * 1000
    return lab.astype(np.uint8), ids


def _make_prediction(rng: np.random.Generator, sem: np.ndarray, inst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Perturbed copy of a GT in our format: moved/eroded/dropped/relabelled/extra instances, noise, void."""
    car, person, truck, road = labels.train_id("car"), labels.train_id("person"), labels.train_id("truck"), 0
    sem = sem.copy()
    sem[sem == 255] = road  # void GT pixels get some prediction
    out_inst = np.zeros_like(inst)
    thing = np.isin(sem, labels.THING_TRAIN_IDS)
    keys = np.unique(sem[thing].astype(np.int64) * 10000 + inst[thing])
    base = sem.copy()
    base[thing] = road
    out_sem = base.copy()
    new_ids = rng.permutation(len(keys) + 50)[: len(keys)] + 1
    for key, new_id in zip(keys, new_ids, strict=True):
        cls, i = int(key // 10000), int(key % 10000)
        mask = (sem == cls) & (inst == i)
        if i == 0:  # crowd: predict it as two instances of its class
            _, xs = np.nonzero(mask)
            left = mask & (np.arange(W)[None, :] < xs.mean())
            out_sem[mask], out_inst[left], out_inst[mask & ~left] = cls, new_id, new_id + 100
            continue
        action = rng.choice(["keep", "shift", "shift_far", "erode", "drop", "relabel"], p=[.35, .2, .1, .15, .1, .1])
        if action == "drop":
            continue
        m8 = mask.astype(np.uint8)
        if action in ("shift", "shift_far"):
            s = int(rng.integers(1, 4)) if action == "shift" else int(rng.integers(8, 14))
            m8 = np.roll(m8, (int(rng.choice([-1, 1])) * s, s), axis=(0, 1))
        elif action == "erode":
            m8 = cv2.erode(m8, np.ones((5, 5), np.uint8))
        if action == "relabel":
            cls = truck if cls == car else car
        out_sem[m8 > 0], out_inst[m8 > 0] = cls, new_id
    for j in range(int(rng.integers(1, 3))):  # extra (false positive) instances
        y, x = int(rng.integers(70, 100)), int(rng.integers(0, W - 30))
        out_sem[y : y + 12, x : x + 20], out_inst[y : y + 12, x : x + 20] = (car, 900 + j) if j == 0 else (person, 950)
    # Stuff: a class missed entirely, a swapped patch, noise patches, sparse pixel noise, and predicted VOID.
    if rng.random() < 0.5:
        out_sem[out_sem == labels.train_id("pole")] = labels.train_id("building")
    y, x = int(rng.integers(70, 100)), int(rng.integers(0, W - 60))
    patch = out_sem[y : y + 20, x : x + 60]
    patch[patch == road] = labels.train_id("sidewalk")
    for _ in range(4):
        y, x = int(rng.integers(0, H - 10)), int(rng.integers(0, W - 10))
        out_sem[y : y + 10, x : x + 10] = rng.choice([1, 2, 8, 9, 10])
        out_inst[y : y + 10, x : x + 10] = 0
    noise = rng.random((H, W)) < 0.01
    out_sem[noise] = rng.integers(0, 11, int(noise.sum()))
    out_inst[noise & ~np.isin(out_sem, labels.THING_TRAIN_IDS)] = 0
    out_sem[0:6, 0:30] = 255
    out_inst[out_sem == 255] = 0
    return out_sem.astype(np.uint8), out_inst.astype(np.int32)


def _write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


@pytest.fixture(scope="module")
def cityscapes_set(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """6 GT images in the official layout + predictions as labelIds PNGs and as COCO panoptic PNG + JSON."""
    root = tmp_path_factory.mktemp("cityscapes")
    rng = np.random.default_rng(2024)
    gt_label_files, pred_label_files, preds, annotations = [], [], [], []
    (root / "pred_panoptic").mkdir()
    for n in range(6):
        stem = f"{CITY}_000000_{n:06d}"
        lab, ids = _make_gt(rng, n)
        gt_dir = root / "gtFine" / "val" / CITY
        _write_png(gt_dir / f"{stem}_gtFine_labelIds.png", lab)
        _write_png(gt_dir / f"{stem}_gtFine_instanceIds.png", ids.astype(np.uint16))
        gt = cityscapes_instance_ids_to_panoptic(ids)
        pred_sem, pred_inst = _make_prediction(rng, gt.semantic, gt.instance)
        preds.append((pred_sem, pred_inst))
        pred_file = root / "results" / f"{stem}_pred_labelIds.png"
        _write_png(pred_file, labels.train_ids_to_label_ids(pred_sem))
        id_map, infos = panoptic_to_coco(pred_sem, pred_inst)
        _write_png(root / "pred_panoptic" / f"{stem}_pred_panoptic.png", id_map_to_rgb(id_map)[..., ::-1])
        annotations.append({"image_id": stem, "file_name": f"{stem}_pred_panoptic.png", "segments_info": infos})
        gt_label_files.append(str(gt_dir / f"{stem}_gtFine_labelIds.png"))
        pred_label_files.append(str(pred_file))
    (root / "pred_panoptic.json").write_text(json.dumps({"annotations": annotations}))
    return {"root": root, "gt_label_files": gt_label_files, "pred_label_files": pred_label_files, "preds": preds}


def _ours(data: dict) -> tuple[ConfusionMatrix, PanopticQuality]:
    """Our metrics on the GT files as read back from disk and the prediction arrays that were written."""
    cm, pq = ConfusionMatrix(labels.NUM_CLASSES), PanopticQuality()
    for gt_file, (pred_sem, pred_inst) in zip(data["gt_label_files"], data["preds"], strict=True):
        label_ids = cv2.imread(gt_file, cv2.IMREAD_UNCHANGED)
        instance_ids = cv2.imread(gt_file.replace("labelIds", "instanceIds"), cv2.IMREAD_UNCHANGED)
        assert label_ids.dtype == np.uint8 and instance_ids.dtype == np.uint16
        cm.update(pred_sem, labels.label_ids_to_train_ids(label_ids))
        gt = cityscapes_instance_ids_to_panoptic(instance_ids)
        pq.update(pred_sem, pred_inst, gt.semantic, gt.instance, gt.crowd)
    return cm, pq


def test_miou_matches_official_pixel_evaluator(cityscapes_set: dict) -> None:
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as official

    args = official.args
    saved = dict(vars(args))
    args.quiet, args.JSONOutput, args.evalInstLevelScore = True, False, False
    try:
        res = official.evaluateImgLists(cityscapes_set["pred_label_files"], cityscapes_set["gt_label_files"], args)
    finally:
        vars(args).clear()
        vars(args).update(saved)
    ours = _ours(cityscapes_set)[0].compute()
    print(f"\nmIoU ours {100 * ours.miou:.4f}  official {100 * res['averageScoreClasses']:.4f}")
    assert abs(100 * ours.miou - 100 * res["averageScoreClasses"]) < 0.1
    for c in labels.CLASSES[:19]:
        official_iou, our_iou = res["classScores"][c.name], ours.iou[c.train_id]
        assert math.isnan(official_iou) == math.isnan(our_iou), c.name
        if not math.isnan(our_iou):
            assert abs(100 * our_iou - 100 * official_iou) < 0.1, c.name
    assert np.isnan(ours.iou[labels.LANE_MARKING])  # no lane in this data: excluded as the official one would
    # The data exercise both kinds of NaN-free classes and absent ones; the scores are far from trivial.
    assert 0.3 < ours.miou < 0.95 and np.isnan(ours.iou).sum() >= 2
    assert not math.isnan(ours.miou_present)


def test_pq_matches_official_panoptic_evaluator(cityscapes_set: dict) -> None:
    from cityscapesscripts.evaluation.evalPanopticSemanticLabeling import evaluatePanoptic
    from cityscapesscripts.preparation.createPanopticImgs import convert2panoptic

    root = cityscapes_set["root"]
    convert2panoptic(cityscapesPath=str(root / "gtFine"), outputFolder=str(root), setNames=["val"])
    try:
        res = evaluatePanoptic(str(root / "cityscapes_panoptic_val.json"), str(root / "cityscapes_panoptic_val"),
                               str(root / "pred_panoptic.json"), str(root / "pred_panoptic"),
                               str(root / "pq_result.json"))
    finally:
        for child in multiprocessing.active_children():  # the evaluator's Pool is closed but never joined
            child.join(timeout=30)
    ours = _ours(cityscapes_set)[1].compute()
    lines = []
    for ours_key, off_key in (("all", "All"), ("things", "Things"), ("stuff", "Stuff")):
        assert ours[ours_key]["n"] == res[off_key]["n"], off_key
        for m in ("pq", "sq", "rq"):
            lines.append(f"{off_key} {m}: ours {100 * ours[ours_key][m]:.4f} official {100 * res[off_key][m]:.4f}")
            assert abs(100 * ours[ours_key][m] - 100 * res[off_key][m]) < 0.1, lines[-1]
    print("\n" + "\n".join(lines))
    for c in labels.CLASSES[:19]:
        official_c = res["per_class"][c.label_id]
        ours_c = ours["per_class"][c.train_id]
        if math.isnan(ours_c["pq"]):
            assert official_c == {"pq": 0.0, "sq": 0.0, "rq": 0.0}, c.name
        else:
            for m in ("pq", "sq", "rq"):
                assert abs(100 * ours_c[m] - 100 * official_c[m]) < 0.1, (c.name, m)
    # The generated data exercise TP, FP (incl. ignored crowd/void ones) and FN for things and stuff.
    things = [ours["per_class"][t] for t in labels.THING_TRAIN_IDS]
    assert sum(t["tp"] for t in things) >= 10 and sum(t["fp"] for t in things) >= 5
    assert sum(t["fn"] for t in things) >= 5 and ours["things"]["n"] >= 5 and ours["stuff"]["n"] >= 8
    assert 0.2 < ours["all"]["pq"] < 0.9
