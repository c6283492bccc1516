"""What a head at 1/stride of the input can represent of a labelled split, before any training.

Usage: .venv/bin/python tools/resolution_bound.py --dataset synthetic:data/demo_synth:test --input-size 512x256
Fits free maps at the head's stride to every image's ground truth (seg_perception.evaluation.resolution_bound)
and scores them as `seg-perception eval` scores a model: mIoU, PQ, drivable and lane IoU. Prints a markdown row
and, with --json, writes the whole metric dict. CPU, about 5 s per 512x256 image and 20 s per 1024x512 one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from seg_perception.cli import parse_size
from seg_perception.evaluation.dataset_eval import EvalSettings
from seg_perception.evaluation.resolution_bound import FIT_STEPS, resolution_bound
from seg_perception.models.card import load_card
from seg_perception.postprocess.panoptic import PanopticConfig
from seg_perception.postprocess.roles import role_mapping_for
from seg_perception.training.data import parse_data_spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="KIND:PATH:SPLIT")
    parser.add_argument("--input-size", type=parse_size, required=True, help="WxH the model would run at")
    parser.add_argument("--stride", type=int, default=8, help="output stride of the heads (DDRNet: 8)")
    parser.add_argument("--instance-stride", type=int, help="output stride of the instance head (default: --stride)")
    parser.add_argument("--limit", type=int, default=0, help="only the first N images of the split (0: all)")
    parser.add_argument("--steps", type=int, default=FIT_STEPS, help="optimisation steps per image")
    parser.add_argument("--model", type=Path, default=Path("models/demo"), help="card giving classes and things")
    parser.add_argument("--json", type=Path, help="also write the metrics here")
    args = parser.parse_args()
    card = load_card(args.model)
    settings = EvalSettings(class_names=card.class_names, thing_ids=card.thing_ids, input_size=args.input_size,
                            mean=card.mean, std=card.std, roles=role_mapping_for(card.class_names, card.thing_ids),
                            panoptic=PanopticConfig.for_input(card.thing_ids, args.input_size))
    refs = parse_data_spec(args.dataset)
    refs = refs[:args.limit] if args.limit else refs
    instance_stride = args.instance_stride or args.stride
    values = resolution_bound(refs, settings, stride=args.stride, steps=args.steps, instance_stride=instance_stride)
    values.update(dataset=args.dataset, input_size=list(args.input_size), stride=args.stride, steps=args.steps,
                  instance_stride=instance_stride, images=len(refs))
    if args.json:
        args.json.write_text(json.dumps(values, indent=1))
    width, height = args.input_size
    print("| data | input | stride (semantic / instance) | mIoU | PQ things | PQ all | drivable IoU | lane IoU |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {args.dataset} ({len(refs)} images) | {width}x{height} | {args.stride} / {instance_stride} | "
          f"{100 * values['miou']:.1f} | "
          f"{100 * values['pq']['things']['pq']:.1f} | {100 * values['pq']['all']['pq']:.1f} | "
          f"{100 * values.get('drivable_iou', float('nan')):.1f} | {100 * values.get('lane_iou', float('nan')):.1f} |")


if __name__ == "__main__":
    main()
