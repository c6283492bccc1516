"""Cityscapes folder layout: writing it (synthetic data) and finding/reading samples (real or ours).

Layout, as the official dataset and `cityscapesscripts` expect it::

    leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png     RGB image
    gtFine/<split>/<city>/<stem>_gtFine_labelIds.png                     Cityscapes labelIds (uint8)
    gtFine/<split>/<city>/<stem>_gtFine_instanceIds.png                  labelId*1000+k for things (uint16)
    gtFine/<split>/<city>/<stem>_gtFine_color.png                        colour preview (our trainId palette)
    camera/<split>/<city>/<stem>_camera.json                             intrinsics and mounting

plus two masks of ours beside the gtFine files (Cityscapes annotates lane markings as road):

    gtFine/<split>/<city>/<stem>_gtFine_laneMarkings.png                 0/255
    gtFine/<split>/<city>/<stem>_gtFine_drivable.png                     0/255

and, for synthetic data, lane boundaries and obstacles in metres in base_link (see synth.ground_truth):

    gtGeometry/<split>/<city>/<stem>_gtGeometry.json
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from seg_perception.datasets import labels

IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_IDS_SUFFIX = "_gtFine_labelIds.png"
INSTANCE_IDS_SUFFIX = "_gtFine_instanceIds.png"
COLOR_SUFFIX = "_gtFine_color.png"
LANE_SUFFIX = "_gtFine_laneMarkings.png"
DRIVABLE_SUFFIX = "_gtFine_drivable.png"
CAMERA_SUFFIX = "_camera.json"
GEOMETRY_FOLDER = "gtGeometry"
GEOMETRY_SUFFIX = "_gtGeometry.json"


class DatasetError(ValueError):
    """A dataset folder or file is missing or malformed; the message names the path and the problem."""


def sample_stem(city: str, sequence: int, frame: int) -> str:
    if "_" in city:
        raise ValueError(f"city {city!r} must not contain '_': Cityscapes file names are split on it")
    return f"{city}_{sequence:06d}_{frame:06d}"


@dataclass(frozen=True)
class CityscapesSample:
    """Paths of one annotated image; the optional masks are None where the dataset lacks them."""

    stem: str
    image: Path
    label_ids: Path
    instance_ids: Path | None
    lane: Path | None
    drivable: Path | None

    @property
    def city(self) -> str:
        return self.stem.split("_")[0]


def geometry_path(root: Path | str, split: str, city: str, sequence: int, frame: int) -> Path:
    """Where a sample's ground-truth geometry (lanes and obstacles in metres) lies."""
    stem = sample_stem(city, sequence, frame)
    return Path(root) / GEOMETRY_FOLDER / split / city / f"{stem}{GEOMETRY_SUFFIX}"


def _write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), array):
        raise OSError(f"could not write {path}")


def write_sample(
    root: Path, split: str, city: str, sequence: int, frame: int, *,
    image_rgb: np.ndarray, train_ids: np.ndarray, instance_ids: np.ndarray,
    lane: np.ndarray, drivable: np.ndarray, camera: dict | None = None, geometry: dict | None = None,
) -> CityscapesSample:
    """Write one sample; ``train_ids`` in our label space (lane_marking is stored as road + lane mask).
    ``camera`` and ``geometry`` (JSON-able dicts) go to the camera and gtGeometry files when given."""
    stem = sample_stem(city, sequence, frame)
    image_dir = root / "leftImg8bit" / split / city
    gt_dir = root / "gtFine" / split / city
    sample = CityscapesSample(
        stem=stem, image=image_dir / f"{stem}{IMAGE_SUFFIX}", label_ids=gt_dir / f"{stem}{LABEL_IDS_SUFFIX}",
        instance_ids=gt_dir / f"{stem}{INSTANCE_IDS_SUFFIX}", lane=gt_dir / f"{stem}{LANE_SUFFIX}",
        drivable=gt_dir / f"{stem}{DRIVABLE_SUFFIX}",
    )
    _write_png(sample.image, cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    _write_png(sample.label_ids, labels.train_ids_to_label_ids(train_ids))
    _write_png(sample.instance_ids, instance_ids.astype(np.uint16))
    _write_png(gt_dir / f"{stem}{COLOR_SUFFIX}", cv2.cvtColor(labels.colorize(train_ids), cv2.COLOR_RGB2BGR))
    _write_png(sample.lane, lane.astype(np.uint8) * 255)
    _write_png(sample.drivable, drivable.astype(np.uint8) * 255)
    if camera is not None:
        camera_path = root / "camera" / split / city / f"{stem}{CAMERA_SUFFIX}"
        camera_path.parent.mkdir(parents=True, exist_ok=True)
        camera_path.write_text(json.dumps(camera, indent=2))
    if geometry is not None:
        path = geometry_path(root, split, city, sequence, frame)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(geometry, separators=(",", ":")))  # compact: ~600 numbers a frame
    return sample


def find_samples(root: Path | str, split: str) -> list[CityscapesSample]:
    """All images of a split that have labels, sorted by name.

    Raises DatasetError when the split folder is missing or empty, or an image has no labelIds file.
    """
    root = Path(root)
    image_root = root / "leftImg8bit" / split
    if not image_root.is_dir():
        raise DatasetError(f"{image_root}: not a folder; expected a Cityscapes layout leftImg8bit/{split}/<city>/")
    samples = []
    for image in sorted(image_root.glob(f"*/*{IMAGE_SUFFIX}")):
        stem = image.name[: -len(IMAGE_SUFFIX)]
        gt_dir = root / "gtFine" / split / image.parent.name
        label_ids = gt_dir / f"{stem}{LABEL_IDS_SUFFIX}"
        if not label_ids.is_file():
            raise DatasetError(f"{image}: no labels, expected {label_ids}")

        def optional(suffix: str, folder: Path = gt_dir, stem: str = stem) -> Path | None:
            path = folder / f"{stem}{suffix}"
            return path if path.is_file() else None

        samples.append(CityscapesSample(
            stem=stem, image=image, label_ids=label_ids, instance_ids=optional(INSTANCE_IDS_SUFFIX),
            lane=optional(LANE_SUFFIX), drivable=optional(DRIVABLE_SUFFIX),
        ))
    if not samples:
        raise DatasetError(f"{image_root}: no *{IMAGE_SUFFIX} files in any city folder")
    return samples


def _read(path: Path, flags: int) -> np.ndarray:
    array = cv2.imread(str(path), flags)
    if array is None:
        raise DatasetError(f"{path}: missing or not a readable image")
    return array


def load_sample(sample: CityscapesSample) -> dict[str, np.ndarray]:
    """Arrays of one sample: image (RGB), train_ids (our label space), and instance_ids/lane/drivable if present.

    Where a dataset has no lane masks (real Cityscapes), lane markings stay ``road``: the lane class is
    then unannotated, not absent, and evaluation must treat it so.
    """
    image = cv2.cvtColor(_read(sample.image, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    label_ids = _read(sample.label_ids, cv2.IMREAD_UNCHANGED)
    if label_ids.ndim != 2 or label_ids.dtype != np.uint8:
        raise DatasetError(f"{sample.label_ids}: expected a single-channel uint8 labelIds PNG, "
                           f"got shape {label_ids.shape} dtype {label_ids.dtype}")
    if label_ids.shape != image.shape[:2]:
        raise DatasetError(f"{sample.label_ids}: size {label_ids.shape[::-1]} differs from image {image.shape[1::-1]}")
    arrays = {"image": image}
    lane = None
    if sample.lane is not None:
        lane = _read(sample.lane, cv2.IMREAD_GRAYSCALE) > 0
        arrays["lane"] = lane
    arrays["train_ids"] = labels.label_ids_to_train_ids(label_ids, lane)
    if sample.instance_ids is not None:
        arrays["instance_ids"] = _read(sample.instance_ids, cv2.IMREAD_UNCHANGED).astype(np.int32)
    if sample.drivable is not None:
        arrays["drivable"] = _read(sample.drivable, cv2.IMREAD_GRAYSCALE) > 0
    return arrays
