// The CPU backend: CpuEngine runs the fused blocks (csrc/blocks) with the kernel table chosen at
// run time (avx2 / portable), over a thread pool (images split across workers, each with its own
// Workspace). Other backends (ref, cuda) implement the same Backend interface (backend.hpp).
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../blocks/blocks.hpp"
#include "../core/model.hpp"
#include "backend.hpp"
#include "thread_pool.hpp"

namespace pyfer {

struct BlockTiming {
    std::string name, kind;
    double seconds = 0, flops = 0;  // per call over the whole batch
};

class CpuEngine : public Backend {
public:
    CpuEngine(std::shared_ptr<Model> m, int threads, const std::string& isa, int group = 0);
    void forward(const float* x, int n, float* logits) override;
    std::string device() const override { return "cpu"; }
    std::string isa() const override { return K_->name; }
    int threads() const override { return threads_; }
    const Model& model() const override { return *m_; }
    int group() const { return group_; }
    // per-block wall time, single worker, one group of n images (n <= group), best of reps
    std::vector<BlockTiming> profile(const float* x, int n, int reps);

private:
    void run_range(const float* x, int a, int b, Workspace& ws, float* logits, std::vector<BlockTiming>* prof);
    void run_group(const float* x, int n, Workspace& ws, float* logits, std::vector<BlockTiming>* prof);
    std::shared_ptr<Model> m_;
    const Kernels* K_ = nullptr;
    int threads_ = 1, group_ = 8;
    std::unique_ptr<ThreadPool> pool_;
    std::vector<Workspace> ws_;
};

}  // namespace pyfer
