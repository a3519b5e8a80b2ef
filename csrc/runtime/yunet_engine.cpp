#include "yunet_engine.hpp"

namespace pyfer {

YuNetEngine::YuNetEngine(const std::string& path, const std::string& isa)
    : K_(&kernels_select(isa)), net_(YuNetCpu::build(YuNetModel::load(path))) {}

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
    yunet_forward(*K_, *net_, img, *ws, outs);
    std::lock_guard<ForkSafeMutex> lock(mu_);
    free_.push_back(std::move(ws));
}

}  // namespace pyfer
