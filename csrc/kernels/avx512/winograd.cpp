// PLACEHOLDER (being replaced): forwards to the AVX2 kernel until the AVX-512 one lands.
#include "../kernels.hpp"

namespace pyfer {
PYFER_DECLARE_KERNELS(avx2)
}

namespace pyfer::avx512 {
void wino_in(const View& in, int H, int W, int th, int tw, int t0, int t1, int cin, float* V, size_t es) { avx2::wino_in(in, H, W, th, tw, t0, t1, cin, V, es); }
void wino_out(const float* M, size_t es, int cout, const float* bias, int H, int W, int th, int tw, int t0, int t1, const Epilogue& ep) { avx2::wino_out(M, es, cout, bias, H, W, th, tw, t0, t1, ep); }
}  // namespace pyfer::avx512
