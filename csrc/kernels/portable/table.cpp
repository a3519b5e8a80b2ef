// Kernel table of the portable backend.
#include "../kernels.hpp"

namespace pyfer::portable {

const Kernels& kernels() {
    static const Kernels table = PYFER_KERNEL_TABLE(portable);
    return table;
}

}  // namespace pyfer::portable
