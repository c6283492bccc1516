"""Do two devices give the node the same outputs? The torch pipeline on device A and B, frame by frame.

Held-out synthetic frames (a seed never used in training) go through ``PerceptionPipeline`` with the
torch backend on each device, smoothing and tracking included as the node runs them. Parity holds when,
over all frames, at least ``--min-equal`` of the semantic and of each role mask's pixels are equal, and
every frame has the same instances (count and classes) with masks matched at IoU >= ``--min-iou``
(by id first, else by best IoU within the class). Prints a JSON summary; exit status 1 when parity fails.

    PYTHONPATH=$PWD python tools/gpu_parity.py --device-a cpu --device-b cuda --json parity.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from seg_perception.cli import parse_size
from seg_perception.inference.backends import TorchBackend
from seg_perception.pipeline.pipeline import CameraFrame, FrameResult, PerceptionPipeline, PipelineSettings
from seg_perception.postprocess.roles import role_mapping_for
from seg_perception.synth import render_sequence

HELD_OUT_SEED = 8128  # not a training seed: parity on frames the model has not fitted


def run_device(model: Path, device: str, steps: list[dict], precision: str = "fp32") -> list[list[FrameResult]]:
    backend = TorchBackend(model, device=device, precision=precision)
    card = backend.card
    pipeline = PerceptionPipeline(backend, card, role_mapping_for(card.class_names, card.thing_ids),
                                  PipelineSettings())
    return [pipeline.process([CameraFrame(camera=c, image=f.image, stamp_ns=f.stamp_ns, frame_id=c)
                              for c, f in step.items()]) for step in steps]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def instance_parity(a: FrameResult, b: FrameResult, min_iou: float) -> dict:
    """Same count and classes; each of A's instances matched to a distinct one of B (id first, then IoU)."""
    classes_a = sorted(o.class_id for o in a.obstacles)
    classes_b = sorted(o.class_id for o in b.obstacles)
    by_id_b = {o.instance_id: o for o in b.obstacles}
    free = set(by_id_b)
    worst = 1.0
    for obstacle in a.obstacles:
        mask = a.instances == obstacle.instance_id
        same = by_id_b.get(obstacle.instance_id)
        if same is not None and same.instance_id in free and same.class_id == obstacle.class_id \
                and _iou(mask, b.instances == same.instance_id) >= min_iou:
            best_id, best = same.instance_id, _iou(mask, b.instances == same.instance_id)
        else:  # the ids may be numbered differently: the best overlap of the same class
            scored = [(_iou(mask, b.instances == i), i) for i in free if by_id_b[i].class_id == obstacle.class_id]
            best, best_id = max(scored, default=(0.0, None))
        worst = min(worst, best)
        free.discard(best_id)
    return {"count_a": len(classes_a), "count_b": len(classes_b), "same_classes": classes_a == classes_b,
            "worst_iou": round(worst, 4), "ok": bool(classes_a == classes_b and worst >= min_iou)}


def compare(results_a: list[list[FrameResult]], results_b: list[list[FrameResult]], *, min_equal: float,
            min_iou: float) -> dict:
    equal: dict[str, list[int]] = {}  # mask kind -> [equal pixels, pixels]
    worst_frame: dict[str, float] = {}
    instances = []
    for batch_a, batch_b in zip(results_a, results_b, strict=True):
        for a, b in zip(batch_a, batch_b, strict=True):
            kinds = {"semantic": (a.semantic, b.semantic)}
            kinds |= {f"role:{role}": (mask, b.masks.get(role)) for role, mask in a.masks.items()}
            for kind, (mask_a, mask_b) in kinds.items():
                same = 0 if mask_b is None or mask_b.shape != mask_a.shape else int(np.count_nonzero(mask_a == mask_b))
                counts = equal.setdefault(kind, [0, 0])
                counts[0] += same
                counts[1] += mask_a.size
                worst_frame[kind] = min(worst_frame.get(kind, 1.0), same / mask_a.size)
            instances.append({"camera": a.frame.camera, "stamp_ns": a.frame.stamp_ns,
                              **instance_parity(a, b, min_iou)})
    fractions = {kind: round(same / total, 6) for kind, (same, total) in equal.items()}
    masks_ok = all(value >= min_equal for value in fractions.values())
    instances_ok = all(i["ok"] for i in instances)
    return {"ok": masks_ok and instances_ok, "masks_ok": masks_ok, "instances_ok": instances_ok,
            "equal_fraction": fractions, "worst_frame_equal_fraction": {k: round(v, 6) for k, v in worst_frame.items()},
            "instances_compared": sum(i["count_a"] for i in instances),
            "frames_failing_instances": [i for i in instances if not i["ok"]]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/demo"))
    parser.add_argument("--device-a", default="cpu")
    parser.add_argument("--device-b", default="cuda")
    parser.add_argument("--precision-b", choices=("fp32", "fp16"), default="fp32",
                        help="the torch backend's precision on device B (A runs fp32, the reference)")
    parser.add_argument("--frames", type=int, default=4, help="time steps per camera (default 4)")
    parser.add_argument("--cameras", default="front,rear", help="rig cameras (default front,rear)")
    parser.add_argument("--size", type=parse_size, default=(1024, 512), help="camera WxH (default 1024x512)")
    parser.add_argument("--min-equal", type=float, default=0.999, help="equal pixel fraction per mask kind")
    parser.add_argument("--min-iou", type=float, default=0.99, help="IoU of matched instance masks")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args(argv)

    steps = list(render_sequence(seed=HELD_OUT_SEED, sequence=0, num_frames=args.frames, width=args.size[0],
                                 height=args.size[1], cameras=tuple(args.cameras.split(","))))
    summary = compare(run_device(args.model, args.device_a, steps),
                      run_device(args.model, args.device_b, steps, args.precision_b),
                      min_equal=args.min_equal, min_iou=args.min_iou)
    summary = {"device_a": args.device_a, "device_b": args.device_b, "precision_b": args.precision_b,
               "model": str(args.model),
               "frames": args.frames * len(args.cameras.split(",")), "size": list(args.size),
               "min_equal": args.min_equal, "min_iou": args.min_iou,
               # TF32 convolutions (PyTorch's default on Ampere and later) are what the node runs with.
               "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32, "torch": torch.__version__, **summary}
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
