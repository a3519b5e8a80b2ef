"""Engine threads under a cgroup CPU quota (docker --cpus): a pool sized to the quota against one
thread per usable CPU, in a real cgroup (needs root and a writable cgroup hierarchy with the cpu
controller).

    sudo python scripts/bench_cpu_quota.py [--quota 1.0] [--batch 64] [--seconds 6] [--requests 25]

For each pool size (the quota rounded up, what threads=None now gives; and every usable CPU, what it
gave before session 36), a fresh child process joins a cgroup whose quota is --quota CPUs and runs:
- sustained: forward() of --batch images back to back for --seconds: images per second and the
  median and 99th-percentile latency of a call;
- sparse: --requests calls of --batch images, 250 ms apart (each finds a quota left unspent):
  the median latency.
The two loads pull opposite ways: back to back, threads beyond the quota only wait out the
throttled rest of each 100 ms period; a lone call can spend its period's quota on every CPU at once.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

from pyfer.bench import cpu_name, default_weights

CHILD = r"""
import json, os, sys, time
import numpy as np
open(sys.argv[1], "w").write(str(os.getpid()))
import pyfer
weights, threads, batch, seconds, requests = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
engine = pyfer.Engine(weights, threads=threads)
x = np.random.default_rng(0).standard_normal((batch,) + tuple(engine.input_shape)).astype(np.float32)
engine.forward(x)
sustained, end = [], time.perf_counter() + seconds
while time.perf_counter() < end:
    t0 = time.perf_counter(); engine.forward(x); sustained.append(time.perf_counter() - t0)
sparse = []
for _ in range(requests):
    time.sleep(0.25)
    t0 = time.perf_counter(); engine.forward(x); sparse.append(time.perf_counter() - t0)
print(json.dumps({"images_per_s": len(sustained) * batch / sum(sustained),
                  "p50_ms": 1e3 * float(np.median(sustained)), "p99_ms": 1e3 * float(np.percentile(sustained, 99)),
                  "sparse_p50_ms": 1e3 * float(np.median(sparse))}))
"""


def cpu_hierarchy() -> tuple[Path, bool]:
    """The mount point of a cgroup hierarchy with the cpu controller, and whether it is v2."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        w = line.split()
        dash = w.index("-", 6)
        fstype, point = w[dash + 1], Path(w[4])
        if fstype == "cgroup" and "cpu" in w[dash + 3].split(","):
            return point, False
        if fstype == "cgroup2" and "cpu" in (point / "cgroup.controllers").read_text().split():
            return point, True
    sys.exit("no cgroup hierarchy with the cpu controller is mounted")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default=str(default_weights()))
    ap.add_argument("--quota", type=float, default=1.0, help="CPUs of quota (default 1.0)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=6.0, help="length of the sustained load")
    ap.add_argument("--requests", type=int, default=25, help="calls of the sparse load")
    args = ap.parse_args()
    cpus = len(os.sched_getaffinity(0))
    pools = sorted({max(1, math.ceil(args.quota - 1e-9)), cpus})
    if len(pools) == 1:
        sys.exit(f"a quota of {args.quota} CPUs does not lower the default on {cpus} usable CPUs")
    point, v2 = cpu_hierarchy()
    cgroup = point / f"pyfer_bench_{os.getpid()}"
    try:
        cgroup.mkdir()
    except OSError as e:
        sys.exit(f"cannot make a cgroup under {point} (run as root): {e}")
    try:
        if v2:
            (point / "cgroup.subtree_control").write_text("+cpu")
            (cgroup / "cpu.max").write_text(f"{round(args.quota * 100000)} 100000")
        else:
            period = int((cgroup / "cpu.cfs_period_us").read_text())
            (cgroup / "cpu.cfs_quota_us").write_text(str(round(args.quota * period)))
        print(f"{cpu_name()}, {cpus} usable CPUs, cgroup quota {args.quota} CPUs, batch {args.batch}")
        print(f"{'threads':>8} {'images/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'sparse p50 ms':>14}")
        for threads in pools:
            out = subprocess.run([sys.executable, "-c", CHILD, str(cgroup / "cgroup.procs"), args.weights, str(threads),
                                  str(args.batch), str(args.seconds), str(args.requests)],
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout)
            print(f"{threads:>8} {r['images_per_s']:>9.0f} {r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f} "
                  f"{r['sparse_p50_ms']:>14.1f}")
    finally:
        cgroup.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
