// Persistent thread pool: workers sleep on a condition variable between jobs (no spinning when
// idle); run(ntasks, fn) hands out task indices through an atomic counter, the calling thread
// takes part, and returns once all tasks are done. The first exception thrown by a task is
// rethrown in the caller.
#pragma once
#include <atomic>
#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace pyfer {

class ThreadPool {
public:
    explicit ThreadPool(int nthreads);
    ~ThreadPool();
    int size() const { return int(workers_.size()) + 1; }
    void run(int ntasks, const std::function<void(int)>& fn);

private:
    void worker();
    void drain();
    std::vector<std::thread> workers_;
    std::mutex mu_;
    std::condition_variable start_cv_, done_cv_;
    const std::function<void(int)>* fn_ = nullptr;
    int ntasks_ = 0;
    std::atomic<int> next_{0};
    int busy_ = 0;
    unsigned long generation_ = 0;
    bool stop_ = false;
    std::exception_ptr error_;
    std::mutex run_mu_;  // one job at a time
};

}  // namespace pyfer
