#!/usr/bin/env bash
# Build ONE wheel of the published matrix (docs/packaging.md): the one for this machine's
# python3 and architecture, exactly as scripts/build_wheels.sh builds all ten (zig, glibc 2.28
# target, static libc++, from the sdist, auditwheel-tagged manylinux_2_28 or older):
#   dist/pyfer-<v>.tar.gz                                  sdist
#   wheelhouse/pyfer-<v>-cp3X-cp3X-manylinux_*_<arch>.whl  the wheel (scripts/check_wheel.sh checks it)
# CPU-only (PYFER_WITH_CUDA=OFF), without the C++ self-test executable; its own build dirs, so
# the dev/editable build in build/ is left alone. CI (.ci/run) runs this plus check_wheel.sh.
# Env: PYFER_DIST (default dist), PYFER_WHEELHOUSE (default wheelhouse), PYTHON (default python3);
#      the build_wheels.sh variables (CMAKE_BUILD_PARALLEL_LEVEL, PYFER_CCACHE, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
dist=${PYFER_DIST:-dist}
wheelhouse=${PYFER_WHEELHOUSE:-wheelhouse}
py=${PYTHON:-python3}
ver=$("$py" -c "import sys; print('%d.%d' % sys.version_info[:2])")
arch=$(uname -m)
rm -rf "$wheelhouse" "$dist"
mkdir -p "$dist"
t0=$(date +%s)
env PYFER_WHEEL_PYTHONS="$ver" PYFER_WHEEL_ARCHS="$arch" "PYFER_PYTHON_${ver/./_}=$(command -v "$py")" \
  scripts/build_wheels.sh "$wheelhouse"
mv "$wheelhouse"/pyfer-*.tar.gz "$dist/"
whl=$(ls "$wheelhouse"/pyfer-*.whl)
echo "build: $(( $(date +%s) - t0 )) s"
echo "sdist: $(ls "$dist"/pyfer-*.tar.gz) ($(du -k "$dist"/pyfer-*.tar.gz | cut -f1) KiB)"
echo "wheel: $whl ($(stat -c %s "$whl") bytes)"
