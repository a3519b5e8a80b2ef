#!/usr/bin/env bash
# ThreadSanitizer check of the C++ engine, for CI (scripts/ci_reliability.sh; RELIABILITY.md).
#
#   scripts/tsan.sh                    # build build/tsan (-O1, -DPYFER_SANITIZE=thread), then:
#   TSAN_SKIP_BUILD=1 scripts/tsan.sh  # reuse it
#
# [1/3] scripts/tsan_harness.cpp: the thread pool at 2 and 8 threads (concurrent callers,
#       exceptions, churn), one shared engine (pool of 2 and 8) called by 6 threads, engines
#       sharing one model side by side, model loads while others predict, one YuNet engine on 2
#       and 3 threads called by 4 threads -- pure C++, every access instrumented.
# [2/3] pyfer_selftest under TSan (kernels, blocks, golden forward; single-threaded itself, it
#       checks the instrumented kernels still give the reference results).
# [3/3] tests/test_concurrency.py (several Python threads on one Recognizer and one Engine, pool
#       at 2 and 8 threads, engine churn) against the TSan module: libtsan preloaded into
#       CPython, which is not instrumented; scripts/tsan.supp names what is suppressed and why.
#       The module is imported from a staged package and checked to be the TSan build
#       (scripts/check_engine_build.py), as in scripts/sanitize.sh.
# Any race report fails the run (halt_on_error=1, exitcode 66).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
source scripts/sanitizer_lib.sh
BUILD="${TSAN_BUILD_DIR:-build/tsan}"
PY="${PYTHON:-python}"
# not the _checks module: test_concurrency.py does not import it
[[ "${TSAN_SKIP_BUILD:-0}" == 1 ]] || build_sanitized "$BUILD" thread "${TSAN_JOBS:-2}" _engine pyfer_selftest
if [[ ! -x "$BUILD/tsan_harness" || scripts/tsan_harness.cpp -nt "$BUILD/tsan_harness" \
      || "$BUILD/libpyfer_core.a" -nt "$BUILD/tsan_harness" ]]; then
  g++ -std=c++17 -fsanitize=thread -g -O1 scripts/tsan_harness.cpp "$BUILD/libpyfer_core.a" -lpthread -o "$BUILD/tsan_harness"
fi
SO="$(ls "$BUILD"/_engine*.so | head -n1)"
SUPP="$REPO/scripts/tsan.supp"
export TSAN_OPTIONS="halt_on_error=1:exitcode=66:second_deadlock_stack=1:history_size=4:suppressions=$SUPP"

echo "== [1/3] C++ concurrency harness under TSan (thread pool 2/8, shared engine, shared model, load churn, YuNet)"
"$BUILD/tsan_harness" pyfer/models/tsnet_student.safetensors "${TSAN_HARNESS_SCALE:-1}" pyfer/models/yunet.safetensors

echo "== [2/3] C++ self-test under TSan"
"$BUILD/pyfer_selftest" tests/golden | tail -n 1

echo "== [3/3] tests/test_concurrency.py against the TSan module (libtsan preloaded into CPython)"
PKG="$(stage_pkg "$SO")"
trap 'rm -rf "$PKG"' EXIT
TSAN_LIB="$(gcc -print-file-name=libtsan.so)"
isolated() { PYTHONPATH="$PKG" PYTHONSAFEPATH=1 LD_PRELOAD="$TSAN_LIB" "$@"; }
isolated "$PY" scripts/check_engine_build.py --sanitized thread --file "$SO" \
  || { echo "tsan.sh: FAILED: the staged import is not the TSan module"; exit 1; }
# ... and TSan must be live in that process setup: a deliberate race in the module is reported
canary="$(isolated "$PY" -c 'import pyfer._engine as e; e._testing.sanitizer_canary("race")' 2>&1 || true)"
grep -q "WARNING: ThreadSanitizer: data race" <<<"$canary" \
  || { echo "$canary" | tail -n 20; echo "tsan.sh: FAILED: the TSan canary race was not reported"; exit 1; }
echo "   canary: a deliberate data race in the imported module is reported by TSan"
isolated env PYFER_EXPECT_SANITIZED=thread PYFER_EXPECT_ENGINE="$SO" PYFER_TSAN=1 \
  "$PY" -m pytest -q -p no:cacheprovider --benchmark-disable -x -s \
    tests/test_fuzz.py::test_engine_is_the_expected_build tests/test_concurrency.py ${TSAN_PYTEST_ARGS:-} \
  || { echo "tsan.sh: FAILED"; exit 1; }
echo "tsan.sh: OK (tests ran against $SO, build_info sanitized=thread)"
