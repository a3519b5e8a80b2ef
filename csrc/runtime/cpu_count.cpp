#include "cpu_count.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <exception>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>
#ifdef __linux__
#include <sched.h>
#endif

namespace pyfer {

int usable_cpus() {
#ifdef __linux__
    // a mask as large as the kernel's: a fixed cpu_set_t (1024 CPUs) fails with EINVAL beyond that
    for (int ncpus = 1024; ncpus <= (1 << 20); ncpus *= 2) {
        cpu_set_t* set = CPU_ALLOC(ncpus);
        if (!set) break;
        const size_t bytes = CPU_ALLOC_SIZE(ncpus);
        const int got = ::sched_getaffinity(0, bytes, set) == 0 ? CPU_COUNT_S(bytes, set) : -1;
        const bool too_small = got < 0 && errno == EINVAL;
        CPU_FREE(set);
        if (got > 0) return got;
        if (!too_small) break;
    }
#endif
    return std::max(1u, std::thread::hardware_concurrency());
}

namespace {

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> parts;
    std::string part;
    std::istringstream in(s);
    while (std::getline(in, part, sep)) parts.push_back(part);
    if (!s.empty() && s.back() == sep) parts.emplace_back();
    return parts;
}

bool contains(const std::vector<std::string>& items, const std::string& item) {
    return std::find(items.begin(), items.end(), item) != items.end();
}

// mountinfo writes a space, tab, newline or backslash in a path as \ooo (octal)
std::string unescape_octal(const std::string& s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        const auto octal = [](char c) { return c >= '0' && c <= '7'; };
        const bool escape =
            s[i] == '\\' && i + 3 < s.size() && std::all_of(s.begin() + i + 1, s.begin() + i + 4, octal);
        if (escape) {
            out += static_cast<char>(std::stoi(s.substr(i + 1, 3), nullptr, 8));
            i += 3;
        } else {
            out += s[i];
        }
    }
    return out;
}

// the first two words of a file; false when it is absent, unreadable or empty
bool read_words(const std::string& path, std::vector<std::string>& words) {
    std::ifstream f(path);
    if (!f) return false;
    words.clear();
    std::string w;
    while (words.size() < 2 && f >> w) words.push_back(w);
    return !words.empty();
}

bool to_int64(const std::string& s, int64_t& v) {
    if (s.empty() || s.size() > 18 || s.find_first_not_of("0123456789") != std::string::npos) return false;
    v = std::stoll(s);
    return true;
}

// The limit one cgroup folder sets, in CPUs; 0 for none. v2: cpu.max holds "max PERIOD" or
// "QUOTA PERIOD"; v1: cpu.cfs_quota_us holds -1 or QUOTA, cpu.cfs_period_us PERIOD (microseconds).
double folder_limit(const std::string& dir, bool v2) {
    std::vector<std::string> max_words, quota_words, period_words;
    int64_t quota = 0, period = 0;
    if (v2) {
        if (!read_words(dir + "/cpu.max", max_words) || max_words.size() != 2) return 0;
        if (!to_int64(max_words[0], quota) || !to_int64(max_words[1], period)) return 0;  // "max": no limit
    } else {
        const bool read = read_words(dir + "/cpu.cfs_quota_us", quota_words) &&
                          read_words(dir + "/cpu.cfs_period_us", period_words);
        if (!read) return 0;
        if (!to_int64(quota_words[0], quota) || !to_int64(period_words[0], period)) return 0;  // "-1": no limit
    }
    return quota > 0 && period > 0 ? static_cast<double>(quota) / static_cast<double>(period) : 0;
}

struct Mount {
    std::string root, point;  // the hierarchy's cgroup the mount shows, and where it is mounted
    bool v2;
    std::vector<std::string> controllers;  // v1: the super options (rw,cpu,cpuacct)
};

std::vector<Mount> cgroup_mounts(const std::string& fs_root) {
    std::vector<Mount> mounts;
    std::ifstream f(fs_root + "/proc/self/mountinfo");
    std::string line;
    while (std::getline(f, line)) {
        // ID PARENT MAJ:MIN ROOT POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS
        const std::vector<std::string> w = split(line, ' ');
        const auto dash = std::find(w.begin() + std::min<size_t>(6, w.size()), w.end(), "-");
        if (w.size() < 7 || dash == w.end() || w.end() - dash < 4) continue;
        const std::string& fstype = dash[1];
        if (fstype != "cgroup" && fstype != "cgroup2") continue;
        mounts.push_back({unescape_octal(w[3]), unescape_octal(w[4]), fstype == "cgroup2", split(dash[3], ',')});
    }
    return mounts;
}

double cgroup_cpu_limit_or_throw(const std::string& fs_root) {
    // plain file reads: where /proc/self/cgroup is absent (not Linux) there is no limit
    const std::vector<Mount> mounts = cgroup_mounts(fs_root);
    double limit = 0;
    std::ifstream f(fs_root + "/proc/self/cgroup");
    std::string line;
    while (std::getline(f, line)) {
        // ID:CONTROLLERS:PATH; v2 is "0::PATH", a v1 hierarchy names its controllers (cpu,cpuacct)
        const size_t colon1 = line.find(':');
        const size_t colon2 = colon1 == std::string::npos ? colon1 : line.find(':', colon1 + 1);
        if (colon2 == std::string::npos) continue;
        const std::vector<std::string> controllers = split(line.substr(colon1 + 1, colon2 - colon1 - 1), ',');
        const std::string path = line.substr(colon2 + 1);
        // the kernel writes absolute paths, and "/.." parts for a cgroup outside the reader's
        // cgroup namespace, which no mount in it shows
        if (path.empty() || path[0] != '/' || (path + "/").find("/../") != std::string::npos) continue;
        const bool v2 = line.compare(0, colon1, "0") == 0 && controllers.empty();
        if (!v2 && !contains(controllers, "cpu")) continue;
        for (const Mount& m : mounts) {
            if (m.v2 != v2 || (!v2 && !contains(m.controllers, "cpu"))) continue;
            // the process's cgroup seen through this mount: its path below the mount's root
            std::string below;
            if (m.root == "/") {
                below = path == "/" ? "" : path;
            } else if (path == m.root || path.compare(0, m.root.size() + 1, m.root + "/") == 0) {
                below = path.substr(m.root.size());
            } else {
                continue;  // the mount does not show this cgroup
            }
            // from the process's cgroup up to the mount's: every ancestor's limit applies too
            for (std::string rel = below;;) {
                const double cpus = folder_limit(fs_root + m.point + rel, v2);
                if (cpus > 0 && (limit == 0 || cpus < limit)) limit = cpus;
                const size_t slash = rel.rfind('/');
                if (slash == std::string::npos) break;
                rel.resize(slash);  // the parent; "" is the mount's own folder
            }
        }
    }
    return limit;
}

}  // namespace

double cgroup_cpu_limit(const std::string& fs_root) {
    try {
        return cgroup_cpu_limit_or_throw(fs_root);
    } catch (const std::exception&) {  // an unforeseen /proc format must not stop an engine: no limit
        return 0;
    }
}

int default_threads_for(int usable, double limit) {
    // a quota of 1.5 CPUs still lets 2 threads run half the time each; a limit of usable CPUs or
    // more (up to 1e15 CPUs: 18 digits of quota over a 1 ms period) changes nothing and is never
    // cast to int
    if (limit > 0 && limit < usable) usable = std::max(1, static_cast<int>(std::ceil(limit)));
    return std::min(std::max(1, usable), MAX_THREADS);
}

int default_threads() { return default_threads_for(usable_cpus(), cgroup_cpu_limit()); }

}  // namespace pyfer
