// Inference engines behind one Backend interface. CpuEngine runs the fused blocks with the
// kernel table chosen at run time (avx2 / portable) or the plain-loop reference ("ref").
// A CUDA backend plugs in by implementing Backend and being returned from make_backend for
// device "cuda" (see make_backend in engine.cpp; a CPU-only build raises there).
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../blocks/blocks.hpp"
#include "model.hpp"
#include "thread_pool.hpp"

namespace pyfer {

class Backend {
public:
    virtual ~Backend() = default;
    // x: NCHW float32 (n, in_channels, input_size, input_size), logits: (n, num_classes)
    virtual void forward(const float* x, int n, float* logits) = 0;
    virtual std::string device() const = 0;
    virtual std::string isa() const = 0;
    virtual int threads() const = 0;
    virtual const Model& model() const = 0;
};

struct BlockTiming {
    std::string name, kind;
    double seconds = 0, flops = 0;  // per call over the whole batch
};

class CpuEngine : public Backend {
public:
    CpuEngine(std::shared_ptr<Model> m, int threads, const std::string& isa, int group = 0);
    void forward(const float* x, int n, float* logits) override;
    std::string device() const override { return "cpu"; }
    std::string isa() const override { return ref_ ? "ref" : K_->name; }
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
    bool ref_ = false;
    int threads_ = 1, group_ = 8;
    std::unique_ptr<ThreadPool> pool_;
    std::vector<Workspace> ws_;
};

// device: "cpu" (or "cuda" — unavailable in this build: throws std::invalid_argument)
std::unique_ptr<Backend> make_backend(const std::string& path, const std::string& device, int threads,
                                      const std::string& isa);
bool cuda_compiled();
// sanitizers this translation unit (the core library) was compiled with, from the compiler's own
// macros (+ PYFER_SANITIZE_UNDEFINED from CMake, UBSan has no macro): "" for an ordinary build,
// e.g. "address,undefined" or "thread". Reported by pyfer._engine.build_info()["sanitized"].
std::string core_sanitized();

// reference forward: plain loops, unfused, no packing (csrc/ref/ref_net.cpp)
std::vector<float> ref_forward(const Model& m, const float* x, int n);

}  // namespace pyfer
