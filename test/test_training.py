"""Training side: dataset loaders on tiny folders in the real layouts, targets, losses, a 2-iteration
training run that writes a loadable checkpoint, and strict checkpoint loading."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from seg_perception.datasets import bdd100k, cityscapes, labels
from seg_perception.datasets.cityscapes import DatasetError
from seg_perception.datasets.synthetic import write_synthetic
from seg_perception.models.card import ModelCardError, load_card, save_card
from seg_perception.models.checkpoint import load_checkpoint
from seg_perception.models.weights import WeightsError
from seg_perception.training.data import Augmentation, PanopticDataset, parse_data_spec
from seg_perception.training.losses import LossWeights, ohem_cross_entropy, panoptic_loss
from seg_perception.training.trainer import TrainConfig, train


def _write_bdd(root: Path) -> np.ndarray:
    """One 10k image with semantic + panoptic labels and one 100k image with drivable + lane masks."""
    h, w = 40, 60
    image = np.full((h, w, 3), 90, np.uint8)
    for sub, name in (("10k", "a1"), ("100k", "b1")):
        path = root / "images" / sub / "val" / f"{name}.jpg"
        path.parent.mkdir(parents=True)
        cv2.imwrite(str(path), image)
    semantic = np.full((h, w), labels.train_id("road"), np.uint8)
    semantic[:10] = labels.train_id("sky")
    semantic[20:30, 10:20] = labels.train_id("car")
    semantic[0, 0] = 255
    (root / "labels/sem_seg/masks/val").mkdir(parents=True)
    cv2.imwrite(str(root / "labels/sem_seg/masks/val/a1.png"), semantic)
    rgba = np.zeros((h, w, 4), np.uint8)
    rgba[..., 0] = 7  # road (BDD100K panoptic id)
    rgba[:10, :, 0] = 30  # sky
    rgba[20:30, 10:20] = (35, 0, 0, 41)  # car, annotation 41
    rgba[20:30, 40:50] = (35, 2, 0, 42)  # car marked crowd (attribute bit 1)
    (root / "labels/pan_seg/bitmasks/val").mkdir(parents=True)
    cv2.imwrite(str(root / "labels/pan_seg/bitmasks/val/a1.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    drivable = np.full((h, w), 2, np.uint8)
    drivable[25:] = 0
    drivable[20:25] = 1
    lane = np.full((h, w), 255, np.uint8)
    lane[30:, 30] = 6  # single white, solid
    lane[30:, 5] = 4  # road curb: not a painted lane line
    for kind, array in (("drivable", drivable), ("lane", lane)):
        (root / f"labels/{kind}/masks/val").mkdir(parents=True)
        cv2.imwrite(str(root / f"labels/{kind}/masks/val/b1.png"), array)
    return semantic


def test_bdd100k_layout_loads_in_our_label_space(tmp_path: Path) -> None:
    semantic = _write_bdd(tmp_path)
    (ten_k,) = bdd100k.find_samples(tmp_path, "val", "10k")
    sample = bdd100k.load_sample(ten_k)
    np.testing.assert_array_equal(sample["train_ids"], semantic)
    instance_ids = sample["instance_ids"]
    assert instance_ids[25, 15] == 26 * 1000 + 41  # Cityscapes labelId of car, annotation id
    assert instance_ids[25, 45] == 26, "a crowd region has no instance id"
    assert instance_ids[0, 30] == 23  # sky is stuff: its labelId

    (hundred_k,) = bdd100k.find_samples(tmp_path, "val", "100k")
    sample = bdd100k.load_sample(hundred_k)
    assert sample["drivable"][20:].all() and not sample["drivable"][:20].any()
    train_ids = sample["train_ids"]
    assert (train_ids[30:, 30] == labels.LANE_MARKING).all()
    assert train_ids[35, 5] == labels.ROAD, "a road curb is not a lane line"
    assert train_ids[0, 0] == labels.IGNORE_TRAIN_ID, "labels the 100k set lacks are unknown, not background"
    assert set(np.unique(train_ids)) == {labels.ROAD, labels.LANE_MARKING, labels.IGNORE_TRAIN_ID}


def test_bdd100k_bad_files_name_themselves(tmp_path: Path) -> None:
    _write_bdd(tmp_path)
    cv2.imwrite(str(tmp_path / "labels/sem_seg/masks/val/a1.png"), np.full((40, 60), 40, np.uint8))
    with pytest.raises(DatasetError, match=r"a1\.png.*not BDD100K trainIds"):
        bdd100k.load_sample(bdd100k.find_samples(tmp_path, "val", "10k")[0])
    cv2.imwrite(str(tmp_path / "labels/sem_seg/masks/val/a1.png"), np.zeros((10, 10), np.uint8))
    with pytest.raises(DatasetError, match="differs from its image"):
        bdd100k.load_sample(bdd100k.find_samples(tmp_path, "val", "10k")[0])
    with pytest.raises(DatasetError, match="images/10k/train"):
        bdd100k.find_samples(tmp_path, "train", "10k")


def test_real_cityscapes_layout_without_lane_masks(tmp_path: Path) -> None:
    """A folder as the official download has it: labelIds + instanceIds, no masks of ours."""
    gt = tmp_path / "gtFine/val/aachen"
    images = tmp_path / "leftImg8bit/val/aachen"
    gt.mkdir(parents=True)
    images.mkdir(parents=True)
    label_ids = np.full((32, 64), 7, np.uint8)  # road
    label_ids[:8] = 23  # sky
    label_ids[10:20, 10:20] = 26  # car
    label_ids[0, 0] = 0  # unlabeled -> ignore
    instance_ids = label_ids.astype(np.uint16)
    instance_ids[10:20, 10:20] = 26000
    cv2.imwrite(str(images / "aachen_000000_000019_leftImg8bit.png"), np.zeros((32, 64, 3), np.uint8))
    cv2.imwrite(str(gt / "aachen_000000_000019_gtFine_labelIds.png"), label_ids)
    cv2.imwrite(str(gt / "aachen_000000_000019_gtFine_instanceIds.png"), instance_ids)
    (sample,) = cityscapes.find_samples(tmp_path, "val")
    assert sample.lane is None and sample.drivable is None
    arrays = cityscapes.load_sample(sample)
    assert arrays["train_ids"][15, 15] == labels.train_id("car") and arrays["train_ids"][0, 0] == 255
    assert "lane" not in arrays and arrays["instance_ids"][15, 15] == 26000


def test_dataset_targets_follow_augmentation(tmp_path: Path) -> None:
    write_synthetic(tmp_path, fmt="cityscapes", sequences=1, frames=2, width=128, height=64, seed=2,
                    show_progress=False)
    refs = parse_data_spec(f"synthetic:{tmp_path}:train")
    dataset = PanopticDataset(refs, input_size=(128, 64), augmentation=Augmentation(crop_size=(96, 48)))
    item = dataset[0]
    assert item["image"].shape == (3, 48, 96) and item["semantic"].shape == (48, 96)
    assert item["center"].shape == (1, 48, 96) and item["offset"].shape == (2, 48, 96)
    thing = torch.isin(item["semantic"], torch.tensor(labels.THING_TRAIN_IDS))
    # Offsets live exactly on instance pixels (thing pixels of annotated instances).
    assert bool((item["offset_weight"][0] > 0).eq(thing).all()) or not bool(thing.any())
    plain = PanopticDataset(refs, input_size=(128, 64))[1]
    assert plain["image"].shape == (3, 64, 128) and float(plain["center_weight"].min()) == 1.0
    with pytest.raises(ValueError, match="KIND:PATH:SPLIT"):
        parse_data_spec("mapillary:/x:train")


def test_ohem_keeps_hard_pixels() -> None:
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    logits = torch.zeros(1, 2, 4, 4)
    logits[0, 0] = 10.0  # every pixel confidently right ...
    logits[0, 0, 0, 0] = -10.0  # ... but one
    hard_ce = float(np.log1p(np.exp(10.0)))  # -log softmax of the wrong pixel (logits -10 vs 0)
    easy_ce = float(np.log1p(np.exp(-10.0)))
    hard_only = ohem_cross_entropy(logits, target, threshold=0.7, min_kept=1)
    assert hard_only == pytest.approx(hard_ce, rel=1e-4), "only the hard pixel counts"
    everything = ohem_cross_entropy(logits, target, threshold=0.7, min_kept=16)
    assert everything == pytest.approx((hard_ce + 15 * easy_ce) / 16, rel=1e-4)
    target[:] = 255
    assert float(ohem_cross_entropy(logits, target)) == 0.0


def test_instance_losses_vanish_without_instance_annotation() -> None:
    batch = {"semantic": torch.zeros(1, 8, 8, dtype=torch.long), "center": torch.ones(1, 1, 8, 8),
             "offset": torch.ones(1, 2, 8, 8), "offset_weight": torch.zeros(1, 1, 8, 8),
             "center_weight": torch.zeros(1, 1, 8, 8)}
    outputs = {"semantic": torch.zeros(1, 3, 8, 8), "aux": [], "center": torch.zeros(1, 1, 8, 8),
               "offset": torch.zeros(1, 2, 8, 8)}
    terms = panoptic_loss(outputs, batch, LossWeights())
    assert float(terms["center"]) == 0.0 and float(terms["offset"]) == 0.0


@pytest.fixture(scope="module")
def checkpoint_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("data")
    write_synthetic(data, fmt="cityscapes", sequences=1, frames=4, width=128, height=64, seed=4, show_progress=False)
    write_synthetic(data, fmt="cityscapes", sequences=1, frames=2, width=128, height=64, seed=5, split="val",
                    show_progress=False)
    return data


@pytest.fixture(scope="module")
def checkpoint(checkpoint_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = checkpoint_data
    out = tmp_path_factory.mktemp("ckpt")
    config = TrainConfig(train_data=(f"synthetic:{data}:train",), val_data=(f"synthetic:{data}:val",),
                         out=str(out), input_size=(128, 64), crop_size=(96, 48), batch_size=2, epochs=1,
                         max_iterations=2, workers=0, command="test")
    train(config, show_progress=False)
    return out


def test_two_iteration_training_writes_a_loadable_checkpoint(checkpoint: Path) -> None:
    card = load_card(checkpoint)
    assert card.arch == "ddrnet23_slim" and card.input_size == (128, 64) and card.num_classes == labels.NUM_CLASSES
    assert card.training["iterations"] == 2 and card.training["command"] == "test"
    values = card.metrics["validation_during_training"]["values"]
    assert values["images"] == 2 and 0.0 <= values["miou"] <= 1.0 and "pq" in values
    things = [v["pq"] for name, v in values["pq_per_class"].items()
              if labels.CLASS_NAMES.index(name) in labels.THING_TRAIN_IDS]
    assert len(things) == values["pq"]["things"]["n"]
    assert values["pq"]["things"]["pq"] == pytest.approx(np.mean(things), abs=1e-5)
    log = [json.loads(line) for line in (checkpoint / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 1 and log[0]["iteration"] == 2 and np.isfinite(log[0]["loss"]["total"])
    model, loaded = load_checkpoint(checkpoint)
    assert loaded == card and not model.aux_heads
    outputs = model(torch.zeros(1, 3, 64, 128))
    assert outputs.semantic_ids.shape == (1, 64, 128)
    weights_mb = (checkpoint / card.weights_file).stat().st_size / 2**20
    assert weights_mb <= 12, f"fp16 weights of {weights_mb:.1f} MB"


def test_resume_continues_from_the_checkpoint(checkpoint: Path) -> None:
    card = load_card(checkpoint)
    config = TrainConfig(**{**card.training["recipe"], "out": str(checkpoint), "command": "resume",
                            "train_data": tuple(card.training["data"]), "val_data": (), "epochs": 2,
                            "max_iterations": 4})
    train(config, resume=True, show_progress=False)
    log = [json.loads(line) for line in (checkpoint / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2] and log[-1]["iteration"] == 4


def test_checkpoint_loading_is_strict_and_checks_the_card(checkpoint: Path, tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "ckpt"
    shutil.copytree(checkpoint, broken)
    card = load_card(broken)

    weights = broken / card.weights_file
    original = weights.read_bytes()
    weights.write_bytes(original[:-8] + b"\0" * 8)
    with pytest.raises(ModelCardError, match="sha256"):
        load_checkpoint(broken)
    weights.write_bytes(original)

    fewer = type(card)(**{**card.__dict__, "classes": card.classes[:19]})
    save_card(fewer, broken / "model_card.json")
    with pytest.raises(WeightsError, match=r"shape mismatches.*19 classes"):
        load_checkpoint(broken)

    (broken / "model_card.json").write_text(json.dumps({"format": "seg_perception.model_card/1", "arch": "vit"}))
    with pytest.raises(ModelCardError, match="unknown arch 'vit'"):
        load_checkpoint(broken)
    (broken / "model_card.json").unlink()
    with pytest.raises(ModelCardError, match="no model card"):
        load_checkpoint(broken)


def test_torchrun_ddp_on_cpu_trains_and_writes_one_checkpoint(tmp_path: Path) -> None:
    """Two processes (gloo backend) share the batches; rank 0 alone writes the checkpoint."""
    import os
    import signal
    import socket
    import subprocess
    import sys

    data = tmp_path / "data"
    # 8 frames: 4 per rank, two batches of 2 (DAPPM's global pooling needs BatchNorm over >1 value)
    write_synthetic(data, fmt="cityscapes", sequences=1, frames=8, width=96, height=48, seed=6, show_progress=False)
    out = tmp_path / "ddp"
    with socket.socket() as probe:  # torchrun's static rendezvous needs a concrete free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
               "--master-port", str(port),
               "-m", "seg_perception.cli", "train", "--data", f"synthetic:{data}:train", "--out", str(out),
               "--input-size", "96x48", "--crop-size", "64x32", "--batch-size", "2", "--epochs", "1",
               "--max-iterations", "2", "--workers", "0", "--device", "cpu"]
    # Own session: on a timeout the whole group (torchrun and its workers) goes, not torchrun alone.
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    run = subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 1 and log[0]["iteration"] == 2, "one log line: only rank 0 writes"
    load_checkpoint(out)


def test_eval_records_metrics_with_data_and_command_in_the_card(checkpoint: Path, checkpoint_data: Path,
                                                                tmp_path: Path) -> None:
    import shutil

    from seg_perception.cli import main

    model = tmp_path / "model"
    shutil.copytree(checkpoint, model)
    card = load_card(model)
    val_spec = f"synthetic:{checkpoint_data}:val"
    assert main(["eval", "--model", str(model), "--dataset", val_spec, "--record", "heldout",
                 "--json", str(tmp_path / "m.json")]) == 0
    recorded = load_card(model).metrics["heldout"]
    assert recorded["data"] == [val_spec]
    assert recorded["command"].startswith("seg-perception eval --model") and "--record heldout" in recorded["command"]
    assert recorded["values"]["miou"] == json.loads((tmp_path / "m.json").read_text())["miou"]
    assert recorded["values"]["input_size"] == list(card.input_size)
    # At another input size (the node's input_width/height), recorded as such.
    assert main(["eval", "--model", str(model), "--dataset", val_spec, "--input-size", "64x32",
                 "--json", str(tmp_path / "small.json")]) == 0
    assert json.loads((tmp_path / "small.json").read_text())["input_size"] == [64, 32]
    assert load_card(model).weights_sha256 == card.weights_sha256
    load_checkpoint(model)  # still loads: recording metrics never touches the weights


def test_init_weights_starts_from_a_checkpoint_and_refuses_a_mismatch(checkpoint: Path, tmp_path: Path) -> None:
    from seg_perception.models.factory import build_model
    from seg_perception.training.trainer import _initialise_from

    net = build_model(arch="ddrnet23_slim", num_classes=labels.NUM_CLASSES)
    _initialise_from(net, checkpoint)
    deploy, _ = load_checkpoint(checkpoint)
    for key, value in deploy.state_dict().items():
        torch.testing.assert_close(net.state_dict()[key], value.float() if value.is_floating_point() else value)
    other = build_model(arch="bisenetv2", num_classes=labels.NUM_CLASSES)
    with pytest.raises(WeightsError, match="cannot initialise a bisenetv2"):
        _initialise_from(other, checkpoint)


def test_fine_tuned_card_records_the_stage_it_started_from(checkpoint: Path, checkpoint_data: Path,
                                                           tmp_path: Path) -> None:
    """Each stage's card carries the previous stages' recipes, so the whole lineage can be re-run."""
    first = load_card(checkpoint)

    def stage(init: Path, out: Path) -> TrainConfig:
        return TrainConfig(train_data=(f"synthetic:{checkpoint_data}:train",), out=str(out), input_size=(128, 64),
                           crop_size=(96, 48), batch_size=2, epochs=1, max_iterations=1, workers=0,
                           command=f"from {init}", init_weights=str(init))

    second_dir = train(stage(checkpoint, tmp_path / "second"), show_progress=False)
    third_dir = train(stage(second_dir, tmp_path / "third"), show_progress=False)
    second, third = load_card(second_dir), load_card(third_dir)
    assert second.training["previous_stage"]["command"] == first.training["command"]
    assert second.training["previous_stage"]["weights_sha256"] == first.weights_sha256
    assert third.training["previous_stage"]["command"] == f"from {checkpoint}"
    assert third.training["previous_stage"]["weights_sha256"] == second.weights_sha256
    assert third.training["previous_stage"]["previous_stage"] == second.training["previous_stage"]
    assert "previous_stage" not in first.training


def test_a_non_finite_loss_stops_training_before_anything_is_saved(checkpoint_data: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from seg_perception.training import trainer

    real_loss = trainer.panoptic_loss

    def poisoned(outputs, batch, weights):
        terms = real_loss(outputs, batch, weights)
        return {**terms, "total": terms["total"] * float("nan")}

    monkeypatch.setattr(trainer, "panoptic_loss", poisoned)
    out = tmp_path / "nan"
    config = TrainConfig(train_data=(f"synthetic:{checkpoint_data}:train",), out=str(out), input_size=(128, 64),
                         crop_size=(96, 48), batch_size=2, epochs=1, max_iterations=2, workers=0, command="test")
    with pytest.raises(FloatingPointError, match="loss became nan by iteration 1"):
        train(config, show_progress=False)
    assert not (out / "checkpoint.pt").exists() and not (out / "model.safetensors").exists()


def _ohem_by_sorting(logits, target, threshold, min_kept, ignore_index=255):
    """The DDRNet recipe, spelled out: a full sort of the valid pixels' true-class probabilities."""
    losses = torch.nn.functional.cross_entropy(logits, target, ignore_index=ignore_index, reduction="none").flatten()
    valid = target.flatten() != ignore_index
    losses = losses[valid]
    probs = torch.exp(-losses)
    kept = min(min_kept, losses.numel())
    cutoff = max(threshold, float(probs.sort().values[kept - 1])) if kept > 0 else threshold
    hard = losses[probs <= cutoff]
    return hard.mean() if hard.numel() else losses.mean()


@pytest.mark.parametrize("min_kept", [1, 50, 700, 1400, 1679, 5000, 100_000])
def test_ohem_equals_the_sorting_recipe_on_fixed_inputs(min_kept: int) -> None:
    """Both branches (threshold alone, and the min_kept-th probability), ignored pixels and ties included."""
    generator = torch.Generator().manual_seed(min_kept)
    logits = torch.randn(2, 5, 24, 40, generator=generator) * 3
    logits[:, :, :4] = torch.tensor([8.0, 0, 0, 0, 0])[:, None, None]  # tied, confidently right pixels
    target = torch.randint(0, 5, (2, 24, 40), generator=generator)
    target[:, :4] = 0
    target[:, -3:] = 255
    ours = ohem_cross_entropy(logits, target, threshold=0.7, min_kept=min_kept)
    reference = _ohem_by_sorting(logits, target, 0.7, min_kept)
    assert float(ours) == pytest.approx(float(reference), rel=1e-6)
    # and the gradient reaches exactly the selected pixels
    logits.requires_grad_(True)
    ohem_cross_entropy(logits, target, threshold=0.7, min_kept=min_kept).backward()
    assert logits.grad is not None and bool(torch.isfinite(logits.grad).all())


def _jitter_on_host(image: np.ndarray, factors: tuple[float, float, float]) -> np.ndarray:
    """The colour jitter as the workers used to run it: float32 numpy on the host, then uint8."""
    out = image.astype(np.float32) * factors[0]
    mean = out.mean()
    out = (out - mean) * factors[1] + mean
    grey = out.mean(axis=2, keepdims=True)
    out = (out - grey) * factors[2] + grey
    return np.clip(out, 0, 255).astype(np.uint8)


def test_device_side_jitter_and_normalisation_match_the_host_recipe() -> None:
    from seg_perception.training.data import IMAGENET_MEAN, IMAGENET_STD, prepare_images

    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (3, 40, 64, 3), dtype=np.uint8)
    factors = [(1.2, 0.8, 1.25), (0.75, 1.3, 0.7), (1.0, 1.0, 1.0)]
    batch = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
    ours = prepare_images(batch, torch.tensor(factors), IMAGENET_MEAN, IMAGENET_STD)
    mean, std = np.array(IMAGENET_MEAN, np.float32) * 255, np.array(IMAGENET_STD, np.float32) * 255
    for image, jitter, got in zip(images, factors, ours, strict=True):
        expected = _jitter_on_host(image, jitter) if jitter != (1.0, 1.0, 1.0) else image
        levels = got.numpy().transpose(1, 2, 0) * std + mean  # back to 8-bit levels
        difference = np.abs(levels - expected)
        assert difference.max() < 1.01  # float32 sums in another order may cross a level boundary ...
        assert (difference < 0.01).mean() > 0.995  # ... rarely
    np.testing.assert_allclose(ours[2].numpy().transpose(1, 2, 0), (images[2] - mean) / std, rtol=0, atol=1e-5)


def test_profile_run_reports_loader_wait_and_step_time_and_writes_no_model(checkpoint_data: Path, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "profile"
    config = TrainConfig(train_data=(f"synthetic:{checkpoint_data}:train",), out=str(out), input_size=(128, 64),
                         crop_size=(96, 48), batch_size=2, epochs=5, workers=0, command="test", profile=3)
    train(config, show_progress=False)
    report = json.loads((out / "profile.json").read_text())
    assert report["iterations"] == 2  # the first (warm-up) iteration is left out
    assert report["step_ms_p50"] > 0 and report["loader_wait_ms_p50"] > 0 and 0 < report["loader_wait_share"] < 1
    assert report["step_only_images_per_s"] >= report["images_per_s"] > 0
    assert "of the time waiting for data" in capsys.readouterr().out
    assert not (out / "model.safetensors").exists() and not (out / "checkpoint.pt").exists()


def test_training_from_the_imagenet_backbone(checkpoint_data: Path, tmp_path: Path) -> None:
    from seg_perception.models.convert import official_key
    from seg_perception.models.factory import build_model

    backbone = {str(official_key(k)): torch.randn_like(v) if v.is_floating_point() else v
                for k, v in build_model(arch="ddrnet23_slim", num_classes=19, deploy=True).state_dict().items()
                if k.startswith("backbone.") and not k.startswith("backbone.dappm.")}
    backbone = {k: v.abs() if k.endswith("running_var") else v for k, v in backbone.items()}
    torch.save({**backbone, "linear.weight": torch.zeros(1000, 1024)}, tmp_path / "DDRNet23s_imagenet.pth")
    config = TrainConfig(train_data=(f"synthetic:{checkpoint_data}:train",), out=str(tmp_path / "ckpt"),
                         input_size=(128, 64), crop_size=(96, 48), batch_size=2, epochs=1, max_iterations=1,
                         workers=0, command="test", backbone_weights=str(tmp_path / "DDRNet23s_imagenet.pth"))
    card = load_card(train(config, show_progress=False))
    assert card.training["recipe"]["backbone_weights"].endswith("DDRNet23s_imagenet.pth")
    both = TrainConfig(**{**config.__dict__, "init_weights": str(tmp_path / "ckpt")})
    with pytest.raises(ValueError, match="give one of them"):
        train(both, show_progress=False)


def test_stride_4_instance_head_trains_from_a_stride_8_stage_and_its_card_says_so(
        checkpoint: Path, checkpoint_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = TrainConfig(train_data=(f"synthetic:{checkpoint_data}:train",), out=str(tmp_path / "s4"),
                         input_size=(128, 64), crop_size=(96, 48), batch_size=2, epochs=1, max_iterations=1,
                         workers=0, command="test", init_weights=str(checkpoint), instance_stride=4)
    out = train(config, show_progress=False)
    assert "the instance head starts fresh" in capsys.readouterr().out
    card = load_card(out)
    assert card.instance_stride == 4 and load_card(checkpoint).instance_stride == 8
    model, _ = load_checkpoint(out)
    assert model.instance_head.output_stride == 4
    first, _ = load_checkpoint(checkpoint)
    # the backbone and the semantic head carried over from the stride-8 stage (one step later: close, not equal)
    learnt = [k for k in model.state_dict() if k.startswith(("semantic_head.", "backbone.layer1."))
              and k.endswith((".weight", ".bias"))]  # not the BN statistics, which one step moves by 10 %
    moved = [k for k in learnt
             if not torch.allclose(model.state_dict()[k].float(), first.state_dict()[k].float(), atol=0.01)]
    assert learnt and not moved


def test_decoded_cache_gives_the_source_arrays_and_never_stale_ones(checkpoint_data: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str],
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    import os

    from seg_perception import cli
    from seg_perception.training.decoded_cache import CachedSampleRef, with_cache

    spec = f"synthetic:{checkpoint_data}:train"
    cache = tmp_path / "decoded"
    assert cli.main(["decode", "--data", spec, "--out", str(cache)]) == 0
    assert "decoded 4 samples, 0 were there already" in capsys.readouterr().out
    assert cli.main(["decode", "--data", spec, "--out", str(cache)]) == 0
    assert "decoded 0 samples, 4 were there already" in capsys.readouterr().out

    refs = parse_data_spec(spec)
    cached, hits = with_cache(refs, cache)
    assert hits == 4 and all(isinstance(r, CachedSampleRef) for r in cached)
    for ref, fast in zip(refs, cached, strict=True):
        want, got = ref.load(), fast.load()
        assert want.keys() == got.keys()
        assert all(np.array_equal(want[k], got[k]) and want[k].dtype == got[k].dtype for k in want)

    # an edited source no longer matches its entry: that sample decodes from its files again
    edited = refs[0].sample.image
    os.utime(edited, ns=(edited.stat().st_atime_ns, edited.stat().st_mtime_ns + 10**9))
    cached, hits = with_cache(refs, cache)
    assert hits == 3 and not isinstance(cached[0], CachedSampleRef)
    # a damaged entry is said and the sample comes from its source files
    damaged = cached[1]
    damaged.cache_path.write_bytes(b"not an npz")
    assert np.array_equal(damaged.load()["image"], refs[1].load()["image"])
    assert f"decoded cache entry {damaged.cache_path} unreadable" in caplog.text


def test_training_reports_decoded_cache_coverage(checkpoint_data: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from seg_perception.training.decoded_cache import DecodedCache

    DecodedCache(tmp_path / "decoded").write(parse_data_spec(f"synthetic:{checkpoint_data}:train")[:3])
    config = TrainConfig(train_data=(f"synthetic:{checkpoint_data}:train",), out=str(tmp_path / "p"),
                         input_size=(128, 64), crop_size=(96, 48), batch_size=2, epochs=1, workers=0,
                         command="test", profile=2, decoded_cache=str(tmp_path / "decoded"))
    train(config, show_progress=False)
    assert "3 of 4 training samples; 1 are decoded from their files every epoch" in capsys.readouterr().out
