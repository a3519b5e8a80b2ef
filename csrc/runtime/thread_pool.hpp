// Persistent thread pool: after a job, the workers that ran a task of it poll for the next one
// for a short while (200 us, yielding the CPU every few microseconds: back-to-back jobs start at
// once), then sleep on a condition variable (no spinning when idle). run(ntasks, fn) hands out
// task indices through an atomic counter, the calling thread takes part, and returns once all
// tasks are done (it too polls briefly before it sleeps). The first exception thrown by a task
// is rethrown in the caller.
//
// fork() copies a process with only the forking thread: in a child (gunicorn --preload,
// multiprocessing's "fork" start) the workers are gone, the locks may have been copied held, and
// the condition variables still count the parent's sleeping workers (destroying one waits for
// them forever). A pool knows the process that made it: in another it must not run (CpuEngine
// makes itself a new pool in the child first: engine.cpp), and its destructor leaves the state
// the workers shared as it is instead of stopping, joining and destroying it.
#pragma once
#include <functional>
#include <memory>

namespace pyfer {

class ThreadPool {
public:
    explicit ThreadPool(int nthreads);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;
    int size() const;
    void run(int ntasks, const std::function<void(int)>& fn);
    bool forked() const;  // this process is a fork() child of the one that made the pool: replace it

private:
    struct Shared;  // what the workers share (thread_pool.cpp)
    std::unique_ptr<Shared> s_;
    long owner_;  // the id of the process the workers run in
};

}  // namespace pyfer
