"""The engine's default thread count: the CPUs the process may use, capped by its cgroup's CPU quota
(csrc/runtime/cpu_count.cpp).

The reader is checked twice: on fake /proc and /sys trees (cgroup v1, v2, hybrid, a container's
mount, escapes, bad files), through the test-only module pyfer._checks; and, where the tests run
as root on a writable cgroup hierarchy (this project's CI machine), in a real cgroup with a quota
that a child process joins.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import pyfer
from conftest import REPO, SHIPPED_WEIGHTS

V2_MOUNT = "30 25 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate"
V1_CPU_MOUNT = "36 25 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:15 - cgroup cgroup rw,cpu,cpuacct"
V1_MEMORY_MOUNT = "37 25 0:32 / /sys/fs/cgroup/memory rw,relatime shared:16 - cgroup cgroup rw,memory"
PROC_MOUNT = "22 25 0:5 / /proc rw,nosuid shared:12 - proc proc rw"


def _checks():
    return pytest.importorskip("pyfer._checks", reason="the test-only module pyfer._checks is not built here "
                                                       "(a wheel, or PYFER_BUILD_TESTS=OFF)")


def _limit(tmp_path: Path, cgroup: list[str], mountinfo: list[str], files: dict[str, str]) -> float:
    """cgroup_cpu_limit over a fake tree: /proc/self/cgroup and /proc/self/mountinfo from the lines
    given, and each cgroup file (path: text) under tmp_path."""
    checks = _checks()
    proc = tmp_path / "proc" / "self"
    proc.mkdir(parents=True)
    (proc / "cgroup").write_text("".join(line + "\n" for line in cgroup))
    (proc / "mountinfo").write_text("".join(line + "\n" for line in mountinfo))
    for path, text in files.items():
        f = tmp_path / path.lstrip("/")
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
    return checks.cgroup_cpu_limit(str(tmp_path))


def test_v2_takes_the_smallest_limit_of_the_cgroup_and_its_ancestors(tmp_path):
    assert _limit(tmp_path, ["0::/app.slice/web"], [PROC_MOUNT, V2_MOUNT], {
        "/sys/fs/cgroup/cpu.max": "max 100000\n",  # the root's: never a limit
        "/sys/fs/cgroup/app.slice/cpu.max": "150000 100000\n",
        "/sys/fs/cgroup/app.slice/web/cpu.max": "max 100000\n",
    }) == pytest.approx(1.5)
    assert _limit(tmp_path / "deeper", ["0::/a/b"], [V2_MOUNT], {
        "/sys/fs/cgroup/a/cpu.max": "300000 100000\n",
        "/sys/fs/cgroup/a/b/cpu.max": "25000 50000\n",  # its own period
    }) == pytest.approx(0.5)


def test_a_container_mount_shows_its_own_cgroup_as_the_root(tmp_path):
    """docker without a cgroup namespace: the mount's root is the container's cgroup, mounted at
    /sys/fs/cgroup; /proc/self/cgroup names the same cgroup from the host's root."""
    container = "/system.slice/docker-abc.scope"
    mount = f"40 35 0:26 {container} /sys/fs/cgroup ro,nosuid - cgroup2 cgroup2 rw"
    assert _limit(tmp_path, [f"0::{container}"], [mount], {"/sys/fs/cgroup/cpu.max": "200000 100000\n"}) \
        == pytest.approx(2.0)
    # a process in a cgroup below the container's
    assert _limit(tmp_path / "below", [f"0::{container}/worker"], [mount],
                  {"/sys/fs/cgroup/cpu.max": "200000 100000\n", "/sys/fs/cgroup/worker/cpu.max": "max 100000\n"}) \
        == pytest.approx(2.0)
    # a cgroup the mount does not show is not read through it
    assert _limit(tmp_path / "elsewhere", ["0::/user.slice"], [mount],
                  {"/sys/fs/cgroup/cpu.max": "50000 100000\n"}) == 0


def test_v1_reads_the_cpu_controller_hierarchy_only(tmp_path):
    cpu = "/sys/fs/cgroup/cpu,cpuacct"
    mounts = [V2_MOUNT, V1_CPU_MOUNT, V1_MEMORY_MOUNT]
    assert _limit(tmp_path, ["5:memory:/job", "4:cpu,cpuacct:/job", "0::/"], mounts, {
        f"{cpu}/cpu.cfs_quota_us": "-1\n", f"{cpu}/cpu.cfs_period_us": "100000\n",
        f"{cpu}/job/cpu.cfs_quota_us": "250000\n", f"{cpu}/job/cpu.cfs_period_us": "100000\n",
        # the memory hierarchy has no cpu controller: a stray file there is not a limit
        "/sys/fs/cgroup/memory/job/cpu.cfs_quota_us": "10000\n",
        "/sys/fs/cgroup/memory/job/cpu.cfs_period_us": "100000\n",
    }) == pytest.approx(2.5)


@pytest.mark.parametrize("controllers", ["cpuset", "cpuacct"])
def test_a_controller_whose_name_starts_with_cpu_is_not_the_cpu_controller(tmp_path, controllers):
    mount = f"36 25 0:31 / /sys/fs/cgroup/{controllers} rw - cgroup cgroup rw,{controllers}"
    assert _limit(tmp_path, [f"4:{controllers}:/job"], [mount], {
        f"/sys/fs/cgroup/{controllers}/job/cpu.cfs_quota_us": "50000\n",
        f"/sys/fs/cgroup/{controllers}/job/cpu.cfs_period_us": "100000\n"}) == 0


def test_a_v1_container_mount_and_a_second_mount_of_the_same_hierarchy(tmp_path):
    """docker or Kubernetes on cgroup v1 without a cgroup namespace: the mount's root is the
    container's cgroup; a second mount of the same hierarchy (a bind mount) shows the same files."""
    pod = "/kubepods/burstable/pod1/ctr"
    mounts = [f"36 25 0:31 {pod} /sys/fs/cgroup/cpu,cpuacct ro - cgroup cgroup rw,cpu,cpuacct",
              f"50 25 0:31 {pod} /mnt/cg rw - cgroup cgroup rw,cpu,cpuacct"]
    files = {"/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "150000\n",
             "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
             "/mnt/cg/cpu.cfs_quota_us": "150000\n", "/mnt/cg/cpu.cfs_period_us": "100000\n"}
    assert _limit(tmp_path, [f"4:cpu,cpuacct:{pod}"], mounts, files) == pytest.approx(1.5)


def test_a_mount_root_is_a_folder_not_a_prefix(tmp_path):
    mount = "40 35 0:26 /a /sys/fs/cgroup ro - cgroup2 cgroup2 rw"
    assert _limit(tmp_path, ["0::/ab"], [mount], {"/sys/fs/cgroup/cpu.max": "50000 100000\n",
                                                  "/sys/fs/cgroup/b/cpu.max": "50000 100000\n"}) == 0


def test_each_hierarchy_is_read_through_its_own_kind_of_mount(tmp_path):
    """a v1 cpu line is not read through a v2 mount, nor a v2 line through a v1 one"""
    assert _limit(tmp_path, ["4:cpu:/job"], [V2_MOUNT], {"/sys/fs/cgroup/job/cpu.max": "50000 100000\n"}) == 0
    cpu = "/sys/fs/cgroup/cpu,cpuacct"
    assert _limit(tmp_path / "v2", ["0::/job"], [V1_CPU_MOUNT], {
        f"{cpu}/job/cpu.cfs_quota_us": "50000\n", f"{cpu}/job/cpu.cfs_period_us": "100000\n"}) == 0


def test_a_cgroup_outside_the_namespace_is_not_read(tmp_path):
    """after nsenter -C the kernel shows a cgroup outside the reader's namespace as /../x: no
    mount in the namespace shows it (it read /sys/fs/other/cpu.max before, a review found)"""
    assert _limit(tmp_path, ["0::/../other"], [V2_MOUNT], {"/sys/fs/other/cpu.max": "50000 100000\n",
                                                          "/sys/fs/cgroup/cpu.max": "50000 100000\n"}) == 0


def test_hybrid_takes_the_smaller_of_v1_and_v2(tmp_path):
    cpu = "/sys/fs/cgroup/cpu,cpuacct"
    assert _limit(tmp_path, ["4:cpu,cpuacct:/job", "0::/job"], [V1_CPU_MOUNT, V2_MOUNT], {
        f"{cpu}/job/cpu.cfs_quota_us": "300000\n", f"{cpu}/job/cpu.cfs_period_us": "100000\n",
        "/sys/fs/cgroup/job/cpu.max": "120000 100000\n",
    }) == pytest.approx(1.2)


def test_a_mount_point_with_an_escaped_space(tmp_path):
    mount = r"36 25 0:31 / /cg\040cpu rw - cgroup cgroup rw,cpu"
    assert _limit(tmp_path, ["3:cpu:/"], [mount], {
        "/cg cpu/cpu.cfs_quota_us": "75000\n", "/cg cpu/cpu.cfs_period_us": "100000\n"}) == pytest.approx(0.75)


@pytest.mark.parametrize("cpu_max", ["max 100000", "0 100000", "-5 100000", "abc 100000", "100000", "", "100000 0",
                                     "99999999999999999999999 100000"])
def test_no_limit_from_a_file_that_sets_none_or_cannot_be_read(tmp_path, cpu_max):
    assert _limit(tmp_path, ["0::/a"], [V2_MOUNT], {"/sys/fs/cgroup/a/cpu.max": cpu_max}) == 0


@pytest.mark.parametrize("cgroup, mountinfo", [
    ([], [V2_MOUNT]),  # no /proc/self/cgroup lines
    (["0::/a"], []),  # no cgroup mount
    (["0::/a"], [PROC_MOUNT]),
    (["garbage"], ["garbage", "1 2 3"]),
    (["0::a"], [V2_MOUNT]),  # a relative path (the kernel writes none): walking up it never ended
])
def test_no_limit_without_a_cgroup_to_read(tmp_path, cgroup, mountinfo):
    assert _limit(tmp_path, cgroup, mountinfo, {"/sys/fs/cgroup/a/cpu.max": "50000 100000"}) == 0


@pytest.fixture
def cpu_quota_cgroup():
    """scripts/bench_cpu_quota.py's quota_cgroup: (set_quota(cpus) of a new cgroup, its child's
    folder for processes to join); skips where it cannot be made (not root, no writable cgroup
    hierarchy with the cpu controller)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("making a cgroup needs root")
    sys.path.insert(0, str(REPO / "scripts"))
    from bench_cpu_quota import quota_cgroup

    cgroup = quota_cgroup(f"pyfer_test_{os.getpid()}")
    try:
        made = cgroup.__enter__()
    except (OSError, RuntimeError) as e:
        pytest.skip(f"cannot make a cgroup with a CPU quota here: {e}")
    yield made
    cgroup.__exit__(None, None, None)  # pytest resumes here after the test, passed or failed


def _in_cgroup(worker: Path) -> list:
    """What a fresh process that joined the cgroup ``worker`` reads: build_info's default_threads,
    cpu_limit and usable_cpus, and the threads of an engine made with threads=None and with 2."""
    code = ("import json, os, sys, pyfer\n"
            "open(sys.argv[1], 'w').write(str(os.getpid()))\n"
            "b = pyfer.build_info()\n"
            "print(json.dumps([b['default_threads'], b['cpu_limit'], b['usable_cpus'],"
            " pyfer.Engine(sys.argv[2]).info()['threads'], pyfer.Engine(sys.argv[2], threads=2).info()['threads']]))")
    out = subprocess.run([sys.executable, "-c", code, str(worker / "cgroup.procs"), str(SHIPPED_WEIGHTS)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def test_default_threads_follow_a_cgroup_cpu_quota(cpu_quota_cgroup):
    """docker --cpus: a quota below the CPUs of the affinity mask caps the default threads at the
    quota rounded up (the engine made one thread per usable CPU before, session 36); an explicit
    thread count is kept. The quota is set on the parent of the cgroup the child joins."""
    set_quota, worker = cpu_quota_cgroup
    rule = _checks().default_threads_for
    cpus = len(os.sched_getaffinity(0))
    if cpus < 2:
        pytest.skip("one usable CPU: a quota cannot lower the default")
    outer = _in_cgroup(worker)[1]  # a quota this machine already has above the new cgroup (a CI container's)
    for quota in (0.5, 1.0, cpus - 0.5):
        set_quota(quota)
        default, limit, usable, engine, explicit = _in_cgroup(worker)
        expected = quota if outer is None else min(quota, outer)
        assert limit == pytest.approx(expected) and usable == cpus, (quota, outer, limit, usable)
        assert default == engine == rule(cpus, expected), (quota, outer, default, engine)
        if expected <= cpus - 1:  # the quota lowers the default: the case under test
            assert default < cpus, (quota, outer, default)
        assert explicit == 2


@pytest.mark.parametrize("usable, limit, threads", [
    (2, 0.0, 2), (2, 1.0, 1), (2, 1.5, 2), (4, 1.5, 2), (4, 2.01, 3), (8, 0.01, 1), (1, 3.0, 1),
    (300, 0.0, 256), (300, 280.0, 256),
    (4, 1e15, 4),  # 18 digits of quota over a 1 ms period: cast to int it was INT_MIN, and 1 thread
])
def test_threads_for_a_cpu_count_and_a_limit(usable, limit, threads):
    assert _checks().default_threads_for(usable, limit) == threads


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="needs CPU affinity (Linux)")
def test_build_info_and_engines_agree_on_the_default():
    b = pyfer.build_info()
    assert b["usable_cpus"] == len(os.sched_getaffinity(0))
    expected = _checks().default_threads_for(b["usable_cpus"], b["cpu_limit"] or 0)
    assert b["default_threads"] == expected == pyfer.Engine(SHIPPED_WEIGHTS).info()["threads"]
