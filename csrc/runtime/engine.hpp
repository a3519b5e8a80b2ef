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
    // packs the model for the CPU kernels (CpuNet::build: one algorithm per conv)
    CpuEngine(std::shared_ptr<const Model> m, int threads, const std::string& isa, int group = 0);
    // shares a packed model with other engines (read-only)
    CpuEngine(std::shared_ptr<const CpuNet> net, int threads, const std::string& isa, int group = 0);
    void forward(const float* x, int n, float* logits) override;
    std::string device() const override { return "cpu"; }
    std::string isa() const override { return K_->name; }
    int threads() const override { return threads_; }
    const Model& model() const override { return *net_->model; }
    const CpuNet& net() const { return *net_; }
    int group() const { return group_; }
    // per-block wall time, single worker, one group of n images (n <= group), best of reps
    std::vector<BlockTiming> profile(const float* x, int n, int reps);

private:
    void init(int threads, int group);
    void run_range(const float* x, int a, int b, Workspace& ws, float* logits, std::vector<BlockTiming>* prof);
    void run_group(const float* x, int n, Workspace& ws, float* logits, std::vector<BlockTiming>* prof);
    const Kernels* K_ = nullptr;  // first: an unknown isa throws before any packing
    std::shared_ptr<const CpuNet> net_;
    int threads_ = 1, group_ = 8;
    std::unique_ptr<ThreadPool> pool_;
    std::vector<Workspace> ws_;
};

}  // namespace pyfer
