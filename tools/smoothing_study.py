"""Temporal smoothing on held-out synthetic drives: TC and mIoU with each setting, at 30 Hz and 10 Hz.

Usage: .venv/bin/python tools/smoothing_study.py [--model models/demo] [--drives 8] [--frames 16]
Prints a markdown table (docs/BENCHMARKS.md quotes it). Seeds 6000+ were never used for training.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from seg_perception.evaluation.video import score_video
from seg_perception.inference.factory import BackendRequest, open_backend
from seg_perception.pipeline.pipeline import PerceptionPipeline, PipelineSettings
from seg_perception.postprocess.roles import role_mapping_for
from seg_perception.synth import render_sequence

SETTINGS = {
    "off": {"smoothing_enabled": False},
    "label prior 0.6 (default)": {},
    "label prior 0.75 (the default for stage 5)": {"smoothing_label_prior": 0.75},
    "label prior 1.5": {"smoothing_label_prior": 1.5},
    "exponential 0.3": {"smoothing_strength": 0.3, "smoothing_label_prior": 0.0},
    "exponential 0.5": {"smoothing_strength": 0.5, "smoothing_label_prior": 0.0},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/demo"))
    parser.add_argument("--drives", type=int, default=8)
    parser.add_argument("--frames", type=int, default=16)
    args = parser.parse_args()
    backend, card = open_backend(BackendRequest(model_path=args.model))
    width, height = card.input_size
    roles = role_mapping_for(card.class_names, card.thing_ids)
    print("| camera rate | smoothing | TC | mIoU (classes present) | smoothing stage p50 ms |")
    print("|---|---|---|---|---|")
    for fps in (30.0, 10.0):
        drives = [list(render_sequence(seed=6000 + s, sequence=0, num_frames=args.frames, width=width,
                                       height=height, cameras=("front",), fps=fps)) for s in range(args.drives)]
        for name, changes in SETTINGS.items():
            pipeline = PerceptionPipeline(backend, card, roles, PipelineSettings(**changes))
            scores = score_video(pipeline, drives, "front", card.class_names)
            print(f"| {fps:.0f} Hz | {name} | {scores.tc:.2f} | {scores.miou_present:.2f} | "
                  f"{np.median(scores.smoothing_stage_ms):.2f} |", flush=True)


if __name__ == "__main__":
    main()
