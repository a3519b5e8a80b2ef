#!/usr/bin/env python3
"""Which ``pyfer._engine`` does this interpreter import, and is it the instrumented build?

    python scripts/check_engine_build.py --sanitized address,undefined [--file BUILD/_engine*.so]

Imports ``pyfer._engine`` the way the caller's tests will (same interpreter, flags, PYTHONPATH),
prints the module's real path and ``build_info()["sanitized"]``, and exits 1 when the module is not
the expected build: its recorded sanitizers differ from ``--sanitized`` ("" = an ordinary build),
or its file is not ``--file``. Used by scripts/sanitize.sh and scripts/tsan.sh before their
pytest steps (and, against an ordinary module, to show that the check can fail).
"""
from __future__ import annotations

import argparse
import os
import sys


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sanitized", required=True, help='expected build_info()["sanitized"], e.g. address,undefined')
    ap.add_argument("--file", help="expected module file (compared after resolving symlinks)")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args()
    try:
        import pyfer._engine as e
    except ImportError as ex:
        print(f"check_engine_build: cannot import pyfer._engine: {ex}")
        return 1
    got = e.build_info().get("sanitized", "<not recorded: built before issue 18>")
    real = os.path.realpath(e.__file__)
    problems = []
    if sorted(got.split(",")) != sorted(a.sanitized.split(",")):
        problems.append(f'build_info()["sanitized"] is {got!r}, expected {a.sanitized!r}')
    if a.file and real != os.path.realpath(a.file):
        problems.append(f"module file is {real}, expected {os.path.realpath(a.file)}")
    if not a.quiet or problems:
        print(f"pyfer._engine: {e.__file__}" + (f" -> {real}" if real != e.__file__ else ""))
        print(f'  build_info()["sanitized"] = {got!r}')
    for p in problems:
        print(f"check_engine_build: NOT the expected build: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
