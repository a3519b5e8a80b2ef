// Measured single-core fp32 FMA peak (AVX2): 12 independent ymm accumulator chains (enough to
// cover FMA latency x throughput), nothing but vfmadd in the loop. Returns GFLOP/s.
#include <immintrin.h>

#include <chrono>

#include "../kernels.hpp"

namespace pyfer::avx2 {

double fma_peak(double seconds) {
    __m256 acc[12];
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(float(i) * 1e-3f);
    const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    const long iters = 1 << 16;
    long total = 0;
    auto t0 = std::chrono::steady_clock::now();
    double el = 0;
    do {
        for (long it = 0; it < iters; ++it)
            for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
        total += iters;
        el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    } while (el < seconds);
    __m256 s = acc[0];
    for (int i = 1; i < 12; ++i) s = _mm256_add_ps(s, acc[i]);
    volatile float sink = _mm256_cvtss_f32(s);
    (void)sink;
    return double(total) * 12 * 8 * 2 / el / 1e9;
}

}  // namespace pyfer::avx2
