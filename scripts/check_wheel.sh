#!/usr/bin/env bash
# Install a built wheel into a fresh venv (no torch, no build tools, binary-only installs) and,
# from outside the source tree: pyfer info, pyfer predict on the example photo, the torch-free
# engine/package tests against the installed wheel, and the issue-7 limits (scripts/wheel_limits.py).
#   scripts/check_wheel.sh [WHEEL]      (default: the one wheel in wheelhouse/)
# Env: PYFER_CHECK_DIR (scratch dir, default a mktemp dir), PYTHON (venv base interpreter, default
#      python3; must match the wheel's CPython version), PYFER_CHECK_LIMITS=0 (skip the timing
#      limits: under qemu-user, scripts/check_wheel_qemu.sh), PYFER_CHECK_TESTS (override the
#      list of test files).
# The venv's commands run with a PATH that holds only the venv and a few listed system tools: no
# C/C++ compiler (checked), so nothing can have been compiled on install.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
whl=$(realpath "${1:-$(ls "$repo"/wheelhouse/pyfer-*.whl)}")
work=${PYFER_CHECK_DIR:-$(mktemp -d /tmp/pyfer-wheel-check.XXXXXX)}
rm -rf "$work" && mkdir -p "$work"
echo "== wheel check: $whl in $work"

# 1. fresh venv: the wheel + its two runtime deps, then the test tools; nothing compiled
base=${PYTHON:-python3}
if ! "$base" -m venv "$work/venv" > "$work/venv.log" 2>&1; then
  # e.g. Debian's python3.11 without python3-venv (the arm64 one under qemu): pip from its wheel
  rm -rf "$work/venv"
  "$base" -m venv --without-pip "$work/venv"
  python3 -m pip download -q --no-deps --only-binary=:all: -d "$work/pipwhl" pip
  pipwhl=$(ls "$work"/pipwhl/pip-*.whl)
  "$work/venv/bin/python" "$pipwhl/pip" install -q --no-index "$pipwhl"
fi
py="$work/venv/bin/python"
# from here on: no compiler on PATH, only the venv and the tools this script and the tests use
mkdir -p "$work/sysbin"
# (setpriv: tests/test_permissions.py, as root, drops the capabilities that pass file modes)
for t in sh bash env cat cp ln mkdir rm ls tee uname dirname basename readlink realpath mktemp sed grep head tar gzip \
         localedef setpriv qemu-aarch64-static qemu-aarch64; do
  p=$(command -v "$t" || true); [ -n "$p" ] && ln -sf "$p" "$work/sysbin/$t"
done
export PATH="$work/venv/bin:$work/sysbin"
hash -r
for c in cc gcc g++ c++ clang clang++ zig ld; do
  if command -v "$c" >/dev/null; then echo "compiler on PATH: $(command -v "$c")"; exit 1; fi
done
"$py" -m pip uninstall -q -y setuptools wheel 2>/dev/null || true   # venv seeds setuptools on 3.11
CC=false CXX=false "$py" -m pip install -q --only-binary=:all: "$whl"
"$py" -m pip list --format=freeze | tee "$work/runtime-freeze.txt"
CC=false CXX=false "$py" -m pip install -q --only-binary=:all: pytest pytest-xdist hypothesis safetensors
(cd "$work" && "$py" - <<'PY'   # from $work: the source tree's cmake/ folder is not a module
import importlib.util, sys
bad = [m for m in ("torch", "skbuild", "scikit_build_core", "pybind11", "cmake", "ninja", "setuptools")
       if importlib.util.find_spec(m)]
sys.exit(f"fresh venv is not clean: {bad}" if bad else 0)
PY
)

# 2. outside the source tree: a copy of the tests, their helpers and the example photo, taken from
#    the sdist next to the wheel when there is one (the sources the wheel was built from; the
#    working tree may have moved on since), else from this checkout. pyfer/models/ in the copy
#    holds only links to the installed wheel's files (tests read REPO/pyfer/models/...), and
#    there is no pyfer package in the copy.
tree=$repo
sdist=$(ls "$(dirname "$whl")"/pyfer-*.tar.gz 2>/dev/null | head -1 || true)
if [ -n "$sdist" ]; then
  mkdir -p "$work/sdist" && tar -xzf "$sdist" -C "$work/sdist"
  tree=$(ls -d "$work"/sdist/pyfer-*/ | head -1); tree=${tree%/}
fi
echo "tests from: ${sdist:-$repo}"
mkdir -p "$work/src/examples" "$work/src/pyfer/models" "$work/src/scripts" "$work/run"
cp -r "$tree/tests" "$work/src/tests"
cp "$tree/examples/astronaut.png" "$work/src/examples/"
cp "$tree"/scripts/*.py "$work/src/scripts/"        # test helpers (group_photos.py, memory_soak.py)
for f in LICENSE NOTICE.md pyproject.toml; do if [ -f "$tree/$f" ]; then cp "$tree/$f" "$work/src/"; fi; done  # read by tests
site_pyfer=$(cd "$work/run" && "$py" -c "import pyfer, pathlib; print(pathlib.Path(pyfer.__file__).parent)")
case "$site_pyfer" in "$work/venv/"*) ;; *) echo "pyfer resolves to $site_pyfer, not the wheel"; exit 1;; esac
ln -s "$site_pyfer"/models/* "$work/src/pyfer/models/"
printf '[pytest]\nmarkers =\n    slow: long tests\n    gpu: needs a CUDA GPU\n' > "$work/src/pytest.ini"

cd "$work/run"
echo "+ pyfer info"; pyfer info
echo "+ pyfer predict examples/astronaut.png"; pyfer predict "$work/src/examples/astronaut.png" --out "$work/run/astronaut_annotated.jpg"

# 3. torch-free tests against the installed wheel (test_engine.py & co. compare with PyTorch: main CI job).
cd "$work/src"
tests=${PYFER_CHECK_TESTS:-tests/test_wheel.py tests/test_kernels.py tests/test_engine_golden.py tests/test_loader_fuzz.py
  tests/test_fuzz.py tests/test_cli.py tests/test_recognizer.py tests/test_detect.py tests/test_video.py
  tests/test_cuda.py tests/test_concurrency.py tests/test_facenorm.py tests/test_memory.py tests/test_yunet_engine.py tests/test_loader_limits.py
  tests/test_weights_file.py tests/test_evaluate_cli.py tests/test_permissions.py tests/test_atomic.py}
# shellcheck disable=SC2086
# one worker per core, at most two: the tests are the main job's, which runs them so too
PYFER_WHEEL_TEST=1 "$py" -m pytest -q -p no:cacheprovider -o addopts="" -n auto --maxprocesses 2 $tests

# 4. limits (fresh processes, medians)
cd "$work/run"
[ "${PYFER_CHECK_LIMITS:-1}" = 0 ] && { echo "== wheel check passed, limits skipped ($work)"; exit 0; }
"$py" "$repo/scripts/wheel_limits.py" --wheel "$whl" --image "$work/src/examples/astronaut.png" --json "$work/limits.json"
echo "== wheel check passed ($work)"
