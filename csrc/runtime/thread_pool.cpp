#include "thread_pool.hpp"

#ifdef _WIN32
#include <process.h>  // _getpid; Windows has no fork, so a pool never finds itself in a copy
#else
#include <unistd.h>
#endif

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace pyfer {

struct ThreadPool::Shared {
    std::vector<std::thread> workers;
    std::mutex mu;
    std::condition_variable start_cv, done_cv;
    const std::function<void(int)>* fn = nullptr;
    int ntasks = 0;
    std::atomic<int> next{0};
    int busy = 0;
    unsigned long generation = 0;
    bool stop = false;
    std::exception_ptr error;
    std::mutex run_mu;  // one job at a time

    void drain() {
        while (true) {
            const int i = next.fetch_add(1);
            if (i >= ntasks) break;
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
        while (true) {
            {
                std::unique_lock<std::mutex> lk(mu);
                start_cv.wait(lk, [&] { return stop || generation != seen; });
                if (stop) return;
                seen = generation;
            }
            drain();
            {
                std::lock_guard<std::mutex> lk(mu);
                if (--busy == 0) done_cv.notify_all();
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
        s_->stop = true;
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
        s.busy = int(s.workers.size());
        s.error = nullptr;
        ++s.generation;
    }
    s.start_cv.notify_all();
    s.drain();
    std::unique_lock<std::mutex> lk(s.mu);
    s.done_cv.wait(lk, [&] { return s.busy == 0; });
    s.fn = nullptr;
    if (s.error) std::rethrow_exception(s.error);
}

}  // namespace pyfer
