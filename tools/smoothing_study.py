"""Temporal smoothing on held-out synthetic drives: TC and mIoU with each setting, at 30 Hz and 10 Hz.

Usage: .venv/bin/python tools/smoothing_study.py [--model models/demo] [--drives 3] [--frames 12]
Prints a markdown table (docs/BENCHMARKS.md quotes it). Seeds 6000+ were never used for training.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from seg_perception.evaluation.semantic import ConfusionMatrix
from seg_perception.evaluation.temporal import TemporalConsistencyMeter
from seg_perception.inference.factory import BackendRequest, open_backend
from seg_perception.pipeline.pipeline import CameraFrame, PerceptionPipeline, PipelineSettings
from seg_perception.postprocess.roles import role_mapping_for
from seg_perception.synth import render_sequence

SETTINGS = {
    "off": {"smoothing_enabled": False},
    "label prior 0.75 (default)": {},
    "label prior 1.5": {"smoothing_label_prior": 1.5},
    "exponential 0.3": {"smoothing_strength": 0.3, "smoothing_label_prior": 0.0},
    "exponential 0.5": {"smoothing_strength": 0.5, "smoothing_label_prior": 0.0},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/demo"))
    parser.add_argument("--drives", type=int, default=3)
    parser.add_argument("--frames", type=int, default=12)
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
            confusion = ConfusionMatrix(card.num_classes, class_names=card.class_names)
            consistency, stage_ms = [], []
            for k, drive in enumerate(drives):
                meter = TemporalConsistencyMeter(num_classes=card.num_classes)
                for step in drive:
                    truth = step["front"]
                    # Drives are 100 s apart on the clock, so each starts a new smoothing stream.
                    frame = CameraFrame(camera="front", image=truth.image, stamp_ns=truth.stamp_ns + k * 10**11,
                                        frame_id="front_optical_frame")
                    (result,) = pipeline.process([frame])
                    confusion.update(result.semantic, truth.semantic)
                    meter.update(truth.image, result.semantic)
                    stage_ms.append(result.timings_ms["smoothing"])
                consistency.append(meter.result().mean)
            miou = 100 * confusion.compute().miou_present
            print(f"| {fps:.0f} Hz | {name} | {100 * np.mean(consistency):.2f} | {miou:.2f} | "
                  f"{np.median(stage_ms):.2f} |", flush=True)


if __name__ == "__main__":
    main()
