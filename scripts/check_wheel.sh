#!/usr/bin/env bash
# Install a built wheel into a fresh venv (no torch, no build tools, binary-only installs) and,
# from outside the source tree: pyfer info, pyfer predict on the example photo, the torch-free
# engine/package tests against the installed wheel, and the issue-7 limits (scripts/wheel_limits.py).
#   scripts/check_wheel.sh [WHEEL]      (default: the one wheel in wheelhouse/)
# Env: PYFER_CHECK_DIR (scratch dir, default a mktemp dir), PYTHON (venv base interpreter, default python3)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
whl=$(realpath "${1:-$(ls "$repo"/wheelhouse/pyfer-*.whl)}")
work=${PYFER_CHECK_DIR:-$(mktemp -d /tmp/pyfer-wheel-check.XXXXXX)}
rm -rf "$work" && mkdir -p "$work"
echo "== wheel check: $whl in $work"

# 1. fresh venv: the wheel + its two runtime deps, then the test tools; nothing compiled
"${PYTHON:-python3}" -m venv "$work/venv"
py="$work/venv/bin/python"
"$py" -m pip uninstall -q -y setuptools wheel 2>/dev/null || true   # venv seeds setuptools on 3.11
CC=false CXX=false "$py" -m pip install -q --only-binary=:all: "$whl"
"$py" -m pip list --format=freeze | tee "$work/runtime-freeze.txt"
CC=false CXX=false "$py" -m pip install -q --only-binary=:all: pytest hypothesis safetensors
"$py" - <<'PY'
import importlib.util, sys
bad = [m for m in ("torch", "skbuild", "scikit_build_core", "pybind11", "cmake", "ninja", "setuptools")
       if importlib.util.find_spec(m)]
sys.exit(f"fresh venv is not clean: {bad}" if bad else 0)
PY

# 2. outside the source tree: a copy of the tests and the example photo; pyfer/models/ in the copy
#    is only the installed wheel's weights (tests read REPO/pyfer/models/...), never a package
mkdir -p "$work/src/examples" "$work/src/pyfer/models" "$work/run"
cp -r "$repo/tests" "$work/src/tests"
cp "$repo/examples/astronaut.png" "$work/src/examples/"
site_pyfer=$(cd "$work/run" && "$py" -c "import pyfer, pathlib; print(pathlib.Path(pyfer.__file__).parent)")
case "$site_pyfer" in "$work/venv/"*) ;; *) echo "pyfer resolves to $site_pyfer, not the wheel"; exit 1;; esac
ln -s "$site_pyfer/models/tsnet_student.safetensors" "$work/src/pyfer/models/"
printf '[pytest]\nmarkers =\n    slow: long tests\n    gpu: needs a CUDA GPU\n' > "$work/src/pytest.ini"

cd "$work/run"
export PATH="$work/venv/bin:$PATH"
echo "+ pyfer info"; pyfer info
echo "+ pyfer predict examples/astronaut.png"; pyfer predict "$work/src/examples/astronaut.png" --out "$work/run/astronaut_annotated.jpg"

# 3. torch-free tests against the installed wheel (test_engine.py & co. compare with PyTorch: main CI job).
cd "$work/src"
PYFER_WHEEL_TEST=1 "$py" -m pytest -q -p no:cacheprovider -o addopts="" \
  tests/test_wheel.py tests/test_kernels.py tests/test_engine_golden.py tests/test_loader_fuzz.py \
  tests/test_fuzz.py tests/test_cli.py tests/test_recognizer.py tests/test_detect.py tests/test_video.py \
  tests/test_cuda.py

# 4. limits (fresh processes, medians)
cd "$work/run"
"$py" "$repo/scripts/wheel_limits.py" --wheel "$whl" --image "$work/src/examples/astronaut.png" --json "$work/limits.json"
echo "== wheel check passed ($work)"
