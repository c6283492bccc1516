"""Converters for the official DDRNet-23-slim checkpoints (the authors' ``DualResNet`` with planes=32,
spp_planes=128, head_planes=64) to this package's key names: the Cityscapes model (``best_val_smaller.pth``)
and the ImageNet-pretrained backbone (``DDRNet23s_imagenet.pth``), the usual start of Cityscapes training.

The official keys name ``nn.Sequential`` indices (``conv1.3``, ``down4.4``, ``spp.scale1.3``) and ResNet
block parts (``bn1``, ``downsample.0``); ours name the modules (``backbone.stem.1.conv``,
``backbone.fuse4.high_to_low.1.bn``).
The mapping below is an explicit table of module paths, so it is exact in both directions.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from seg_perception.models.panoptic import PanopticNet
from seg_perception.models.weights import WeightsError, load_state_dict_strict, read_state_dict

# Wrappers the official training code puts around the network: ``FullModel`` ("model.") and DataParallel ("module.").
_WRAPPER_PREFIXES = ("module.", "model.")
# The official ``FullModel`` also saves its loss (class-weight buffers): training state, not weights.
_IGNORED_PREFIXES = ("loss.",)
_OFFICIAL_AUX_PREFIX = "seghead_extra."
# The ImageNet network ends in a classifier instead of DAPPM and the segmentation heads: a /64 downsampling of
# the high-resolution branch, a 1x1 conv to 1024 channels and a linear layer. None of it is backbone.
_IMAGENET_CLASSIFIER_PREFIXES = ("down5.", "last_layer.", "linear.")
# What the ImageNet network does not have: DAPPM starts from its initialisation.
_NOT_IN_IMAGENET = ("backbone.dappm.",)

# Official stage name -> ours, with the number of residual blocks in DDRNet-23-slim.
_STAGES = {
    "layer1": ("layer1", 2),
    "layer2": ("layer2", 2),
    "layer3": ("low_layer3", 2),
    "layer4": ("low_layer4", 2),
    "layer5": ("low_layer5", 1),
    "layer3_": ("high_layer3", 2),
    "layer4_": ("high_layer4", 2),
    "layer5_": ("high_layer5", 1),
}
# Parts of an official BasicBlock/Bottleneck -> ours (each of our convs is a ConvBN with .conv and .bn).
_BLOCK_PARTS = {
    "conv1": "conv1.conv",
    "bn1": "conv1.bn",
    "conv2": "conv2.conv",
    "bn2": "conv2.bn",
    "conv3": "conv3.conv",
    "bn3": "conv3.bn",
    "downsample.0": "shortcut.conv",
    "downsample.1": "shortcut.bn",
}


def _module_table() -> dict[str, str]:
    """Official module path -> our module path, for every module that holds tensors."""
    table = {
        # conv1 = [conv, BN, ReLU, conv, BN, ReLU]
        "conv1.0": "backbone.stem.0.conv",
        "conv1.1": "backbone.stem.0.bn",
        "conv1.3": "backbone.stem.1.conv",
        "conv1.4": "backbone.stem.1.bn",
        # down3 = [conv, BN]; down4 = [conv, BN, ReLU, conv, BN]
        "down3.0": "backbone.fuse3.high_to_low.0.conv",
        "down3.1": "backbone.fuse3.high_to_low.0.bn",
        "down4.0": "backbone.fuse4.high_to_low.0.conv",
        "down4.1": "backbone.fuse4.high_to_low.0.bn",
        "down4.3": "backbone.fuse4.high_to_low.1.conv",
        "down4.4": "backbone.fuse4.high_to_low.1.bn",
    }
    for stage in (3, 4):  # compressionN = [conv, BN]
        table[f"compression{stage}.0"] = f"backbone.fuse{stage}.low_to_high.conv"
        table[f"compression{stage}.1"] = f"backbone.fuse{stage}.low_to_high.bn"

    # DAPPM: scale0/compression/shortcut/processK = [BN, ReLU, conv]; scaleK = [pool, BN, ReLU, conv].
    for official, ours in (("scale0", "scale0"), ("compression", "compression"), ("shortcut", "shortcut")):
        table[f"spp.{official}.0"] = f"backbone.dappm.{ours}.bn"
        table[f"spp.{official}.2"] = f"backbone.dappm.{ours}.conv"
    for index in range(4):
        table[f"spp.scale{index + 1}.1"] = f"backbone.dappm.pooled.{index}.bn"
        table[f"spp.scale{index + 1}.3"] = f"backbone.dappm.pooled.{index}.conv"
        table[f"spp.process{index + 1}.0"] = f"backbone.dappm.process.{index}.bn"
        table[f"spp.process{index + 1}.2"] = f"backbone.dappm.process.{index}.conv"

    for official, ours in (("final_layer", "semantic_head"), (_OFFICIAL_AUX_PREFIX.rstrip("."), "aux_heads.0")):
        table[f"{official}.bn1"] = f"{ours}.refine.bn"
        table[f"{official}.conv1"] = f"{ours}.refine.conv"
        table[f"{official}.bn2"] = f"{ours}.classify.bn"
        table[f"{official}.conv2"] = f"{ours}.classify.conv"

    for official_stage, (our_stage, num_blocks) in _STAGES.items():
        for block in range(num_blocks):
            for official_part, our_part in _BLOCK_PARTS.items():
                table[f"{official_stage}.{block}.{official_part}"] = f"backbone.{our_stage}.{block}.{our_part}"
    return table


_OFFICIAL_TO_OURS = _module_table()
_OURS_TO_OFFICIAL = {ours: official for official, ours in _OFFICIAL_TO_OURS.items()}


def _rename(key: str, table: Mapping[str, str]) -> str | None:
    module, _, tensor_name = key.rpartition(".")  # tensor_name: weight, bias, running_mean, ...
    renamed = table.get(module)
    return None if renamed is None else f"{renamed}.{tensor_name}"


def official_key(our_key: str) -> str | None:
    """The official checkpoint's name for one of our DDRNet-23-slim keys (None for parts it lacks)."""
    return _rename(our_key, _OURS_TO_OFFICIAL)


def _strip_wrappers(key: str) -> str:
    while key.startswith(_WRAPPER_PREFIXES):
        key = key.split(".", 1)[1]
    return key


def convert_official_ddrnet23_slim(
    state_dict: Mapping[str, torch.Tensor], *, keep_aux: bool = False
) -> dict[str, torch.Tensor]:
    """Rename an official checkpoint's tensors to ours. The result loads strictly into
    ``build_model(arch="ddrnet23_slim", num_classes=19, deploy=not keep_aux, instance_head=False)``.

    ``keep_aux=False`` drops the auxiliary head (``seghead_extra``) for deploy models. Keys that the table
    does not know raise ``WeightsError`` naming them, so a different layout cannot half-load.
    """
    def skipped(key: str) -> bool:
        return key.startswith(_IGNORED_PREFIXES) or (not keep_aux and key.startswith(_OFFICIAL_AUX_PREFIX))

    return _renamed(state_dict, skipped=skipped, accepted=lambda ours: True, layout="DDRNet-23-slim")


def _renamed(state_dict: Mapping[str, torch.Tensor], *, skipped, accepted, layout: str) -> dict[str, torch.Tensor]:
    """Our names for every tensor not ``skipped`` (official key, wrappers stripped) and ``accepted`` (our key);
    any other key is a ``WeightsError`` naming it, so a different layout cannot half-load."""
    if isinstance(state_dict.get("state_dict"), Mapping):
        state_dict = state_dict["state_dict"]
    converted: dict[str, torch.Tensor] = {}
    unknown = []
    for raw_key, tensor in state_dict.items():
        key = _strip_wrappers(raw_key)
        if skipped(key):
            continue
        ours = _rename(key, _OFFICIAL_TO_OURS)
        if ours is None or not accepted(ours):
            unknown.append(raw_key)
        else:
            converted[ours] = tensor
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else "")
        raise WeightsError(f"not in the official {layout} layout: {shown}")

    # Checkpoints written before PyTorch 0.4.1 lack BN's batch counter; it plays no part at inference.
    for key in [k for k in converted if k.endswith(".running_var")]:
        converted.setdefault(key.removesuffix("running_var") + "num_batches_tracked", torch.tensor(0))
    return converted


def load_official_ddrnet23_slim(model: PanopticNet, path: str | Path) -> None:
    """Read an official checkpoint file, convert it and load it strictly (aux head kept if the model has one).

    The official network has no instance head: build the model with ``instance_head=False``.
    """
    if model.arch != "ddrnet23_slim":
        raise ValueError(f"the official DDRNet-23-slim checkpoint does not fit arch {model.arch!r}")
    converted = convert_official_ddrnet23_slim(read_state_dict(path), keep_aux=len(model.aux_heads) > 0)
    load_state_dict_strict(model, converted, source=f"{path} (converted from the official DDRNet-23-slim layout)")


def convert_imagenet_ddrnet23_slim_backbone(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the official ImageNet checkpoint's backbone tensors to ours (``backbone.*``), dropping its
    classifier (``down5``, ``last_layer``, ``linear``) by name. Any other key the table does not know, and any
    segmentation-head or DAPPM key (a Cityscapes checkpoint given by mistake), raise ``WeightsError``."""
    return _renamed(state_dict, skipped=lambda key: key.startswith(_IMAGENET_CLASSIFIER_PREFIXES),
                    accepted=lambda ours: ours.startswith("backbone.") and not ours.startswith(_NOT_IN_IMAGENET),
                    layout="DDRNet-23-slim ImageNet")


def load_imagenet_backbone(model: PanopticNet, path: str | Path) -> int:
    """Load the official ImageNet DDRNet-23-slim backbone into ``model.backbone``; returns the tensor count.

    Every backbone tensor except DAPPM's (which ImageNet training does not have) must be in the file with its
    shape, or ``WeightsError`` names what is missing, extra or misshapen; nothing is loaded then.
    """
    if model.arch != "ddrnet23_slim":
        raise ValueError(f"the DDRNet-23-slim ImageNet backbone does not fit arch {model.arch!r}")
    converted = convert_imagenet_ddrnet23_slim_backbone(read_state_dict(path))
    state = model.state_dict()
    expected = {k for k in state if k.startswith("backbone.") and not k.startswith(_NOT_IN_IMAGENET)}
    missing, extra = sorted(expected - converted.keys()), sorted(converted.keys() - expected)
    misshapen = sorted(k for k in expected & converted.keys() if converted[k].shape != state[k].shape)
    problems = [f"{label}: {', '.join(keys[:5])}" + (f" (and {len(keys) - 5} more)" if len(keys) > 5 else "")
                for label, keys in (("missing", missing), ("unexpected", extra), ("wrong shape", misshapen)) if keys]
    if problems:
        raise WeightsError(f"{path}: not the DDRNet-23-slim ImageNet backbone ({'; '.join(problems)})")
    with torch.no_grad():
        for key, tensor in converted.items():
            state[key].copy_(tensor)
    return len(converted)


def write_official_checkpoint(source: str | Path, out: str | Path, *, input_size: tuple[int, int],
                              fp16: bool = True) -> Path:
    """`seg-perception convert`: an official DDRNet-23-slim Cityscapes checkpoint file -> a checkpoint folder
    (safetensors weights and a model card: the 19 Cityscapes classes, no instance head, not evaluated here)."""
    from seg_perception.datasets import labels
    from seg_perception.models.card import CARD_FILE, WEIGHTS_FILE, ClassEntry, ModelCard, save_card, sha256_of
    from seg_perception.models.export_wrappers import IMAGENET_MEAN, IMAGENET_STD
    from seg_perception.models.factory import build_model
    from seg_perception.models.weights import save_weights

    source, out = Path(source), Path(out)
    cityscapes = labels.CLASSES[:19]  # the official model's classes, in train-id order
    model = build_model(arch="ddrnet23_slim", num_classes=len(cityscapes), deploy=True, instance_head=False)
    load_official_ddrnet23_slim(model, source)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / WEIGHTS_FILE
    save_weights(model, weights, fp16=fp16)
    card = ModelCard(
        arch="ddrnet23_slim", instance_head=False,
        classes=tuple(ClassEntry(c.train_id, c.name, c.is_thing) for c in cityscapes),
        input_width=input_size[0], input_height=input_size[1], mean=IMAGENET_MEAN, std=IMAGENET_STD,
        weights_sha256=sha256_of(weights), weights_dtype="float16" if fp16 else "float32",
        training={"converted_from": source.name, "source_sha256": sha256_of(source),
                  "note": "the authors' DDRNet-23-slim Cityscapes weights, renamed by seg_perception.models.convert"},
        metrics={"note": "not evaluated here; the authors report their own Cityscapes figures"},
    )
    save_card(card, out / CARD_FILE)
    return out
