// Non-x86 builds: no AVX2 or AVX-512 backend; the portable kernels are always used.
#include <stdexcept>

#include "kernels.hpp"

namespace pyfer {
const Kernels& avx2::kernels() { throw std::runtime_error("AVX2 kernels are not compiled in"); }
const Kernels& avx512::kernels() { throw std::runtime_error("AVX-512 kernels are not compiled in"); }
}  // namespace pyfer
