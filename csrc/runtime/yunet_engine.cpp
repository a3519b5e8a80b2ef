#include "yunet_engine.hpp"

#include "cpu_count.hpp"

namespace pyfer {

YuNetEngine::YuNetEngine(const std::string& path, const std::string& isa, int threads)
    : K_(&kernels_select(isa)), net_(YuNetCpu::build(YuNetModel::load(path))), threads_(engine_threads(threads)) {}

std::vector<YuNetEngine::Level> YuNetEngine::levels(int h, int w) const {
    const YuNetModel& m = *net_->model;
    const int hp = yunet_padded(m, h), wp = yunet_padded(m, w);
    std::vector<Level> out;
    for (const YuNetLevel& lv : m.levels) out.push_back({lv.stride, hp / lv.stride, wp / lv.stride});
    return out;
}

void YuNetEngine::forward(const ImageRef& img, const std::vector<float*>& outs) {
    std::unique_ptr<YuNetWorkspace> ws;
    {
        std::lock_guard<ForkSafeMutex> lock(mu_);
        if (!free_.empty()) {
            ws = std::move(free_.back());
            free_.pop_back();
        }
    }
    if (!ws) ws = std::make_unique<YuNetWorkspace>();
    std::unique_lock<ForkSafeMutex> pool_lock(pool_mu_, std::defer_lock);
    if (threads_ > 1 && pool_lock.try_lock()) {
        // made on first use; in a fork() child the pool's workers stayed in the parent: a pool of
        // this process's own
        if (!pool_ || pool_->forked()) pool_ = std::make_unique<ThreadPool>(threads_);
        ThreadPool& pool = *pool_;
        yunet_forward(*K_, *net_, img, *ws, outs, threads_,
                      [&pool](int n, const std::function<void(int)>& task) { pool.run(n, task); });
        pool_lock.unlock();
    } else {
        yunet_forward(*K_, *net_, img, *ws, outs);
    }
    std::lock_guard<ForkSafeMutex> lock(mu_);
    free_.push_back(std::move(ws));
}

}  // namespace pyfer
