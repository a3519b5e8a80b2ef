# Sourced by scripts/build_wheels.sh and scripts/check_cross_build.sh: zig (PyPI `ziglang`) as the
# C/C++ toolchain that CMake is handed, through one wrapper script per tool.

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
