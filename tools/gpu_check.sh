#!/usr/bin/env bash
# Issue 15's GPU measurement in one call, from the repository root:
#   (a) parity: the torch pipeline on the CPU (fp32) and on CUDA gives the same masks and instances
#       (tools/gpu_parity.py), with the CUDA side in fp32 and in fp16;
#   (b) `seg-perception bench --device cuda`: end to end, per stage, the network alone, on CUDA events,
#       in fp32 and in fp16 (both with CUDA graphs);
#   (c) issue 16's training throughput: `train --profile` (loader wait against step time) at 768x384 crops,
#       batch 16, from PNG files and from a decoded cache, on a small synthetic set made here;
#   then a markdown file ready to paste into docs/BENCHMARKS.md.
# Everything is written under ${OUT:-gpu_check_out}. Exit status: non-zero when a step fails or parity
# does not hold (the bench still runs after a parity failure, so its figures come back either way).
#
#   bash tools/gpu_check.sh                  # on the GPU machine
#   bash tools/gpu_check.sh --cpu-dry-run    # here, CPU only, tiny sizes (or GPU_CHECK_DRY_RUN=1)
set -euo pipefail

cd "$(dirname "$0")/.."
dry_run=${GPU_CHECK_DRY_RUN:-0}
for arg in "$@"; do
    case $arg in
        --cpu-dry-run) dry_run=1 ;;
        -h | --help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument $arg" >&2; exit 2 ;;
    esac
done

out=${OUT:-gpu_check_out}
mkdir -p "$out"
if [[ -z ${PYTHON:-} ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=$(command -v python3 || command -v python); fi
fi

# The GPU machine has neither rclpy nor rosbags: shadow them here too, so the dry run proves nothing needs them.
noros=$(mktemp -d)
trap 'rm -rf "$noros"' EXIT
for module in rclpy rosbags; do
    mkdir -p "$noros/$module"
    echo "raise ImportError('$module is not available on the GPU machine (gpu_check.sh)')" > "$noros/$module/__init__.py"
done
export PYTHONPATH="$noros:$PWD"

if [[ $dry_run == 1 ]]; then
    device=cpu
    precisions=(fp32)  # fp16 is CUDA only
    parity_args=(--device-b cpu --size 256x128 --frames 2)
    bench_args=(--sizes 256x128 --batches 1,2 --warmup 1 --calls 3)
    synth_args=(--sequences 2 --frames 2 --size 256x128)
    train_args=(--input-size 256x128 --crop-size 192x96 --batch-size 2 --workers 0 --profile 3 --device cpu)
else
    device=cuda
    precisions=(fp32 fp16)
    parity_args=(--device-b cuda --size 1024x512 --frames 4)
    bench_args=(--sizes 2048x1024,1024x512 --batches 1,4 --warmup 3 --calls 20)
    synth_args=(--sequences 40 --frames 4 --size 1024x512 --workers 14)
    train_args=(--input-size 1024x512 --crop-size 768x384 --batch-size 16 --workers 14 --profile 40 --device cuda)
fi

start=$SECONDS
"$PYTHON" - "$device" > "$out/environment.json" <<'EOF'
import json, platform, sys
import torch
device = sys.argv[1]
if device.startswith("cuda") and not torch.cuda.is_available():
    sys.exit(f"gpu_check.sh: CUDA is not available (torch {torch.__version__}); use --cpu-dry-run off a GPU")
from seg_perception.benchmark import device_name
print(json.dumps({"device": device, "device_name": device_name(device), "python": platform.python_version(),
                  "torch": torch.__version__, "cuda": torch.version.cuda,
                  "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None}, indent=2))
EOF
echo "== environment ($((SECONDS - start)) s)"; cat "$out/environment.json"

parity_status=0
for precision in "${precisions[@]}"; do
    step=$SECONDS
    status=0
    "$PYTHON" tools/gpu_parity.py --device-a cpu "${parity_args[@]}" --precision-b "$precision" \
        --json "$out/parity_$precision.json" > "$out/parity_$precision.log" 2>&1 || status=$?
    [[ $status == 0 ]] || parity_status=$status
    echo "== parity cpu vs $device $precision: exit $status ($((SECONDS - step)) s)"
    tail -n 40 "$out/parity_$precision.log"
done

for precision in "${precisions[@]}"; do
    step=$SECONDS
    "$PYTHON" -m seg_perception.cli bench --device "$device" --backends torch "${bench_args[@]}" --no-baseline \
        --torch-precision "$precision" --json "$out/bench_${device}_$precision.json" \
        2>&1 | tee "$out/bench_${device}_$precision.log"
    echo "== bench on $device $precision ($((SECONDS - step)) s)"
done

# (c) training throughput: the same profile from PNG files and from the decoded cache
train_status=0
step=$SECONDS
data="$out/train_data"
{
    "$PYTHON" -m seg_perception.cli synth --out "$data" "${synth_args[@]}" --seed 7 --split train &&
    "$PYTHON" -m seg_perception.cli decode --data "synthetic:$data:train" --out "$out/decoded" &&
    "$PYTHON" -m seg_perception.cli train --data "synthetic:$data:train" --out "$out/profile_png" \
        "${train_args[@]}" --lane-dice 0.5 &&
    "$PYTHON" -m seg_perception.cli train --data "synthetic:$data:train" --out "$out/profile_cached" \
        "${train_args[@]}" --lane-dice 0.5 --decoded-cache "$out/decoded"
} > "$out/train_profile.log" 2>&1 || train_status=$?
rm -rf "$data" "$out/decoded"
echo "== training profile: exit $train_status ($((SECONDS - step)) s)"; grep -E "^profile|decoded" "$out/train_profile.log" || tail -n 20 "$out/train_profile.log"

"$PYTHON" - "$out" "$device" "$parity_status" "${precisions[@]}" > "$out/BENCHMARKS_$device.md" <<'EOF'
import json, sys
from pathlib import Path
from seg_perception.benchmark import markdown_table
out, device, parity_status, precisions = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4:]
env = json.loads((out / "environment.json").read_text())
clock = "CUDA events" if device.startswith("cuda") else "host clocks"
for precision in precisions:
    bench = json.loads((out / f"bench_{device}_{precision}.json").read_text())
    print(f"### {bench['device_name']} ({device}, torch {precision}), torch {env['torch']}, CUDA {env['cuda']}, "
          f"cuDNN {env['cudnn']}\n")
    print(f"Command: `{bench['command']}` ({bench['warmup']} warm-up calls, {bench['calls']} timed; p50 unless named).")
    print("Stages are host clocks; on CUDA the GPU work is waited for in postprocess (one copy of the published")
    print("maps), so end to end is complete. `network` (the backend's network alone on device-resident pixels) and")
    print(f"`inference GPU` (the backend call inside the pipeline, CUDA only) are {clock}.\n")
    print(markdown_table(bench) + "\n")
    for name, value in bench["ratios"].items():
        print(f"- {name}: {value}")
    print()
for precision in precisions:
    parity = out / f"parity_{precision}.json"
    if parity.exists():
        p = json.loads(parity.read_text())
        fractions = ", ".join(f"{k} {v:.4%}" for k, v in p["equal_fraction"].items())
        print(f"Parity {p['device_a']} fp32 vs {p['device_b']} {precision} ({p['frames']} held-out frames at "
              f"{p['size'][0]}x{p['size'][1]}, TF32 {'on' if p['cudnn_allow_tf32'] else 'off'}): "
              f"{'holds' if p['ok'] else 'FAILS'}; equal pixels {fractions}; {p['instances_compared']} instances, "
              f"{len(p['frames_failing_instances'])} frame(s) with an instance mismatch.\n")
    else:
        print(f"Parity {precision}: no result (see parity_{precision}.log).\n")
for source in ("png", "cached"):
    profile = out / f"profile_{source}" / "profile.json"
    if profile.exists():
        p = json.loads(profile.read_text())
        print(f"Training profile ({'decoded cache' if source == 'cached' else 'PNG files'}; crops "
              f"{p['crop_size'][0]}x{p['crop_size'][1]}, batch {p['batch_size']}, {p['workers']} workers, "
              f"{p['iterations']} iterations): {p['images_per_s']} images/s end to end, "
              f"{p['step_only_images_per_s']} images/s for the step alone; loader wait p50 "
              f"{p['loader_wait_ms_p50']} ms, step p50 {p['step_ms_p50']} ms.\n")
    else:
        print(f"Training profile ({source}): no result (see train_profile.log).\n")
EOF
echo "== wrote $out/BENCHMARKS_$device.md (total $((SECONDS - start)) s)"; cat "$out/BENCHMARKS_$device.md"
if [[ $parity_status != 0 ]]; then exit "$parity_status"; fi
exit "$train_status"
