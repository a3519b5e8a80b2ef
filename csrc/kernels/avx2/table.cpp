// Kernel table of the AVX2+FMA backend (compiled with -mavx2 -mfma; only called after CPUID).
#include "../kernels.hpp"

namespace pyfer::avx2 {

const Kernels& kernels() {
    static const Kernels table = PYFER_KERNEL_TABLE(avx2);
    return table;
}

}  // namespace pyfer::avx2
