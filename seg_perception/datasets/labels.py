"""The project's label space: the 19 Cityscapes trainIds plus one lane-marking class.

Cityscapes itself labels lane markings as ``road``; we add ``lane_marking`` (trainId 19) because
planners need it. Conversions to and from Cityscapes labelIds keep files readable by the official
tools: a labelIds PNG never contains a lane-marking id, the lane mask is stored beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE_TRAIN_ID = 255


@dataclass(frozen=True)
class LabelClass:
    name: str
    train_id: int
    label_id: int  # Cityscapes labelId; -1 where Cityscapes has none
    is_thing: bool  # countable objects that get instance ids
    color: tuple[int, int, int]  # RGB, Cityscapes palette


CLASSES: tuple[LabelClass, ...] = (
    LabelClass("road", 0, 7, False, (128, 64, 128)),
    LabelClass("sidewalk", 1, 8, False, (244, 35, 232)),
    LabelClass("building", 2, 11, False, (70, 70, 70)),
    LabelClass("wall", 3, 12, False, (102, 102, 156)),
    LabelClass("fence", 4, 13, False, (190, 153, 153)),
    LabelClass("pole", 5, 17, False, (153, 153, 153)),
    LabelClass("traffic light", 6, 19, False, (250, 170, 30)),
    LabelClass("traffic sign", 7, 20, False, (220, 220, 0)),
    LabelClass("vegetation", 8, 21, False, (107, 142, 35)),
    LabelClass("terrain", 9, 22, False, (152, 251, 152)),
    LabelClass("sky", 10, 23, False, (70, 130, 180)),
    LabelClass("person", 11, 24, True, (220, 20, 60)),
    LabelClass("rider", 12, 25, True, (255, 0, 0)),
    LabelClass("car", 13, 26, True, (0, 0, 142)),
    LabelClass("truck", 14, 27, True, (0, 0, 70)),
    LabelClass("bus", 15, 28, True, (0, 60, 100)),
    LabelClass("train", 16, 31, True, (0, 80, 100)),
    LabelClass("motorcycle", 17, 32, True, (0, 0, 230)),
    LabelClass("bicycle", 18, 33, True, (119, 11, 32)),
    LabelClass("lane_marking", 19, -1, False, (255, 255, 255)),
)

NUM_CLASSES = len(CLASSES)
CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in CLASSES)
THING_TRAIN_IDS: tuple[int, ...] = tuple(c.train_id for c in CLASSES if c.is_thing)
_BY_NAME = {c.name: c for c in CLASSES}

# Cityscapes labelIds that are evaluated under a trainId; every other labelId (0-6 void/ground,
# 9, 10, 14-16, 18, 29, 30, -1) maps to ignore, as in cityscapesscripts' labels.py.
_LABEL_TO_TRAIN = np.full(256, IGNORE_TRAIN_ID, dtype=np.uint8)
for _c in CLASSES:
    if _c.label_id >= 0:
        _LABEL_TO_TRAIN[_c.label_id] = _c.train_id

_TRAIN_TO_LABEL = np.zeros(256, dtype=np.uint8)  # ignore -> 0 ("unlabeled")
for _c in CLASSES:
    _TRAIN_TO_LABEL[_c.train_id] = _c.label_id if _c.label_id >= 0 else _BY_NAME["road"].label_id

PALETTE = np.zeros((256, 3), dtype=np.uint8)
for _c in CLASSES:
    PALETTE[_c.train_id] = _c.color

ROAD = _BY_NAME["road"].train_id
LANE_MARKING = _BY_NAME["lane_marking"].train_id


def train_id(name: str) -> int:
    """trainId of a class by name; raises KeyError naming the unknown class."""
    try:
        return _BY_NAME[name].train_id
    except KeyError:
        raise KeyError(f"unknown class {name!r}; known: {', '.join(CLASS_NAMES)}") from None


def label_ids_to_train_ids(label_ids: np.ndarray, lane_mask: np.ndarray | None = None) -> np.ndarray:
    """Cityscapes labelIds (uint8) -> our trainIds; lane pixels (if a mask is given) become lane_marking."""
    train = _LABEL_TO_TRAIN[label_ids]
    if lane_mask is not None:
        train = np.where(lane_mask.astype(bool), np.uint8(LANE_MARKING), train)
    return train


def train_ids_to_label_ids(train_ids: np.ndarray) -> np.ndarray:
    """Our trainIds -> Cityscapes labelIds; lane_marking becomes road, as Cityscapes annotates it."""
    return _TRAIN_TO_LABEL[train_ids]


def colorize(train_ids: np.ndarray) -> np.ndarray:
    """HxW trainIds -> HxWx3 RGB using the Cityscapes palette (ignore is black)."""
    return PALETTE[train_ids]
