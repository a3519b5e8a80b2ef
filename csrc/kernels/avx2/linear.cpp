// AVX2+FMA fully connected layer: y[n][o] = b[o] + dot(x[n], W[o]); dot products with two
// independent 8-wide FMA accumulators, horizontal sum, scalar tail. W row-major [out][in].
#include <immintrin.h>

#include "../kernels.hpp"

namespace pyfer::avx2 {

void linear(const float* x, int N, int in_f, const float* w, const float* b, int out_f, float* y) {
    for (int n = 0; n < N; ++n)
        for (int o = 0; o < out_f; ++o) {
            const float* wr = w + size_t(o) * in_f;
            const float* xr = x + size_t(n) * in_f;
            __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
            int i = 0;
            for (; i + 16 <= in_f; i += 16) {
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(xr + i), _mm256_loadu_ps(wr + i), a0);
                a1 = _mm256_fmadd_ps(_mm256_loadu_ps(xr + i + 8), _mm256_loadu_ps(wr + i + 8), a1);
            }
            a0 = _mm256_add_ps(a0, a1);
            __m128 s = _mm_add_ps(_mm256_castps256_ps128(a0), _mm256_extractf128_ps(a0, 1));
            s = _mm_hadd_ps(s, s);
            s = _mm_hadd_ps(s, s);
            float acc = _mm_cvtss_f32(s);
            for (; i < in_f; ++i) acc += xr[i] * wr[i];
            y[size_t(n) * out_f + o] = acc + (b ? b[o] : 0.f);
        }
}

}  // namespace pyfer::avx2
