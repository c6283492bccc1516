"""Training and validation data: any mix of Cityscapes, BDD100K and synthetic folders, as torch tensors.

A dataset is named on the command line as ``KIND:PATH:SPLIT`` (``cityscapes:/data/cs:train``,
``synthetic:data/synth:train`` -- our synthetic folders use the Cityscapes layout -- or
``bdd100k:/data/bdd:train:10k`` / ``...:100k``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from seg_perception.datasets import bdd100k, cityscapes, labels
from seg_perception.datasets.targets import CENTER_SIGMA_PX, instance_targets

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
KINDS = ("cityscapes", "synthetic", "bdd100k")


@dataclass(frozen=True)
class SampleRef:
    """One sample of one dataset; small and picklable for DataLoader workers."""

    kind: str
    sample: cityscapes.CityscapesSample | bdd100k.Bdd100kSample

    def load(self) -> dict[str, np.ndarray]:
        if self.kind == "bdd100k":
            return bdd100k.load_sample(self.sample)
        return cityscapes.load_sample(self.sample)


def parse_data_spec(spec: str) -> list[SampleRef]:
    """``KIND:PATH:SPLIT[:SUBSET]`` -> sample references; DatasetError/ValueError name what is wrong."""
    parts = spec.split(":")
    if len(parts) not in (3, 4) or parts[0] not in KINDS:
        raise ValueError(f"dataset {spec!r}: expected KIND:PATH:SPLIT with KIND one of {', '.join(KINDS)} "
                         "(bdd100k takes :10k or :100k after the split)")
    kind, path, split = parts[:3]
    if kind == "bdd100k":
        subset = parts[3] if len(parts) == 4 else "10k"
        if subset not in ("10k", "100k"):
            raise ValueError(f"dataset {spec!r}: BDD100K subset must be 10k or 100k")
        return [SampleRef(kind, s) for s in bdd100k.find_samples(path, split, subset)]  # type: ignore[arg-type]
    if len(parts) == 4:
        raise ValueError(f"dataset {spec!r}: only bdd100k takes a subset")
    return [SampleRef(kind, s) for s in cityscapes.find_samples(Path(path), split)]


@dataclass(frozen=True)
class Augmentation:
    """Multi-scale random crop, horizontal flip and colour jitter (training only)."""

    crop_size: tuple[int, int]  # (width, height) of the training crops
    scale_range: tuple[float, float] = (0.5, 2.0)  # relative to the model input size
    flip: bool = True
    color_jitter: float = 0.3  # brightness/contrast/saturation strength


class PanopticDataset(Dataset):
    """Returns dicts of tensors: image (3,H,W) uint8 RGB, jitter (3,) colour factors (brightness, contrast,
    saturation; 1 = unchanged), semantic (H,W) int64 with 255 = ignore, center (1,H,W), offset (2,H,W),
    offset_weight (1,H,W) and center_weight (1,H,W), both 0 where instances are unannotated.

    The colour jitter and the normalisation are left to ``prepare_images``, on the training device: in
    float32 on the host they were the largest part of a worker's time per sample.
    """

    def __init__(
        self, refs: list[SampleRef], *, input_size: tuple[int, int], augmentation: Augmentation | None = None,
        mean: tuple[float, float, float] = IMAGENET_MEAN, std: tuple[float, float, float] = IMAGENET_STD,
        seed: int = 0,
    ) -> None:
        if not refs:
            raise ValueError("empty dataset")
        self.refs = refs
        self.input_size = input_size
        self.augmentation = augmentation
        self.mean, self.std = mean, std  # applied by prepare_images, on the training device
        self.seed = seed
        self.epoch = 0
        # The Gaussian is defined at 2048-px-wide Cityscapes; keep its size relative to the image.
        self.center_sigma = max(1.5, CENTER_SIGMA_PX * input_size[0] / 2048)

    def __len__(self) -> int:
        return len(self.refs)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        arrays = self.refs[index].load()
        rng = np.random.default_rng((self.seed, self.epoch, index))
        image, semantic = arrays["image"], arrays["train_ids"]
        instances = arrays.get("instance_ids")
        has_instances = instances is not None
        if instances is None:
            instances = np.zeros(semantic.shape, np.int32)

        scale = rng.uniform(*self.augmentation.scale_range) if self.augmentation else 1.0
        width = max(8, round(self.input_size[0] * scale))
        height = max(8, round(self.input_size[1] * scale))
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
        semantic = cv2.resize(semantic, (width, height), interpolation=cv2.INTER_NEAREST)
        instances = cv2.resize(instances, (width, height), interpolation=cv2.INTER_NEAREST)

        if self.augmentation:
            image, semantic, instances = self._crop(rng, image, semantic, instances)
            if self.augmentation.flip and rng.random() < 0.5:
                image, semantic, instances = image[:, ::-1], semantic[:, ::-1], instances[:, ::-1]
        jitter = self._jitter_factors(rng)

        targets = instance_targets(np.ascontiguousarray(instances), sigma=self.center_sigma)
        annotated = np.float32(has_instances)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "jitter": torch.tensor(jitter, dtype=torch.float32),
            "semantic": torch.from_numpy(np.ascontiguousarray(semantic).astype(np.int64)),
            "center": torch.from_numpy(targets.center)[None],
            "offset": torch.from_numpy(targets.offset),
            "offset_weight": torch.from_numpy(targets.offset_weight)[None] * annotated,
            "center_weight": torch.full((1, *semantic.shape), annotated),
        }

    def _crop(self, rng: np.random.Generator, image: np.ndarray, semantic: np.ndarray, instances: np.ndarray):
        crop_w, crop_h = self.augmentation.crop_size
        height, width = semantic.shape
        pad_h, pad_w = max(0, crop_h - height), max(0, crop_w - width)
        if pad_h or pad_w:  # pad with ignore so padding never teaches a class
            image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)))
            semantic = np.pad(semantic, ((0, pad_h), (0, pad_w)), constant_values=labels.IGNORE_TRAIN_ID)
            instances = np.pad(instances, ((0, pad_h), (0, pad_w)))
            height, width = semantic.shape
        y0 = int(rng.integers(0, height - crop_h + 1))
        x0 = int(rng.integers(0, width - crop_w + 1))
        window = (slice(y0, y0 + crop_h), slice(x0, x0 + crop_w))
        return image[window], semantic[window], instances[window]

    def _jitter_factors(self, rng: np.random.Generator) -> tuple[float, float, float]:
        strength = self.augmentation.color_jitter if self.augmentation else 0.0
        if strength <= 0:
            return (1.0, 1.0, 1.0)
        return tuple(float(rng.uniform(1 - strength, 1 + strength)) for _ in range(3))  # type: ignore[return-value]


def prepare_images(images: torch.Tensor, jitter: torch.Tensor, mean: tuple[float, float, float],
                   std: tuple[float, float, float]) -> torch.Tensor:
    """(N, 3, H, W) uint8 and (N, 3) jitter factors -> the normalised float32 batch, on their device.

    Brightness scales the image, contrast stretches it about its mean, saturation about each pixel's grey;
    the result is clipped and truncated to whole 8-bit levels, as a jittered uint8 image would be, then
    normalised. Images with factors of exactly 1 pass through unchanged.
    """
    pixels = images.float()
    brightness, contrast, saturation = (jitter[:, i].view(-1, 1, 1, 1) for i in range(3))
    out = pixels * brightness
    mean_level = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean_level) * contrast + mean_level
    grey = out.mean(dim=1, keepdim=True)
    out = ((out - grey) * saturation + grey).clamp_(0, 255).floor_()
    identity = (jitter == 1).all(dim=1).view(-1, 1, 1, 1)
    out = torch.where(identity, pixels, out)
    mean_t = torch.tensor(mean, device=images.device).view(1, 3, 1, 1) * 255
    std_t = torch.tensor(std, device=images.device).view(1, 3, 1, 1) * 255
    return (out - mean_t) / std_t


def worker_init(worker_id: int) -> None:
    """One OpenCV thread per DataLoader worker: the workers already fill the cores (measured +38 % images/s
    with 14 workers on 16 cores)."""
    cv2.setNumThreads(1)
