# Sourced by scripts/sanitize.sh and scripts/tsan.sh: build an instrumented engine, and import it
# from a staged package, whatever is installed (editable install, wheel, in-tree module, nothing), and
# prove which module was imported.
#
# Why: an editable install (scikit-build-core) puts an import hook on sys.meta_path that answers
# for `pyfer` before PYTHONPATH is searched, so putting a staged copy on PYTHONPATH alone still
# imports the ordinary module (issue 18). The staged package therefore carries a sitecustomize.py
# that removes every meta-path finder claiming `pyfer` (and the repo root from sys.path); it is
# inherited by subprocesses through PYTHONPATH. check_engine_build.py then verifies the result.

# build_sanitized BUILD_DIR SANITIZERS JOBS [TARGET...]: configure and build the engine, its test
# module and the self-test (or only the TARGETs) with -DPYFER_SANITIZE=SANITIZERS (needs PY). The
# project's CMakeLists adds -O3 per target; a compiler launcher appends -O1 (the last -O wins) so
# the sanitizer build stays quick to compile and keeps useful stacks.
build_sanitized() {
  local build="$1" sanitizers="$2" jobs="$3" targets=()
  for t in "${@:4}"; do targets+=(--target "$t"); done
  mkdir -p "$build"
  printf '#!/bin/sh\nexec "$@" -O1\n' > "$build/o1-launcher.sh"
  chmod +x "$build/o1-launcher.sh"
  cmake -S "$REPO" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPYFER_BUILD_TESTS=ON -DPYFER_WITH_CUDA=OFF \
    -DCMAKE_CXX_COMPILER_LAUNCHER="$(realpath "$build")/o1-launcher.sh" -DPYFER_SANITIZE="$sanitizers" \
    -DPython_EXECUTABLE="$(command -v "$PY")" \
    -Dpybind11_DIR="$("$PY" -c 'import pybind11; print(pybind11.get_cmake_dir())')" >/dev/null
  cmake --build "$build" -j"$jobs" "${targets[@]}"
}

# stage_pkg SO -> prints a temp dir holding pyfer/ (symlinks to the sources + SO), training/ and
# sitecustomize.py. Put it first on PYTHONPATH.
stage_pkg() {
  local so="$1" pkg f
  pkg="$(mktemp -d /tmp/pyfer-staged.XXXXXX)"
  mkdir "$pkg/pyfer"
  for f in "$REPO"/pyfer/* ; do
    case "$f" in *.so|*/__pycache__) ;; *) ln -s "$f" "$pkg/pyfer/$(basename "$f")" ;; esac
  done
  ln -s "$(realpath "$so")" "$pkg/pyfer/$(basename "$so")"
  # the other extension modules built beside it (the test-only pyfer._checks), same build
  for f in "$(dirname "$so")"/_*.so; do
    [[ -e "$f" && ! -e "$pkg/pyfer/$(basename "$f")" ]] && ln -s "$(realpath "$f")" "$pkg/pyfer/$(basename "$f")"
  done
  ln -s "$REPO/training" "$pkg/training"
  cat > "$pkg/sitecustomize.py" <<PYEOF
# written by scripts/sanitizer_lib.sh: drop import hooks that would load another pyfer
import sys
_pkg = "$pkg"
for _f in list(sys.meta_path):
    if _f.__class__.__module__.startswith("_frozen_importlib") or isinstance(_f, type):
        continue
    try:
        _spec = _f.find_spec("pyfer", None)
    except Exception:
        _spec = None
    if _spec is not None and not str(getattr(_spec, "origin", "") or "").startswith(_pkg):
        sys.meta_path.remove(_f)
sys.path[:] = [p for p in sys.path if p.rstrip("/") != "$REPO"]
PYEOF
  echo "$pkg"
}
