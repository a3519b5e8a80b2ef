#!/usr/bin/env bash
# One device-machine session of T-SNet training (issue 3): teacher and baseline students in
# parallel, then the distilled student and the (T, a) ablation grid in parallel.
# Usage: scripts/gpu_train.sh OUTDIR [EPOCHS] [ABLATION_EPOCHS] [PHASE_SECONDS] [EXTRA...]
# Needs the FERPlus cache (.cache/ferplus_*.npz) and label files (.cache/ferplus/*/label.csv),
# made by scripts/prepare_gpu_data.sh, since ../shared does not travel to the device machine.
set -u
out=${1:?out dir}; epochs=${2:-40}; abl_epochs=${3:-12}; phase_s=${4:-210}; shift $(( $# < 4 ? $# : 4 ))  # EXTRA only after all four
extra=("$@")
data=ferplus:.cache/ferplus
runs=runs/gpu
mkdir -p "$runs" "$out"
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
common=(--data "$data" --device cuda --amp --quiet --tta --overwrite "${extra[@]}")  # each call starts its runs afresh
t0=$(date +%s)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$out/gpu.txt" 2>&1 || true

# phase 1
timeout "$phase_s" python3 -m training.train teacher --out $runs/teacher --epochs "$epochs" --soft-labels "${common[@]}" > $runs/teacher.txt 2>&1 &
timeout "$phase_s" python3 -m training.train student --out $runs/student_hard --epochs "$epochs" "${common[@]}" > $runs/student_hard.txt 2>&1 &
timeout "$phase_s" python3 -m training.train student --out $runs/student_soft --epochs "$epochs" --soft-labels "${common[@]}" > $runs/student_soft.txt 2>&1 &
timeout "$phase_s" python3 -m training.train student --out $runs/student_soft_imagenetstem --stem imagenet --epochs "$epochs" --soft-labels "${common[@]}" > $runs/student_soft_imagenetstem.txt 2>&1 &
wait
echo "phase 1 done after $(( $(date +%s) - t0 ))s"; tail -n 2 $runs/*.txt

# phase 2
teacher=$runs/teacher/best.pt
timeout "$phase_s" python3 -m training.train distill --teacher $teacher --out $runs/tsnet_soft --epochs "$epochs" --soft-labels "${common[@]}" > $runs/tsnet_soft.txt 2>&1 &
timeout "$phase_s" python3 -m training.train distill --teacher $teacher --out $runs/tsnet_hard --epochs "$epochs" "${common[@]}" > $runs/tsnet_hard.txt 2>&1 &
for T in 4 6 8; do for a in 0.2 0.4 0.6; do
  timeout "$phase_s" python3 -m training.train distill --teacher $teacher --out $runs/ablation_T${T}_a${a} --T $T --alpha $a --epochs "$abl_epochs" "${common[@]}" > $runs/ablation_T${T}_a${a}.txt 2>&1 &
done; done
wait
echo "phase 2 done after $(( $(date +%s) - t0 ))s"; tail -n 1 $runs/*.txt

# bring back (at most 8 files of 16 MB): the teacher in fp16 split in two, four student exports,
# the logs of every run
python3 -m training.export $teacher "$runs/teacher_fp16.safetensors" --fp16
split -b 15M -d "$runs/teacher_fp16.safetensors" "$out/teacher_fp16.safetensors.part"
for r in student_hard student_soft tsnet_soft tsnet_hard; do
  [ -f $runs/$r/best.pt ] && python3 -m training.export $runs/$r/best.pt "$out/$r.safetensors"
done
tar czf "$out/logs.tgz" $runs/*.txt $runs/*/log.jsonl $runs/*/config.json
ls -la "$out"; echo "total $(( $(date +%s) - t0 ))s"
