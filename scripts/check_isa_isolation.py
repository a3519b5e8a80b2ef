#!/usr/bin/env python3
"""Does any AVX2/AVX-512 object file define code that baseline code could end up running?

    python scripts/check_isa_isolation.py BUILD_DIR [BUILD_DIR ...]

The files under ``csrc/kernels/avx2/`` and ``csrc/kernels/avx512/`` are compiled with ``-mavx2`` /
``-mavx512f ...`` and run only after the CPUID check. A function they define outside their own
namespace (``pyfer::avx2::`` / ``pyfer::avx512::``) with global or weak linkage escapes that check:
an inline function or template (``AlignedBuf::~AlignedBuf`` until session 32) is compiled into
every file that uses it, and the linker keeps one copy for the whole module, possibly the AVX-512
one, which then runs on an AVX2-only CPU (illegal instruction). Local functions (``static``,
anonymous namespaces) are only called from their own file and are allowed.

Reads each object's mangled names with ``nm --defined-only`` (the module itself is stripped):
demangled, a template's name starts with its return type. Exits 1 naming
every such function, or when no ISA object is found (nothing checked is not a pass).
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

NAMESPACE = {"avx2": "pyfer::avx2::", "avx512": "pyfer::avx512::"}
# Itanium mangling of a name in that namespace: _ZN, then K/V/R/O qualifiers of a member, then the
# length-prefixed names (_ZN5pyfer4avx24convEv is pyfer::avx2::conv())
MANGLED = {isa: re.compile(r"_ZN[KVRO]*5pyfer%d%s" % (len(isa), isa)) for isa in NAMESPACE}
EXPORTED_CODE = {"T", "W"}  # global and weak text symbols; lower case = local to the file


def escapes(obj: Path, isa: str) -> tuple[list[str], int]:
    """(functions of ``obj`` other files could link to outside the ISA namespace, ISA-namespace count)."""
    out = subprocess.run(["nm", "--defined-only", str(obj)], capture_output=True, text=True, check=True)
    bad, own = [], 0
    for line in out.stdout.splitlines():
        parts = line.split(" ", 2)
        if len(parts) != 3 or parts[1] not in EXPORTED_CODE:
            continue
        if MANGLED[isa].match(parts[2]):
            own += 1
        else:
            bad.append(parts[2])
    if bad:  # readable names for the message
        bad = subprocess.run(["c++filt"], input="\n".join(bad), capture_output=True, text=True).stdout.split("\n")
    return [b for b in bad if b], own


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("build_dirs", nargs="+", type=Path, help="CMake build folders (holding CMakeFiles/)")
    args = ap.parse_args(argv)
    failures, checked, own = [], 0, 0
    for build in args.build_dirs:
        for isa in NAMESPACE:
            for obj in sorted(build.glob(f"CMakeFiles/*/csrc/kernels/{isa}/*.o")):
                bad, n = escapes(obj, isa)
                checked, own = checked + 1, own + n
                failures += [f"{obj}: {name}" for name in bad]
    if not checked or not own:
        print(f"check_isa_isolation: no AVX2/AVX-512 kernel objects with kernels in them under "
              f"{[str(b) for b in args.build_dirs]}: nothing was checked")
        return 1
    if failures:
        print("check_isa_isolation: functions compiled for AVX2/AVX-512 that code outside the "
              "dispatched kernels could link to (define them out of line in a baseline file, or "
              "inside the ISA namespace):\n  " + "\n  ".join(failures))
        return 1
    print(f"check_isa_isolation: {checked} AVX2/AVX-512 objects, {own} kernel functions, none outside "
          f"their ISA namespace")
    return 0


if __name__ == "__main__":
    sys.exit(main())
