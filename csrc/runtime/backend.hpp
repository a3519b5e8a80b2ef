// The runtime's view of a backend (after ggml-backend): one interface, a registry of factories
// by name, and make_backend, which picks one for a device / isa request.
//
//   "cpu"  built in: CpuEngine (runtime/engine.hpp), the fused blocks on the kernel table chosen
//          at run time (avx2 / portable)
//   "ref"  registered by csrc/ref (register_ref_backend): the plain-loop reference, isa="ref"
//   "cuda" registered by csrc/cuda (register_cuda_backend) in CUDA builds: device "cuda[:N]"
//
// The layers above the runtime (ref, cuda) register themselves; whoever assembles the program
// (the Python module, csrc/python/bindings.cpp) calls their register functions once. Until then
// a request for them is refused with a clear error, as in a build without them.
#pragma once
#include <memory>
#include <string>

#include "../core/model.hpp"

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

// (weights path, device, threads, isa) -> a ready backend; throws FileNotFound / FormatError /
// std::invalid_argument / std::runtime_error
using BackendFactory = std::unique_ptr<Backend> (*)(const std::string& path, const std::string& device, int threads,
                                                    const std::string& isa);
void register_backend(const std::string& name, BackendFactory factory);  // replaces an earlier one
bool backend_registered(const std::string& name);

// device: "cpu" (isa auto / avx2 / portable: CpuEngine; isa "ref": the "ref" backend) or "cuda" /
// "cuda:N" (the "cuda" backend; std::invalid_argument where none is registered: a CPU-only build)
std::unique_ptr<Backend> make_backend(const std::string& path, const std::string& device, int threads,
                                      const std::string& isa);

// sanitizers this library was compiled with, from the compiler's own macros (+
// PYFER_SANITIZE_UNDEFINED from CMake, UBSan has no macro): "" for an ordinary build, e.g.
// "address,undefined" or "thread". Reported by pyfer._engine.build_info()["sanitized"].
std::string core_sanitized();

}  // namespace pyfer
