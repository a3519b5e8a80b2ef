// The YuNet face detector on the CPU: a packed YuNetCpu (csrc/blocks/yunet.hpp) and the kernel
// table chosen at run time. forward() may be called from several threads at once: each call takes
// a workspace from a small pool (one per concurrent caller, kept for reuse).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "../blocks/yunet.hpp"
#include "fork_safe_mutex.hpp"

namespace pyfer {

class YuNetEngine {
public:
    YuNetEngine(const std::string& path, const std::string& isa = "auto");
    const YuNetModel& model() const { return *net_->model; }
    std::string isa() const { return K_->name; }
    struct Level {
        int stride, rows, cols;
    };
    // the output maps of an h x w image: one per level, rows x cols x model().head_channels()
    std::vector<Level> levels(int h, int w) const;
    void forward(const ImageRef& img, const std::vector<float*>& outs);

private:
    const Kernels* K_ = nullptr;
    std::shared_ptr<const YuNetCpu> net_;
    ForkSafeMutex mu_;  // guards free_
    std::vector<std::unique_ptr<YuNetWorkspace>> free_;
};

}  // namespace pyfer
