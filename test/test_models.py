"""Network architectures: fidelity to the papers, per-block shapes on odd sizes, the output contract,
strict weights I/O, the official DDRNet-23-slim checkpoint converter and ONNX export."""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from seg_perception.models import ARCHS, ModelOutputs, build_model
from seg_perception.models.bisenetv2 import (
    BilateralGuidedAggregation,
    ContextEmbedding,
    DetailBranch,
    GatherExpand,
    SemanticBranch,
    StemBlock,
)
from seg_perception.models.blocks import BasicBlock, BNReLUConv, Bottleneck, ConvBN, make_stage, resize_to
from seg_perception.models.convert import convert_official_ddrnet23_slim, load_official_ddrnet23_slim, official_key
from seg_perception.models.ddrnet import DAPPM, BilateralFusion, DDRNet23SlimBackbone
from seg_perception.models.export_wrappers import IMAGENET_MEAN, IMAGENET_STD, NormalizedModel
from seg_perception.models.heads import InstanceHead, PreActSegHead, SegHead
from seg_perception.models.weights import WeightsError, load_state_dict_strict, load_weights, save_weights

DEMO = Path(__file__).resolve().parents[1] / "models" / "demo"

ODD_HEIGHT, ODD_WIDTH = 67, 131  # neither divisible by 2: every stride rounds up (ceil), sizes must still line up


def ceil_div(size: int, stride: int) -> int:
    return -(-size // stride)


def conv_macs(model: nn.Module, image: torch.Tensor) -> int:
    """Multiply-accumulates of Conv2d/ConvTranspose2d/Linear layers in one forward pass, counted by hooks:
    Conv2d: output elements x (in_channels / groups) x kH x kW; ConvTranspose2d: input elements x
    (out_channels / groups) x kH x kW; Linear: output elements x in_features. Biases, BatchNorm, ReLU,
    sigmoid, pooling, bilinear resizing, additions and argmax are excluded: this is the papers' "FLOPs"."""
    total = 0

    def count(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kernel = module.kernel_size[0] * module.kernel_size[1]
            total += output.numel() * (module.in_channels // module.groups) * kernel
        elif isinstance(module, nn.ConvTranspose2d):
            kernel = module.kernel_size[0] * module.kernel_size[1]
            total += inputs[0].numel() * (module.out_channels // module.groups) * kernel
        elif isinstance(module, nn.Linear):
            total += output.numel() * module.in_features

    layers = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, layers)]
    try:
        with torch.no_grad():
            model(image)
    finally:
        for handle in handles:
            handle.remove()
    return total


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------------------- fidelity


def test_ddrnet23_slim_matches_the_papers_params_and_flops() -> None:
    # The paper's Table (Cityscapes, 19 classes): DDRNet-23-slim 5.7 M parameters, 36.3 GFLOPs at 2048x1024.
    # Built and run on the meta device: shapes only, no memory or arithmetic, so the full resolution is cheap.
    with torch.device("meta"):
        model = build_model(arch="ddrnet23_slim", num_classes=19, deploy=True, instance_head=False)
        image = torch.zeros(1, 3, 1024, 2048)
    assert num_params(model) == pytest.approx(5.7e6, rel=0.05)
    macs = conv_macs(model, image)
    assert macs == pytest.approx(36.3e9, rel=0.05)
    # Cross-check with PyTorch's own counter, which reports 2 FLOPs per multiply-accumulate of a convolution.
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(image)
    assert counter.get_total_flops() == 2 * macs


def test_bisenetv2_parameter_count_is_in_the_expected_range() -> None:
    # No published parameter count we are sure of: the widely used reimplementations (same layout, 1024-wide
    # main head) have about 3.36 M for 19 classes, so only a sane range is checked.
    with torch.device("meta"):
        model = build_model(arch="bisenetv2", num_classes=19, deploy=True, instance_head=False)
    assert 3.0e6 < num_params(model) < 3.7e6


# -------------------------------------------------------------------------------------------- block shapes

BlockCase = tuple[str, Callable[[], nn.Module], tuple[int, int, int, int], tuple[int, int, int, int]]
H, W = ODD_HEIGHT, ODD_WIDTH
BLOCK_CASES: list[BlockCase] = [
    ("conv_bn", lambda: ConvBN(3, 8), (1, 3, H, W), (1, 8, H, W)),
    ("conv_bn_strided", lambda: ConvBN(3, 8, stride=2), (1, 3, H, W), (1, 8, ceil_div(H, 2), ceil_div(W, 2))),
    ("bn_relu_conv", lambda: BNReLUConv(8, 4, kernel_size=3), (1, 8, H, W), (1, 4, H, W)),
    ("basic_block", lambda: BasicBlock(8, 8), (1, 8, H, W), (1, 8, H, W)),
    ("basic_block_strided", lambda: BasicBlock(8, 16, stride=2), (1, 8, H, W), (1, 16, 34, 66)),
    ("bottleneck", lambda: Bottleneck(8, 8), (1, 8, H, W), (1, 16, H, W)),
    ("bottleneck_strided", lambda: Bottleneck(8, 8, stride=2), (1, 8, H, W), (1, 16, 34, 66)),
    (
        "stage",
        lambda: make_stage(BasicBlock, in_channels=8, channels=16, num_blocks=2, stride=2),
        (1, 8, H, W),
        (1, 16, 34, 66),
    ),
    ("dappm", lambda: DAPPM(32, 8, 16), (2, 32, 5, 7), (2, 16, 5, 7)),
    ("detail_branch", lambda: _FirstOutput(DetailBranch()), (1, 3, H, W), (1, 128, 9, 17)),
    ("stem_block", StemBlock, (1, 3, H, W), (1, 16, 17, 33)),
    ("gather_expand", lambda: GatherExpand(16, 16), (1, 16, 17, 33), (1, 16, 17, 33)),
    ("gather_expand_strided", lambda: GatherExpand(16, 32, stride=2), (1, 16, 17, 33), (1, 32, 9, 17)),
    ("context_embedding", lambda: ContextEmbedding(16), (2, 16, 3, 5), (2, 16, 3, 5)),
    ("preact_seg_head", lambda: PreActSegHead(16, 8, 5), (1, 16, 9, 17), (1, 5, 9, 17)),
    ("seg_head", lambda: SegHead(16, 8, 5), (1, 16, 9, 17), (1, 5, 9, 17)),
]


class _FirstOutput(nn.Module):
    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)[0]


@pytest.mark.parametrize(("name", "make", "in_shape", "out_shape"), BLOCK_CASES, ids=[c[0] for c in BLOCK_CASES])
def test_block_output_shape(
    name: str, make: Callable[[], nn.Module], in_shape: tuple[int, ...], out_shape: tuple[int, ...]
) -> None:
    block = make()
    out = block(torch.randn(in_shape))
    assert tuple(out.shape) == out_shape
    out.sum().backward()  # trains: every parameter gets a gradient
    assert all(p.grad is not None for p in block.parameters())


def test_stage_leaves_its_output_unactivated_for_fusion() -> None:
    stage = make_stage(BasicBlock, in_channels=4, channels=4, num_blocks=2)
    assert [block.relu_out for block in stage] == [True, False]
    torch.manual_seed(0)
    assert (stage(torch.randn(1, 4, 9, 9)) < 0).any()


def test_bilateral_fusion_shapes_on_odd_sizes() -> None:
    fusion = BilateralFusion(high_channels=8, low_channels=32, downsample_steps=2)
    high, low = torch.randn(1, 8, 9, 17), torch.randn(1, 32, 3, 5)  # /8 and /32 of a 67x131 input
    fused_low, fused_high = fusion(low, high)
    assert fused_low.shape == low.shape
    assert fused_high.shape == high.shape
    # The strided path widens only in its last step, as DDRNet's down4 (64 -> 128 -> 256).
    assert [step.conv.out_channels for step in fusion.high_to_low] == [16, 32]


def test_bilateral_guided_aggregation_shapes_on_odd_sizes() -> None:
    aggregate = BilateralGuidedAggregation(16)
    detail, semantic = torch.randn(1, 16, 9, 17), torch.randn(1, 16, 3, 5)
    assert aggregate(detail, semantic).shape == detail.shape


def test_backbones_on_odd_sizes() -> None:
    image = torch.randn(2, 3, H, W)
    with torch.no_grad():
        ddr = DDRNet23SlimBackbone()(image)
        assert ddr.shared.shape == (2, 128, 9, 17)
        assert [tuple(t.shape) for t in ddr.aux] == [(2, 64, 9, 17)]
        bise_shared, taps = SemanticBranch()(image)
    assert bise_shared.shape == (2, 128, 3, 5)
    assert [tuple(t.shape) for t in taps] == [(2, 16, 17, 33), (2, 32, 9, 17), (2, 64, 5, 9), (2, 128, 3, 5)]


def test_instance_head_shapes() -> None:
    center, offset = InstanceHead(16, 8)(torch.randn(1, 16, 9, 17))
    assert center.shape == (1, 1, 9, 17)
    assert offset.shape == (1, 2, 9, 17)


# --------------------------------------------------------------------------------------- output contract

NUM_CLASSES = 5
AUX_HEADS = {"ddrnet23_slim": 1, "bisenetv2": 4}


@pytest.mark.parametrize("arch", ARCHS)
def test_training_outputs(arch: str) -> None:
    torch.manual_seed(0)
    model = build_model(arch=arch, num_classes=NUM_CLASSES)
    assert model.training
    # Batch of 2: global-pool branches see one value per channel and image, BN needs more than one to train.
    with torch.no_grad():
        out = model(torch.randn(2, 3, H, W))
    assert isinstance(out, dict)
    assert set(out) == {"semantic", "aux", "center", "offset"}
    assert out["semantic"].shape == (2, NUM_CLASSES, H, W)
    assert out["center"].shape == (2, 1, H, W)
    assert out["offset"].shape == (2, 2, H, W)
    assert len(out["aux"]) == AUX_HEADS[arch] == len(model.aux_loss_weights)
    assert all(aux.shape == (2, NUM_CLASSES, H, W) for aux in out["aux"])
    expected_weight = 0.4 if arch == "ddrnet23_slim" else 1.0
    assert model.aux_loss_weights == (expected_weight,) * AUX_HEADS[arch]


@pytest.mark.parametrize("arch", ARCHS)
def test_deploy_outputs(arch: str) -> None:
    torch.manual_seed(0)
    model = build_model(arch=arch, num_classes=NUM_CLASSES, deploy=True)
    assert not model.training
    assert not any(key.startswith("aux_heads.") for key in model.state_dict())
    with torch.no_grad():
        out = model(torch.randn(1, 3, H, W))
    assert isinstance(out, ModelOutputs)
    # Logits stay at the head's resolution (the smoothing state); the ids are their argmax at input size.
    assert out.semantic_logits.shape[:2] == (1, NUM_CLASSES) and out.semantic_logits.shape[2] < H
    assert out.semantic_ids.shape == (1, H, W)
    assert out.semantic_ids.dtype == torch.uint8  # class ids fit a byte (at most 256 classes per card)
    assert torch.equal(out.semantic_ids.long(), resize_to(out.semantic_logits, (H, W)).argmax(dim=1))
    assert out.center is not None and out.offset is not None
    assert out.center.shape == (1, 1, H, W)
    assert out.center.min() >= 0.0 and out.center.max() <= 1.0
    assert out.offset.shape == (1, 2, H, W)


@pytest.mark.parametrize("arch", ARCHS)
def test_to_deploy_drops_the_auxiliary_heads(arch: str) -> None:
    model = build_model(arch=arch, num_classes=NUM_CLASSES)
    assert any(key.startswith("aux_heads.") for key in model.state_dict())
    deployed = model.to_deploy()
    assert deployed is model and model.is_deploy and not model.training
    assert model.aux_loss_weights == ()
    fresh = build_model(arch=arch, num_classes=NUM_CLASSES, deploy=True)
    assert list(model.state_dict()) == list(fresh.state_dict())


def test_without_instance_head() -> None:
    model = build_model(arch="ddrnet23_slim", num_classes=NUM_CLASSES, instance_head=False)
    assert not any(key.startswith("instance_head.") for key in model.state_dict())
    with torch.no_grad():
        assert set(model(torch.randn(2, 3, H, W))) == {"semantic", "aux"}
        out = model.to_deploy()(torch.randn(1, 3, H, W))
    assert out.center is None and out.offset is None


def test_build_model_is_keyword_only_and_checks_arguments() -> None:
    with pytest.raises(TypeError):
        build_model("ddrnet23_slim", 19)  # type: ignore[misc]
    with pytest.raises(ValueError, match="unknown arch"):
        build_model(arch="resnet", num_classes=19)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_classes"):
        build_model(arch="bisenetv2", num_classes=0)


def test_same_seed_same_weights() -> None:
    torch.manual_seed(3)
    first = build_model(arch="bisenetv2", num_classes=NUM_CLASSES).state_dict()
    torch.manual_seed(3)
    second = build_model(arch="bisenetv2", num_classes=NUM_CLASSES).state_dict()
    assert all(torch.equal(first[key], second[key]) for key in first)


# ---------------------------------------------------------------------------------------------- weights


def _small_model(*, deploy: bool = True) -> nn.Module:
    torch.manual_seed(0)
    model = build_model(arch="ddrnet23_slim", num_classes=NUM_CLASSES, deploy=deploy)
    with torch.no_grad():  # non-trivial BN statistics, so that they are checked too
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
                module.num_batches_tracked.fill_(7)
    return model


@pytest.mark.parametrize("fp16", [False, True])
def test_weights_round_trip(tmp_path: Path, fp16: bool) -> None:
    model = _small_model()
    path = tmp_path / "model.safetensors"
    save_weights(model, path, fp16=fp16)
    torch.manual_seed(1)
    restored = build_model(arch="ddrnet23_slim", num_classes=NUM_CLASSES, deploy=True)
    load_weights(restored, path)
    for key, original in model.state_dict().items():
        loaded = restored.state_dict()[key]
        assert loaded.dtype == original.dtype, key  # fp16 files come back in the model's dtype
        expected = original.half().to(original.dtype) if fp16 and original.is_floating_point() else original
        assert torch.equal(loaded, expected), key


def test_save_weights_writes_safetensors_only(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="safetensors"):
        save_weights(_small_model(), tmp_path / "model.pt", fp16=False)


def _tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in model.state_dict().items()}


def test_load_weights_names_missing_unexpected_and_misshapen_keys(tmp_path: Path) -> None:
    model = _small_model()
    path = tmp_path / "bad.safetensors"

    tensors = _tensors(model)
    del tensors["semantic_head.classify.conv.bias"]
    save_file(tensors, str(path))
    with pytest.raises(WeightsError, match=r"missing keys: semantic_head\.classify\.conv\.bias") as error:
        load_weights(model, path)
    assert str(path) in str(error.value)

    tensors = _tensors(model)
    tensors["aux_heads.0.classify.conv.bias"] = torch.zeros(NUM_CLASSES)
    save_file(tensors, str(path))
    with pytest.raises(WeightsError, match=r"unexpected keys: aux_heads\.0\.classify\.conv\.bias"):
        load_weights(model, path)

    tensors = _tensors(model)
    tensors["semantic_head.classify.conv.bias"] = torch.zeros(NUM_CLASSES + 1)
    save_file(tensors, str(path))
    with pytest.raises(WeightsError, match=r"shape mismatches: semantic_head\.classify\.conv\.bias \(file \(6,\)"):
        load_weights(model, path)


def test_training_weights_do_not_load_into_a_deploy_model(tmp_path: Path) -> None:
    path = tmp_path / "train.safetensors"
    save_weights(_small_model(deploy=False), path, fp16=False)
    with pytest.raises(WeightsError, match=r"unexpected keys: aux_heads\.0\."):
        load_weights(_small_model(), path)


def test_torch_checkpoints_load_with_weights_only(tmp_path: Path) -> None:
    model = _small_model()
    path = tmp_path / "external.pth"
    torch.save({"epoch": 3, "state_dict": model.state_dict()}, path)  # a training checkpoint's usual shape
    restored = build_model(arch="ddrnet23_slim", num_classes=NUM_CLASSES, deploy=True)
    load_weights(restored, path)
    assert all(torch.equal(restored.state_dict()[k], v) for k, v in model.state_dict().items())

    evil = tmp_path / "pickled.pt"
    with evil.open("wb") as stream:
        pickle.dump({"weights": Path("/")}, stream, protocol=2)  # any non-tensor object: refused, never unpickled
    with pytest.raises(WeightsError, match="refused to unpickle"):
        load_weights(restored, evil)

    with pytest.raises(WeightsError, match="unknown weights format"):
        load_weights(restored, tmp_path / "model.onnx")


# ------------------------------------------------------------------------------------ official converter

# Names and shapes in the authors' DDRNet-23-slim checkpoint, from their DualResNet channel plan.
OFFICIAL_SHAPES = {
    "conv1.0.weight": (32, 3, 3, 3),
    "conv1.0.bias": (32,),  # the stem convs have a bias
    "conv1.4.running_var": (32,),
    "layer1.1.bn2.weight": (32,),
    "layer2.0.downsample.0.weight": (64, 32, 1, 1),
    "layer3.0.downsample.1.running_mean": (128,),
    "layer3_.1.conv2.weight": (64, 64, 3, 3),
    "layer4.1.conv1.weight": (256, 256, 3, 3),
    "layer5.0.conv3.weight": (512, 256, 1, 1),
    "layer5.0.downsample.0.weight": (512, 256, 1, 1),
    "layer5_.0.conv1.weight": (64, 64, 1, 1),
    "layer5_.0.downsample.0.weight": (128, 64, 1, 1),
    "compression3.0.weight": (64, 128, 1, 1),
    "compression4.0.weight": (64, 256, 1, 1),
    "down3.0.weight": (128, 64, 3, 3),
    "down4.0.weight": (128, 64, 3, 3),
    "down4.3.weight": (256, 128, 3, 3),
    "down4.4.num_batches_tracked": (),
    "spp.scale0.0.weight": (512,),
    "spp.scale1.3.weight": (128, 512, 1, 1),
    "spp.scale4.1.running_mean": (512,),
    "spp.process4.2.weight": (128, 128, 3, 3),
    "spp.compression.0.weight": (640,),
    "spp.compression.2.weight": (128, 640, 1, 1),
    "spp.shortcut.2.weight": (128, 512, 1, 1),
    "final_layer.bn1.weight": (128,),
    "final_layer.conv1.weight": (64, 128, 3, 3),
    "final_layer.conv2.weight": (19, 64, 1, 1),
    "final_layer.conv2.bias": (19,),
    "seghead_extra.bn1.weight": (64,),
    "seghead_extra.conv2.weight": (19, 64, 1, 1),
}
# Blocks that keep their shape have no downsample in the official network.
OFFICIAL_ABSENT = ("layer1.0.downsample.0.weight", "layer3_.0.downsample.0.weight", "layer4_.0.downsample.0.weight")


def _official_checkpoint(*, prefix: str = "model.") -> dict[str, torch.Tensor]:
    """A checkpoint with the official layout (aux head included, as the authors train with it), random values."""
    ours = build_model(arch="ddrnet23_slim", num_classes=19, deploy=False, instance_head=False)
    torch.manual_seed(0)
    checkpoint = {}
    for key, tensor in ours.state_dict().items():
        name = official_key(key)
        assert name is not None, key
        value = torch.randint(0, 100, ()) if not tensor.is_floating_point() else torch.randn_like(tensor)
        checkpoint[prefix + name] = value
    checkpoint["loss.criterion.weight"] = torch.ones(19)  # the official FullModel saves its loss's class weights
    return checkpoint


def test_official_layout_names_and_shapes() -> None:
    checkpoint = _official_checkpoint(prefix="")
    shapes = {key: tuple(value.shape) for key, value in checkpoint.items()}
    for key, shape in OFFICIAL_SHAPES.items():
        assert shapes.get(key) == shape, key
    for key in OFFICIAL_ABSENT:
        assert key not in shapes


@pytest.mark.parametrize("prefix", ["model.", "module.model.", ""])
def test_official_checkpoint_converts_and_loads_strictly_for_deploy(prefix: str) -> None:
    checkpoint = _official_checkpoint(prefix=prefix)
    converted = convert_official_ddrnet23_slim(checkpoint)
    assert not any(key.startswith("aux_heads.") for key in converted)
    model = build_model(arch="ddrnet23_slim", num_classes=19, deploy=True, instance_head=False)
    load_state_dict_strict(model, converted, source="official")
    state = model.state_dict()
    for key in state:
        assert torch.equal(state[key], checkpoint[prefix + str(official_key(key))]), key


def test_official_checkpoint_file_loads_with_its_aux_head(tmp_path: Path) -> None:
    checkpoint = _official_checkpoint()
    path = tmp_path / "DDRNet23s_cityscapes.pth"
    torch.save(checkpoint, path)
    model = build_model(arch="ddrnet23_slim", num_classes=19, deploy=False, instance_head=False)
    load_official_ddrnet23_slim(model, path)
    assert torch.equal(
        model.state_dict()["aux_heads.0.classify.conv.bias"], checkpoint["model.seghead_extra.conv2.bias"]
    )


def test_official_checkpoint_errors_name_the_key() -> None:
    model = build_model(arch="ddrnet23_slim", num_classes=19, deploy=True, instance_head=False)

    missing = _official_checkpoint()
    del missing["model.layer3_.1.bn2.running_mean"]
    with pytest.raises(WeightsError, match=r"missing keys: backbone\.high_layer3\.1\.conv2\.bn\.running_mean"):
        load_state_dict_strict(model, convert_official_ddrnet23_slim(missing), source="official")

    extra = _official_checkpoint()
    extra["model.layer3_.1.bn4.weight"] = torch.ones(64)
    with pytest.raises(WeightsError, match=r"model\.layer3_\.1\.bn4\.weight"):
        convert_official_ddrnet23_slim(extra)

    with_instance_head = build_model(arch="ddrnet23_slim", num_classes=19, deploy=True)
    with pytest.raises(WeightsError, match=r"missing keys: instance_head\."):
        load_state_dict_strict(with_instance_head, convert_official_ddrnet23_slim(_official_checkpoint()), source="x")


def test_official_checkpoint_without_batch_counters_loads() -> None:
    old = {k: v for k, v in _official_checkpoint().items() if not k.endswith("num_batches_tracked")}
    model = build_model(arch="ddrnet23_slim", num_classes=19, deploy=True, instance_head=False)
    load_state_dict_strict(model, convert_official_ddrnet23_slim(old), source="pre-0.4.1 checkpoint")


# ------------------------------------------------------------------------------------------------ export


def test_normalized_model_normalizes_inside() -> None:
    torch.manual_seed(0)
    model = build_model(arch="bisenetv2", num_classes=NUM_CLASSES, deploy=True, instance_head=False)
    wrapper = NormalizedModel(model)
    assert wrapper.output_names == ("semantic_logits", "semantic_ids")
    pixels = torch.randint(0, 256, (1, 3, 35, 53), dtype=torch.uint8)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        logits, ids = wrapper(pixels)
        expected = model((pixels.float() / 255 - mean) / std)
    torch.testing.assert_close(logits, expected.semantic_logits, rtol=1e-4, atol=1e-4)
    assert torch.equal(ids, expected.semantic_ids)
    assert list(wrapper.state_dict()) == ["model." + key for key in model.state_dict()]
    with pytest.raises(ValueError, match="deploy"):
        NormalizedModel(build_model(arch="bisenetv2", num_classes=NUM_CLASSES))


@pytest.mark.parametrize("arch", ARCHS)
def test_onnx_export_matches_torch(tmp_path: Path, arch: str) -> None:
    import onnx  # hard dependencies (requirements.lock): an import error must fail, never skip
    import onnxruntime as ort

    torch.manual_seed(0)
    wrapper = NormalizedModel(build_model(arch=arch, num_classes=NUM_CLASSES, deploy=True))
    names = list(wrapper.output_names)
    path = tmp_path / f"{arch}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
        # dynamo=False: the TorchScript-based exporter, which needs no onnxscript.
        torch.onnx.export(
            wrapper,
            (torch.zeros(1, 3, H, W, dtype=torch.uint8),),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["image"],
            output_names=names,
            dynamic_axes={name: {0: "batch"} for name in ["image", *names]},
        )
    onnx.checker.check_model(onnx.load(str(path)))

    torch.manual_seed(1)
    pixels = torch.randint(0, 256, (2, 3, H, W), dtype=torch.uint8)  # batch 2: the batch axis is dynamic
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = dict(zip(names, session.run(None, {"image": pixels.numpy()}), strict=True))
    with torch.no_grad():
        want = dict(zip(names, (t.numpy() for t in wrapper(pixels)), strict=True))

    assert got["semantic_ids"].dtype == np.uint8
    assert (got["semantic_ids"] == want["semantic_ids"]).mean() >= 0.999
    scale = np.abs(want["semantic_logits"]).max()
    np.testing.assert_allclose(got["semantic_logits"], want["semantic_logits"], atol=1e-4 * scale, rtol=0)
    # Random-init centre logits saturate the sigmoid into plateaus of equal values; whether a plateau pixel
    # survives the in-graph NMS then hinges on the last bit, so a few pixels may differ (0.05 % seen).
    center_mismatch = float((np.abs(got["center"] - want["center"]) > 1e-3).mean())
    assert center_mismatch <= 1e-3, center_mismatch
    np.testing.assert_allclose(got["offset"], want["offset"], atol=1e-4 * np.abs(want["offset"]).max())


def _imagenet_checkpoint(*, prefix: str = "") -> dict[str, torch.Tensor]:
    """The authors' ImageNet DDRNet-23-slim layout: the backbone without DAPPM, plus its classifier
    (down5 = conv-BN-ReLU-conv-BN, last_layer = 1x1 conv-BN-ReLU to 1024, linear to 1000)."""
    ours = build_model(arch="ddrnet23_slim", num_classes=19, deploy=True, instance_head=False)
    torch.manual_seed(1)
    checkpoint = {}
    for key, tensor in ours.state_dict().items():
        if not key.startswith("backbone.") or key.startswith("backbone.dappm."):
            continue
        value = torch.randint(0, 100, ()) if not tensor.is_floating_point() else torch.randn_like(tensor)
        checkpoint[prefix + str(official_key(key))] = value
    classifier = {"down5.0.weight": (256, 128, 3, 3), "down5.1.weight": (256,), "down5.3.weight": (512, 256, 3, 3),
                  "down5.4.running_var": (512,), "last_layer.0.weight": (1024, 512, 1, 1),
                  "last_layer.1.bias": (1024,), "linear.weight": (1000, 1024), "linear.bias": (1000,)}
    for name, shape in classifier.items():
        checkpoint[prefix + name] = torch.randn(shape)
    return checkpoint


@pytest.mark.parametrize("prefix", ["", "module."])
def test_imagenet_backbone_loads_every_backbone_tensor_and_drops_the_classifier(tmp_path: Path, prefix: str) -> None:
    from seg_perception.models.convert import load_imagenet_backbone

    checkpoint = _imagenet_checkpoint(prefix=prefix)
    path = tmp_path / "DDRNet23s_imagenet.pth"
    torch.save({"state_dict": checkpoint} if prefix else checkpoint, path)
    model = build_model(arch="ddrnet23_slim", num_classes=20, deploy=False)  # ours: 20 classes, instance head
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    assert load_imagenet_backbone(model, path) == len(checkpoint) - 8
    state = model.state_dict()
    for key in state:
        if key.startswith("backbone.") and not key.startswith("backbone.dappm."):
            assert torch.equal(state[key], checkpoint[prefix + str(official_key(key))]), key
        else:  # DAPPM and every head keep their initialisation
            assert torch.equal(state[key], fresh[key]), key


def test_imagenet_backbone_errors_name_what_is_wrong(tmp_path: Path) -> None:
    from seg_perception.models.convert import load_imagenet_backbone

    model = build_model(arch="ddrnet23_slim", num_classes=20, deploy=False)
    missing = _imagenet_checkpoint()
    del missing["layer4_.0.bn1.running_mean"]
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(WeightsError, match=r"missing\.pth: not the DDRNet-23-slim ImageNet backbone \(missing: "
                                           r"backbone\.high_layer4\.0\.conv1\.bn\.running_mean"):
        load_imagenet_backbone(model, tmp_path / "missing.pth")
    torch.save(_official_checkpoint(), tmp_path / "cityscapes.pth")  # the Cityscapes model given by mistake
    with pytest.raises(WeightsError, match=r"not in the official DDRNet-23-slim ImageNet layout: model\.spp\."):
        load_imagenet_backbone(model, tmp_path / "cityscapes.pth")
    with pytest.raises(ValueError, match="does not fit arch 'bisenetv2'"):
        load_imagenet_backbone(build_model(arch="bisenetv2", num_classes=20, deploy=False), tmp_path / "x.pth")


def test_convert_command_writes_a_checkpoint_the_product_loads(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from seg_perception import cli
    from seg_perception.models.checkpoint import load_checkpoint

    checkpoint = _official_checkpoint(prefix="module.model.")
    source = tmp_path / "best_val_smaller.pth"
    torch.save({"state_dict": checkpoint}, source)
    out = tmp_path / "official"
    assert cli.main(["convert", str(source), "--out", str(out), "--fp32-weights", "--input-size", "1024x512"]) == 0
    model, card = load_checkpoint(out)
    assert card.num_classes == 19 and not card.instance_head and card.input_size == (1024, 512)
    assert card.training["source_sha256"] and "not evaluated" in card.metrics["note"]
    reference = build_model(arch="ddrnet23_slim", num_classes=19, deploy=True, instance_head=False)
    load_official_ddrnet23_slim(reference, source)
    expected = reference.state_dict()
    assert model.state_dict().keys() == expected.keys()
    assert all(torch.equal(tensor, expected[key]) for key, tensor in model.state_dict().items())

    (tmp_path / "notes.pth").write_text("not a checkpoint")
    assert cli.main(["convert", str(tmp_path / "notes.pth"), "--out", str(tmp_path / "bad")]) == 2
    assert "notes.pth: not a plain tensor checkpoint" in capsys.readouterr().err  # named, no traceback


@pytest.mark.parametrize("arch", ARCHS)
def test_stride_4_instance_head_reads_quarter_features(arch: str) -> None:
    torch.manual_seed(0)
    model = build_model(arch=arch, num_classes=NUM_CLASSES, deploy=True, instance_stride=4)
    assert model.instance_head is not None and model.instance_head.output_stride == 4
    features = model.backbone(torch.randn(1, 3, H, W))
    assert features.detail is not None and features.detail.shape[-2:] == (-(-H // 4), -(-W // 4))
    assert features.detail.shape[1] == model.backbone.detail_channels
    with torch.no_grad():
        centre_small, _ = model.instance_head(features.shared, features.detail)
        out = model(torch.randn(1, 3, H, W))
    assert centre_small.shape[-2:] == features.detail.shape[-2:]  # predicted at 1/4, twice the /8 grid
    assert out.center is not None and out.center.shape == (1, 1, H, W) and out.offset.shape == (1, 2, H, W)
    with pytest.raises(ValueError, match="needs the backbone's 1/4 features"):
        model.instance_head(features.shared)
    with pytest.raises(ValueError, match="instance_stride must be one of"):
        build_model(arch=arch, num_classes=NUM_CLASSES, instance_stride=16)
    # stride 8 stays what it was: no decoder, and a stride-8 state dict does not load into stride 4
    eight = build_model(arch=arch, num_classes=NUM_CLASSES, deploy=True)
    assert eight.instance_head.output_stride == 8 and not hasattr(eight.instance_head, "decoder")
    with pytest.raises(WeightsError):
        load_state_dict_strict(model, eight.state_dict(), source="stride 8")


def test_card_instance_stride_defaults_to_8_and_is_checked() -> None:
    import json

    from seg_perception.models.card import CARD_FILE, ModelCardError, card_from_dict

    data = json.loads((DEMO / CARD_FILE).read_text())
    data.pop("instance_stride", None)  # as cards written before the stride-4 head
    assert card_from_dict(data, "old card").instance_stride == 8
    for bad in (16, True, "4"):
        with pytest.raises(ModelCardError, match=r"old card: 'instance_stride' must be 4 or 8"):
            card_from_dict({**data, "instance_stride": bad}, "old card")


def test_the_shipped_stage7_and_the_previous_stage5_load_strictly_with_their_held_out_records() -> None:
    """models/demo is stage 7 (a GPU stage, carded at 512x256 like stage 5 before it); models/demo_stage5, the
    model shipped before it, is kept for comparison. Both load strictly, and their cards hold the held-out
    evaluations their READMEs quote."""
    from seg_perception.models.checkpoint import load_checkpoint

    models = Path(__file__).resolve().parents[1] / "models"
    model, card = load_checkpoint(models / "demo")
    assert card.input_size == (512, 256) and card.instance_stride == 8 and model.is_deploy
    assert card.training["recipe"]["input_size"] == [1024, 512]  # trained at 1024x512, scale range 0.5-2
    high, low = card.metrics["heldout_test_1024x512"], card.metrics["heldout_test"]
    assert high["data"] == ["synthetic:data/demo_synth_hr:test"] and low["data"] == ["synthetic:data/demo_synth:test"]
    assert round(100 * high["values"]["miou"], 1) == 78.1 and round(100 * low["values"]["miou"], 1) == 73.3
    previous, previous_card = load_checkpoint(models / "demo_stage5")
    assert previous_card.input_size == (512, 256) and previous.is_deploy
    # the lineage: stage 7 was trained from stage 6 (the shared H200 checkpoint), stage 6 from stage 5
    assert card.training["previous_stage"]["previous_stage"]["weights_sha256"] == previous_card.weights_sha256
