// Kernel table of the portable backend.
#include "../kernels.hpp"

namespace pyfer {

const Kernels& kernels_portable() {
    static const Kernels table = PYFER_KERNEL_TABLE(portable);
    return table;
}

}  // namespace pyfer
