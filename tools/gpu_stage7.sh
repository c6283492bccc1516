#!/usr/bin/env bash
# Issue 16's stage 7 in one call on a GPU machine, from the repository root: render the recorded training sets
# of models/demo_stage5/README.md (and the H200 stage's extra set), then train from the H200 stage-6 checkpoint with
# the stride-4 instance head for ITERATIONS iterations, and leave the checkpoint folder in ${OUT:-gpu_stage7_out}.
# The held-out evaluation runs afterwards on any machine (`seg-perception eval --record`, see models/demo/README.md).
#
#   INIT=build/h200_stage6 ITERATIONS=900 bash tools/gpu_stage7.sh   # on the GPU machine
#   bash tools/gpu_stage7.sh --cpu-dry-run                            # here: tiny sets, 2 iterations, CPU
# STEPS=render or STEPS=train splits the two (DATA_DIR then names the same folder in both), so the sets can be
# rendered at the end of one call and trained on in the next. INSTANCE_STRIDE is 8 by default: a short stage
# keeps stage 6's trained instance head (a stride-4 head starts fresh).
set -euo pipefail

cd "$(dirname "$0")/.."
dry_run=0
for arg in "$@"; do
    case $arg in
        --cpu-dry-run) dry_run=1 ;;
        -h | --help) sed -n '2,8p' "$0"; exit 0 ;;
        *) echo "gpu_stage7.sh: unknown argument $arg" >&2; exit 2 ;;
    esac
done
out=${OUT:-gpu_stage7_out}
init=${INIT:-build/h200_stage6}
data=${DATA_DIR:-$(mktemp -d)}
workers=${WORKERS:-14}
steps=${STEPS:-all}
instance_stride=${INSTANCE_STRIDE:-8}
mkdir -p "$out"
if [[ -z ${PYTHON:-} ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=$(command -v python3 || command -v python); fi
fi
export PYTHONPATH=$PWD
[[ -f $init/model_card.json ]] || { echo "gpu_stage7.sh: no checkpoint at INIT=$init" >&2; exit 2; }
cli() { "$PYTHON" -m seg_perception.cli "$@"; }

if [[ $dry_run == 1 ]]; then
    iterations=2 scale_seq=1 device=cpu batch=2 crop=256x128 input=512x256 workers=0
    small=(--sequences 2 --frames 2)
else
    iterations=${ITERATIONS:-600} device=cuda batch=16 crop=768x384 input=1024x512
fi
# The recorded sets (models/demo_stage5/README.md) plus gpu_extra; the dry run renders two frames of each.
start=$SECONDS
synth() {  # OUT SEQUENCES FRAMES SIZE SEED SPLIT
    local sequences=$2 frames=$3
    if [[ $dry_run == 1 ]]; then sequences=2 frames=2; fi
    cli synth --out "$data/$1" --sequences "$sequences" --frames "$frames" --size "$4" --seed "$5" --split "$6" \
        --workers "$((workers > 0 ? workers : 1))" > /dev/null 2>&1
}
if [[ $steps != train ]]; then
    synth demo_synth 80 15 512x256 0 train
    synth demo_synth_hr 240 4 1024x512 3 train
    synth demo_synth_hr 500 2 1024x512 5 train2
    synth gpu_extra 600 3 1024x512 7 train
    echo "== rendered the training sets into $data in $((SECONDS - start)) s"
fi
[[ $steps == render ]] && exit 0

step=$SECONDS
set -o pipefail
cli train --data "synthetic:$data/demo_synth:train" --data "synthetic:$data/demo_synth_hr:train" \
    --data "synthetic:$data/demo_synth_hr:train2" --data "synthetic:$data/gpu_extra:train" \
    --out "$out/stage7" --input-size "$input" --crop-size "$crop" --scale-range 0.5,2.0 \
    --batch-size "$batch" --workers "$workers" --device "$device" --lr 0.001 --epochs 1000 \
    --max-iterations "$iterations" --init-weights "$init" --instance-stride "$instance_stride" --lane-dice 0.5 \
    2>&1 | grep -v "it/s\]$" | tail -n 30 | tee "$out/train.log"
echo "== trained $iterations iterations in $((SECONDS - step)) s"
rm -f "$out/stage7/checkpoint.pt"  # resume state (optimizer too): not needed to ship, and over the size limit
ls -la "$out/stage7"
