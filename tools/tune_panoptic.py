"""PQ of a checkpoint for a grid of panoptic grouping settings (centre threshold, minimum area).

Usage: .venv/bin/python tools/tune_panoptic.py --model models/demo --dataset synthetic:data/tune:val
Tune on a split that is neither training nor held-out test data. The network runs once per image; every
setting re-groups the same outputs. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from seg_perception.evaluation.dataset_eval import EvalSettings, evaluate_model
from seg_perception.models.checkpoint import load_checkpoint
from seg_perception.postprocess.panoptic import PanopticConfig
from seg_perception.postprocess.roles import role_mapping_for
from seg_perception.training.data import parse_data_spec


class _ReplayedForward:
    """Runs the model on the first pass over the data and replays its outputs on later passes."""

    def __init__(self, model) -> None:
        self.model, self.outputs, self.position, self.recording = model, [], 0, True

    def rewind(self) -> None:
        self.recording, self.position = False, 0

    def __call__(self, batch):
        if self.recording:
            self.outputs.append(self.model(batch))
            return self.outputs[-1]
        self.position += 1
        return self.outputs[self.position - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/demo"))
    parser.add_argument("--dataset", required=True, help="KIND:PATH:SPLIT, not the held-out test split")
    parser.add_argument("--thresholds", default="0.05,0.1,0.2,0.3")
    parser.add_argument("--min-area-factors", default="0.5,1,2", help="times the default minimum area")
    args = parser.parse_args()
    model, card = load_checkpoint(args.model)
    refs = parse_data_spec(args.dataset)
    default = PanopticConfig.for_input(card.thing_ids, card.input_size)
    settings = EvalSettings(class_names=card.class_names, thing_ids=card.thing_ids, input_size=card.input_size,
                            mean=card.mean, std=card.std, roles=role_mapping_for(card.class_names, card.thing_ids),
                            panoptic=default)
    forward = _ReplayedForward(model)
    print(f"{len(refs)} images of {args.dataset}; default {default}")
    print("| centre threshold | min area px | PQ things | SQ things | RQ things | PQ all |")
    print("|---|---|---|---|---|---|")
    for threshold in (float(t) for t in args.thresholds.split(",")):
        for factor in (float(f) for f in args.min_area_factors.split(",")):
            config = dataclasses.replace(default, center_threshold=threshold, min_area=round(default.min_area * factor))
            values = evaluate_model(model, refs, dataclasses.replace(settings, panoptic=config), show_progress=False,
                                    forward=forward)
            forward.rewind()
            things, every = values["pq"]["things"], values["pq"]["all"]
            print(f"| {threshold:g} | {config.min_area} | {100 * things['pq']:.1f} | {100 * things['sq']:.1f} | "
                  f"{100 * things['rq']:.1f} | {100 * every['pq']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
