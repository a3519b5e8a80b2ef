#!/bin/bash
# Session 44's three tries at the AVX-512 zero-skipping 1x1 (BENCHMARKS.md, Intel section), each a
# patch beside this script (lockstep, union: csrc/kernels/avx512/conv1x1_skip0.cpp; wide:
# SKIP_VMAX in csrc/kernels/kernels.hpp), measured against the committed kernel: the build of HEAD
# saved by
#   python scripts/compare_builds.py --save /tmp/pyfer_before
# then, per try: its patch applied and built into this checkout's editable install, and the two builds
# timed in alternating processes (bench_ops per op; _checks.time_op at three zero fractions; the
# student's network and predict through compare_builds). Run from the repository root:
#   bash results/bench_s44/skip0_tries/run.sh   (restores the committed kernel at the end)
set -u
cd "$(dirname "$0")/../../.."
HERE=results/bench_s44/skip0_tries
PY=.venv/bin/python
KERNEL=csrc/kernels/avx512/conv1x1_skip0.cpp
BUILD=build/cp311-cp311-linux_x86_64
SITE=$($PY -c "import pyfer._engine as e, os; print(os.path.dirname(e.__file__))")
rebuild() { (cd $BUILD && ninja _engine _checks > /dev/null) && cp $BUILD/_*.so "$SITE/"; }
BEFORE="import sys; sys.path.insert(0, '/tmp/pyfer_before'); sys.meta_path[:] = [f for f in sys.meta_path if not any(s in type(f).__module__.lower() for s in ('editable', 'scikit'))]; "
OPS="import sys, runpy; sys.argv = ['bench_ops.py', '--isas', 'avx512', '--ops', 'conv1x1_skip0', '--rounds', '7']; runpy.run_path('scripts/bench_ops.py', run_name='__main__')"
ZF="import pyfer._checks as T
for cin, cout in ((128, 116), (116, 116)):
    for zf in (0.0, 0.5, 0.9):
        r = T.time_op('conv_skip0', ['avx512'], 1, 16, 16, cin, cout, zf, 'plain', 0, reps=50, rounds=21)
        print(f'{cin}->{cout} 16x16 zero fraction {zf}: {r[\"avx512\"] * 1e6:.2f} us')"
for try in lockstep union wide; do
  git checkout -q $KERNEL csrc/kernels/kernels.hpp
  git apply $HERE/$try.patch || { echo "$try.patch does not apply"; continue; }
  rebuild || { echo "build of $try failed"; continue; }
  {
    lscpu | grep -E 'Model name|^Model:'; git log --oneline -1; echo "try: $try"
    for round in 1 2; do
      echo "== round $round: bench_ops, before (HEAD)"; taskset -c 1 $PY -c "$BEFORE$OPS" 2>&1 | grep '^| conv1x1_skip0'
      echo "== round $round: bench_ops, after ($try)"; taskset -c 1 $PY -c "$OPS" 2>&1 | grep '^| conv1x1_skip0'
      echo "== round $round: time_op, before"; taskset -c 1 $PY -c "$BEFORE$ZF"
      echo "== round $round: time_op, after"; taskset -c 1 $PY -c "$ZF"
    done
    echo "== compare_builds --rounds 4"; taskset -c 1 $PY scripts/compare_builds.py --before /tmp/pyfer_before --rounds 4 2>&1 | grep -v Warning | tail -18
  } > $HERE/$try.log 2>&1
done
git checkout -q $KERNEL csrc/kernels/kernels.hpp
rebuild
echo done
