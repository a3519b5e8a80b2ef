// Non-x86 builds: no AVX2 or AVX-512 backend; the portable kernels are always used.
#include <stdexcept>

#include "kernels.hpp"

namespace pyfer {
bool compiled_avx2() { return false; }
bool compiled_avx512() { return false; }
const Kernels& kernels_avx2() { throw std::runtime_error("AVX2 kernels are not compiled in"); }
const Kernels& kernels_avx512() { throw std::runtime_error("AVX-512 kernels are not compiled in"); }
}  // namespace pyfer
