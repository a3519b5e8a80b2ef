#include "fork_safe_mutex.hpp"

#ifndef _WIN32
#include <pthread.h>  // pthread_atfork (Windows has no fork: nothing to register)
#endif

#include <algorithm>
#include <vector>

namespace pyfer {

namespace {

// Never destroyed: a ForkSafeMutex may outlive static destruction at exit (a Python object freed late).
struct Registry {
    std::mutex mu;  // held from the prepare handler to the parent's and child's handlers
    std::vector<ForkSafeMutex*> live;
};

Registry& registry() {
    static Registry* r = new Registry;
    return *r;
}

#ifndef _WIN32
void before_fork() {
    Registry& r = registry();
    r.mu.lock();
    for (ForkSafeMutex* m : r.live) m->lock();  // each waits for the call in flight, if any
}

void after_fork() {  // in the parent and in the child: the forking thread holds them all
    Registry& r = registry();
    for (ForkSafeMutex* m : r.live) m->unlock();
    r.mu.unlock();
}
#endif

}  // namespace

ForkSafeMutex::ForkSafeMutex() {
#ifndef _WIN32
    static const bool handlers = (pthread_atfork(before_fork, after_fork, after_fork), true);
    (void)handlers;
#endif
    Registry& r = registry();
    std::lock_guard<std::mutex> lk(r.mu);
    r.live.push_back(this);
}

ForkSafeMutex::~ForkSafeMutex() {
    Registry& r = registry();
    std::lock_guard<std::mutex> lk(r.mu);
    r.live.erase(std::find(r.live.begin(), r.live.end(), this));
}

}  // namespace pyfer
