// How many threads an engine takes by default: the CPUs this process may run on, capped by the
// CPU time its cgroup may use.
//
// Why both: a container limited with `docker --cpus 1` (a CFS quota) still sees every CPU of the
// host in its affinity mask. A pool with one thread per host CPU then spends the quota in the
// first milliseconds of each 100 ms period and all its threads are stopped for the rest of it
// (docs/recognizer.md, "Threads under a CPU quota": under a steady load, threads beyond the quota
// raise the latency; a lone call after an idle spell returns sooner with them).
#pragma once
#include <algorithm>
#include <string>

namespace pyfer {

// The CPUs this process may run on: its affinity mask on Linux (taskset, a container's cpuset:
// hardware_concurrency counts every CPU of the host), else std::thread::hardware_concurrency; at
// least 1.
int usable_cpus();

// The CPU time the process's cgroups allow, in CPUs (quota / period), the smallest over its cgroup
// and every ancestor, in cgroup v2 (cpu.max) and the v1 cpu controller (cpu.cfs_quota_us /
// cpu.cfs_period_us); 0 when none is set (or off Linux, without /proc). Found as the kernel shows it:
// /proc/self/cgroup names the process's cgroup in each hierarchy, /proc/self/mountinfo where each
// hierarchy is mounted and which of its cgroups the mount shows (a container's own, usually).
// fs_root prefixes every path read (tests build a fake tree under a temporary folder).
double cgroup_cpu_limit(const std::string& fs_root = "");

// threads=None (0): default_threads_for(usable_cpus(), cgroup_cpu_limit()); more are capped too
constexpr int MAX_THREADS = 256;
int default_threads();
// min(usable, limit rounded up (none: 0), MAX_THREADS), at least 1
int default_threads_for(int usable, double limit);
inline int engine_threads(int requested) {
    return std::min(requested > 0 ? requested : default_threads(), MAX_THREADS);
}

}  // namespace pyfer
