// Winograd F(2x2,3x3) input/output transforms, AVX2+FMA (semantics: ../winograd.inc): 8 channels
// per vector, the channel tail with masked loads/stores (so nothing outside [0, cin) / [0, cout)
// of a pixel or tile row is touched).
#include <immintrin.h>

#include "../kernels.hpp"
#include "../tiles.hpp"
#include "tail.hpp"

namespace pyfer::avx2 {

template <bool TAIL>
static inline void in_block(const float* const* d, int c, __m256i m, float* o, size_t es) {
    __m256 s[16];
    for (int q = 0; q < 4; ++q) {  // B^T d
        __m256 x[4];
        for (int r = 0; r < 4; ++r)
            x[r] = TAIL ? _mm256_maskload_ps(d[r * 4 + q] + c, m) : _mm256_loadu_ps(d[r * 4 + q] + c);
        s[q] = _mm256_sub_ps(x[0], x[2]);
        s[4 + q] = _mm256_add_ps(x[1], x[2]);
        s[8 + q] = _mm256_sub_ps(x[2], x[1]);
        s[12 + q] = _mm256_sub_ps(x[1], x[3]);
    }
    for (int r = 0; r < 4; ++r) {  // (B^T d) B
        const __m256 a0 = s[4 * r], a1 = s[4 * r + 1], a2 = s[4 * r + 2], a3 = s[4 * r + 3];
        const __m256 v[4] = {_mm256_sub_ps(a0, a2), _mm256_add_ps(a1, a2), _mm256_sub_ps(a2, a1), _mm256_sub_ps(a1, a3)};
        for (int q = 0; q < 4; ++q) {
            float* p = o + size_t(4 * r + q) * es + c;
            if (TAIL) _mm256_maskstore_ps(p, m, v[q]);
            else _mm256_storeu_ps(p, v[q]);
        }
    }
}

void wino_in(const View& in, int H, int W, int th, int tw, int t0, int t1, int cin, float* V, size_t es) {
    const float* zero = wino_zeros(cin);
    const int cfull = cin / 8 * 8;
    const __m256i m = first_lanes(cin - cfull);
    for (int t = t0; t < t1; ++t) {
        const float* d[16];
        wino_patch(in, H, W, t, th, tw, zero, d);
        float* o = V + size_t(t - t0) * cin;
        for (int c = 0; c < cfull; c += 8) in_block<false>(d, c, m, o, es);
        if (cfull < cin) in_block<true>(d, cfull, m, o, es);
    }
}

template <bool TAIL>
static inline void out_block(const float* mb, size_t es, const float* bias, int c, __m256i m, const Epilogue& ep,
                             int img, int ty, int tx, int H, int W) {
    __m256 s[8];
    for (int q = 0; q < 4; ++q) {  // A^T m
        __m256 x[4];
        for (int r = 0; r < 4; ++r) {
            const float* p = mb + size_t(4 * r + q) * es + c;
            x[r] = TAIL ? _mm256_maskload_ps(p, m) : _mm256_loadu_ps(p);
        }
        s[q] = _mm256_add_ps(_mm256_add_ps(x[0], x[1]), x[2]);
        s[4 + q] = _mm256_sub_ps(_mm256_sub_ps(x[1], x[2]), x[3]);
    }
    const __m256 b = TAIL ? _mm256_maskload_ps(bias + c, m) : _mm256_loadu_ps(bias + c);
    __m256 y[4];
    y[0] = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(s[0], s[1]), s[2]), b);
    y[1] = _mm256_add_ps(_mm256_sub_ps(_mm256_sub_ps(s[1], s[2]), s[3]), b);
    y[2] = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(s[4], s[5]), s[6]), b);
    y[3] = _mm256_add_ps(_mm256_sub_ps(_mm256_sub_ps(s[5], s[6]), s[7]), b);
    const __m256 zero = _mm256_setzero_ps();
    for (int p = 0; p < 4; ++p) {
        const int oy = 2 * ty + (p >> 1), ox = 2 * tx + (p & 1);
        if (oy >= H || ox >= W) continue;
        __m256 v = y[p];
        auto ld = [&](const float* q) { return TAIL ? _mm256_maskload_ps(q, m) : _mm256_loadu_ps(q); };
        auto st = [&](float* q, __m256 x) {
            if (TAIL) _mm256_maskstore_ps(q, m, x);
            else _mm256_storeu_ps(q, x);
        };
        if (ep.res) v = _mm256_add_ps(v, ld(ep.res.at(img, oy, ox) + c));
        if (ep.relu) v = _mm256_max_ps(zero, v);  // NaN propagates
        if (ep.out) {
            float* o = ep.out.at(img, oy, ox) + c;
            st(o, ep.accumulate ? _mm256_add_ps(ld(o), v) : v);
        }
        if (ep.out2) st(ep.out2.at(img, oy, ox) + c, _mm256_add_ps(v, ld(ep.src2.at(img, oy, ox) + c)));
    }
}

void wino_out(const float* M, size_t es, int cout, const float* bias, int H, int W, int th, int tw, int t0, int t1,
              const Epilogue& ep) {
    const int cfull = cout / 8 * 8;
    const __m256i m = first_lanes(cout - cfull);
    for (int t = t0; t < t1; ++t) {
        int img, ty, tx;
        wino_tile_pos(t, th, tw, img, ty, tx);
        const float* mb = M + size_t(t - t0) * cout;
        for (int c = 0; c < cfull; c += 8) out_block<false>(mb, es, bias, c, m, ep, img, ty, tx, H, W);
        if (cfull < cout) out_block<true>(mb, es, bias, cfull, m, ep, img, ty, tx, H, W);
    }
}

}  // namespace pyfer::avx2
