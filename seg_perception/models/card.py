"""Model cards: the JSON beside every checkpoint that says what the weights are and how they were made.

A checkpoint folder holds ``model.safetensors`` and ``model_card.json``. Loading checks the card
(format, classes, input size, weights hash) before any weight is touched, then loads strictly.
The card must carry the sha256 of its weights, and the weights must be a file inside the card's folder:
whatever runs a checkpoint hashes the file and compares, so a card never vouches for other weights.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

CARD_FORMAT = "seg_perception.model_card/1"
CARD_FILE = "model_card.json"
WEIGHTS_FILE = "model.safetensors"
ARCHITECTURES = ("ddrnet23_slim", "bisenetv2")
WEIGHTS_SUFFIX = ".safetensors"  # cards name safetensors only: .pt/.pth are pickles, read only when converting
_SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_CLASSES = 256


class ModelCardError(ValueError):
    """A model card is missing, malformed or disagrees with its weights; the message names the file."""


@dataclass(frozen=True)
class ClassEntry:
    id: int
    name: str
    is_thing: bool


@dataclass(frozen=True)
class ModelCard:
    arch: str
    instance_head: bool
    classes: tuple[ClassEntry, ...]
    input_width: int
    input_height: int
    mean: tuple[float, float, float]  # RGB, on 0-1 pixel values
    std: tuple[float, float, float]
    weights_file: str = WEIGHTS_FILE
    weights_sha256: str = ""
    instance_stride: int = 8  # 4: the instance head reads the backbone's 1/4 features (cards without it: 8)
    weights_dtype: str = "float16"
    training: dict[str, Any] = field(default_factory=dict)  # command, data, recipe, duration
    metrics: dict[str, Any] = field(default_factory=dict)  # values with the data and command that measured them
    format: str = CARD_FORMAT

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes)

    @property
    def thing_ids(self) -> tuple[int, ...]:
        return tuple(c.id for c in self.classes if c.is_thing)

    @property
    def input_size(self) -> tuple[int, int]:
        return self.input_width, self.input_height

    def summary(self) -> str:
        return (f"{self.arch} {self.input_width}x{self.input_height}, {self.num_classes} classes"
                f"{' + instances' if self.instance_head else ''}")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def card_to_dict(card: ModelCard) -> dict[str, Any]:
    data = asdict(card)
    data["classes"] = [asdict(c) for c in card.classes]
    return data


def save_card(card: ModelCard, path: Path) -> None:
    """Write a card; one that would not load again (no weights hash, say) is refused before anything is written."""
    text = json.dumps(card_to_dict(card), indent=2) + "\n"
    card_from_dict(json.loads(text), path)  # as load_card will read it: tuples become lists
    path.write_text(text)


def _require(data: dict, key: str, kind: type | tuple[type, ...], path: Path) -> Any:
    if key not in data:
        raise ModelCardError(f"{path}: missing key {key!r}")
    value = data[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ModelCardError(f"{path}: {key!r} must be {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def load_card(path: Path | str) -> ModelCard:
    """Read and validate a card (a file, or a checkpoint folder holding model_card.json)."""
    path = Path(path)
    if path.is_dir():
        path = path / CARD_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelCardError(f"{path}: no model card (every checkpoint needs its {CARD_FILE})") from None
    except (OSError, json.JSONDecodeError) as error:
        raise ModelCardError(f"{path}: not readable JSON: {error}") from error
    return card_from_dict(data, path)


def card_from_dict(data: Any, path: Path | str) -> ModelCard:
    """Validate card data; ``path`` names where it came from in every error."""
    if not isinstance(data, dict) or data.get("format") != CARD_FORMAT:
        raise ModelCardError(f"{path}: not a model card of format {CARD_FORMAT!r}")
    arch = _require(data, "arch", str, path)
    if arch not in ARCHITECTURES:
        raise ModelCardError(f"{path}: unknown arch {arch!r}; known: {', '.join(ARCHITECTURES)}")
    raw_classes = _require(data, "classes", list, path)
    classes = []
    for i, entry in enumerate(raw_classes):
        if not isinstance(entry, dict) or entry.get("id") != i or not isinstance(entry.get("name"), str):
            raise ModelCardError(f"{path}: classes[{i}] must be {{id: {i}, name: str, is_thing: bool}}, got {entry!r}")
        classes.append(ClassEntry(id=i, name=entry["name"], is_thing=bool(entry.get("is_thing", False))))
    if len(classes) < 2 or len({c.name for c in classes}) != len(classes):
        raise ModelCardError(f"{path}: needs at least two classes with unique names")
    if len(classes) > MAX_CLASSES:
        raise ModelCardError(f"{path}: {len(classes)} classes, at most {MAX_CLASSES} (class ids are uint8 maps)")
    width, height = _require(data, "input_width", int, path), _require(data, "input_height", int, path)
    if width < 32 or height < 32:
        raise ModelCardError(f"{path}: input size {width}x{height} is too small (minimum 32x32)")
    mean, std = _require(data, "mean", list, path), _require(data, "std", list, path)
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ModelCardError(f"{path}: mean and std need three values (RGB), std > 0")
    return ModelCard(
        arch=arch, instance_head=_require(data, "instance_head", bool, path), classes=tuple(classes),
        input_width=width, input_height=height, mean=tuple(mean), std=tuple(std),
        weights_file=_check_weights_file(_require(data, "weights_file", str, path), path),
        weights_sha256=_check_sha256(data, path), weights_dtype=data.get("weights_dtype", "float16"),
        instance_stride=_check_instance_stride(data, path),
        training=data.get("training", {}), metrics=data.get("metrics", {}),
    )


def _check_instance_stride(data: dict, path: Path | str) -> int:
    stride = data.get("instance_stride", 8)  # cards written before the stride-4 head had stride 8
    if isinstance(stride, bool) or stride not in (4, 8):
        raise ModelCardError(f"{path}: 'instance_stride' must be 4 or 8, got {stride!r}")
    return stride


def _check_sha256(data: dict, path: Path | str) -> str:
    if "weights_sha256" not in data:
        raise ModelCardError(f"{path}: missing key 'weights_sha256' (the sha256 of the weights file); "
                             "a card without it cannot vouch for any weights")
    value = data["weights_sha256"]
    if not isinstance(value, str) or not _SHA256.fullmatch(value.lower()):
        raise ModelCardError(f"{path}: 'weights_sha256' must be 64 hex digits (a sha256), got {value!r}")
    return value.lower()


def _check_weights_file(value: str, path: Path | str) -> str:
    """A relative ``.safetensors`` path that stays inside the card's folder (checked before any file is touched)."""
    name = PurePosixPath(value)
    if not value or name.is_absolute() or ".." in name.parts or name.suffix != WEIGHTS_SUFFIX:
        raise ModelCardError(f"{path}: weights_file {value!r} must be a relative path to a {WEIGHTS_SUFFIX} file "
                             "inside the checkpoint folder (no absolute path, no '..')")
    return value


def card_file_of(card_path: Path | str) -> Path:
    """The card file of a checkpoint folder, or the card file itself."""
    card_path = Path(card_path)
    return card_path / CARD_FILE if card_path.is_dir() else card_path


def locate_weights(card_path: Path | str, card: ModelCard) -> Path:
    """The weights file a card names: a regular file inside the card's folder, or ModelCardError.

    Returns the resolved path, so a symlink swapped after this check still cannot redirect the read.
    """
    card_file = card_file_of(card_path)
    _check_weights_file(card.weights_file, card_file)  # cards built in code have not been through card_from_dict
    folder = card_file.parent.resolve()
    path = card_file.parent / card.weights_file
    resolved = path.resolve()
    if not resolved.is_relative_to(folder):
        raise ModelCardError(f"{card_file}: weights_file {card.weights_file!r} resolves to {resolved}, "
                             f"outside the checkpoint folder {folder}")
    if not resolved.exists():
        raise ModelCardError(f"{card_file}: names weights {card.weights_file!r}, which is missing")
    if not resolved.is_file():
        raise ModelCardError(f"{card_file}: weights_file {card.weights_file!r} is not a regular file")
    return resolved


def check_weights_sha256(card_path: Path | str, weights: Path, actual: str, card: ModelCard) -> None:
    """ModelCardError unless ``actual`` (the hash of the bytes about to be used) is the card's."""
    if actual != card.weights_sha256:
        raise ModelCardError(f"{weights}: sha256 {actual[:16]}... differs from {card_file_of(card_path)}'s "
                             f"weights_sha256 {card.weights_sha256[:16]}...; the weights are not the card's")


def weights_path(card_path: Path | str, card: ModelCard) -> Path:
    """The weights file a card names, located (see ``locate_weights``) and hashed against the card's sha256."""
    path = locate_weights(card_path, card)
    try:
        actual = sha256_of(path)
    except OSError as error:
        raise ModelCardError(f"{path}: weights not readable: {error.strerror or error}") from error
    check_weights_sha256(card_path, path, actual, card)
    return path
