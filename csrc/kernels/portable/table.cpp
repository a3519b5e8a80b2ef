// Kernel table of the portable backend.
#include "../kernels.hpp"

namespace pyfer {
PYFER_DECLARE_KERNELS(portable)

const Kernels& kernels_portable() { return portable_table(); }

}  // namespace pyfer
