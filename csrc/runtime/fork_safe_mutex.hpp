// A mutex that fork() does not copy held. fork() copies only the forking thread: a lock that
// another thread held at that moment stays held in the child, whose first lock() then waits
// forever (a thread inside Engine.forward while another thread forks: gunicorn, multiprocessing).
// pthread_atfork handlers take every live ForkSafeMutex before fork() and release them after it,
// in the parent and in the child, so fork() waits for the calls in flight to leave their critical
// sections. Holders must not wait for anything else while they hold one (the Python bindings
// release the GIL before locking and unlock before taking it back), nor register fork handlers
// or dlopen/dlclose a library that does: glibc holds its fork-handler lock while these handlers
// wait. The cost: Python forks with the GIL held, so every Python thread stalls until the calls
// in flight end (os.fork, multiprocessing's "fork" workers, subprocess with preexec_fn; a plain
// subprocess.run uses vfork on Linux and runs no handlers).
#pragma once
#include <mutex>

namespace pyfer {

class ForkSafeMutex {
public:
    ForkSafeMutex();  // registers it (and, once per process, the fork handlers)
    ~ForkSafeMutex();
    ForkSafeMutex(const ForkSafeMutex&) = delete;
    ForkSafeMutex& operator=(const ForkSafeMutex&) = delete;
    void lock() { m_.lock(); }
    void unlock() { m_.unlock(); }
    bool try_lock() { return m_.try_lock(); }

private:
    std::mutex m_;
};

}  // namespace pyfer
