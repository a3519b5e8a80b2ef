#!/usr/bin/env bash
# Ship a student checkpoint as the default model (issue 13): export it with the prior shift chosen
# by training.prior_shift, score it through Recognizer.predict, and regenerate the report, the
# Grad-CAM figure and the annotated example from it.
#   scripts/ship_student.sh CHECKPOINT SHIFT TAG       (e.g. runs/consistent_t4/last.pt 0.4 consistent_s7)
# By hand afterwards (DEVELOPERS.md, "Choose and ship a model"): SHIPPED in training/report.py and in
# training/leaderboard.py, the README table and example output, examples/README.md, docs/recognizer.md
# and RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ck=${1:?checkpoint}; shift_value=${2:?prior shift}; tag=${3:?tag for results/frontend/student_TAG.json}
py=${PYTHON:-python}
$py -m training.export "$ck" pyfer/models/tsnet_student.safetensors --prior-shift "$shift_value"
sha256sum pyfer/models/tsnet_student.safetensors
echo "== accuracy through predict ($(date +%T))"
$py scripts/eval_frontend.py --configs yunet-align --json "results/frontend/student_$tag.json"
echo "== report and Grad-CAM ($(date +%T))"
$py -m training.report
$py -m training.gradcam --teacher models/teacher_effresnet18_fp16.safetensors \
    --student pyfer/models/tsnet_student.safetensors --out results/gradcam.jpg
echo "== example ($(date +%T))"
$py -m pyfer predict examples/astronaut.png --out examples/astronaut_annotated.jpg
