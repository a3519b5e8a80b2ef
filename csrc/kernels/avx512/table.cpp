// Kernel table of the AVX-512 backend (compiled with -mavx512f -mavx512bw -mavx512dq -mavx512vl
// -mavx2 -mfma: the x86-64-v4 set, nothing newer; only called after cpu_has_avx512()).
#include "../kernels.hpp"

namespace pyfer::avx512 {

const Kernels& kernels() {
    static const Kernels table = PYFER_KERNEL_TABLE(avx512);
    return table;
}

}  // namespace pyfer::avx512
