#include "thread_pool.hpp"

namespace pyfer {

ThreadPool::ThreadPool(int nthreads) {
    for (int i = 1; i < nthreads; ++i) workers_.emplace_back([this] { worker(); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lk(mu_);
        stop_ = true;
    }
    start_cv_.notify_all();
    for (auto& t : workers_) t.join();
}

void ThreadPool::drain() {
    while (true) {
        const int i = next_.fetch_add(1);
        if (i >= ntasks_) break;
        try {
            (*fn_)(i);
        } catch (...) {
            std::lock_guard<std::mutex> lk(mu_);
            if (!error_) error_ = std::current_exception();
        }
    }
}

void ThreadPool::worker() {
    unsigned long seen = 0;
    while (true) {
        {
            std::unique_lock<std::mutex> lk(mu_);
            start_cv_.wait(lk, [&] { return stop_ || generation_ != seen; });
            if (stop_) return;
            seen = generation_;
        }
        drain();
        {
            std::lock_guard<std::mutex> lk(mu_);
            if (--busy_ == 0) done_cv_.notify_all();
        }
    }
}

void ThreadPool::run(int ntasks, const std::function<void(int)>& fn) {
    if (ntasks <= 0) return;
    std::lock_guard<std::mutex> job(run_mu_);
    if (workers_.empty() || ntasks == 1) {
        for (int i = 0; i < ntasks; ++i) fn(i);
        return;
    }
    {
        std::lock_guard<std::mutex> lk(mu_);
        fn_ = &fn;
        ntasks_ = ntasks;
        next_.store(0);
        busy_ = int(workers_.size());
        error_ = nullptr;
        ++generation_;
    }
    start_cv_.notify_all();
    drain();
    std::unique_lock<std::mutex> lk(mu_);
    done_cv_.wait(lk, [&] { return busy_ == 0; });
    fn_ = nullptr;
    if (error_) std::rethrow_exception(error_);
}

}  // namespace pyfer
