#!/usr/bin/env bash
# Build the C++ core and its self-test program for macOS and Windows on this Linux machine, with
# zig's clang (cmake/zig-cross-toolchain.cmake), and check what comes out: the wheel matrix has
# macOS and Windows rows that no machine here can run, and this keeps their C++ compiling and
# linking (a Linux-only call, such as sched_getaffinity or aligned_alloc, fails here first).
#
#   scripts/check_cross_build.sh [TARGET ...]     # default: aarch64-macos x86_64-macos x86_64-windows-gnu
#
# Each target: CMake with PYFER_BUILD_PYTHON=OFF, PYFER_WITH_CUDA=OFF, PYFER_BUILD_TESTS=ON builds
# libpyfer_core.a (every kernel set the target's processor gets: x86_64 also AVX2 and AVX-512)
# and pyfer_selftest, which must be an executable of that system and processor (Mach-O arm64 or
# x86_64; PE32+ x86-64). The whole archive is also linked into a shared library, so that every
# symbol of every member resolves (the self-test pulls in only what it uses). macOS is built for
# the wheels' deployment target, 11.0. Nothing is run: there is no macOS or Windows here.
# Windows is the MinGW ABI (x86_64-windows-gnu): MSVC, which cibuildwheel uses, is not tried
# (docs/packaging.md).
#
# PYFER_CROSS_LINK (default: every target) names the targets to link; the others are compiled
# into libpyfer_core.a only: their compiler wrappers refuse to link, so CMake identifies the
# compiler from an object file and runs its checks as static libraries, and zig never builds the
# target's C runtime. A linked target pays for that the first time on a machine (~1 min per macOS
# target, ~2.5 min for MinGW's). On a cold zig cache (Zen 4, 2 cores): 44 s per compiled target,
# against 90 s (x86_64-macos) and 189 s (Windows) when CMake's compiler identification linked.
#
# zig: $PYFER_ZIG, else the wheel tools' (one venv per machine, scripts/zig_lib.sh; made with
# $PYFER_TOOLS_PYTHON or python3 if missing), else python3's ziglang. Scratch: build/cross/<target>/
# (kept: a rerun is incremental).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(aarch64-macos x86_64-macos x86_64-windows-gnu)

source scripts/zig_lib.sh
zig=${PYFER_ZIG:-}
if [ -z "$zig" ]; then  # the wheel tools' (zig's libc++ cache is keyed by its path), else python3's ziglang
  tools_venv=$(wheel_tools_venv "${PYFER_TOOLS_PYTHON:-python3}") && zig=$(zig_of "$tools_venv/bin/python") ||
    zig=$(zig_of python3) || zig=""
fi
[ -x "$zig" ] || { echo "check_cross_build.sh: no zig (no wheel tools' venv, no ziglang in python3: set PYFER_ZIG)" >&2; exit 2; }
command -v python3 > /dev/null || { echo "check_cross_build.sh: needs python3 (to read the programs' headers)" >&2; exit 2; }
echo "zig $("$zig" version)"

for target in "${targets[@]}"; do
  # zig_target: with macOS's minimum version (the wheels' MACOSX_DEPLOYMENT_TARGET, pyproject.toml)
  case $target in
    aarch64-macos) system=Darwin arch=arm64 want="Mach-O arm64" zig_target=$target.11.0 ;;
    x86_64-macos) system=Darwin arch=x86_64 want="Mach-O x86_64" zig_target=$target.11.0 ;;
    x86_64-windows-gnu) system=Windows arch=AMD64 want="PE32+ x86-64" zig_target=$target ;;
    *) echo "check_cross_build.sh: unknown target $target" >&2; exit 2 ;;
  esac
  out=$repo/build/cross/$target
  generator=(); command -v ninja > /dev/null && generator=(-G Ninja)
  link=no
  case " ${PYFER_CROSS_LINK:-${targets[*]}} " in *" $target "*) link=yes ;; esac
  checks=(); [ $link = no ] && checks=(-DCMAKE_TRY_COMPILE_TARGET_TYPE=STATIC_LIBRARY)  # no program: no C runtime
  # a build made by another zig, for another target version, generator or link mode: from scratch
  stamp="$zig $zig_target ${generator[*]} link=$link"
  [ "$(cat "$out/stamp" 2>/dev/null)" = "$stamp" ] || rm -rf "$out"
  mkdir -p "$out"
  echo "$stamp" > "$out/stamp"
  # a target not linked: wrappers that refuse to link, so zig builds no C runtime for it
  write_zig_wrappers "$out/bin" "$zig" "$zig_target" "$( [ $link = no ] && echo compile-only || echo link )"
  export PYFER_ZIG_SYSTEM=$system PYFER_ZIG_ARCH=$arch PYFER_ZIG_BIN=$out/bin
  t0=$(date +%s)
  cmake -S "$repo" -B "$out/build" "${generator[@]}" -DCMAKE_TOOLCHAIN_FILE="$repo/cmake/zig-cross-toolchain.cmake" \
    -DPYFER_BUILD_PYTHON=OFF -DPYFER_WITH_CUDA=OFF -DPYFER_BUILD_TESTS=ON "${checks[@]}" > "$out/configure.log" 2>&1 ||
    { tail -30 "$out/configure.log"; echo "$target: configure failed"; exit 1; }
  cmake --build "$out/build" --target "$( [ $link = yes ] && echo pyfer_selftest || echo pyfer_core )" \
    > "$out/build.log" 2>&1 ||
    { grep -m30 -iE "error|FAILED" "$out/build.log" || tail -30 "$out/build.log"; echo "$target: build failed"; exit 1; }
  warnings=$(grep -c "warning:" "$out/build.log" || true)
  if [ $link = no ]; then
    echo "$target: compiled, not linked ($(( $(date +%s) - t0 )) s; $warnings compiler warnings in what was" \
         "(re)built: $out/build.log)"
    continue
  fi
  if [ "$system" = Windows ]; then
    whole=(-Wl,--whole-archive "$out/build/libpyfer_core.a" -Wl,--no-whole-archive) shared=$out/build/core.dll
  else
    whole=(-Wl,-force_load,"$out/build/libpyfer_core.a") shared=$out/build/libcore.dylib
  fi
  "$out/bin/c++" -shared -o "$shared" "${whole[@]}" > "$out/link.log" 2>&1 ||
    { head -30 "$out/link.log"; echo "$target: the whole core does not link"; exit 1; }
  exe=$out/build/pyfer_selftest; [ "$system" = Windows ] && exe=$exe.exe
  got=$(python3 - "$exe" <<'EOF'
import struct, sys
data = open(sys.argv[1], "rb").read(4096)
if data[:4] == b"\xcf\xfa\xed\xfe":  # mach_header_64, little-endian
    cpu, _, filetype, _, _, flags = struct.unpack_from("<IIIIII", data, 4)
    cpu = {0x0100000C: "arm64", 0x01000007: "x86_64"}.get(cpu, "?")
    print(f"Mach-O {cpu}" + ("" if filetype == 2 else " (not an executable)")
          + ("" if flags & 0x1 else " (undefined symbols)"))  # MH_EXECUTE, MH_NOUNDEFS
elif data[:2] == b"MZ" and data[struct.unpack_from("<I", data, 0x3C)[0]:][:4] == b"PE\0\0":
    pe = struct.unpack_from("<I", data, 0x3C)[0]
    machine = struct.unpack_from("<H", data, pe + 4)[0]
    magic = struct.unpack_from("<H", data, pe + 24)[0]
    print(("PE32+" if magic == 0x20B else "PE32") + " " + {0x8664: "x86-64", 0xAA64: "arm64"}.get(machine, "?"))
else:
    print("unknown format")
EOF
)
  if [ "$got" != "$want" ]; then
    echo "$target: pyfer_selftest is '$got', expected '$want'"; exit 1
  fi
  echo "$target: OK ($got; the whole core links; $(( $(date +%s) - t0 )) s; $warnings compiler warnings in what was" \
       "(re)built: $out/build.log)"
done
