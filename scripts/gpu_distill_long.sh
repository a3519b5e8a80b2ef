#!/usr/bin/env bash
# The long distillation that 2 CPU cores cannot afford (issue 13): the student from scratch, with
# the current recipe, for as many epochs as fit in BUDGET_S seconds of a lent GPU.
#
#   here:   bash scripts/prepare_gpu_data.sh && python -m training.framing   # .cache/ (labels, crops, landmarks)
#   device: run(command="bash scripts/gpu_distill_long.sh", carry=[".cache"], timeout_s=BUDGET_S + 120)
#   here:   python -m training.prior_shift --weights FILES_AT/student_last.safetensors ...
#
# One probe epoch measures the epoch time, then a cosine run is sized to the rest of the budget
# (a cosine schedule must know its length). Brought back in $OUT: the final and the best student
# (exports, 5 MB each), last.pt (to continue here with --resume) and best.pt (10 MB each), the logs.
# The exports take the class prior from the run's own --data (.cache/ferplus on the device).
# Settings by environment: BUDGET_S (default 420), DEVICE (cuda), INPUT_SIZE (64), DATA
# (ferplus:.cache/ferplus), TEACHER (models/teacher_s26_mixstyle_fp16.safetensors, the best by the
# rule: RESULTS.md, session 26), EXTRA (more training flags, e.g. "--train-limit 512" for a CPU smoke).
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/out/gpu_distill_long}
BUDGET_S=${BUDGET_S:-420}
DEVICE=${DEVICE:-cuda}
DATA=${DATA:-ferplus:.cache/ferplus}
INPUT_SIZE=${INPUT_SIZE:-64}
TEACHER=${TEACHER:-models/teacher_s26_mixstyle_fp16.safetensors}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
t0=$(date +%s)
amp=(); [ "$DEVICE" = cuda ] && amp=(--amp)
# the recipe of the shipped student (RESULTS.md, sessions 7-13), from scratch instead of --init, from TEACHER
recipe=(distill --teacher "$TEACHER" --data "$DATA" --device "$DEVICE" "${amp[@]}"
        --input-size "$INPUT_SIZE" --framing align --augment robust --mixup 0.2 --balance 1.0 --soft-labels
        --schedule cosine --lr 0.02 --tta --quiet ${EXTRA:-})
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true; git log --oneline -1 || true; } > "$OUT/env.txt" 2>&1

p0=$(date +%s)
$PY -m training.train "${recipe[@]}" --out runs/gpu_long_probe --epochs 1 --overwrite > "$OUT/probe.log" 2>&1 || {
  echo "probe epoch failed"; tail -20 "$OUT/probe.log"; exit 1; }
epoch_s=$($PY -c "import json; print(json.loads(open('runs/gpu_long_probe/log.jsonl').readline())['seconds'])")
start_s=$(( $(date +%s) - p0 ))  # the probe's wall time: its epoch plus loading the data and models
left=$(( BUDGET_S - ($(date +%s) - t0) - 30 ))  # 30 s for the exports
epochs=$($PY -c "print(max(1, int(($left - ($start_s - $epoch_s)) / ($epoch_s * 1.05))))")
echo "probe epoch ${epoch_s}s (${start_s}s in all); ${left}s left: a ${epochs}-epoch cosine run" | tee "$OUT/plan.txt"

run=runs/gpu_long_e$epochs
timeout $(( left > 0 ? left : 1 )) $PY -m training.train "${recipe[@]}" --out "$run" --epochs "$epochs" --resume \
  > "$OUT/train.log" 2>&1
echo "training exit $? after $(( $(date +%s) - t0 ))s" | tee -a "$OUT/plan.txt"
tail -3 "$OUT/train.log"
for ck in last best; do
  [ -f "$run/$ck.pt" ] && $PY -m training.export "$run/$ck.pt" "$OUT/student_$ck.safetensors"
done
cp "$run/last.pt" "$run/best.pt" "$run/log.jsonl" "$run/config.json" "$OUT/" 2>/dev/null
echo "total $(( $(date +%s) - t0 ))s"; ls -la "$OUT"
