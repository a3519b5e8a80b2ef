"""Measure the issue-7 limits of an installed pyfer (docs/packaging.md); exit 1 if one is exceeded.

    python scripts/wheel_limits.py [--wheel PATH] [--runs 7] [--image examples/astronaut.png] [--json OUT]

Run it with the interpreter of the venv that holds the installed wheel, from outside the source
tree. Every timing is a fresh process (``python -c``), reported as the median of --runs:
- ``import pyfer``                               limit 0.5 s
- ``pyfer.Recognizer()`` + first ``predict(image)`` (includes the lazy engine/OpenCV imports, the
  weights load, the Haar cascade load, reading the image, detection and classification)  limit 1 s
- wheel file size                                 limit 10 MB (10 * 10**6 bytes)
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from pyfer.atomic import write_file

LIMITS = {"wheel_mb": 10.0, "import_s": 0.5, "load_first_predict_s": 1.0}

IMPORT = "import time; t = time.perf_counter(); import pyfer; print(time.perf_counter() - t)"
FIRST = ("import time, pyfer, sys; t = time.perf_counter(); r = pyfer.Recognizer(); f = r.predict(sys.argv[1]); "
         "d = time.perf_counter() - t; assert f, 'no face'; print(d, pyfer.__file__)")


def fresh(code: str, *args: str) -> list[str]:
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    if r.returncode:
        sys.exit(f"measurement failed:\n{r.stderr}")
    return r.stdout.split()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wheel", type=Path)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--image", default=str(Path(__file__).resolve().parents[1] / "examples" / "astronaut.png"))
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)

    imports = [float(fresh(IMPORT)[0]) for _ in range(a.runs)]
    firsts, where = [], ""
    for _ in range(a.runs):
        t, where = fresh(FIRST, a.image)
        firsts.append(float(t))
    res = {
        "python": sys.version.split()[0], "pyfer": where, "cpus": os.cpu_count(),
        "loadavg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "runs": a.runs,
        "import_s": statistics.median(imports), "import_all_s": [round(x, 4) for x in imports],
        "load_first_predict_s": statistics.median(firsts), "load_first_predict_all_s": [round(x, 4) for x in firsts],
    }
    if a.wheel:
        res["wheel"] = a.wheel.name
        res["wheel_mb"] = a.wheel.stat().st_size / 1e6
    ok = True
    for k, lim in LIMITS.items():
        if k in res:
            good = res[k] <= lim
            ok &= good
            print(f"{k:22s} {res[k]:8.3f}  (limit {lim}) {'ok' if good else 'OVER THE LIMIT'}")
    print(json.dumps(res))
    if a.json:
        write_file(a.json, json.dumps(res, indent=1) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
