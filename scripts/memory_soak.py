"""Memory soak: RSS over many ``Recognizer.predict`` calls on real faces, after a warm-up.

    python scripts/memory_soak.py                      # 20,000 predict calls (the issue's figure)
    python scripts/memory_soak.py --calls 2000 --json out.json
    python scripts/memory_soak.py --mode engine        # Engine.forward only (batch of 1)
    python scripts/memory_soak.py --mode churn --calls 300   # create/destroy engines (incl. corrupt files)

Images: the astronaut photo and SFEW faces (../shared/data/sfew_train) when present, cycled.
RSS is read from /proc/self/statm (Linux); also tracked: open file descriptors and memory
mappings (a leaked large buffer that malloc maps would show there; one from its heap shows in RSS).
Exit status 1 when RSS grows by more than --limit-mb (default 5) between the end of the warm-up
and the end of the run.
"""
from __future__ import annotations

import argparse
import csv
import gc
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

import pyfer  # noqa: E402

from pyfer.atomic import write_file

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def n_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def n_maps() -> int:
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)


def real_images(n: int = 12) -> list[np.ndarray]:
    imgs = [cv2.imread(str(REPO / "examples" / "astronaut.png"))]
    sfew = REPO.parent / "shared" / "data" / "sfew_train"
    if (sfew / "manifest.csv").is_file():
        with open(sfew / "manifest.csv") as f:
            rows = list(csv.DictReader(f))
        for r in rows[:: max(1, len(rows) // n)][: n - 1]:
            imgs.append(cv2.imread(str(sfew / r["path"])))
    return [i for i in imgs if i is not None]


def soak(mode: str, calls: int, warmup: int, every: int, weights: Path, corrupt_dir: Path | None = None) -> dict:
    images = real_images()
    samples = []
    if mode == "churn":
        import struct

        raw = weights.read_bytes()
        bad = []
        if corrupt_dir is not None:
            corrupt_dir.mkdir(parents=True, exist_ok=True)
            for i, cut in enumerate((9, 100, len(raw) // 2, len(raw) - 1)):
                p = corrupt_dir / f"cut{i}.safetensors"
                p.write_bytes(raw[:cut])
                bad.append(p)
            p = corrupt_dir / "hlen.safetensors"
            p.write_bytes(struct.pack("<Q", 1 << 40) + raw[8:])
            bad.append(p)
        x = np.zeros((1, 1, 64, 64), np.float32)

        def step(i):
            e = pyfer.Engine(weights, threads=1 + i % 2)
            e.forward(x)
            del e
            for p in bad:
                try:
                    pyfer.Engine(p)
                except ValueError:
                    pass
    elif mode == "engine":
        eng = pyfer.Engine(weights, threads=1)
        xs = [np.random.default_rng(i).standard_normal((1, 1, 64, 64)).astype(np.float32) for i in range(8)]

        def step(i):
            eng.forward(xs[i % len(xs)])
    else:
        rec = pyfer.Recognizer(weights)

        def step(i):
            rec.predict(images[i % len(images)])

    for i in range(warmup):
        step(i)
    gc.collect()
    base = (rss_mb(), n_fds(), n_maps())
    t0 = time.perf_counter()
    samples.append({"calls": 0, "rss_mb": base[0], "fds": base[1], "maps": base[2], "s": 0.0})
    for i in range(calls):
        step(warmup + i)
        if (i + 1) % every == 0 or i + 1 == calls:
            samples.append({"calls": i + 1, "rss_mb": rss_mb(), "fds": n_fds(), "maps": n_maps(),
                            "s": time.perf_counter() - t0})
    gc.collect()
    end = (rss_mb(), n_fds(), n_maps())
    rss = [s["rss_mb"] for s in samples]
    return {"mode": mode, "calls": calls, "warmup": warmup, "images": len(images),
            "rss_start_mb": base[0], "rss_end_mb": end[0], "rss_growth_mb": end[0] - base[0],
            "rss_max_mb": max(rss), "rss_max_growth_mb": max(rss) - base[0],
            "fds_start": base[1], "fds_end": end[1], "maps_start": base[2], "maps_end": end[2],
            "seconds": time.perf_counter() - t0, "samples": samples}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["predict", "engine", "churn"], default="predict")
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--every", type=int, default=1000, help="sample RSS every N calls")
    ap.add_argument("--limit-mb", type=float, default=5.0)
    ap.add_argument("--weights", type=Path, default=REPO / "pyfer" / "models" / "tsnet_student.safetensors")
    ap.add_argument("--json", type=Path, help="write the result (with samples) here")
    args = ap.parse_args(argv)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        r = soak(args.mode, args.calls, args.warmup, args.every, args.weights, Path(tmp))
    r["limit_mb"] = args.limit_mb
    r["ok"] = r["rss_growth_mb"] < args.limit_mb and r["fds_end"] <= r["fds_start"] and r["maps_end"] <= r["maps_start"] + 2
    if args.json:
        write_file(args.json, json.dumps(r, indent=1))
    for s in r["samples"]:
        print(f"{s['calls']:>7} calls  rss {s['rss_mb']:8.2f} MB  fds {s['fds']:3d}  maps {s['maps']:4d}  {s['s']:7.1f} s")
    print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items() if k != "samples"}))
    print("OK" if r["ok"] else "FAIL: memory/fd/mapping growth over the limit")
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
