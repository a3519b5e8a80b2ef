// AVX2 pooling, NHWC: 3x3/2 max pool (pad 1) over non-negative zero-padded input (8 channels per
// vector, 9 loads + 8 max per vector, tail store on the channel tail); 2x2/2 max pool (no padding,
// 4 loads + 3 max per vector; the tail vector's loads may read past the channel slice into the
// next pixel or the buffer's slack, those lanes are not stored); global average pool (vector sums
// over pixels, channels innermost). NaN inputs propagate, as in PyTorch.
#include <immintrin.h>

#include "../kernels.hpp"
#include "tail.hpp"

namespace pyfer::avx2 {

void maxpool3s2(const View& in, int C, int n0, int n1, int oy0, int oy1, int ow, const View& out) {
    const ptrdiff_t rs = in.rs, ps = in.ps;
    for (int n = n0; n < n1; ++n)
        for (int oy = oy0; oy < oy1; ++oy)
            for (int ox = 0; ox < ow; ++ox) {
                const float* ib = in.at(n, 2 * oy - 1, 2 * ox - 1);
                float* o = out.at(n, oy, ox);
                for (int c = 0; c < C; c += 8) {
                    const float* q = ib + c;
                    __m256 m = _mm256_loadu_ps(q), nan = _mm256_cmp_ps(m, m, _CMP_UNORD_Q);
                    const ptrdiff_t offs[8] = {ps, 2 * ps, rs, rs + ps, rs + 2 * ps, 2 * rs, 2 * rs + ps, 2 * rs + 2 * ps};
                    for (int t = 0; t < 8; ++t) {
                        const __m256 v = _mm256_loadu_ps(q + offs[t]);
                        m = _mm256_max_ps(m, v);
                        nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
                    }
                    m = _mm256_or_ps(m, nan);  // NaN (all bits set) wherever an input was NaN
                    store_first(o + c, m, C - c);
                }
            }
}

void maxpool2s2(const View& in, int C, int n0, int n1, int oy0, int oy1, int ow, const View& out) {
    const ptrdiff_t rs = in.rs, ps = in.ps;
    for (int n = n0; n < n1; ++n)
        for (int oy = oy0; oy < oy1; ++oy) {
            const float* a = in.at(n, 2 * oy, 0);
            float* o = out.at(n, oy, 0);
            for (int ox = 0; ox < ow; ++ox, a += 2 * ps, o += out.ps)
                for (int c = 0; c < C; c += 8) {
                    const __m256 v0 = _mm256_loadu_ps(a + c), v1 = _mm256_loadu_ps(a + ps + c);
                    const __m256 v2 = _mm256_loadu_ps(a + rs + c), v3 = _mm256_loadu_ps(a + rs + ps + c);
                    __m256 m = _mm256_max_ps(_mm256_max_ps(v0, v1), _mm256_max_ps(v2, v3));
                    const __m256 nan = _mm256_or_ps(_mm256_cmp_ps(v0, v1, _CMP_UNORD_Q), _mm256_cmp_ps(v2, v3, _CMP_UNORD_Q));
                    m = _mm256_or_ps(m, nan);  // NaN (all bits set) wherever an input was NaN
                    store_first(o + c, m, C - c);
                }
        }
}

void avgpool(const View& in, int C, int N, int H, int W, float* out) {
    const float scale = 1.f / float(H * W);
    for (int n = 0; n < N; ++n) {
        float* o = out + size_t(n) * C;
        int c = 0;
        for (; c + 8 <= C; c += 8) {
            __m256 acc = _mm256_setzero_ps();
            for (int y = 0; y < H; ++y)
                for (int x = 0; x < W; ++x) acc = _mm256_add_ps(acc, _mm256_loadu_ps(in.at(n, y, x) + c));
            _mm256_storeu_ps(o + c, _mm256_mul_ps(acc, _mm256_set1_ps(scale)));
        }
        for (; c < C; ++c) {
            float acc = 0.f;
            for (int y = 0; y < H; ++y)
                for (int x = 0; x < W; ++x) acc += in.at(n, y, x)[c];
            o[c] = acc * scale;
        }
    }
}

}  // namespace pyfer::avx2
