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
# Every wheel also gets a static check first (inspect_wheel below: tag, ELF machine, libraries,
# symbol versions), including those that cannot be run here.
# Env: PYFER_CHECK_ARCHS (archs whose wheels are run, default "x86_64 aarch64"; the others get the
#      static check only), PYFER_CHECK_RUN=0 (static checks only), PYFER_WHEEL_PYTHONS (the
#      expected matrix, as for build_wheels.sh; a missing wheel fails),
#      PYFER_CHECK_TESTS (passed on to check_wheel.sh / check_wheel_qemu.sh).
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

# Static check of one wheel (host binutils' readelf reads both architectures): the filename's
# tag is manylinux_2_28 or older, the engine's ELF machine is the arch's, it needs only glibc's
# libraries (no libstdc++/libgcc_s: zig links libc++ statically), and no symbol version newer
# than the tag's glibc (and no GLIBCXX/CXXABI/GCC_ versions). Prints a one-line summary.
inspect_wheel() {  # WHEEL ARCH
  python3 - "$1" "$2" <<'PY'
import os, re, subprocess, sys, tempfile, zipfile
whl, arch = sys.argv[1], sys.argv[2]
m = re.search(r"-manylinux_2_(\d+)_" + arch + r"\.whl$", whl)
assert m and int(m.group(1)) <= 28, f"tag is not manylinux_2_28 or older: {os.path.basename(whl)}"
tag_glibc = (2, int(m.group(1)))
z = zipfile.ZipFile(whl)
so = [n for n in z.namelist() if n.startswith("pyfer/_engine") and n.endswith(".so")]
assert len(so) == 1 and so[0].endswith(f"-{arch}-linux-gnu.so"), f"engine module(s): {so}"
with tempfile.TemporaryDirectory() as d:
    path = z.extract(so[0], d)
    hdr = subprocess.run(["readelf", "-h", path], capture_output=True, text=True, check=True).stdout
    dyn = subprocess.run(["readelf", "-d", path], capture_output=True, text=True, check=True).stdout
    ver = subprocess.run(["readelf", "-V", path], capture_output=True, text=True, check=True).stdout
machine = re.search(r"Machine:\s+(.*)", hdr).group(1).strip()
want = {"x86_64": "Advanced Micro Devices X86-64", "aarch64": "AArch64"}[arch]
assert machine == want, f"ELF machine {machine!r}, expected {want!r}"
needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.*?)\]", dyn)
ok_libs = {"libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2", "librt.so.1",
           "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1"}
assert set(needed) <= ok_libs, f"NEEDED beyond glibc: {sorted(set(needed) - ok_libs)}"
# version needs: the section after "Version needs section"
needs = ver.split("Version needs section", 1)[1] if "Version needs section" in ver else ""
names = set(re.findall(r"Name:\s+(\S+)\s+Flags", needs))
bad = sorted(n for n in names if not n.startswith("GLIBC_"))
assert not bad, f"non-glibc symbol versions: {bad}"
gl = sorted(tuple(int(x) for x in n[6:].split(".")[:2]) for n in names if re.match(r"GLIBC_\d", n))
assert gl and gl[-1] <= tag_glibc, f"needs GLIBC_{gl[-1][0]}.{gl[-1][1]} > tag's 2.{tag_glibc[1]}"
print(f"{machine.split()[-1]} ELF, NEEDED {' '.join(sorted(needed))}, "
      f"GLIBC_{gl[0][0]}.{gl[0][1]}..GLIBC_{gl[-1][0]}.{gl[-1][1]}, no GLIBCXX")
PY
}

rc=0
summary=()
for whl in "$out"/pyfer-*.whl; do
  name=$(basename "$whl")
  tag=$(echo "$name" | cut -d- -f3)            # cp311
  ver="3.${tag#cp3}"                           # 3.11
  # the arch from the platform tag's end (not "the part after the last _": x86_64 has one too)
  case $name in
    *_x86_64.whl) arch=x86_64;;
    *_aarch64.whl) arch=aarch64;;
    *) summary+=("FAILED    $name (unknown platform tag)"); rc=1; continue;;
  esac
  log=$out/check-${name%.whl}.log
  # static check of every wheel, run or not: tag, ELF machine, libraries, symbol versions
  if ! elf=$(inspect_wheel "$whl" "$arch" 2>&1); then
    summary+=("FAILED    $name  static check: $elf"); rc=1; continue
  fi
  t0=$(date +%s)
  if [ "${PYFER_CHECK_RUN:-1}" = 0 ] || [[ " $archs " != *" $arch "* ]]; then
    summary+=("STATIC    $name  ($elf; not run: PYFER_CHECK_RUN=${PYFER_CHECK_RUN:-1}, PYFER_CHECK_ARCHS=$archs)")
    continue
  elif [ "$arch" = x86_64 ]; then
    py=$(find_python "$ver")
    if [ -z "$py" ]; then summary+=("UNTESTED  $name (no CPython $ver here)"); continue; fi
    PYTHON=$py "$repo/scripts/check_wheel.sh" "$whl" > "$log" 2>&1
  elif [ "$tag" = cp311 ]; then
    "$repo/scripts/check_wheel_qemu.sh" "$whl" > "$log" 2>&1
  else
    summary+=("UNTESTED  $name (static check only: $elf; no arm64 CPython $ver to run it)")
    continue
  fi
  r=$?
  dt=$(( $(date +%s) - t0 ))
  tests=$(grep -E "^[0-9]+ passed" "$log" | tail -1)
  if [ $r -eq 0 ]; then summary+=("PASSED    $name  ${dt} s  ($tests; $elf)")
  else summary+=("FAILED    $name  ${dt} s  (see $log)"); rc=1; fi
done
# every wheel of the matrix must be there
for v in ${PYFER_WHEEL_PYTHONS:-3.9 3.10 3.11 3.12 3.13}; do
  for a in x86_64 aarch64; do
    ls "$out"/pyfer-*-cp${v/./}-cp${v/./}-manylinux*_$a.whl >/dev/null 2>&1 || { summary+=("MISSING   cp${v/./} $a"); rc=1; }
  done
done
printf '%s\n' "${summary[@]}" | tee "$out/check-summary.txt"
exit $rc
