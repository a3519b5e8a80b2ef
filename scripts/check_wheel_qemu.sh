#!/usr/bin/env bash
# Check an aarch64 wheel on an x86_64 Debian 12 host, under qemu-user (issue 16, docs/packaging.md):
#   scripts/check_wheel_qemu.sh OUTDIR/pyfer-<v>-cp311-cp311-manylinux_*_aarch64.whl
# The interpreter is Debian's arm64 CPython 3.11 (python3.11-minimal + libpython3.11-stdlib and
# their libraries, unpacked with `dpkg -x` into build/qemu-arm64/root, not installed), run by
# qemu-aarch64-static with that folder as its library prefix; then scripts/check_wheel.sh runs
# as for x86_64 (fresh venv, pip from PyPI for aarch64, no compiler on PATH, pyfer info/predict,
# the torch-free tests) but without the timing limits (qemu timings are not hardware timings).
# Debian 12 has only CPython 3.11 for arm64, so only the cp311 wheel can be run this way.
# Needs root (apt): dpkg --add-architecture arm64, apt-get update, apt-get install qemu-user-static.
# Env: PYFER_CHECK_DIR, PYFER_CHECK_TESTS as for check_wheel.sh.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 WHEEL (cp311, aarch64)" >&2; exit 2; }
repo=$(cd "$(dirname "$0")/.." && pwd)
whl=$(realpath "$1")
case "$(basename "$whl")" in *-cp311-cp311-*aarch64.whl) ;; *) echo "needs a cp311 aarch64 wheel: $whl" >&2; exit 2;; esac
q=$repo/build/qemu-arm64
root=$q/root
pkgs="gcc-12-base libbz2-1.0 libc6 libcom-err2 libcrypt1 libdb5.3 libexpat1 libffi8 libgcc-s1 libgdbm6
      libgssapi-krb5-2 libk5crypto3 libkeyutils1 libkrb5-3 libkrb5support0 liblzma5 libncursesw6 libnsl2
      libpython3.11-minimal libpython3.11-stdlib libreadline8 libsqlite3-0 libssl3 libstdc++6 libtinfo6
      libtirpc3 libuuid1 python3.11-minimal zlib1g libgomp1"

if ! command -v qemu-aarch64-static >/dev/null; then
  apt-get install -y -q qemu-user-static >/dev/null
fi
if [ "$(cat "$q/pkgs.txt" 2>/dev/null)" != "$pkgs" ]; then
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64
    apt-get update -q >/dev/null
  fi
  rm -rf "$q" && mkdir -p "$q/debs" "$root"
  # shellcheck disable=SC2046
  (cd "$q/debs" && apt-get download -q $(for p in $pkgs; do echo "$p:arm64"; done) >/dev/null 2>&1) \
    || (apt-get update -q >/dev/null && cd "$q/debs" && apt-get download -q $(for p in $pkgs; do echo "$p:arm64"; done))
  for f in "$q"/debs/*.deb; do dpkg -x "$f" "$root"; done
  echo "$pkgs" > "$q/pkgs.txt"
fi
# The interpreter: a script that runs the arm64 python3.11 under qemu with argv[0] = the name it
# was called by, so that a venv's bin/python (a symlink to this script) finds its pyvenv.cfg, and
# subprocesses started with sys.executable go through qemu too.
cat > "$root/usr/bin/python3.11-qemu" <<EOF
#!/bin/sh
exec $(command -v qemu-aarch64-static) -L "$root" -0 "\$0" "$root/usr/bin/python3.11" "\$@"
EOF
chmod +x "$root/usr/bin/python3.11-qemu"
"$root/usr/bin/python3.11-qemu" -c "import platform, sys; print('qemu-user:', platform.machine(), sys.version.split()[0])"

# pip inside qemu resolves from a local folder: the aarch64 cp311 wheels of the runtime and test
# dependencies, fetched by the host's pip (PyPI connections from the emulated pip were reset
# often here). The venv is still fresh, and its pip still picks what fits the arm64 interpreter.
# The platforms are every manylinux tag the emulated glibc (Debian 12's, from the libc6 deb)
# accepts: pip does not widen a --platform manylinux_2_X to the older 2_Y tags, so a list of
# two (2014 and 2_28) rejected the manylinux_2_24 wheel itself ("not a supported wheel").
wh=$q/wheels
rm -rf "$wh"
glibc_minor=$(ls "$q"/debs/libc6_2.*_arm64.deb | sed -E 's|.*/libc6_2\.([0-9]+).*|\1|')
plats=(--platform manylinux2014_aarch64)
for n in $(seq 17 "$glibc_minor"); do plats+=(--platform "manylinux_2_${n}_aarch64"); done
python3 -m pip download -q -d "$wh" --only-binary=:all: "${plats[@]}" \
  --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
  "$whl" pytest hypothesis safetensors pip
rm -f "$wh"/pyfer-*.whl

PYTHON="$root/usr/bin/python3.11-qemu" PYFER_CHECK_LIMITS=0 PIP_NO_INDEX=1 PIP_FIND_LINKS="$wh" \
  "$repo/scripts/check_wheel.sh" "$whl"
