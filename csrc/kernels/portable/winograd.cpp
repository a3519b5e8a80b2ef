// Winograd F(2x2,3x3) input/output transforms, portable build (see ../winograd.inc).
#include "../kernels.hpp"
#include "../tiles.hpp"

namespace pyfer::portable {
#include "../winograd.inc"
}  // namespace pyfer::portable
