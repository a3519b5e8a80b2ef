// AVX-512 fully connected layer: y[n][o] = b[o] + dot(x[n], W[o]), W row-major [out][in].
// Outputs in groups of up to 8: each 16-float chunk of x is loaded once and multiplied into the
// group's 8 weight rows (8 independent zmm accumulator chains: enough to cover the FMA latency,
// and x is read once per group instead of once per output). The in_f tail is one masked chunk
// (masked-off lanes load as zero, so no scalar tail and nothing read past a row). Each
// accumulator is reduced horizontally at the end.
#include <immintrin.h>

#include "../kernels.hpp"
#include "mask.hpp"

namespace pyfer::avx512 {

namespace {

// horizontal sum of 16 lanes (all-lanes maskz forms: GCC 12 gives the plain shuffles and
// _mm512_reduce_add_ps an undefined pass-through that trips -Wuninitialized)
static inline float hsum(__m512 v) {
    v = _mm512_add_ps(v, _mm512_maskz_shuffle_f32x4(0xFFFF, v, v, 0x4E));  // + other 256-bit half
    v = _mm512_add_ps(v, _mm512_maskz_shuffle_f32x4(0xFFFF, v, v, 0xB1));  // + neighbouring 128-bit lane
    v = _mm512_add_ps(v, _mm512_maskz_permute_ps(0xFFFF, v, 0x4E));        // + other 64-bit pair
    v = _mm512_add_ps(v, _mm512_maskz_permute_ps(0xFFFF, v, 0xB1));        // + neighbouring float
    return _mm512_cvtss_f32(v);
}

template <int OB>
static inline void group(const float* xr, int in_f, const float* w, const float* b, int o0, float* yr) {
    __m512 acc[OB];
#pragma GCC unroll 8
    for (int j = 0; j < OB; ++j) acc[j] = _mm512_setzero_ps();
    const float* wr = w + size_t(o0) * in_f;
    int i = 0;
    for (; i + 16 <= in_f; i += 16) {
        const __m512 x = _mm512_loadu_ps(xr + i);
#pragma GCC unroll 8
        for (int j = 0; j < OB; ++j) acc[j] = _mm512_fmadd_ps(x, _mm512_loadu_ps(wr + size_t(j) * in_f + i), acc[j]);
    }
    if (i < in_f) {
        const __mmask16 m = first_lanes(in_f - i);
        const __m512 x = _mm512_maskz_loadu_ps(m, xr + i);
#pragma GCC unroll 8
        for (int j = 0; j < OB; ++j)
            acc[j] = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(m, wr + size_t(j) * in_f + i), acc[j]);
    }
#pragma GCC unroll 8
    for (int j = 0; j < OB; ++j) yr[o0 + j] = hsum(acc[j]) + (b ? b[o0 + j] : 0.f);
}

}  // namespace

void linear(const float* x, int N, int in_f, const float* w, const float* b, int out_f, float* y) {
    for (int n = 0; n < N; ++n) {
        const float* xr = x + size_t(n) * in_f;
        float* yr = y + size_t(n) * out_f;
        int o = 0;
        for (; o + 8 <= out_f; o += 8) group<8>(xr, in_f, w, b, o, yr);
        if (o + 4 <= out_f) { group<4>(xr, in_f, w, b, o, yr); o += 4; }
        if (o + 2 <= out_f) { group<2>(xr, in_f, w, b, o, yr); o += 2; }
        if (o < out_f) group<1>(xr, in_f, w, b, o, yr);
    }
}

}  // namespace pyfer::avx512
