#!/usr/bin/env bash
# Check every wheel that scripts/build_wheels.sh wrote to OUTDIR (issue 16, docs/packaging.md):
#   scripts/check_wheels.sh OUTDIR
# - x86_64: scripts/check_wheel.sh in a fresh venv of the wheel's own CPython (found like
#   build_wheels.sh finds it), no torch, no compiler on PATH: pyfer info, pyfer predict, the
#   torch-free tests, the timing/size limits;
# - aarch64 cp311: scripts/check_wheel_qemu.sh (Debian's arm64 CPython 3.11 under qemu-user);
# - aarch64 cp39/cp310/cp312/cp313: NOT RUN (no arm64 interpreter of those versions here):
#   reported as untested, never as passed.
# Writes OUTDIR/check-<wheel>.log per wheel and prints a summary; exit 1 if a run check failed.
# Env: PYFER_CHECK_ARCHS (default "x86_64 aarch64").
set -uo pipefail
[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$(cd "$1" && pwd)
archs=${PYFER_CHECK_ARCHS:-x86_64 aarch64}

find_python() {  # same lookup as build_wheels.sh
  local v=$1 var="PYFER_PYTHON_${1/./_}" p
  if [ -n "${!var:-}" ]; then echo "${!var}"; return; fi
  local root=${PYENV_ROOT:-$HOME/.pyenv}
  p=$(ls -d "$root"/versions/"$v".*/bin/python 2>/dev/null | grep -E "/versions/$v\.[0-9]+/" | sort -V | tail -1 || true)
  [ -n "$p" ] || p=$(command -v "python$v" || true)
  echo "$p"
}

rc=0
summary=()
for whl in "$out"/pyfer-*.whl; do
  name=$(basename "$whl")
  tag=$(echo "$name" | cut -d- -f3)            # cp311
  ver="3.${tag#cp3}"                           # 3.11
  arch=${name##*_}; arch=${arch%.whl}          # x86_64 | aarch64 (last part of the platform tag)
  [[ " $archs " == *" $arch "* ]] || continue
  log=$out/check-${name%.whl}.log
  t0=$(date +%s)
  if [ "$arch" = x86_64 ]; then
    py=$(find_python "$ver")
    if [ -z "$py" ]; then summary+=("UNTESTED  $name (no CPython $ver here)"); continue; fi
    PYTHON=$py "$repo/scripts/check_wheel.sh" "$whl" > "$log" 2>&1
  elif [ "$tag" = cp311 ]; then
    "$repo/scripts/check_wheel_qemu.sh" "$whl" > "$log" 2>&1
  else
    summary+=("UNTESTED  $name (built and tagged only: no arm64 CPython $ver to run it)")
    continue
  fi
  r=$?
  dt=$(( $(date +%s) - t0 ))
  tests=$(grep -E "^[0-9]+ passed" "$log" | tail -1)
  if [ $r -eq 0 ]; then summary+=("PASSED    $name  ${dt} s  ($tests)")
  else summary+=("FAILED    $name  ${dt} s  (see $log)"); rc=1; fi
done
printf '%s\n' "${summary[@]}" | tee "$out/check-summary.txt"
exit $rc
