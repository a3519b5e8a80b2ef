// The CUDA runner: owns the device copy of the weights, the activation arena, pinned host
// staging buffers, a stream and one CUDA graph per batch size. Compiled by nvcc (runner.cu);
// this header is plain C++ so backend.cpp (g++) can use it.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "net.hpp"

namespace pyfer::cuda {

class Runner {
public:
    virtual ~Runner() = default;
    // x: NCHW float32 (n, in_channels, S, S) in host memory; logits: (n, num_classes)
    virtual void forward(const float* x, int n, float* logits) = 0;
    virtual std::string describe() const = 0;  // e.g. "cuda sm_90 NVIDIA H200"
};

// Number of usable CUDA devices; 0 (and *why filled) when there is no driver / no GPU. Never
// throws. This is the first CUDA runtime call pyfer makes (nothing runs at import time).
int device_count(std::string* why = nullptr);

// Throws std::runtime_error on CUDA failures (with the CUDA error text).
std::unique_ptr<Runner> make_runner(const Net& net, int device);

// Runs the same launch plan (descriptors, weight layouts, index math of every kernel) on the
// CPU with plain loops. Used by the tests to check the CUDA backend's logic without a GPU.
std::vector<float> emulate(const Net& net, const float* x, int n);

// Compiled architecture list (CMake's CUDA_ARCHITECTURES), for build_info / docs.
std::string compiled_archs();

}  // namespace pyfer::cuda
