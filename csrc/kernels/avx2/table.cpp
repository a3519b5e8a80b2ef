// Kernel table of the AVX2+FMA backend (compiled with -mavx2 -mfma; only called after CPUID).
#include "../kernels.hpp"

namespace pyfer {
PYFER_DECLARE_KERNELS(avx2)

bool compiled_avx2() { return true; }

const Kernels& kernels_avx2() { return avx2_table(); }

}  // namespace pyfer
