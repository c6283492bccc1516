#!/usr/bin/env bash
# Issue 15's GPU measurement in one call, from the repository root:
#   (a) parity: the torch pipeline on the CPU and on CUDA gives the same masks and instances
#       (tools/gpu_parity.py);
#   (b) `seg-perception bench --device cuda`: end to end, per stage, the network alone, on CUDA events;
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
        -h | --help) sed -n '2,11p' "$0"; exit 0 ;;
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
    parity_args=(--device-b cpu --size 256x128 --frames 2)
    bench_args=(--sizes 256x128 --batches 1,2 --warmup 1 --calls 3)
else
    device=cuda
    parity_args=(--device-b cuda --size 1024x512 --frames 4)
    bench_args=(--sizes 2048x1024,1024x512 --batches 1,4 --warmup 3 --calls 20)
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
step=$SECONDS
"$PYTHON" tools/gpu_parity.py --device-a cpu "${parity_args[@]}" --json "$out/parity.json" \
    > "$out/parity.log" 2>&1 || parity_status=$?
echo "== parity cpu vs $device: exit $parity_status ($((SECONDS - step)) s)"; tail -n 40 "$out/parity.log"

step=$SECONDS
"$PYTHON" -m seg_perception.cli bench --device "$device" --backends torch "${bench_args[@]}" --no-baseline \
    --json "$out/bench_$device.json" 2>&1 | tee "$out/bench_$device.log"
echo "== bench on $device ($((SECONDS - step)) s)"

"$PYTHON" - "$out" "$device" "$parity_status" > "$out/BENCHMARKS_$device.md" <<'EOF'
import json, sys
from pathlib import Path
from seg_perception.benchmark import markdown_table
out, device, parity_status = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
bench = json.loads((out / f"bench_{device}.json").read_text())
env = json.loads((out / "environment.json").read_text())
print(f"### {bench['device_name']} ({device}), torch {env['torch']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}\n")
print(f"Command: `{bench['command']}` ({bench['warmup']} warm-up calls, {bench['calls']} timed; p50 unless named).")
clock = "CUDA events" if device.startswith("cuda") else "host clocks"
print("Stages are host clocks (on CUDA each GPU stage ends in a blocking copy back); `network` (the deploy-mode")
print("forward alone on a random input) and `inference GPU` (the backend call inside the pipeline, CUDA only)")
print(f"are {clock}.\n")
print(markdown_table(bench) + "\n")
for name, value in bench["ratios"].items():
    print(f"- {name}: {value}")
parity = out / "parity.json"
if parity.exists():
    p = json.loads(parity.read_text())
    fractions = ", ".join(f"{k} {v:.4%}" for k, v in p["equal_fraction"].items())
    print(f"\nParity {p['device_a']} vs {p['device_b']} ({p['frames']} held-out frames at {p['size'][0]}x{p['size'][1]}, "
          f"TF32 {'on' if p['cudnn_allow_tf32'] else 'off'}): {'holds' if p['ok'] else 'FAILS'}; equal pixels {fractions}; "
          f"{p['instances_compared']} instances, {len(p['frames_failing_instances'])} frame(s) with an instance mismatch.")
else:
    print(f"\nParity: no result (tools/gpu_parity.py exited {parity_status}, see parity.log).")
EOF
echo "== wrote $out/BENCHMARKS_$device.md (total $((SECONDS - start)) s)"; cat "$out/BENCHMARKS_$device.md"
exit "$parity_status"
