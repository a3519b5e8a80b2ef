// Entry points of the CUDA backend for the runtime (runtime/backend.hpp) and the Python binding.
// Only compiled when CMake enabled CUDA (target pyfer_cuda, which defines PYFER_HAVE_CUDA).
#pragma once
#include <memory>
#include <string>
#include <vector>

namespace pyfer {

class Backend;
struct Model;

// device: "cuda" or "cuda:N". Throws std::invalid_argument for a malformed device string or an
// index beyond the device count, std::runtime_error when no GPU is usable (no driver, no device)
// or CUDA fails; loads the model only once the device is known to be usable.
std::unique_ptr<Backend> make_cuda_backend(const std::string& path, const std::string& device);
// Registers make_cuda_backend as the "cuda" backend: make_backend(path, "cuda[:N]", ...).
void register_cuda_backend();
// The CUDA launch plan run by the CPU emulator (tests without a GPU).
std::vector<float> cuda_emulate_forward(const Model& m, const float* x, int n);
int cuda_device_count(std::string* why);
std::string cuda_compiled_archs();

}  // namespace pyfer
