"""Per-sample cost of the training data loader's work (what one DataLoader worker does per sample).

Usage (from the repository root, one OpenCV thread as in the workers):
    .venv/bin/python tools/loader_cost.py --data synthetic:data/demo_synth_hr:test --crop-size 768x384
    .venv/bin/python tools/loader_cost.py ... --decoded-cache data/decoded   # after `seg-perception decode`
To time an older version of the recipe, put its checkout first on PYTHONPATH
(``git worktree add /tmp/before REV; PYTHONPATH=/tmp/before .venv/bin/python tools/loader_cost.py ...``):
only ``PanopticDataset`` and ``Augmentation`` are used. Prints the median and mean over the samples.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from seg_perception.cli import parse_size
from seg_perception.training.data import Augmentation, PanopticDataset, parse_data_spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="KIND:PATH:SPLIT")
    parser.add_argument("--input-size", type=parse_size, default=(1024, 512))
    parser.add_argument("--crop-size", type=parse_size, default=(768, 384))
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--decoded-cache", help="read the samples from this `seg-perception decode` folder")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    refs = parse_data_spec(args.data)[:args.samples + 1]
    if args.decoded_cache:
        from seg_perception.training.decoded_cache import with_cache

        refs, cached = with_cache(refs, args.decoded_cache)
        print(f"{cached} of {len(refs)} samples from the decoded cache")
    dataset = PanopticDataset(refs, input_size=args.input_size, augmentation=Augmentation(crop_size=args.crop_size))
    dataset[0]  # first-call costs (imports, allocations) are not a sample's
    times = []
    for index in range(1, len(refs)):
        start = time.perf_counter()
        dataset[index]
        times.append(time.perf_counter() - start)
    print(f"{len(times)} samples: median {1000 * np.median(times):.1f} ms, mean {1000 * np.mean(times):.1f} ms "
          f"per sample")


if __name__ == "__main__":
    main()
