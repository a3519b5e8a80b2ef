#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer + ASan + UBSan) of everything in pyfer that parses untrusted
# bytes -- see RELIABILITY.md ("Coverage-guided fuzzing") for the figures and findings.
#
#   scripts/fuzz.sh build                 # clang: build/fuzz/{fuzz_json,fuzz_safetensors,fuzz_metadata,fuzz_yunet}
#   scripts/fuzz.sh ci [SECONDS]          # build, replay every seed, then SECONDS (default 30) of
#                                         # fuzzing per C++ target + the load_image target (atheris)
#   scripts/fuzz.sh run TARGET SECONDS [libFuzzer args...]   # a long run, corpus kept in
#                                         # build/fuzz/work/TARGET (grows across runs)
#   scripts/fuzz.sh replay TARGET FILES...  # rerun crash inputs
#
# Targets (tests/fuzz/): fuzz_json (the JSON reader), fuzz_safetensors (whole file images:
# header length, JSON header, offsets/shapes/dtypes, F16/BF16 reads, Model::load), fuzz_metadata
# (the `pyfer` metadata reader of Model::load), fuzz_yunet (YuNet detector files: each input as a
# whole file for YuNetModel::load, and as the parameters of a network written as a file, packed and
# run in one band and in three), image
# (pyfer.recognizer.load_image on file bytes, atheris; needs `pip install atheris` and the package
# importable).
# Seeds: tests/fuzz/corpus/TARGET (committed, small; tests/fuzz/make_seeds.py writes them). New
# inputs go to build/fuzz/work/, never into the committed corpus. A crash, sanitizer report,
# leak or timeout exits non-zero and leaves the input in build/fuzz/artifacts/.
# Env: CLANG (default: clang++-14 or clang++), FUZZ_JOBS (build parallelism, default 2), PYTHON.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
BUILD="${FUZZ_BUILD_DIR:-build/fuzz}"
PY="${PYTHON:-python}"
CXX_FUZZ="${CLANG:-$(command -v clang++-14 || command -v clang++ || true)}"
TARGETS=(fuzz_json fuzz_safetensors fuzz_metadata fuzz_yunet)
ART="$BUILD/artifacts"

corpus_of() { case "$1" in fuzz_json) echo json;; fuzz_safetensors) echo safetensors;;
                           fuzz_metadata) echo metadata;; fuzz_yunet) echo yunet;;
                           image|fuzz_image) echo image;; esac; }

build() {
  [[ -n "$CXX_FUZZ" ]] || { echo "fuzz.sh: no clang++ (apt-get install clang-14 libclang-rt-14-dev)"; exit 1; }
  local cc="${CXX_FUZZ/clang++/clang}"
  mkdir -p "$BUILD"
  # the core library with ASan+UBSan and coverage counters (-fsanitize=fuzzer-no-link); -O1 via a
  # launcher (the project adds -O3 per target; the last -O wins): quick to build, good stacks
  printf '#!/bin/sh\nexec "$@" -O1 -gline-tables-only\n' > "$BUILD/o1-launcher.sh"
  chmod +x "$BUILD/o1-launcher.sh"
  cmake -S . -B "$BUILD" -G "Unix Makefiles" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER="$CXX_FUZZ" \
    -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER_LAUNCHER="$REPO/$BUILD/o1-launcher.sh" \
    -DPYFER_SANITIZE="address,undefined,fuzzer-no-link" -DPYFER_BUILD_PYTHON=OFF -DPYFER_BUILD_TESTS=OFF \
    -DPYFER_WITH_CUDA=OFF >/dev/null
  cmake --build "$BUILD" --target pyfer_core -j"${FUZZ_JOBS:-2}"
  for t in "${TARGETS[@]}"; do
    if [[ ! -x "$BUILD/$t" || "tests/fuzz/$t.cpp" -nt "$BUILD/$t" || "$BUILD/libpyfer_core.a" -nt "$BUILD/$t" ]]; then
      "$CXX_FUZZ" -std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
        "tests/fuzz/$t.cpp" "$BUILD/libpyfer_core.a" -lpthread -o "$BUILD/$t"
    fi
  done
}

# the image target's scratch file (tests/fuzz/fuzz_image.py), in memory where /dev/shm is: one
# folder per run of this script, removed when it ends (40 of them were left behind before)
PYFER_FUZZ_SCRATCH="$(mktemp -d "$( [[ -d /dev/shm ]] && echo /dev/shm || echo "${TMPDIR:-/tmp}")/pyfer-fuzz-image-XXXXXX")"
export PYFER_FUZZ_SCRATCH
trap 'rm -rf "$PYFER_FUZZ_SCRATCH"' EXIT

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1:strict_string_checks=1:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

# run TARGET SECONDS [args]: fuzz, reading the seeds and writing new inputs to the work corpus
run_one() {
  local t="$1" secs="$2"; shift 2
  local c; c="$(corpus_of "$t")"
  local work="$BUILD/work/$c"
  mkdir -p "$work" "$ART"
  echo "== $t: ${secs}s (seeds tests/fuzz/corpus/$c, work corpus $work)"
  if [[ "$t" == image || "$t" == fuzz_image ]]; then
    "$PY" tests/fuzz/fuzz_image.py -max_total_time="$secs" -rss_limit_mb=3072 -timeout=20 -keep_seed=1 \
      -artifact_prefix="$ART/image-" -print_final_stats=1 "$@" "$work" "tests/fuzz/corpus/$c"
  else
    "$BUILD/$t" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -dict=tests/fuzz/json.dict \
      -artifact_prefix="$ART/$t-" -print_final_stats=1 "$@" "$work" "tests/fuzz/corpus/$c"
  fi
}

case "${1:-ci}" in
  build) build ;;
  run) shift; [[ "$1" == image ]] || build >/dev/null; run_one "$@" ;;
  replay) shift; t="$1"; shift; build >/dev/null
          if [[ "$t" == image ]]; then "$PY" tests/fuzz/fuzz_image.py -runs=1 "$@"; else "$BUILD/$t" -runs=1 "$@"; fi ;;
  ci)
    secs="${2:-30}"
    build
    mkdir -p "$BUILD/logs"
    summary='^(== |#[0-9]+ +DONE|stat::number_of_executed_units|stat::new_units_added|Done [0-9]+ runs|INFO: seed corpus)'
    one_target() {  # seeds replayed, then time-boxed fuzzing; status 1: a committed seed, 2: a new input
      local t="$1" log="$BUILD/logs/ci-$1.log"
      : > "$log"
      if [[ "$t" != image ]]; then
        # every committed seed replayed first (-runs=0: the corpus alone)
        "$BUILD/$t" -runs=0 "tests/fuzz/corpus/$(corpus_of "$t")" >> "$log" 2>&1 || return 1
      fi
      run_one "$t" "$secs" >> "$log" 2>&1 || return 2
    }
    # FUZZ_PARALLEL targets at a time (default: the CPUs this process may use), each on its own
    # core: the same seconds per target, in less wall time
    parallel="${FUZZ_PARALLEL:-$("$PY" -c 'import os; print(max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))')}"
    [[ "$parallel" =~ ^[1-9][0-9]*$ ]] || { echo "fuzz.sh: FUZZ_PARALLEL must be a positive integer, got '$parallel'"; exit 2; }
    all=("${TARGETS[@]}" image)
    failed=0
    for ((i = 0; i < ${#all[@]}; i += parallel)); do
      pids=(); batch=("${all[@]:i:parallel}")
      for t in "${batch[@]}"; do one_target "$t" & pids+=($!); done
      for k in "${!batch[@]}"; do
        t="${batch[$k]}" log="$BUILD/logs/ci-${batch[$k]}.log" status=0
        wait "${pids[$k]}" || status=$?
        case "$status" in
          0) grep -E "$summary" "$log" || true ;;
          1) tail -n 60 "$log"; echo "fuzz.sh: $t FAILED on a committed seed"; failed=1 ;;
          *) tail -n 80 "$log"; echo "fuzz.sh: $t FAILED (input left in $ART)"; failed=1 ;;
        esac
      done
      [[ "$failed" == 0 ]] || exit 1
    done
    echo "fuzz.sh: OK" ;;
  *) echo "usage: $0 build | ci [SECONDS] | run TARGET SECONDS [args] | replay TARGET FILES..."; exit 2 ;;
esac
