#!/usr/bin/env bash
# Stage the FERPlus label files next to the decoded-image cache in .cache/ (git-ignored) so that
# the device machine, which cannot see ../shared, can train: carry ".cache" in the device call.
set -eu
src=${1:-../shared/data/ferplus}
for split in FER2013Train FER2013Valid; do
  mkdir -p .cache/ferplus/$split
  cp "$src/$split/label.csv" .cache/ferplus/$split/
done
python -c "
from training.data import load_ferplus; from pyfer.preprocess import PreprocessSpec
for s in ('train', 'valid'): print(s, len(load_ferplus('$src', s, PreprocessSpec())))"
du -sh .cache
