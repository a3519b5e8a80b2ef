// The YuNet face detector on the CPU: a packed YuNetCpu (csrc/blocks/yunet.hpp) and the kernel
// table chosen at run time. forward() may be called from several threads at once: each call takes
// a workspace from a small pool (one per concurrent caller, kept for reuse). One call at a time
// runs on the engine's threads (each step's rows in bands, csrc/blocks/yunet.cpp); a call made
// while another has them runs on its caller's thread alone, so concurrent callers never wait for
// each other.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "../blocks/yunet.hpp"
#include "fork_safe_mutex.hpp"
#include "thread_pool.hpp"

namespace pyfer {

class YuNetEngine {
public:
    // threads <= 0: engine_threads' default (the CPUs this process may use, within its CPU quota)
    YuNetEngine(const std::string& path, const std::string& isa = "auto", int threads = 0);
    const YuNetModel& model() const { return *net_->model; }
    std::string isa() const { return K_->name; }
    int threads() const { return threads_; }
    struct Level {
        int stride, rows, cols;
    };
    // the output maps of an h x w image: one per level, rows x cols x model().head_channels()
    std::vector<Level> levels(int h, int w) const;
    void forward(const ImageRef& img, const std::vector<float*>& outs);

private:
    const Kernels* K_ = nullptr;
    std::shared_ptr<const YuNetCpu> net_;
    int threads_ = 1;
    ForkSafeMutex mu_;  // guards free_
    std::vector<std::unique_ptr<YuNetWorkspace>> free_;
    ForkSafeMutex pool_mu_;  // held by the call running on pool_ (and guards pool_ itself)
    std::unique_ptr<ThreadPool> pool_;  // threads_ > 1: made by the first call
};

}  // namespace pyfer
