"""Nothing runs a model it did not verify: the card must carry the weights' sha256, the file is hashed on every
load (a warm ONNX cache included), the weights stay inside the checkpoint folder, and files that are not
safetensors are refused by name. Tiny 64x64 checkpoints keep each export near a second on CPU."""

from __future__ import annotations

import io
import json
import logging
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from seg_perception.inference.backends import Backend, BackendError, OnnxRuntimeBackend, TorchBackend
from seg_perception.inference.export import export_onnx
from seg_perception.inference.factory import BackendRequest, cached_onnx, open_backend
from seg_perception.models.card import (
    CARD_FILE,
    WEIGHTS_FILE,
    ClassEntry,
    ModelCard,
    ModelCardError,
    load_card,
    save_card,
    sha256_of,
)
from seg_perception.models.checkpoint import load_checkpoint
from seg_perception.models.export_wrappers import IMAGENET_MEAN, IMAGENET_STD
from seg_perception.models.factory import build_model
from seg_perception.models.weights import WeightsError, read_state_dict, save_weights

SIZE = 64
CLASSES = (ClassEntry(0, "road", False), ClassEntry(1, "car", True), ClassEntry(2, "sky", False))
DEMO = Path(__file__).resolve().parents[1] / "models" / "demo"


def write_checkpoint(folder: Path, *, seed: int = 0, zero_semantic_head: bool = False) -> Path:
    """A loadable checkpoint folder whose card carries the real hash of its weights."""
    folder.mkdir(parents=True)
    torch.manual_seed(seed)
    model = build_model(arch="ddrnet23_slim", num_classes=len(CLASSES), deploy=True)
    if zero_semantic_head:  # the reported case: a checkpoint that must predict class 0 everywhere
        with torch.no_grad():
            model.semantic_head.classify.conv.weight.zero_()
            model.semantic_head.classify.conv.bias.zero_()
    save_weights(model, folder / WEIGHTS_FILE, fp16=True)
    save_card(ModelCard(arch="ddrnet23_slim", instance_head=True, classes=CLASSES, input_width=SIZE,
                        input_height=SIZE, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                        weights_sha256=sha256_of(folder / WEIGHTS_FILE)), folder / CARD_FILE)
    return folder


def edit_card(folder: Path, **changes: object) -> Path:
    """Rewrite the card file directly (save_card refuses invalid cards); a value None drops the key."""
    path = folder / CARD_FILE
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(json.dumps(data))
    return path


def open_onnx(folder: Path) -> Backend:
    backend, _ = open_backend(BackendRequest(model_path=folder, backend="onnxruntime"))
    return backend


def frames(count: int = 1) -> np.ndarray:
    return np.random.default_rng(5).integers(0, 256, (count, SIZE, SIZE, 3), dtype=np.uint8)


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """default_cache_dir reads XDG_CACHE_HOME: each test gets its own empty ONNX cache."""
    home = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    return home / "seg_perception" / "onnx"


@pytest.fixture(scope="module")
def checkpoint_a(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("a") / "ckpt", seed=1)


@pytest.fixture(scope="module")
def checkpoint_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("b") / "ckpt", seed=2, zero_semantic_head=True)


@pytest.fixture(scope="module")
def graph_a(checkpoint_a: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A's graph as the factory caches it, exported once: tests copy it in rather than export again."""
    return cached_onnx(checkpoint_a, load_card(checkpoint_a), (SIZE, SIZE), tmp_path_factory.mktemp("cache"))


def warm(cache_home: Path, graph: Path) -> Path:
    cache_home.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy2(graph, cache_home / graph.name))


def copy_of(checkpoint: Path, tmp_path: Path, name: str = "copy") -> Path:
    return Path(shutil.copytree(checkpoint, tmp_path / name))


# ------------------------------------------------------------------------------------------ the card's hash


def test_the_demo_card_carries_its_hash_and_loads() -> None:
    card = load_card(DEMO)
    assert card.weights_sha256 == sha256_of(DEMO / card.weights_file)
    model, loaded = load_checkpoint(DEMO)
    assert loaded == card and model.num_classes == card.num_classes


@pytest.mark.parametrize("value", [None, "", "ab" * 31, "zz" * 32, 42])
def test_a_card_without_a_valid_weights_hash_is_refused(checkpoint_a: Path, tmp_path: Path, value: object) -> None:
    folder = copy_of(checkpoint_a, tmp_path)
    card_file = edit_card(folder, weights_sha256=value)
    for load in (load_card, load_checkpoint):
        with pytest.raises(ModelCardError, match="weights_sha256") as error:
            load(folder)
        assert str(card_file) in str(error.value)


def test_save_card_refuses_a_card_that_would_not_load(tmp_path: Path) -> None:
    card = ModelCard(arch="ddrnet23_slim", instance_head=True, classes=CLASSES, input_width=SIZE, input_height=SIZE,
                     mean=IMAGENET_MEAN, std=IMAGENET_STD)  # no weights_sha256
    with pytest.raises(ModelCardError, match="weights_sha256"):
        save_card(card, tmp_path / CARD_FILE)
    assert not (tmp_path / CARD_FILE).exists()


def test_an_uppercase_hash_is_the_same_hash(checkpoint_a: Path, tmp_path: Path) -> None:
    folder = copy_of(checkpoint_a, tmp_path)
    edit_card(folder, weights_sha256=load_card(checkpoint_a).weights_sha256.upper())
    _, card = load_checkpoint(folder)
    assert card.weights_sha256 == load_card(checkpoint_a).weights_sha256


@pytest.mark.parametrize("replacement", ["other weights", "text"])
def test_weights_that_are_not_the_cards_are_refused_even_with_a_warm_cache(
        checkpoint_a: Path, checkpoint_b: Path, graph_a: Path, tmp_path: Path, cache_home: Path,
        replacement: str) -> None:
    folder = copy_of(checkpoint_a, tmp_path)
    cached = warm(cache_home, graph_a)
    stamp = cached.stat().st_mtime_ns
    assert cached_onnx(folder, load_card(folder), (SIZE, SIZE), cache_home) == cached, "the cache is warm for it"
    assert cached.stat().st_mtime_ns == stamp
    weights = (folder / WEIGHTS_FILE).resolve()
    if replacement == "text":
        weights.write_text("not weights at all\n")
    else:
        shutil.copyfile(checkpoint_b / WEIGHTS_FILE, weights)
    for load in (open_onnx, load_checkpoint, lambda f: TorchBackend(f)):
        with pytest.raises(ModelCardError, match=r"sha256 .* differs") as error:
            load(folder)
        assert str(weights) in str(error.value) and str(folder / CARD_FILE) in str(error.value)
    assert list(cache_home.iterdir()) == [cached] and cached.stat().st_mtime_ns == stamp


def test_two_checkpoints_never_share_a_cache_entry(checkpoint_a: Path, checkpoint_b: Path, cache_home: Path) -> None:
    """Same architecture, card and size, different weights: B (semantic head zeroed) must run B's graph."""
    first, second = open_onnx(checkpoint_a), open_onnx(checkpoint_b)
    assert len(list(cache_home.glob("*.onnx"))) == 2
    assert first.card.weights_sha256 == load_card(checkpoint_a).weights_sha256
    assert second.card.weights_sha256 == load_card(checkpoint_b).weights_sha256
    images = frames()
    zeroed = second.infer(images)
    assert not zeroed.semantic_logits.any() and not zeroed.semantic_ids.any()
    assert first.infer(images).semantic_logits.abs().sum() > 0
    # Warm: each opens its own graph again, without exporting.
    stamps = {p: p.stat().st_mtime_ns for p in cache_home.glob("*.onnx")}
    assert not open_onnx(checkpoint_b).infer(images).semantic_logits.any()
    assert {p: p.stat().st_mtime_ns for p in cache_home.glob("*.onnx")} == stamps


def test_a_cached_graph_of_other_weights_is_exported_again_not_run(
        checkpoint_a: Path, checkpoint_b: Path, graph_a: Path, tmp_path: Path, cache_home: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    cached = warm(cache_home, graph_a)
    # Put B's graph (semantic head zeroed) under A's cache name, as a stale or tampered cache would hold it.
    export_onnx(checkpoint_b, tmp_path / "b.onnx")
    shutil.copyfile(tmp_path / "b.onnx", cached)
    with caplog.at_level(logging.WARNING, logger="seg_perception.inference.factory"):
        backend = open_onnx(checkpoint_a)
    assert "exported from weights with sha256" in caplog.text and str(cached) in caplog.text
    assert backend.card.weights_sha256 == load_card(checkpoint_a).weights_sha256
    reference = TorchBackend(checkpoint_a).infer(frames())
    outputs = backend.infer(frames())
    assert outputs.semantic_logits.abs().sum() > 0, "ran B's graph"
    torch.testing.assert_close(outputs.semantic_logits, reference.semantic_logits, atol=1e-3, rtol=1e-3)
    assert [p.name for p in cache_home.iterdir()] == [cached.name], "no partial export is left behind"


@pytest.mark.parametrize("content", [b"", b"\x08\x07garbage that is no protobuf \xff\xff\xff", "truncated"])
def test_a_corrupt_cached_graph_is_exported_again(checkpoint_a: Path, graph_a: Path, cache_home: Path,
                                                  content: bytes | str, caplog: pytest.LogCaptureFixture) -> None:
    cached = warm(cache_home, graph_a)
    genuine = cached.read_bytes()
    cached.write_bytes(genuine[: len(genuine) // 2] if content == "truncated" else content)
    with caplog.at_level(logging.WARNING, logger="seg_perception.inference.factory"):
        backend = open_onnx(checkpoint_a)
    assert "exporting" in caplog.text and "again" in caplog.text
    assert backend.card.weights_sha256 == load_card(checkpoint_a).weights_sha256
    assert cached.stat().st_size == len(genuine) and [p.name for p in cache_home.iterdir()] == [cached.name]


# --------------------------------------------------------------------------------- where the weights may be


@pytest.mark.parametrize("weights_file", ["/etc/passwd", "ABSOLUTE", "../x.safetensors", "../../../../etc/passwd",
                                          "sub/../../ckpt/model.safetensors", "model.pt", "model.safetensors.txt",
                                          ""])
def test_weights_file_outside_the_folder_or_not_safetensors_is_refused(
        checkpoint_a: Path, tmp_path: Path, weights_file: str) -> None:
    folder = copy_of(checkpoint_a, tmp_path / "models", "ckpt")
    if weights_file == "ABSOLUTE":  # the real weights, by absolute path: still refused
        weights_file = str((folder / WEIGHTS_FILE).resolve())
    card_file = edit_card(folder, weights_file=weights_file)
    # (the tmp folder's name holds this test's name: match the message, not the path)
    with pytest.raises(ModelCardError, match=re.escape(f"weights_file {weights_file!r} must be a relative")) as error:
        load_checkpoint(folder)
    assert str(card_file) in str(error.value)


def test_a_neighbouring_checkpoint_cannot_be_borrowed(checkpoint_a: Path, tmp_path: Path, cache_home: Path) -> None:
    """The reported case: a card naming ``../demo/model.safetensors`` (with that file's hash) exported and ran."""
    neighbour = copy_of(checkpoint_a, tmp_path, "demo")
    folder = tmp_path / "mine"
    folder.mkdir()
    shutil.copyfile(neighbour / CARD_FILE, folder / CARD_FILE)
    card_file = edit_card(folder, weights_file="../demo/model.safetensors")
    with pytest.raises(ModelCardError, match=r"'\.\./demo/model\.safetensors'") as error:
        open_onnx(folder)
    assert str(card_file) in str(error.value)
    assert not cache_home.exists() or not list(cache_home.iterdir())


def test_a_symlink_to_weights_outside_the_folder_is_refused(checkpoint_a: Path, tmp_path: Path,
                                                            cache_home: Path) -> None:
    folder = copy_of(checkpoint_a, tmp_path)
    outside = tmp_path / "elsewhere.safetensors"
    (folder / WEIGHTS_FILE).rename(outside)  # the very bytes the card's hash names: only the location is wrong
    (folder / WEIGHTS_FILE).symlink_to(outside)
    for load in (load_checkpoint, open_onnx):
        with pytest.raises(ModelCardError, match="outside the checkpoint folder") as error:
            load(folder)
        assert str(folder / CARD_FILE) in str(error.value) and "'model.safetensors'" in str(error.value)


def test_a_symlink_inside_the_folder_is_fine(checkpoint_a: Path, tmp_path: Path) -> None:
    folder = copy_of(checkpoint_a, tmp_path)
    (folder / WEIGHTS_FILE).rename(folder / "real.safetensors")
    (folder / WEIGHTS_FILE).symlink_to("real.safetensors")
    _, card = load_checkpoint(folder)
    assert card == load_card(checkpoint_a)


def test_a_directory_named_as_the_weights_is_refused(checkpoint_a: Path, tmp_path: Path) -> None:
    folder = copy_of(checkpoint_a, tmp_path)
    (folder / "weights.safetensors").mkdir()
    card_file = edit_card(folder, weights_file="weights.safetensors")
    with pytest.raises(ModelCardError, match="not a regular file") as error:
        load_checkpoint(folder)
    assert str(card_file) in str(error.value) and "'weights.safetensors'" in str(error.value)


# ---------------------------------------------------------------------------------- files that are no weights


def not_safetensors(kind: str, genuine: bytes) -> bytes:
    if kind == "pickle":
        return pickle.dumps({"semantic_head.classify.conv.weight": [0.0] * 8})
    if kind == "torch.save":
        buffer = io.BytesIO()
        torch.save({"w": torch.zeros(2)}, buffer)
        return buffer.getvalue()
    return {"text": b"weights go here\n", "empty": b"", "truncated": genuine[: len(genuine) // 3]}[kind]


@pytest.mark.parametrize("kind", ["pickle", "torch.save", "text", "empty", "truncated"])
def test_a_file_that_is_not_safetensors_is_named(checkpoint_a: Path, tmp_path: Path, kind: str) -> None:
    folder = copy_of(checkpoint_a, tmp_path)
    weights = folder / WEIGHTS_FILE
    weights.write_bytes(not_safetensors(kind, weights.read_bytes()))
    with pytest.raises(WeightsError, match="not a safetensors file") as error:
        read_state_dict(weights)
    assert str(weights) in str(error.value)
    # With a card that vouches for exactly these bytes, the format check is what stops it.
    edit_card(folder, weights_sha256=sha256_of(weights))
    with pytest.raises(WeightsError, match="not a safetensors file") as error:
        load_checkpoint(folder)
    assert str(weights.resolve()) in str(error.value)


def test_unreadable_torch_checkpoints_are_named(tmp_path: Path) -> None:
    for name, content in (("empty.pt", b""), ("text.pth", b"hello\n")):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(WeightsError) as error:
            read_state_dict(path)
        assert str(path) in str(error.value)


@pytest.mark.parametrize("defect", ["pickle", "no hash"])
def test_export_refuses_with_one_line_naming_the_file(checkpoint_a: Path, tmp_path: Path, defect: str) -> None:
    folder = copy_of(checkpoint_a, tmp_path)
    if defect == "pickle":
        named = folder / WEIGHTS_FILE
        named.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
        edit_card(folder, weights_sha256=sha256_of(named))
    else:
        named = edit_card(folder, weights_sha256=None)
    executable = Path(sys.executable).with_name("seg-perception")
    run = subprocess.run([str(executable), "export", "--model", str(folder), "--out", str(tmp_path / "x.onnx")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    assert named.name in lines[0] and (str(folder) in lines[0] or str(folder.resolve()) in lines[0])
    assert not (tmp_path / "x.onnx").exists()


def test_an_onnx_file_that_is_no_graph_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_text("an ONNX graph, honestly\n")
    with pytest.raises(BackendError, match="ONNX Runtime cannot load it") as error:
        open_backend(BackendRequest(model_path=path, backend="onnxruntime"))
    assert str(path) in str(error.value)
    with pytest.raises(BackendError, match="not a readable ONNX graph") as error:
        OnnxRuntimeBackend.read_card(path)
    assert str(path) in str(error.value)


@pytest.mark.ros
def test_the_node_refuses_swapped_weights_with_a_warm_cache(checkpoint_a: Path, graph_a: Path, tmp_path: Path,
                                                            cache_home: Path) -> None:
    """The reported case at the node: text saved as model.safetensors beside a card whose graph is cached."""
    import yaml

    folder = copy_of(checkpoint_a, tmp_path)
    warm(cache_home, graph_a)
    weights = (folder / WEIGHTS_FILE).resolve()
    weights.write_text("weights go here\n")
    repo = Path(__file__).resolve().parents[1]
    shipped = yaml.safe_load((repo / "config" / "perception.param.yaml").read_text())
    shipped["/**"]["ros__parameters"].update(model_path=str(folder), backend="onnxruntime")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(shipped))
    # The node inherits XDG_CACHE_HOME (cache_home), so it finds the graph warmed above; before the fix it ran it.
    run = subprocess.run([sys.executable, "-m", "seg_perception.cli", "node", "--params", str(params)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    assert str(weights) in lines[0] and "differs" in lines[0]
