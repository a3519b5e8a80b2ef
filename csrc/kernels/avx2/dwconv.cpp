// AVX2+FMA depthwise 3x3 convolution (pad 1, stride 1 or 2) + bias (+ReLU), NHWC.
// Loop order: (n, oy) row, then 8-channel blocks, then output pixels of the row: the block's nine
// tap weight vectors and bias stay in registers while the row streams through (9 loads + 9 FMAs
// per 8 outputs). The last partial block uses a masked store (loads may read past the slice into
// the next pixel/slack, those lanes are discarded). Input zero padded by 1.
#include <immintrin.h>

#include "../kernels.hpp"
#include "tail.hpp"

namespace pyfer::avx2 {

void dw3x3(const PackedDW& w, const View& in, int n0, int n1, int oy0, int oy1, int ow, const View& out,
           bool relu) {
    const int s = w.stride, C = w.c, cp = w.cp;
    const ptrdiff_t rs = in.rs, ps = in.ps, sps = ps * s;
    const __m256 zero = _mm256_setzero_ps();
    for (int n = n0; n < n1; ++n)
        for (int oy = oy0; oy < oy1; ++oy) {
            const float* row = in.at(n, oy * s - 1, -1);
            for (int c = 0; c < C; c += 8) {
                __m256 wt[9];
                for (int t = 0; t < 9; ++t) wt[t] = _mm256_load_ps(w.w.ptr + t * cp + c);
                const __m256 bias = _mm256_load_ps(w.bias.ptr + c);
                const bool full = C - c >= 8;
                const float* ib = row + c;
                for (int ox = 0; ox < ow; ++ox, ib += sps) {
                    __m256 a0 = _mm256_fmadd_ps(_mm256_loadu_ps(ib), wt[0], bias);
                    __m256 a1 = _mm256_mul_ps(_mm256_loadu_ps(ib + ps), wt[1]);
                    __m256 a2 = _mm256_mul_ps(_mm256_loadu_ps(ib + 2 * ps), wt[2]);
                    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(ib + rs), wt[3], a0);
                    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(ib + rs + ps), wt[4], a1);
                    a2 = _mm256_fmadd_ps(_mm256_loadu_ps(ib + rs + 2 * ps), wt[5], a2);
                    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(ib + 2 * rs), wt[6], a0);
                    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(ib + 2 * rs + ps), wt[7], a1);
                    a2 = _mm256_fmadd_ps(_mm256_loadu_ps(ib + 2 * rs + 2 * ps), wt[8], a2);
                    __m256 acc = _mm256_add_ps(_mm256_add_ps(a0, a1), a2);
                    if (relu) acc = _mm256_max_ps(zero, acc);  // NaN in acc propagates
                    float* o = out.at(n, oy, ox) + c;
                    store_first(o, acc, full ? 8 : C - c);
                }
            }
        }
}

}  // namespace pyfer::avx2
