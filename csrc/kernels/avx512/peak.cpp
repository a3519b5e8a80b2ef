// Measured single-core fp32 FMA peak (AVX-512): 16 independent zmm accumulator chains, nothing
// but vfmadd231ps in the loop. 16 chains cover 2 FMA pipes x 4 cycles latency with room to spare,
// so a core with full-width 512-bit FMA units shows twice its AVX2 peak. (Zen 4 executes a zmm
// FMA as two 256-bit halves on its 256-bit units: there it measures about the AVX2 figure, which
// is the honest answer: AVX-512 does not add FLOPs on that core.) Returns GFLOP/s.
#include <immintrin.h>

#include <chrono>

#include "../kernels.hpp"

namespace pyfer::avx512 {

// horizontal sum of 16 lanes (all-lanes maskz forms: GCC 12 gives the plain shuffles and
// _mm512_reduce_add_ps an undefined pass-through that trips -Wuninitialized)
static inline float hsum(__m512 v) {
    v = _mm512_add_ps(v, _mm512_maskz_shuffle_f32x4(0xFFFF, v, v, 0x4E));  // + other 256-bit half
    v = _mm512_add_ps(v, _mm512_maskz_shuffle_f32x4(0xFFFF, v, v, 0xB1));  // + neighbouring 128-bit lane
    v = _mm512_add_ps(v, _mm512_maskz_permute_ps(0xFFFF, v, 0x4E));        // + other 64-bit pair
    v = _mm512_add_ps(v, _mm512_maskz_permute_ps(0xFFFF, v, 0xB1));        // + neighbouring float
    return _mm512_cvtss_f32(v);
}

double fma_peak(double seconds) {
    constexpr int CH = 16;
    __m512 acc[CH];
    for (int i = 0; i < CH; ++i) acc[i] = _mm512_set1_ps(float(i) * 1e-3f);
    const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    const long iters = 1 << 16;
    long total = 0;
    auto t0 = std::chrono::steady_clock::now();
    double el = 0;
    do {
        for (long it = 0; it < iters; ++it)
#pragma GCC unroll 16
            for (int i = 0; i < CH; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
        total += iters;
        el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    } while (el < seconds);
    __m512 s = acc[0];
    for (int i = 1; i < CH; ++i) s = _mm512_add_ps(s, acc[i]);
    volatile float sink = hsum(s);
    (void)sink;
    return double(total) * CH * 16 * 2 / el / 1e9;
}

}  // namespace pyfer::avx512
