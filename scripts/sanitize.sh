#!/usr/bin/env bash
# ASan + UBSan (and LeakSanitizer) check of the C++ engine, for CI (scripts/ci_reliability.sh).
#
#   scripts/sanitize.sh            # build build/asan (-O1), run the C++ self-test under ASan+UBSan+LSan,
#                                  # then the engine / loader / fuzz pytest subset against the ASan module
#   SANITIZE_SKIP_BUILD=1 scripts/sanitize.sh   # reuse an existing build/asan
#   SANITIZE_JOBS=4 scripts/sanitize.sh         # build parallelism (default 2)
#
# The instrumented module is built in build/asan (-DPYFER_SANITIZE=address,undefined, which the
# module records: build_info()["sanitized"]) and imported from a staged package
# (scripts/sanitizer_lib.sh), so pyfer/_engine*.so in the tree and any installed pyfer are left
# alone. Step [3/3] refuses to run unless the imported module is the instrumented one
# (scripts/check_engine_build.py, checked again inside pytest by
# tests/test_fuzz.py::test_engine_is_the_expected_build), and first shows that the same check
# rejects an ordinary module. Exit status is non-zero on any sanitizer report, test failure or
# wrong module.
# Steps: C++ self-test and a core harness (scripts/sanitize_harness.cpp: engine lifecycle, 20k
# mutated headers parsed from exact-size heap buffers, ~550 mutated/truncated files, 2k mutated
# /proc files for the cgroup reader) with LeakSanitizer on; then the Python engine/loader/fuzz
# tests and the cgroup reader's tests against the ASan module.
# Runtime on 2 idle cores: build ~1-2 min (-O1), tests ~3-5 min (see RELIABILITY.md).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
source scripts/sanitizer_lib.sh
BUILD="${SANITIZE_BUILD_DIR:-build/asan}"
JOBS="${SANITIZE_JOBS:-2}"
PY="${PYTHON:-python}"
SANITIZERS="address,undefined"

[[ "${SANITIZE_SKIP_BUILD:-0}" == 1 ]] || build_sanitized "$BUILD" "$SANITIZERS" "$JOBS"
SAN="-fsanitize=$SANITIZERS -fno-sanitize-recover=all -fno-omit-frame-pointer -g"
# the core harness (scripts/sanitize_harness.cpp) links the instrumented static core library
if [[ ! -x "$BUILD/sanitize_harness" || scripts/sanitize_harness.cpp -nt "$BUILD/sanitize_harness" \
      || "$BUILD/libpyfer_core.a" -nt "$BUILD/sanitize_harness" ]]; then
  g++ -std=c++17 $SAN -O1 scripts/sanitize_harness.cpp "$BUILD/libpyfer_core.a" -lpthread -o "$BUILD/sanitize_harness"
fi

SO="$(ls "$BUILD"/_engine*.so | head -n1)"
EXE="$BUILD/pyfer_selftest"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

LSAN_ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1"
echo "== [1/3] C++ self-test under ASan+UBSan+LeakSanitizer (kernels, blocks, golden forward)"
ASAN_OPTIONS="$LSAN_ASAN_OPTIONS" "$EXE" tests/golden | tail -n 3

echo "== [2/3] core harness under ASan+UBSan+LeakSanitizer (engine lifecycle, header parser, loader)"
HTMP="$(mktemp -d)"
ASAN_OPTIONS="$LSAN_ASAN_OPTIONS" "$BUILD/sanitize_harness" pyfer/models/tsnet_student.safetensors "$HTMP" \
  "${SANITIZE_HARNESS_ITERS:-20000}"
rm -rf "$HTMP"

# (tests/test_kernels.py is left out: the C++ self-test above runs the same kernel checks under ASan)
echo "== [3/3] pytest engine/loader/fuzz subset against the ASan module (leaks off: CPython is not LSan-clean;"
echo "         fuzz example counts x${PYFER_FUZZ_SCALE:-0.5})"
PKG="$(stage_pkg "$SO")"
ORD=""
trap 'rm -rf "$PKG" ${ORD:+"$ORD"}' EXIT
# libstdc++ preloaded too: without it ASan cannot resolve __cxa_throw in a Python process
# ("CHECK failed: real___cxa_throw != 0" on the first C++ exception).
ASAN_LIB="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so)"
PY_ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:allocator_may_return_null=1:quarantine_size_mb=64:malloc_context_size=8:allocator_release_to_os_interval_ms=500"
# PYTHONSAFEPATH (= python -P): the cwd (the repo, with its own pyfer/) is not put on sys.path
isolated() { PYTHONPATH="$1" PYTHONSAFEPATH=1 LD_PRELOAD="$ASAN_LIB" ASAN_OPTIONS="$PY_ASAN_OPTIONS" "${@:2}"; }

# Self-check of the guard: an ordinary (non-instrumented) module, staged the same way, must be refused.
ORD_SO="$("$PY" -c 'import pyfer._engine as e; print(e.__file__)' 2>/dev/null || true)"
if [[ -n "$ORD_SO" && "$(realpath "$ORD_SO")" != "$(realpath "$SO")" ]]; then
  ORD="$(stage_pkg "$ORD_SO")"
  if isolated "$ORD" "$PY" scripts/check_engine_build.py --sanitized "$SANITIZERS" --file "$SO" | sed 's/^/   [ordinary module] /'; then
    echo "sanitize.sh: FAILED: the module check accepted an ordinary module ($ORD_SO)"; exit 1
  fi
  echo "   guard self-check: the ordinary module ($ORD_SO) is refused, as it must be"
else
  echo "   guard self-check skipped: no ordinary pyfer._engine importable here (not installed)"
fi
# The instrumented module must be what is imported (and what pytest imports: the same env).
isolated "$PKG" "$PY" scripts/check_engine_build.py --sanitized "$SANITIZERS" --file "$SO" \
  || { echo "sanitize.sh: FAILED: the staged import is not the instrumented module"; exit 1; }
# ... and ASan must be live in that process setup: a deliberate heap overflow in the module is reported
canary="$(isolated "$PKG" "$PY" -c 'import pyfer._engine as e; e._testing.sanitizer_canary("heap-overflow")' 2>&1 || true)"
# (UBSan's object-size check may see the over-read first: either report proves the runtime is live)
grep -Eq "ERROR: AddressSanitizer: heap-buffer-overflow|runtime error: load of address .* insufficient space" <<<"$canary" \
  || { echo "$canary" | tail -n 20; echo "sanitize.sh: FAILED: the ASan canary was not reported"; exit 1; }
echo "   canary: a deliberate heap over-read in the imported module is reported ($(grep -Eo "AddressSanitizer: heap-buffer-overflow|runtime error: load of address" <<<"$canary" | head -n1))"
# one worker per core, at most 2 (pytest-xdist, in the test extra): each imports the staged module
workers=()
if "$PY" -c "import xdist" 2>/dev/null; then workers=(-n auto --maxprocesses "${SANITIZE_WORKERS:-2}")
else echo "   pytest-xdist not installed: the pytest step runs in one process"; fi
isolated "$PKG" env PYFER_SANITIZE=1 PYFER_EXPECT_SANITIZED="$SANITIZERS" PYFER_EXPECT_ENGINE="$SO" \
  PYFER_FUZZ_SCALE="${PYFER_FUZZ_SCALE:-0.5}" \
  "$PY" -m pytest -q -p no:cacheprovider --benchmark-disable -x "${workers[@]}" \
    tests/test_fuzz.py::test_engine_is_the_expected_build \
    tests/test_engine.py tests/test_engine_golden.py tests/test_loader_fuzz.py tests/test_fuzz.py \
    tests/test_cpu_count.py \
    --durations=10 ${SANITIZE_PYTEST_ARGS:-} \
    -k "${SANITIZE_K:-not speed}" \
  || { echo "sanitize.sh: FAILED"; exit 1; }
echo "sanitize.sh: OK (tests ran against $SO, build_info sanitized=$SANITIZERS)"
