#!/bin/bash
# SIGTERM during `pyfer video` on a 4K clip of 30 frames (6 SFEW faces): are the JSON lines, the
# video's frames and the summary in step? Before d77599f the summary could lack the last frame
# (the stop landed after OpenCV's long encode, before the timeline's entry).
#   bash results/video_stop_s45/run.sh      (from the repo root, pyfer installed)
set -u
work=$(mktemp -d)
python - "$work" <<'PY'
import glob, sys
import cv2, numpy as np
face = cv2.resize(cv2.imread(sorted(glob.glob('../shared/data/sfew_train/Train/Happy/*.png'))[5]), (100, 125))
w = cv2.VideoWriter(sys.argv[1] + '/big.mp4', cv2.VideoWriter_fourcc(*'mp4v'), 30, (3840, 2160))
for i in range(30):
    frame = np.full((2160, 3840, 3), 100, np.uint8)
    for k in range(6):
        y, x = 300 + 200 * (k % 3), 300 + 600 * k + 3 * i
        frame[y:y + 125, x:x + 100] = face
    w.write(frame)
w.release()
PY
for d in 1.2 1.4 1.6 1.8 2.0 2.2 2.4 2.6 2.8 3.0; do
  rm -f "$work"/term.*
  pyfer video "$work/big.mp4" --out "$work/term.mp4" --jsonl "$work/term.jsonl" --summary "$work/term.csv" 2>/dev/null & p=$!
  sleep $d; kill -TERM $p 2>/dev/null; wait $p; rc=$?
  vid=$(python -c "
import cv2; c = cv2.VideoCapture('$work/term.mp4'); n = 0
while c.read()[0]: n += 1
print(n)")
  summary=$(awk -F, 'NR>1{if($6>m)m=$6}END{print m+0}' "$work/term.csv")
  echo "sleep=$d rc=$rc jsonl_lines=$(wc -l < "$work/term.jsonl") video_frames=$vid summary_frames=$summary"
done
rm -rf "$work"
