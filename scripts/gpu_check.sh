#!/usr/bin/env bash
# One-call GPU check of the CUDA backend (issue 6; docs/cuda.md). Meant for the device machine
# (an H100/H200 with nvcc, cmake, pybind11, torch+CUDA; no network), in one `run` call:
#
#   run(command="bash scripts/gpu_check.sh", timeout_s=540)          # no carry needed
#
# Steps (each logged; a failed step does not stop the later ones, except that a failed build
# skips steps 3-6). The whole check keeps within
# DEADLINE seconds (default 480, under the device tool's 600 s per command): each step's timeout
# is cut to the time left, and the benchmark and the profile, which come last, are skipped when
# under 60 s remain. Tests come before the benchmark because they are the point:
#   1. environment (GPU, driver, nvcc, torch);
#   2. in-place CUDA build of the module alone (build/gpu -> pyfer/_engine*.so) for this GPU's
#      architecture only (CUDA_ARCH, default 90-real: H100/H200), with Ninja where it exists;
#   3. smoke: build_info, Engine(device="cuda").info();
#   4. tests/test_cuda.py with PYFER_REQUIRE_GPU=1 (parity vs the CPU reference / engine, 1e-4
#      relative, both architectures, batch 1 to 300, shipped weights, random-weight exports and
#      odd networks; a missing GPU, torch or safetensors fails rather than skips);
#   5. scripts/cuda_bench.py: pyfer CUDA vs PyTorch CUDA (fp32, TF32, channels_last fp16),
#      batch 1 and 256 -> $OUT/BENCHMARKS_cuda.md (paste into BENCHMARKS.md) + cuda_bench.json;
#   6. per-kernel GPU times (torch.profiler / CUPTI, graphs off) -> $OUT/cuda_profile.txt.
# Results land in $OUT (default out/gpu_check): gpu_check.log, test_cuda.xml, BENCHMARKS_cuda.md,
# cuda_bench.json, cuda_profile.txt. Exit status: 0 only if the build and the tests passed.
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/out/gpu_check}
mkdir -p "$OUT"
LOG=$OUT/gpu_check.log
: >"$LOG"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 4)}
DEADLINE=${DEADLINE:-480}
CUDA_ARCH=${CUDA_ARCH:-90-real}
build_ok=0
tests_ok=0
T0=$(date +%s)
step() { echo "=== [$(( $(date +%s) - T0 ))s] $*" | tee -a "$LOG"; }
# seconds for a step: its own limit, or what is left before DEADLINE if that is less
left() { echo $(( DEADLINE - ($(date +%s) - T0) )); }
budget() { local l; l=$(left); echo $(( l < $1 ? (l > 1 ? l : 1) : $1 )); }
GENERATOR=()
command -v ninja >/dev/null && GENERATOR=(-G Ninja)

step "1. environment"
{
  timeout 30 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  nvcc --version | tail -2
  cmake --version | head -1
  $PY -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'NO GPU for torch')"
  git log --oneline -1 2>/dev/null
} 2>&1 | tee -a "$LOG"

step "2. CUDA build for $CUDA_ARCH (in place: replaces pyfer/_engine*.so of this Python; run on the device or in a scratch copy)"
if timeout "$(budget 60)" cmake -S . -B build/gpu ${GENERATOR[@]+"${GENERATOR[@]}"} -DCMAKE_BUILD_TYPE=Release -DPYFER_WITH_CUDA=ON \
     -DPYFER_CUDA_ARCHITECTURES="$CUDA_ARCH" -DPYFER_DEV_INPLACE=ON -DPYFER_BUILD_TESTS=OFF \
     -DCMAKE_CUDA_FLAGS=--threads=0 -DPython_EXECUTABLE="$(command -v "$PY")" \
     -Dpybind11_DIR="$($PY -c 'import pybind11; print(pybind11.get_cmake_dir())')" 2>&1 | tail -8 | tee -a "$LOG" &&
   timeout "$(budget 240)" cmake --build build/gpu --target _engine -j"$JOBS" 2>&1 | { grep -v '^\[' || true; } | tail -30 | tee -a "$LOG" &&
   $PY -c "import pyfer, sys; sys.exit(0 if pyfer.build_info()['cuda'] else 1)" 2>&1 | tee -a "$LOG"; then
  build_ok=1
else
  echo "BUILD FAILED" | tee -a "$LOG"
fi

if [ $build_ok = 1 ]; then
  step "3. smoke"
  timeout "$(budget 60)" $PY - <<'EOF' 2>&1 | tee -a "$LOG"
import numpy as np, pyfer, pyfer.engine
print(pyfer.build_info())
print("cuda_devices:", pyfer.engine.cuda_devices())
e = pyfer.Engine("pyfer/models/tsnet_student.safetensors", device="cuda")
print(e.info())
x = np.zeros((2, 1, 64, 64), np.float32)
print("logits", e.forward(x)[0], "cpu", pyfer.Engine("pyfer/models/tsnet_student.safetensors").forward(x)[0])
EOF

  step "4. tests/test_cuda.py"
  if PYFER_REQUIRE_GPU=1 timeout "$(budget 240)" $PY -m pytest -q -rs -s -p no:cacheprovider tests/test_cuda.py \
       --junitxml="$OUT/test_cuda.xml" 2>&1 | tee -a "$LOG"; then
    tests_ok=1
  fi

fi

if [ $build_ok = 1 ] && [ "$(left)" -ge 60 ]; then
  step "5. benchmark vs PyTorch CUDA"
  timeout "$(budget 240)" $PY scripts/cuda_bench.py --out "$OUT/BENCHMARKS_cuda.md" --json "$OUT/cuda_bench.json" 2>&1 |
    tee -a "$LOG"

fi

if [ $build_ok = 1 ] && [ "$(left)" -ge 60 ]; then
  step "6. per-kernel profile (graphs off)"
  PYFER_CUDA_GRAPHS=0 timeout "$(budget 90)" $PY - <<'EOF' >"$OUT/cuda_profile.txt" 2>&1
import numpy as np, torch, pyfer
from torch.profiler import profile, ProfilerActivity
for name, path in [("student", "pyfer/models/tsnet_student.safetensors"),
                   ("teacher", "models/teacher_effresnet18_fp16.safetensors")]:
    for n in (1, 256):
        e = pyfer.Engine(path, device="cuda")
        x = np.random.default_rng(0).standard_normal((n, 1, 64, 64)).astype(np.float32)
        for _ in range(3):
            e.forward(x)
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(5):
                e.forward(x)
        print(f"==== {name} batch {n} (5 calls)")
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=14, max_name_column_width=90))
EOF
  tail -5 "$OUT/cuda_profile.txt" | tee -a "$LOG"
fi

step "done: build_ok=$build_ok tests_ok=$tests_ok"
[ $build_ok = 1 ] && [ $tests_ok = 1 ]
