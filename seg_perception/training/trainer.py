"""The training loop behind `seg-perception train`.

Poly learning rate, AdamW or SGD, AMP on CUDA, checkpoint every epoch and resume, validation metrics
every epoch, DDP when started by ``torchrun`` (one process per GPU). The result is a checkpoint folder
(``model.safetensors`` + ``model_card.json``) that the rest of the product loads.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from seg_perception.datasets import labels
from seg_perception.evaluation.dataset_eval import EvalSettings, evaluate_model
from seg_perception.models.card import CARD_FILE, WEIGHTS_FILE, ClassEntry, ModelCard, load_card, save_card, sha256_of
from seg_perception.models.convert import load_imagenet_backbone
from seg_perception.models.factory import build_model
from seg_perception.models.weights import save_weights
from seg_perception.postprocess.panoptic import PanopticConfig
from seg_perception.postprocess.roles import default_role_config, load_role_config, resolve_roles
from seg_perception.training.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Augmentation,
    PanopticDataset,
    parse_data_spec,
    prepare_images,
    worker_init,
)
from seg_perception.training.losses import LossWeights, panoptic_loss

CHECKPOINT = "checkpoint.pt"
LOG = "train_log.jsonl"
PROGRESS_EVERY = 10  # iterations between progress updates (each reads the loss back from the device)


@dataclass(frozen=True)
class TrainConfig:
    train_data: tuple[str, ...]
    out: str
    val_data: tuple[str, ...] = ()
    arch: str = "ddrnet23_slim"
    input_size: tuple[int, int] = (1024, 512)  # (width, height) the model sees at inference
    crop_size: tuple[int, int] = (512, 256)
    scale_range: tuple[float, float] = (0.5, 2.0)
    batch_size: int = 8
    epochs: int = 10
    optimizer: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 1e-2
    lane_dice: float = 0.5
    workers: int = 2
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # only on CUDA
    max_iterations: int = 0  # stop early (smoke tests); 0 = epochs decide
    val_batch_size: int = 4
    fp16_weights: bool = True
    init_weights: str = ""  # a checkpoint folder to start from (fine-tuning, or continuing without checkpoint.pt)
    instance_stride: int = 8  # 4: the instance head reads the backbone's 1/4 features
    decoded_cache: str = ""  # a folder written by `seg-perception decode`: samples found there skip decoding
    backbone_weights: str = ""  # the official DDRNet-23-slim ImageNet backbone (.pth) to start from
    profile: int = 0  # > 0: time this many iterations (loader wait against step), report them and write no model
    command: str = "python API"  # the CLI passes the command line that started the run


def _distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank), initialising the process group when torchrun started us."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0"))


def _mean_loss(sums: dict[str, torch.Tensor], batches: int, iteration: int) -> float:
    """The epoch's running mean loss; checked every few steps, not every step: a NaN stays in the sum."""
    mean = float(sums["total"]) / batches
    if not math.isfinite(mean):
        raise FloatingPointError(f"loss became {mean} by iteration {iteration}; lower --lr or check the data")
    return mean


def _device(config: TrainConfig, local_rank: int) -> torch.device:
    if config.device != "auto":
        return torch.device(config.device)
    return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")


def _card(config: TrainConfig, *, roles: dict, weights: Path, metrics: dict, duration_s: float,
          iterations: int, init_card: ModelCard | None = None) -> ModelCard:
    training = {"command": config.command, "data": list(config.train_data), "val_data": list(config.val_data),
                "recipe": {k: v for k, v in asdict(config).items() if k not in ("command", "out")},
                "iterations": iterations, "duration_s": round(duration_s, 1), "roles": roles,
                "torch": torch.__version__}
    if init_card is not None:
        training["previous_stage"] = previous_stage(init_card)
    return ModelCard(
        arch=config.arch, instance_head=True, instance_stride=config.instance_stride,
        classes=tuple(ClassEntry(c.train_id, c.name, c.is_thing) for c in labels.CLASSES),
        input_width=config.input_size[0], input_height=config.input_size[1], mean=IMAGENET_MEAN, std=IMAGENET_STD,
        weights_file=weights.name, weights_sha256=sha256_of(weights),
        weights_dtype="float16" if config.fp16_weights else "float32",
        training=training,
        metrics=metrics,
    )


def previous_stage(init_card: ModelCard) -> dict:
    """What a fine-tuned card records of the checkpoint it started from: that checkpoint's own training (with
    its previous stages, so the whole lineage can be re-run) and its weights hash and input size."""
    return {**init_card.training, "weights_sha256": init_card.weights_sha256,
            "input_size": list(init_card.input_size)}


def train(config: TrainConfig, *, resume: bool = False, show_progress: bool = True) -> Path:
    """Train and write the checkpoint folder ``config.out``; returns its path."""
    rank, world, local_rank = _distributed()
    device = _device(config, local_rank)
    out = Path(config.out)
    torch.manual_seed(config.seed)
    if config.optimizer not in ("adamw", "sgd"):
        raise ValueError(f"optimizer must be adamw or sgd, got {config.optimizer!r}")

    train_refs = [ref for spec in config.train_data for ref in parse_data_spec(spec)]
    if config.decoded_cache:
        from seg_perception.training.decoded_cache import with_cache

        train_refs, cached = with_cache(train_refs, config.decoded_cache)
        if rank == 0:
            print(f"decoded cache {config.decoded_cache}: {cached} of {len(train_refs)} training samples; "
                  f"{len(train_refs) - cached} are decoded from their files every epoch"
                  + (" (run `seg-perception decode` for them)" if cached < len(train_refs) else ""), flush=True)
    val_refs = [ref for spec in config.val_data for ref in parse_data_spec(spec)]
    dataset = PanopticDataset(train_refs, input_size=config.input_size, seed=config.seed,
                              augmentation=Augmentation(crop_size=config.crop_size, scale_range=config.scale_range))
    sampler = DistributedSampler(dataset, seed=config.seed) if world > 1 else None
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=sampler is None, sampler=sampler,
                        num_workers=config.workers, drop_last=len(dataset) >= config.batch_size,
                        persistent_workers=config.workers > 0, pin_memory=device.type == "cuda",
                        worker_init_fn=worker_init, generator=torch.Generator().manual_seed(config.seed))

    if config.backbone_weights and config.init_weights:
        raise ValueError("--backbone-weights and --init-weights both set the backbone; give one of them")
    model = build_model(arch=config.arch, num_classes=labels.NUM_CLASSES, instance_stride=config.instance_stride)
    if config.backbone_weights and not resume:  # on resume the weights come from checkpoint.pt
        loaded = load_imagenet_backbone(model, config.backbone_weights)
        if rank == 0:
            print(f"loaded {loaded} backbone tensors from {config.backbone_weights} (DAPPM and heads start fresh)",
                  flush=True)
    model = model.to(device)
    # channels_last: what cuDNN's fp16 tensor-core convolutions want; on the CPU the default layout is kept.
    memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    if world > 1:
        if device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda"
                                                          else None)
    net = model.module if world > 1 else model
    if config.optimizer == "adamw":
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)
    use_amp = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    total_iterations = config.epochs * len(loader)
    if config.max_iterations:
        total_iterations = min(total_iterations, config.max_iterations)
    crop_pixels = config.crop_size[0] * config.crop_size[1]
    weights = LossWeights(aux=net.aux_loss_weights, lane_dice=config.lane_dice,
                          lane_class=labels.LANE_MARKING, ohem_min_kept=max(1, config.batch_size * crop_pixels // 16))

    start_epoch, iteration, history = 0, 0, []
    init_card = None
    if config.init_weights:
        init_from = Path(config.init_weights)
        # On resume the weights come from checkpoint.pt; the card still names the stage this run continues.
        init_card = load_card(init_from) if resume else _initialise_from(net, init_from)
    if resume:
        state = torch.load(out / CHECKPOINT, map_location=device, weights_only=True)
        net.load_state_dict(state["model"], strict=True)
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, iteration, history = state["epoch"], state["iteration"], json.loads(state["history"])
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    roles = load_role_config(default_role_config())
    role_mapping = resolve_roles(roles, labels.CLASS_NAMES, labels.THING_TRAIN_IDS)
    eval_settings = EvalSettings(
        class_names=labels.CLASS_NAMES, thing_ids=labels.THING_TRAIN_IDS, input_size=config.input_size,
        mean=IMAGENET_MEAN, std=IMAGENET_STD, roles=role_mapping,
        panoptic=PanopticConfig.for_input(labels.THING_TRAIN_IDS, config.input_size),
    )
    epoch, lr = start_epoch, config.lr
    profile: list[tuple[float, float, int]] = []  # per iteration: loader wait ms, step ms, images
    while epoch < config.epochs and iteration < total_iterations:
        model.train()
        dataset.set_epoch(epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        sums: dict[str, torch.Tensor] = {}  # on the device: reading a loss back every step stalls a GPU
        seen, batches, epoch_start = 0, 0, time.perf_counter()
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch",
                   disable=not show_progress or rank != 0)
        step_end = time.perf_counter()
        for batch in bar:
            if iteration >= total_iterations or (config.profile and len(profile) >= config.profile):
                break
            batch_ready = time.perf_counter()
            lr = config.lr * (1 - iteration / total_iterations) ** 0.9
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            images = prepare_images(batch["image"], batch["jitter"], dataset.mean, dataset.std)
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                outputs = model(images.contiguous(memory_format=memory_format))
            terms = panoptic_loss({k: (v.float() if torch.is_tensor(v) else [a.float() for a in v])
                                   for k, v in outputs.items()}, batch, weights)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(terms["total"]).backward()
            scaler.step(optimizer)
            scaler.update()
            iteration += 1
            batches += 1
            seen += batch["image"].shape[0] * world
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + value.detach().float()
            if config.profile:
                if device.type == "cuda":
                    torch.cuda.synchronize(device)  # the step's GPU work, not just its queueing
                now = time.perf_counter()
                profile.append(((batch_ready - step_end) * 1000, (now - batch_ready) * 1000, len(batch["image"])))
                step_end = now
            if batches % PROGRESS_EVERY == 1:
                bar.set_postfix(loss=f"{_mean_loss(sums, batches, iteration):.3f}", lr=f"{lr:.2e}",
                                img_s=f"{seen / (time.perf_counter() - epoch_start):.1f}")
        if batches:
            _mean_loss(sums, batches, iteration)  # never log or save an epoch that went non-finite
        if config.profile and (len(profile) >= config.profile or iteration >= total_iterations):
            break
        epoch += 1
        if config.profile:
            continue  # a profile run times steps; it validates, logs and saves nothing
        record = {"epoch": epoch, "iteration": iteration, "lr": lr,
                  "loss": {k: round(float(v) / max(1, batches), 5) for k, v in sums.items()},
                  "images_per_s": round(seen / (time.perf_counter() - epoch_start), 2)}
        if rank == 0 and val_refs:
            net.eval()
            deploy_forward = _DeployView(net)
            record["val"] = evaluate_model(net, val_refs, eval_settings, device=device,
                                           batch_size=config.val_batch_size, show_progress=show_progress,
                                           forward=deploy_forward)
        if rank == 0:
            history.append(record)
            with (out / LOG).open("a") as log:
                log.write(json.dumps(record) + "\n")
            torch.save({"model": net.state_dict(), "optimizer": optimizer.state_dict(),
                        "scaler": scaler.state_dict(), "epoch": epoch, "iteration": iteration,
                        "history": json.dumps(history), "config": json.dumps(asdict(config))}, out / CHECKPOINT)
            summary = record.get("val", {})
            print(f"epoch {epoch}: loss {record['loss'].get('total', float('nan')):.4f}"
                  + (f", val mIoU {summary.get('miou')}" if summary else ""), flush=True)

    if rank == 0 and config.profile:
        _report_profile(profile, config, out)  # also when the data ran out before N iterations
    if rank == 0 and not config.profile:
        _export(net, config, history, roles=roles, duration_s=time.perf_counter() - started, iterations=iteration,
                init_card=init_card)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return out


def _report_profile(profile: list[tuple[float, float, int]], config: TrainConfig, out: Path) -> None:
    """Where the time goes: waiting for the loader, or the step on the device (the first iteration, which
    starts the workers and warms the device up, is left out when there are others)."""
    if not profile:
        raise ValueError("--profile: no training iteration ran (is the training set smaller than one batch?)")
    timed = profile[1:] if len(profile) > 1 else profile
    waits, steps = sorted(p[0] for p in timed), sorted(p[1] for p in timed)
    total_s = sum(p[0] + p[1] for p in timed) / 1000
    report = {
        "iterations": len(timed), "batch_size": config.batch_size, "crop_size": list(config.crop_size),
        "workers": config.workers, "device": config.device,
        "loader_wait_ms_p50": round(waits[len(waits) // 2], 2), "step_ms_p50": round(steps[len(steps) // 2], 2),
        "loader_wait_share": round(sum(waits) / max(1e-9, sum(waits) + sum(steps)), 3),
        "images_per_s": round(sum(p[2] for p in timed) / max(1e-9, total_s), 2),
        "step_only_images_per_s": round(sum(p[2] for p in timed) / max(1e-9, sum(steps) / 1000), 2),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "profile.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"profile over {report['iterations']} iterations: loader wait p50 {report['loader_wait_ms_p50']} ms, "
          f"step p50 {report['step_ms_p50']} ms ({report['loader_wait_share']:.0%} of the time waiting for data); "
          f"{report['images_per_s']} images/s end to end, {report['step_only_images_per_s']} if the loader kept up "
          f"(written to {out / 'profile.json'}; no model is written by a profile run)", flush=True)


def _initialise_from(net: torch.nn.Module, checkpoint: Path) -> ModelCard:
    """Start from a deploy checkpoint: every weight but the training-only auxiliary heads must match exactly.

    Returns the checkpoint's card, whose training becomes this run's ``previous_stage``.
    """
    from seg_perception.models.checkpoint import load_checkpoint
    from seg_perception.models.weights import WeightsError

    deploy, card = load_checkpoint(checkpoint)
    if card.arch != net.arch or card.num_classes != net.num_classes:
        raise WeightsError(f"{checkpoint}: a {card.summary()} cannot initialise a {net.arch} with "
                           f"{net.num_classes} classes")
    fresh = ["aux_heads."]  # training-only: deploy checkpoints do not carry them
    if net.instance_head is not None and card.instance_stride != net.instance_head.output_stride:
        fresh.append("instance_head.")  # another stride is another head; the backbone and semantic head carry over
        print(f"{checkpoint}: its instance head predicts at stride {card.instance_stride}, this run's at "
              f"{net.instance_head.output_stride}: the instance head starts fresh", flush=True)
    state = {k: v for k, v in deploy.state_dict().items() if not k.startswith(tuple(fresh))}
    expected = net.state_dict()
    missing = [k for k in expected if k not in state and not k.startswith(tuple(fresh))]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise WeightsError(f"{checkpoint}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    net.load_state_dict({**expected, **{k: v.to(expected[k].dtype) for k, v in state.items()}}, strict=True)
    return card


class _DeployView:
    """Deploy-mode outputs from a training-mode network, without copying it (validation during training)."""

    def __init__(self, net: torch.nn.Module) -> None:
        self.net = net

    def __call__(self, image: torch.Tensor):
        was_deploy = self.net.is_deploy
        self.net.is_deploy = True  # aux heads are skipped in the deploy branch of forward
        try:
            return self.net(image)
        finally:
            self.net.is_deploy = was_deploy


def _export(net: torch.nn.Module, config: TrainConfig, history: list, *, roles: dict, duration_s: float,
            iterations: int, init_card: ModelCard | None) -> None:
    """The product's checkpoint: deploy-mode weights (no aux heads) and the model card."""
    out = Path(config.out)
    deploy = build_model(arch=config.arch, num_classes=labels.NUM_CLASSES, deploy=True,
                         instance_stride=config.instance_stride)
    state = {k: v for k, v in net.state_dict().items() if not k.startswith("aux_heads.")}
    deploy.load_state_dict(state, strict=True)
    weights = out / WEIGHTS_FILE
    save_weights(deploy, weights, fp16=config.fp16_weights)
    last_val = next((r["val"] for r in reversed(history) if "val" in r), None)
    metrics = {}
    if last_val is not None:
        metrics["validation_during_training"] = {"data": list(config.val_data), "values": last_val,
                                                 "note": "fp32 weights at the end of training"}
    save_card(_card(config, roles=roles, weights=weights, metrics=metrics, duration_s=duration_s,
                    iterations=iterations, init_card=init_card), out / CARD_FILE)
    print(f"wrote {weights} and {out / CARD_FILE}", flush=True)
