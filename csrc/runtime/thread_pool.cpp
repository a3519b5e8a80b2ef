#include "thread_pool.hpp"

#ifdef _WIN32
#include <process.h>  // _getpid; Windows has no fork, so a pool never finds itself in a copy
#else
#include <unistd.h>
#endif

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86)
#include <immintrin.h>  // _mm_pause
#elif defined(_M_ARM64)
#include <intrin.h>  // __yield
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace pyfer {

namespace {

// How long a thread polls for what it waits for before it sleeps on a condition variable. Jobs
// often come back to back (YuNet's steps, microseconds apart; docs/recognizer.md, "YuNet on
// several threads"), and a sleeping thread takes long to wake: on a VM, the idle virtual CPU
// must be scheduled again first. Only a worker that ran a task of the last job polls (a pool
// larger than a job's tasks leaves the rest asleep), and a polling thread yields its CPU every
// few microseconds: the thread it waits for, or another pool's, may need that CPU.
constexpr auto SPIN = std::chrono::microseconds(200);

void cpu_relax() {
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86)
    _mm_pause();
#elif defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
    asm volatile("yield");
#elif defined(_M_ARM64)
    __yield();
#endif
}

// true once ready() holds, false when SPIN has passed first
template <class Ready>
bool spin_until(Ready ready) {
    const auto end = std::chrono::steady_clock::now() + SPIN;
    for (int i = 1;; ++i) {
        if (ready()) return true;
        cpu_relax();
        if (i % 64 == 0) {
            if (std::chrono::steady_clock::now() > end) return false;
            std::this_thread::yield();
        }
    }
}

}  // namespace

struct ThreadPool::Shared {
    std::vector<std::thread> workers;
    std::mutex mu;
    std::condition_variable start_cv, done_cv;
    // the job: written under mu before generation is raised (release), read after it is seen (acquire)
    const std::function<void(int)>* fn = nullptr;
    int ntasks = 0;
    std::atomic<int> next{0};
    std::atomic<int> busy{0};
    std::atomic<unsigned long> generation{0};
    std::atomic<bool> stop{false};
    std::exception_ptr error;
    std::mutex run_mu;  // one job at a time

    // runs tasks until none is left; true when it ran one
    bool drain() {
        bool ran = false;
        while (true) {
            const int i = next.fetch_add(1);
            if (i >= ntasks) return ran;
            ran = true;
            try {
                (*fn)(i);
            } catch (...) {
                std::lock_guard<std::mutex> lk(mu);
                if (!error) error = std::current_exception();
            }
        }
    }

    void worker() {
        unsigned long seen = 0;
        bool ran = false;  // a task of the last job: poll for the next one before sleeping
        const auto ready = [&] {
            return stop.load(std::memory_order_acquire) || generation.load(std::memory_order_acquire) != seen;
        };
        while (true) {
            if (!(ran && spin_until(ready))) {
                std::unique_lock<std::mutex> lk(mu);
                start_cv.wait(lk, ready);
            }
            if (stop.load(std::memory_order_acquire)) return;
            seen = generation.load(std::memory_order_acquire);
            ran = drain();
            if (busy.fetch_sub(1, std::memory_order_acq_rel) == 1) {
                std::lock_guard<std::mutex> lk(mu);  // the caller waits under mu: no lost wake-up
                done_cv.notify_all();
            }
        }
    }
};

namespace {

long process_id() {
#ifdef _WIN32
    return ::_getpid();
#else
    return ::getpid();
#endif
}

}  // namespace

ThreadPool::ThreadPool(int nthreads) : s_(new Shared), owner_(process_id()) {
    Shared* s = s_.get();
    for (int i = 1; i < nthreads; ++i) s->workers.emplace_back([s] { s->worker(); });
}

bool ThreadPool::forked() const { return process_id() != owner_; }

int ThreadPool::size() const { return int(s_->workers.size()) + 1; }

ThreadPool::~ThreadPool() {
    if (forked()) {  // see thread_pool.hpp: left as it is, for the rest of the process
        (void)s_.release();
        return;
    }
    {
        std::lock_guard<std::mutex> lk(s_->mu);
        s_->stop.store(true, std::memory_order_release);
    }
    s_->start_cv.notify_all();
    for (auto& t : s_->workers) t.join();
}

void ThreadPool::run(int ntasks, const std::function<void(int)>& fn) {
    if (ntasks <= 0) return;
    Shared& s = *s_;
    std::lock_guard<std::mutex> job(s.run_mu);
    if (s.workers.empty() || ntasks == 1) {
        for (int i = 0; i < ntasks; ++i) fn(i);
        return;
    }
    {
        std::lock_guard<std::mutex> lk(s.mu);
        s.fn = &fn;
        s.ntasks = ntasks;
        s.next.store(0);
        s.busy.store(int(s.workers.size()));
        s.error = nullptr;
        s.generation.fetch_add(1, std::memory_order_release);
    }
    s.start_cv.notify_all();
    s.drain();
    const auto done = [&] { return s.busy.load(std::memory_order_acquire) == 0; };
    spin_until(done);
    std::unique_lock<std::mutex> lk(s.mu);
    s.done_cv.wait(lk, done);
    s.fn = nullptr;
    if (s.error) std::rethrow_exception(s.error);
}

}  // namespace pyfer
