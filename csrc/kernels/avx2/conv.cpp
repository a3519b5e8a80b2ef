// AVX2+FMA implicit-GEMM convolution micro-kernel (this file alone is compiled -mavx2 -mfma).
// Register tile: MR=6 pixels x NR=16 output channels = 12 ymm accumulators; per K step two
// aligned loads of the packed weight panel ([K][16]) and six broadcasts of input scalars, one
// per pixel, from the zero-padded NHWC input (tap offset + channel). 12 FMAs per 8 loads.
// Driver/epilogue: ../conv_driver.inc (the epilogue auto-vectorises under these flags).
#include <immintrin.h>

#include "../kernels.hpp"

namespace pyfer::avx2 {

template <int MR>
static void ukr(const float* const* a, const ptrdiff_t* toff, int taps, int cin, const float* b, float* tile) {
    __m256 c0[MR], c1[MR];
    for (int i = 0; i < MR; ++i) { c0[i] = _mm256_setzero_ps(); c1[i] = _mm256_setzero_ps(); }
    for (int t = 0; t < taps; ++t) {
        const float* ap[MR];
        for (int i = 0; i < MR; ++i) ap[i] = a[i] + toff[t];
        for (int k = 0; k < cin; ++k) {
            const __m256 b0 = _mm256_load_ps(b);
            const __m256 b1 = _mm256_load_ps(b + 8);
            b += NR;
            for (int i = 0; i < MR; ++i) {
                const __m256 av = _mm256_broadcast_ss(ap[i] + k);
                c0[i] = _mm256_fmadd_ps(av, b0, c0[i]);
                c1[i] = _mm256_fmadd_ps(av, b1, c1[i]);
            }
        }
    }
    for (int i = 0; i < MR; ++i) {
        _mm256_store_ps(tile + i * NR, c0[i]);
        _mm256_store_ps(tile + i * NR + 8, c1[i]);
    }
}

#include "../conv_driver.inc"

void conv(const PackedConv& w, const View& in, int n0, int n1, int oy0, int oy1, int ow, const Epilogue& ep) {
    conv_driver<6>(w, in, n0, n1, oy0, oy1, ow, ep);
}

}  // namespace pyfer::avx2
