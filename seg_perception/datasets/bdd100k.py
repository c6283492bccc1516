"""BDD100K folder layout: semantic (10k), panoptic bitmasks (10k), drivable area and lane marks (100k).

    images/10k/<split>/<name>.jpg        labels/sem_seg/masks/<split>/<name>.png     trainIds, 255 ignore
                                         labels/pan_seg/bitmasks/<split>/<name>.png  RGBA bitmask
    images/100k/<split>/<name>.jpg       labels/drivable/masks/<split>/<name>.png    0 direct, 1 alternative,
                                                                                     2 background
                                         labels/lane/masks/<split>/<name>.png        255 background, else
                                                                                     category | style<<4 | dir<<5

Samples come back in our label space, like Cityscapes samples. Labels a subset lacks are *unknown*,
not background: a 100k image with only drivable and lane masks gets trainIds 255 (ignore) except
drivable pixels (road) and lane-line pixels (lane_marking).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from seg_perception.datasets import labels
from seg_perception.datasets.cityscapes import DatasetError

Subset = Literal["10k", "100k"]

# BDD100K panoptic category id -> our class name (None: void / not in our label space).
_PANOPTIC_CLASSES: dict[int, str | None] = {
    7: "road", 8: "sidewalk", 10: "building", 11: "fence", 15: "wall", 20: "pole", 25: "traffic light",
    26: "traffic sign", 28: "terrain", 29: "vegetation", 30: "sky", 31: "person", 32: "rider", 33: "bicycle",
    34: "bus", 35: "car", 37: "motorcycle", 39: "train", 40: "truck",
}
_PANOPTIC_TO_TRAIN = np.full(256, labels.IGNORE_TRAIN_ID, np.uint8)
_PANOPTIC_TO_LABEL_ID = np.zeros(256, np.int32)
for _bdd_id, _name in _PANOPTIC_CLASSES.items():
    _PANOPTIC_TO_TRAIN[_bdd_id] = labels.train_id(_name)
    _PANOPTIC_TO_LABEL_ID[_bdd_id] = labels.CLASSES[labels.train_id(_name)].label_id
_STUFF_MAX_ID = 30  # BDD100K panoptic ids up to 30 are stuff
_CROWD_BIT, _IGNORE_BIT = 2, 1

# Lane categories that are painted lane lines (not crosswalks, id 0, nor road curbs, id 4).
LANE_LINE_CATEGORIES = (1, 2, 3, 5, 6, 7)
_DRIVABLE_BACKGROUND = 2


@dataclass(frozen=True)
class Bdd100kSample:
    name: str
    image: Path
    semantic: Path | None
    panoptic: Path | None
    drivable: Path | None
    lane: Path | None


def find_samples(root: Path | str, split: str, subset: Subset = "10k") -> list[Bdd100kSample]:
    """Images of a split with at least one label file, sorted by name."""
    root = Path(root)
    image_dir = root / "images" / subset / split
    if not image_dir.is_dir():
        raise DatasetError(f"{image_dir}: not a folder; expected a BDD100K layout images/{subset}/{split}/")
    folders = {
        "semantic": root / "labels" / "sem_seg" / "masks" / split,
        "panoptic": root / "labels" / "pan_seg" / "bitmasks" / split,
        "drivable": root / "labels" / "drivable" / "masks" / split,
        "lane": root / "labels" / "lane" / "masks" / split,
    }
    samples = []
    for image in sorted(image_dir.glob("*.jpg")):
        found = {key: folder / f"{image.stem}.png" for key, folder in folders.items()}
        found = {key: (path if path.is_file() else None) for key, path in found.items()}
        if any(found.values()):
            samples.append(Bdd100kSample(name=image.stem, image=image, **found))
    if not samples:
        raise DatasetError(f"{image_dir}: no .jpg image has a label file under {root / 'labels'}")
    return samples


def _read(path: Path, flags: int, expected_shape: tuple[int, int] | None = None) -> np.ndarray:
    array = cv2.imread(str(path), flags)
    if array is None:
        raise DatasetError(f"{path}: missing or not a readable image")
    if expected_shape is not None and array.shape[:2] != expected_shape:
        raise DatasetError(f"{path}: size {array.shape[1::-1]} differs from its image {expected_shape[::-1]}")
    return array


def decode_panoptic_bitmask(rgba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """BDD100K RGBA bitmask -> (trainIds, Cityscapes-style instanceIds: labelId*1000+k for things, else labelId)."""
    category, attributes = rgba[..., 0], rgba[..., 1]
    annotation = rgba[..., 2].astype(np.int32) * 256 + rgba[..., 3]
    train_ids = _PANOPTIC_TO_TRAIN[category]
    ignored = (attributes & _IGNORE_BIT) > 0
    train_ids = np.where(ignored, np.uint8(labels.IGNORE_TRAIN_ID), train_ids)
    label_ids = _PANOPTIC_TO_LABEL_ID[category]
    is_instance = (category > _STUFF_MAX_ID) & ((attributes & _CROWD_BIT) == 0) & ~ignored & (label_ids > 0)
    instance_ids = np.where(is_instance, label_ids * 1000 + annotation % 1000, label_ids)
    return train_ids, instance_ids.astype(np.int32)


def load_sample(sample: Bdd100kSample) -> dict[str, np.ndarray]:
    """image (RGB), train_ids (unknown = 255), and instance_ids / drivable / lane where the subset has them."""
    bgr = _read(sample.image, cv2.IMREAD_COLOR)
    shape = bgr.shape[:2]
    arrays: dict[str, np.ndarray] = {"image": cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)}
    train_ids = np.full(shape, labels.IGNORE_TRAIN_ID, np.uint8)
    if sample.panoptic is not None:
        rgba = cv2.cvtColor(_read(sample.panoptic, cv2.IMREAD_UNCHANGED, shape), cv2.COLOR_BGRA2RGBA)
        train_ids, arrays["instance_ids"] = decode_panoptic_bitmask(rgba)
    if sample.semantic is not None:
        semantic = _read(sample.semantic, cv2.IMREAD_GRAYSCALE, shape)
        bad = (semantic >= 19) & (semantic != labels.IGNORE_TRAIN_ID)
        if bad.any():
            raise DatasetError(f"{sample.semantic}: values {np.unique(semantic[bad])[:5].tolist()} are not "
                               "BDD100K trainIds (0-18, 255)")
        train_ids = semantic
    if sample.drivable is not None:
        drivable_classes = _read(sample.drivable, cv2.IMREAD_GRAYSCALE, shape)
        drivable = drivable_classes != _DRIVABLE_BACKGROUND
        arrays["drivable"] = drivable
        if sample.semantic is None and sample.panoptic is None:
            train_ids = np.where(drivable, np.uint8(labels.ROAD), train_ids)
    if sample.lane is not None:
        lane_values = _read(sample.lane, cv2.IMREAD_GRAYSCALE, shape)
        lane = (lane_values != 255) & np.isin(lane_values & 0b111, LANE_LINE_CATEGORIES)
        arrays["lane"] = lane
        train_ids = np.where(lane, np.uint8(labels.LANE_MARKING), train_ids)
    arrays["train_ids"] = train_ids
    return arrays
