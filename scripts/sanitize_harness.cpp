// Sanitizer harness for the engine core, built and run by scripts/sanitize.sh under
// ASan + UBSan + LeakSanitizer (no Python in the process, so LSan's leak report is meaningful).
//
//   sanitize_harness WEIGHTS TMPDIR [ITERATIONS]
//
// 1. Engine lifecycle: load the model, build CPU engines (1-3 threads, each ISA), forward
//    batches of 1/3/9, destroy -- repeated, so that any leak is reported at exit.
// 2. JSON header parser: ITERATIONS mutations (byte flips, truncation, insertion, deletion,
//    slice duplication) of the real header, each parsed from an exact-size heap buffer, so that
//    ASan reports any read past the end.
// 3. Loader: files truncated at every section boundary (+-1) and with mutated headers, loaded
//    through Model::load: each must load or throw FormatError/FileNotFound -- any other exception
//    (bad_alloc, length_error, ...) is a failure; loaded models run one forward pass.
// 4. cgroup CPU-limit reader (csrc/runtime/cpu_count.cpp): ITERATIONS / 10 mutations of a fake
//    /proc/self/cgroup and /proc/self/mountinfo (v1, v2, a container's mount) over a fake cgroup
//    tree: each read must return a finite limit >= 0 and never throw.
// Exit 0 when nothing unexpected happened (sanitizer reports abort the process).
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "../csrc/runtime/cpu_count.hpp"
#include "../csrc/runtime/engine.hpp"
#include "../csrc/core/json.hpp"

using namespace pyfer;

static std::vector<char> read_all(const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    return std::vector<char>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

static void write_all(const std::string& p, const std::vector<char>& b) {
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f.write(b.data(), std::streamsize(b.size()));
}

static int unexpected = 0;

// 0 = loaded (and ran), 1 = FormatError/FileNotFound, counts anything else as unexpected
static int try_load(const std::string& path) {
    try {
        auto m = Model::load(path);
        if (m->input_size <= 96) {
            CpuEngine e(m, 1, "auto");
            std::vector<float> x(size_t(m->in_channels) * m->input_size * m->input_size, 0.25f);
            std::vector<float> y(size_t(m->num_classes));
            e.forward(x.data(), 1, y.data());
        }
        return 0;
    } catch (const FormatError&) {
        return 1;
    } catch (const FileNotFound&) {
        return 1;
    } catch (const std::exception& ex) {
        std::printf("UNEXPECTED exception for %s: %s\n", path.c_str(), ex.what());
        ++unexpected;
        return 2;
    }
}

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s WEIGHTS TMPDIR [ITERATIONS]\n", argv[0]);
        return 2;
    }
    const std::string weights = argv[1], tmp = argv[2];
    const int iters = argc > 3 ? std::atoi(argv[3]) : 20000;
    const std::vector<char> raw = read_all(weights);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; --i) hlen = (hlen << 8) | static_cast<unsigned char>(raw[i]);
    const std::vector<char> header(raw.begin() + 8, raw.begin() + 8 + long(hlen));

    // 1. lifecycle
    int forwards = 0;
    std::vector<std::string> isas = {"portable"};  // every kernel set this build and CPU run
    if (compiled_avx2() && cpu_has_avx2_fma()) isas.push_back("avx2");
    if (compiled_avx512() && cpu_has_avx512()) isas.push_back("avx512");
    for (int rep = 0; rep < 3; ++rep) {
        auto m = Model::load(weights);
        const size_t img = size_t(m->in_channels) * m->input_size * m->input_size;
        for (const std::string& isa : isas)
            for (int t = 1; t <= 3; ++t) {
                CpuEngine e(m, t, isa);
                for (int n : {1, 3, 9}) {
                    std::vector<float> x(img * n), y(size_t(n) * m->num_classes);
                    for (size_t i = 0; i < x.size(); ++i) x[i] = float((i * 2654435761u) % 1000) / 500.0f - 1.0f;
                    e.forward(x.data(), n, y.data());
                    ++forwards;
                }
            }
    }
    std::printf("lifecycle: 3 loads, %d forward calls on %zu ISAs x 1-3 threads\n", forwards, isas.size());

    // 2. parser on exact-size heap buffers
    std::mt19937_64 rng(12345);
    auto rnd = [&](size_t n) { return n ? size_t(rng() % n) : 0; };
    int parsed = 0, refused = 0;
    for (int it = 0; it < iters; ++it) {
        std::vector<char> h = header;
        const int kind = int(rng() % 5);
        const int k = 1 + int(rng() % 8);
        for (int j = 0; j < k && !h.empty(); ++j) {
            if (kind == 0) h[rnd(h.size())] ^= char(1 + rng() % 255);
            else if (kind == 1) h.resize(rnd(h.size()));
            else if (kind == 2) h.insert(h.begin() + long(rnd(h.size() + 1)), char(rng() % 256));
            else if (kind == 3) h.erase(h.begin() + long(rnd(h.size())));
            else {
                size_t a = rnd(h.size()), b = std::min(h.size(), a + rnd(64));
                std::vector<char> s(h.begin() + long(a), h.begin() + long(b));
                h.insert(h.begin() + long(rnd(h.size() + 1)), s.begin(), s.end());
            }
        }
        // exact-size heap copy: a read past the end is a heap-buffer-overflow for ASan
        std::unique_ptr<char[]> buf(new char[h.size() ? h.size() : 1]);
        if (!h.empty()) std::memcpy(buf.get(), h.data(), h.size());
        try {
            Json::parse(buf.get(), h.size());
            ++parsed;
        } catch (const FormatError&) {
            ++refused;
        } catch (const std::exception& ex) {
            std::printf("UNEXPECTED parser exception: %s\n", ex.what());
            ++unexpected;
        }
    }
    std::printf("parser: %d mutated headers: %d parsed, %d refused\n", iters, parsed, refused);

    // 3. loader on files: truncation at every section boundary, mutated headers
    Json hj = Json::parse(header.data(), header.size());
    std::set<size_t> cuts = {0, 1, 7, 8, 9, size_t(8 + hlen - 1), size_t(8 + hlen), size_t(8 + hlen + 1)};
    for (auto& kv : hj.obj) {
        const Json* off = kv.second.get("data_offsets");
        if (!off) continue;
        for (auto& o : off->arr)
            for (long d : {-1L, 0L, 1L}) cuts.insert(size_t(8 + hlen + size_t(o.as_int()) + d));
    }
    const std::string p = tmp + "/harness.safetensors";
    int loaded = 0, errors = 0, files = 0;
    for (size_t c : cuts) {
        if (c >= raw.size()) continue;
        write_all(p, std::vector<char>(raw.begin(), raw.begin() + long(c)));
        (try_load(p) == 0 ? loaded : errors)++;
        ++files;
    }
    const int nmut = std::max(50, iters / 100);
    for (int it = 0; it < nmut; ++it) {
        std::vector<char> f = raw;
        for (int j = 0, k = 1 + int(rng() % 4); j < k; ++j) f[rnd(8 + hlen)] ^= char(1 + rng() % 255);
        write_all(p, f);
        (try_load(p) == 0 ? loaded : errors)++;
        ++files;
    }
    std::remove(p.c_str());
    std::printf("loader: %d mutated files (%zu truncations): %d loaded, %d refused with FormatError\n", files,
                cuts.size(), loaded, errors);

    // 4. cgroup reader on mutated /proc files
    const std::string fake_root = tmp + "/cgroup_root";
    for (const char* d : {"/proc", "/proc/self", "/sys", "/sys/fs", "/sys/fs/cgroup", "/sys/fs/cgroup/a",
                          "/sys/fs/cgroup/a/b", "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu/job"})
        std::filesystem::create_directories(fake_root + d);
    auto text = [](const std::string& t) { return std::vector<char>(t.begin(), t.end()); };
    write_all(fake_root + "/sys/fs/cgroup/a/cpu.max", text("150000 100000\n"));
    write_all(fake_root + "/sys/fs/cgroup/a/b/cpu.max", text("max 100000\n"));
    write_all(fake_root + "/sys/fs/cgroup/cpu/job/cpu.cfs_quota_us", text("50000\n"));
    write_all(fake_root + "/sys/fs/cgroup/cpu/job/cpu.cfs_period_us", text("100000\n"));
    const std::vector<char> cgroup_file = text("4:cpu,cpuacct:/job\n0::/a/b\n"),
                            mountinfo = text(
        "30 25 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"
        "36 25 0:31 / /sys/fs/cgroup/cpu rw,relatime shared:15 - cgroup cgroup rw,cpu,cpuacct\n"
        "40 35 0:26 /a /sys/fs/cgroup/a ro - cgroup2 cgroup2 rw\n"
        "41 35 0:27 / /sys/fs/cgroup/x\\040y rw - cgroup cgroup rw,cpu\n");
    write_all(fake_root + "/proc/self/cgroup", cgroup_file);
    write_all(fake_root + "/proc/self/mountinfo", mountinfo);
    const double unmutated = cgroup_cpu_limit(fake_root);
    if (std::fabs(unmutated - 0.5) > 1e-9) {
        std::printf("UNEXPECTED cgroup limit of the unmutated tree: %g (0.5 expected)\n", unmutated);
        ++unexpected;
    }
    const int ncg = std::max(100, iters / 10);
    int limited = 0;
    for (int it = 0; it < ncg; ++it) {
        std::vector<char> files[2] = {cgroup_file, mountinfo};
        for (std::vector<char>& f : files) {
            for (int j = 0, k = int(rng() % 6); j < k && !f.empty(); ++j) {
                const int kind = int(rng() % 4);
                if (kind == 0) f[rnd(f.size())] = "-: /\\0\n ,"[rng() % 9];
                else if (kind == 1) f.resize(rnd(f.size()));
                else if (kind == 2) f.insert(f.begin() + long(rnd(f.size() + 1)), char(rng() % 256));
                else f.erase(f.begin() + long(rnd(f.size())));
            }
        }
        write_all(fake_root + "/proc/self/cgroup", files[0]);
        write_all(fake_root + "/proc/self/mountinfo", files[1]);
        try {
            const double limit = cgroup_cpu_limit(fake_root);
            if (!(limit >= 0) || !std::isfinite(limit)) {
                std::printf("UNEXPECTED cgroup limit %g\n", limit);
                ++unexpected;
            }
            limited += limit > 0;
        } catch (const std::exception& ex) {
            std::printf("UNEXPECTED cgroup reader exception: %s\n", ex.what());
            ++unexpected;
        }
    }
    std::filesystem::remove_all(fake_root);
    std::printf("cgroup reader: %d mutated /proc files: %d found a limit\n", ncg, limited);
    std::printf("%s (%d unexpected)\n", unexpected ? "FAILED" : "PASSED", unexpected);
    return unexpected ? 1 : 0;
}
