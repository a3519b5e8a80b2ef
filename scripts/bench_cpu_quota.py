"""Engine threads under a cgroup CPU quota (docker --cpus): a pool sized to the quota against one
thread per usable CPU, in a real cgroup (needs root and a writable cgroup hierarchy with the cpu
controller).

    sudo python scripts/bench_cpu_quota.py [--quota 1.0] [--batch 64] [--seconds 6] [--requests 25]

For each pool (threads=None, which the engine sizes to the quota; and one thread per usable CPU,
the default before session 36), a fresh child process joins a cgroup whose quota is --quota CPUs and runs:
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
import os
import re
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional

from pyfer.bench import cpu_name, default_weights

CHILD = r"""
import json, os, sys, time
import numpy as np
open(sys.argv[1], "w").write(str(os.getpid()))
import pyfer
weights, threads, batch = sys.argv[2], int(sys.argv[3]) or None, int(sys.argv[4])
seconds, requests = float(sys.argv[5]), int(sys.argv[6])
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
print(json.dumps({"threads": engine.info()["threads"], "images_per_s": len(sustained) * batch / sum(sustained),
                  "p50_ms": 1e3 * float(np.median(sustained)), "p99_ms": 1e3 * float(np.percentile(sustained, 99)),
                  "sparse_p50_ms": 1e3 * float(np.median(sparse))}))
"""


def cpu_hierarchy() -> Optional[tuple[Path, bool]]:
    """Where a cgroup hierarchy with the cpu controller is mounted, and whether it is v2; None when
    none is."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        w = line.split(" ")  # not split(): an empty field (a mount's source) must keep its place
        if "-" not in w[6:]:
            continue
        dash = w.index("-", 6)
        fstype = w[dash + 1]
        point = Path(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), w[4]))  # \040: a space
        if fstype == "cgroup" and "cpu" in w[dash + 3].split(","):
            return point, False
        if fstype == "cgroup2" and "cpu" in (point / "cgroup.controllers").read_text().split():
            return point, True
    return None


@contextmanager
def quota_cgroup(name: str) -> Iterator[tuple[Callable[[float], None], Path]]:
    """A new cgroup NAME under the cpu hierarchy's mount, with a child NAME/worker for processes to
    join: yields (set_quota(cpus) of NAME, the worker's folder), and removes both after (the
    processes that joined must have exited). The quota is on the parent, so that a reader must walk
    up to find it. Raises OSError (not root, a read-only hierarchy) or RuntimeError (none mounted)."""
    found = cpu_hierarchy()
    if found is None:
        raise RuntimeError("no cgroup hierarchy with the cpu controller is mounted")
    point, v2 = found
    parent, worker = point / name, point / name / "worker"
    enabled_cpu = False
    parent.mkdir()
    try:
        if v2:
            control = point / "cgroup.subtree_control"
            if "cpu" not in control.read_text().split():  # EBUSY where the mount's cgroup holds processes
                control.write_text("+cpu")
                enabled_cpu = True

            def set_quota(cpus: float) -> None:
                (parent / "cpu.max").write_text(f"{round(cpus * 100000)} 100000")
        else:
            period = int((parent / "cpu.cfs_period_us").read_text())

            def set_quota(cpus: float) -> None:
                (parent / "cpu.cfs_quota_us").write_text(str(round(cpus * period)))
        worker.mkdir()
        yield set_quota, worker
    finally:
        for d in (worker, parent):
            if d.exists():
                d.rmdir()
        if enabled_cpu:
            (point / "cgroup.subtree_control").write_text("-cpu")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default=str(default_weights()))
    ap.add_argument("--quota", type=float, default=1.0, help="CPUs of quota (default 1.0)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=6.0, help="length of the sustained load")
    ap.add_argument("--requests", type=int, default=25, help="calls of the sparse load")
    args = ap.parse_args()
    cpus = len(os.sched_getaffinity(0))
    if args.quota > cpus - 1:
        sys.exit(f"a quota of {args.quota} CPUs does not lower the default on {cpus} usable CPUs")
    try:
        with quota_cgroup(f"pyfer_bench_{os.getpid()}") as (set_quota, worker):
            set_quota(args.quota)
            print(f"{cpu_name()}, {cpus} usable CPUs, cgroup quota {args.quota} CPUs, batch {args.batch}")
            print(f"{'threads':>8} {'images/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'sparse p50 ms':>14}")
            for threads in (0, cpus):  # 0: threads=None, what the engine takes under the quota
                out = subprocess.run([sys.executable, "-c", CHILD, str(worker / "cgroup.procs"), args.weights,
                                      str(threads), str(args.batch), str(args.seconds), str(args.requests)],
                                     capture_output=True, text=True, check=True)
                r = json.loads(out.stdout)
                print(f"{r['threads']:>8} {r['images_per_s']:>9.0f} {r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f} "
                      f"{r['sparse_p50_ms']:>14.1f}")
    except (OSError, RuntimeError) as e:
        sys.exit(f"cannot make a cgroup with a CPU quota here (needs root and a writable cgroup hierarchy): {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
