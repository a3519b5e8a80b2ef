// ThreadSanitizer harness for the engine core, built and run by scripts/tsan.sh (-fsanitize=thread).
//
//   tsan_harness WEIGHTS [SCALE [YUNET]]
//
// The concurrency the Python API allows, replayed in C++ against the instrumented core library
// (every memory access of the engine is seen by TSan; no uninstrumented interpreter in between):
// 1. ThreadPool at 2 and 8 threads: many jobs of many tasks (each task writes its own slot and
//    bumps a shared atomic), jobs submitted by 4 caller threads at once (run() serialises them),
//    a task that throws (the first exception is rethrown in the caller), pools created and
//    destroyed while jobs run elsewhere.
// 2. One shared CpuEngine (threads = 2 and 8, its pool fanning a batch out) called by 6 threads,
//    serialised by a mutex exactly as pyfer._engine.Engine.forward does (the workspaces belong to
//    the engine); every result compared bit for bit with the serial one.
// 3. Engines sharing one Model (read-only weights, packed panels) running side by side without a
//    lock (several pyfer.Engine / Recognizer objects in threads), ISA auto and portable.
// 4. Model::load and engine construction/destruction in 4 threads at once (kernel-table
//    selection, getenv, first use of function-local statics), while 2 threads keep predicting.
// 5. With YUNET (the detector's weights): one YuNetEngine (threads = 2 and 3: each step's rows in
//    bands on its pool) called by 4 threads at once on odd image sizes (one call has the pool, the
//    others run alone), every result compared bit for bit with a one-thread engine's.
// Exit 0 when every result matched; a data race makes TSan report and exit non-zero
// (TSAN_OPTIONS=halt_on_error=1 exitcode=66 in scripts/tsan.sh).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "../csrc/runtime/engine.hpp"
#include "../csrc/runtime/yunet_engine.hpp"

using namespace pyfer;

static std::atomic<int> failures{0};
#define CHECK(c, ...) do { if (!(c)) { std::printf("FAIL: " __VA_ARGS__); std::printf("\n"); ++failures; } } while (0)

static void pool_tests(int nthreads, int scale) {
    ThreadPool pool(nthreads);
    // many jobs from one caller
    for (int job = 0; job < 50 * scale; ++job) {
        const int ntasks = 1 + job % 37;
        std::vector<int> slot(size_t(ntasks), 0);
        std::atomic<int> sum{0};
        pool.run(ntasks, [&](int i) { slot[size_t(i)] = i + 1; sum += i; });
        for (int i = 0; i < ntasks; ++i) CHECK(slot[size_t(i)] == i + 1, "pool%d task %d not run", nthreads, i);
        CHECK(sum == ntasks * (ntasks - 1) / 2, "pool%d sum", nthreads);
    }
    // 4 callers submitting jobs to the same pool at once
    std::vector<std::thread> callers;
    std::atomic<long> total{0};
    for (int c = 0; c < 4; ++c)
        callers.emplace_back([&, c] {
            for (int job = 0; job < 20 * scale; ++job) {
                std::vector<long> part(16, 0);
                pool.run(16, [&](int i) { part[size_t(i)] = c * 1000 + i; });
                long s = 0;
                for (long v : part) s += v;
                total += s;
            }
        });
    for (auto& t : callers) t.join();
    const long want = 20L * scale * (16 * (0 + 1000 + 2000 + 3000) + 4 * 120);
    CHECK(total == want, "pool%d concurrent callers: %ld != %ld", nthreads, long(total), want);
    // a throwing task: rethrown in the caller, the pool stays usable
    for (int rep = 0; rep < 10; ++rep) {
        bool thrown = false;
        try {
            pool.run(24, [&](int i) { if (i % 7 == 3) throw std::runtime_error("task failed"); });
        } catch (const std::runtime_error&) {
            thrown = true;
        }
        CHECK(thrown, "pool%d: exception not rethrown", nthreads);
        std::atomic<int> n{0};
        pool.run(24, [&](int) { ++n; });
        CHECK(n == 24, "pool%d unusable after an exception", nthreads);
    }
}

// 5. (see the header) YuNet's row bands on a pool, with concurrent callers
static void yunet_tests(const std::string& path, int scale) {
    YuNetEngine serial(path, "auto", 1);
    struct Case {
        std::vector<uint8_t> img;
        int h, w;
        std::vector<std::vector<float>> want;
    };
    std::vector<Case> cases;
    for (auto hw : {std::pair<int, int>{240, 320}, {97, 131}, {33, 250}, {1, 1}}) {
        Case c{std::vector<uint8_t>(size_t(hw.first) * hw.second * 3), hw.first, hw.second, {}};
        for (size_t i = 0; i < c.img.size(); ++i) c.img[i] = uint8_t((i * 2654435761u) >> 24);
        cases.push_back(c);
    }
    auto run = [](YuNetEngine& eng, const Case& c) {
        ImageRef img;
        img.data = c.img.data();
        img.h = c.h;
        img.w = c.w;
        img.row_stride = ptrdiff_t(c.w) * 3;
        std::vector<std::vector<float>> maps;
        std::vector<float*> outs;
        for (const auto& lv : eng.levels(c.h, c.w)) maps.emplace_back(size_t(lv.rows) * lv.cols * eng.model().head_channels());
        for (auto& m : maps) outs.push_back(m.data());
        eng.forward(img, outs);
        return maps;
    };
    for (Case& c : cases) c.want = run(serial, c);
    for (int threads : {2, 3}) {
        YuNetEngine eng(path, "auto", threads);
        std::vector<std::thread> ts;
        for (int k = 0; k < 4; ++k)
            ts.emplace_back([&, k] {
                for (int i = 0; i < 2 * scale; ++i) {
                    const Case& c = cases[size_t(k + i) % cases.size()];
                    CHECK(run(eng, c) == c.want, "YuNet (%d threads) %dx%d: maps differ from one thread's", threads, c.h, c.w);
                }
            });
        for (auto& t : ts) t.join();
        std::printf("shared YuNet engine, %d threads, 4 callers: done\n", threads);
    }
}

static std::vector<float> make_input(const Model& m, int n, unsigned seed) {
    std::vector<float> x(size_t(n) * m.in_channels * m.input_size * m.input_size);
    for (size_t i = 0; i < x.size(); ++i) x[i] = float(((i + seed) * 2654435761u) % 2000) / 1000.0f - 1.0f;
    return x;
}

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s WEIGHTS [SCALE [YUNET]]\n", argv[0]);
        return 2;
    }
    const std::string weights = argv[1];
    const int scale = argc > 2 ? std::max(1, std::atoi(argv[2])) : 1;

    for (int t : {2, 8}) pool_tests(t, scale);
    // pools created and destroyed in threads while another pool works
    {
        ThreadPool busy(3);
        std::atomic<bool> stop{false};
        std::thread worker([&] {
            while (!stop) busy.run(9, [](int) {});
        });
        std::vector<std::thread> makers;
        for (int k = 0; k < 3; ++k)
            makers.emplace_back([&, k] {
                for (int r = 0; r < 10 * scale; ++r) {
                    ThreadPool p(2 + (r + k) % 7);
                    std::atomic<int> n{0};
                    p.run(5, [&](int) { ++n; });
                    CHECK(n == 5, "churned pool");
                }
            });
        for (auto& t : makers) t.join();
        stop = true;
        worker.join();
    }
    std::printf("thread pool: 2 and 8 threads, concurrent callers, exceptions, churn: done\n");

    auto model = Model::load(weights);
    const int N = 9;  // a batch the pool splits (groups of 8 -> uneven ranges)
    const int C = model->num_classes;
    std::vector<std::vector<float>> inputs, want;
    for (unsigned s = 0; s < 4; ++s) {
        inputs.push_back(make_input(*model, N, s * 7919u));
        std::vector<float> y(size_t(N) * C);
        CpuEngine serial(model, 1, "auto");
        serial.forward(inputs.back().data(), N, y.data());
        want.push_back(y);
    }
    auto same = [&](const std::vector<float>& y, size_t k) { return std::memcmp(y.data(), want[k].data(), y.size() * 4) == 0; };

    // 2. one shared engine, 6 callers, serialised like the Python binding
    for (int threads : {2, 8}) {
        CpuEngine eng(model, threads, "auto");
        std::mutex mu;
        std::vector<std::thread> ts;
        for (int c = 0; c < 6; ++c)
            ts.emplace_back([&, c] {
                for (int i = 0; i < 3 * scale; ++i) {
                    const size_t k = size_t(c + i) % inputs.size();
                    std::vector<float> y(size_t(N) * C);
                    {
                        std::lock_guard<std::mutex> lk(mu);
                        eng.forward(inputs[k].data(), N, y.data());
                    }
                    CHECK(same(y, k), "shared engine (%d threads): result differs from serial", threads);
                }
            });
        for (auto& t : ts) t.join();
        std::printf("shared engine, %d pool threads, 6 callers x %d batches of %d: done\n", threads, 3 * scale, N);
    }

    // 3. separate engines on one Model, side by side, no lock
    {
        std::vector<std::thread> ts;
        for (int c = 0; c < 4; ++c)
            ts.emplace_back([&, c] {
                CpuEngine eng(model, c % 2 ? 2 : 1, c % 2 ? "auto" : "portable");
                for (int i = 0; i < 2 * scale; ++i) {
                    const size_t k = size_t(c + i) % inputs.size();
                    std::vector<float> y(size_t(N) * C);
                    eng.forward(inputs[k].data(), N, y.data());
                    if (eng.isa() == "portable") {
                        // another ISA: compare against its own serial result, within rounding
                        double err = 0;
                        for (size_t j = 0; j < y.size(); ++j) err = std::max(err, double(std::fabs(y[j] - want[k][j])));
                        CHECK(err < 1e-3, "portable engine differs by %g", err);
                    } else {
                        CHECK(same(y, k), "separate engine: result differs from serial");
                    }
                }
            });
        for (auto& t : ts) t.join();
        std::printf("4 engines on one shared model in 4 threads: done\n");
    }

    // 4. loads and engine churn while 2 threads predict on a shared engine
    {
        CpuEngine shared(model, 2, "auto");
        std::mutex mu;
        std::atomic<bool> stop{false};
        std::vector<std::thread> ts;
        for (int c = 0; c < 2; ++c)
            ts.emplace_back([&, c] {
                size_t k = size_t(c);
                while (!stop) {
                    std::vector<float> y(size_t(N) * C);
                    {
                        std::lock_guard<std::mutex> lk(mu);
                        shared.forward(inputs[k % inputs.size()].data(), N, y.data());
                    }
                    CHECK(same(y, k % inputs.size()), "shared engine during churn");
                    ++k;
                }
            });
        std::vector<std::thread> loaders;
        for (int c = 0; c < 4; ++c)
            loaders.emplace_back([&, c] {
                for (int r = 0; r < scale; ++r) {
                    auto m = Model::load(weights);
                    CpuEngine e(m, 1 + (c + r) % 3, "auto");
                    std::vector<float> y(size_t(N) * C);
                    e.forward(inputs[0].data(), N, y.data());
                    CHECK(same(y, 0), "freshly loaded engine");
                }
            });
        for (auto& t : loaders) t.join();
        stop = true;
        for (auto& t : ts) t.join();
        std::printf("4 threads loading models + building engines while 2 predict: done\n");
    }
    if (argc > 3) yunet_tests(argv[3], scale);
    std::printf("%s (%d failure%s)\n", failures ? "FAILED" : "PASSED", int(failures), failures == 1 ? "" : "s");
    return failures ? 1 : 0;
}
