// AVX2+FMA direct small-cin convolution (stem: cin 1 or 3, 3x3 or 7x7). Output channels are the
// vector dimension: a register tile of P consecutive output pixels x V 8-channel vectors
// (V*P <= 12 accumulators), and per tap (ky, kx, ci) V weight loads + P broadcasts + V*P FMAs.
// Channel blocks of up to 32; the last vector of the last block uses a masked store, so exactly
// cout channels are written. Input zero padded by >= pad.
#include <immintrin.h>

#include "../kernels.hpp"
#include "../tiles.hpp"
#include "tail.hpp"

namespace pyfer::avx2 {

template <int V, int P>
static inline void tile(const float* ib, ptrdiff_t pstep, const ptrdiff_t* toff, int KK, const float* wp, int cp,
                        const float* bias, float* o, ptrdiff_t ops, int nlast, bool relu) {
    // (the unroll pragmas keep the accumulators in registers: without them GCC 12 kept acc in a
    // stack array, a store per FMA, and the stem ran at 40% of the FMA units' rate)
    __m256 acc[P][V];
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) {
        const __m256 b = _mm256_load_ps(bias + 8 * v);
#pragma GCC unroll 8
        for (int p = 0; p < P; ++p) acc[p][v] = b;
    }
    for (int t = 0; t < KK; ++t) {
        __m256 wv[V];
#pragma GCC unroll 4
        for (int v = 0; v < V; ++v) wv[v] = _mm256_load_ps(wp + size_t(t) * cp + 8 * v);
        const float* a = ib + toff[t];
#pragma GCC unroll 8
        for (int p = 0; p < P; ++p) {
            const __m256 x = _mm256_broadcast_ss(a + p * pstep);
#pragma GCC unroll 4
            for (int v = 0; v < V; ++v) acc[p][v] = _mm256_fmadd_ps(x, wv[v], acc[p][v]);
        }
    }
    const __m256 zero = _mm256_setzero_ps();
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p) {
        float* op = o + p * ops;
#pragma GCC unroll 4
        for (int v = 0; v < V; ++v) {
            __m256 r = acc[p][v];
            if (relu) r = _mm256_max_ps(zero, r);  // NaN propagates
            store_first(op + 8 * v, r, v < V - 1 ? 8 : nlast);
        }
    }
}

template <int V, int P>
static void row(const float* ib, ptrdiff_t pstep, const ptrdiff_t* toff, int KK, const float* wp, int cp,
                const float* bias, float* o, ptrdiff_t ops, int ow, int nlast, bool relu) {
    int ox = 0;
    for (; ox + P <= ow; ox += P) tile<V, P>(ib + ox * pstep, pstep, toff, KK, wp, cp, bias, o + ox * ops, ops, nlast, relu);
    for (; ox < ow; ++ox) tile<V, 1>(ib + ox * pstep, pstep, toff, KK, wp, cp, bias, o + ox * ops, ops, nlast, relu);
}

void conv_small(const PackedSmall& w, const View& in, int n0, int n1, int oy0, int oy1, int ow, const View& out,
                bool relu) {
    const int s = w.stride, pad = w.pad, C = w.cout, cp = w.cp;
    const SmallConvTaps taps(w, in);
    const ptrdiff_t* toff = taps.data();
    const int KK = taps.size();
    const ptrdiff_t pstep = ptrdiff_t(s) * in.ps;
    for (int n = n0; n < n1; ++n)
        for (int oy = oy0; oy < oy1; ++oy) {
            const float* ib = in.at(n, oy * s - pad, -pad);
            float* o = out.at(n, oy, 0);
            for (int c0 = 0; c0 < C; c0 += 32) {
                const int nvec = (C - c0 + 7) / 8 < 4 ? (C - c0 + 7) / 8 : 4;
                const int nlast = C - c0 - 8 * (nvec - 1) < 8 ? C - c0 - 8 * (nvec - 1) : 8;
                const float* wp = w.w.ptr + c0;
                const float* b = w.bias.ptr + c0;
                switch (nvec) {
                    case 1: row<1, 8>(ib, pstep, toff, KK, wp, cp, b, o + c0, out.ps, ow, nlast, relu); break;
                    case 2: row<2, 6>(ib, pstep, toff, KK, wp, cp, b, o + c0, out.ps, ow, nlast, relu); break;
                    case 3: row<3, 4>(ib, pstep, toff, KK, wp, cp, b, o + c0, out.ps, ow, nlast, relu); break;
                    default: row<4, 3>(ib, pstep, toff, KK, wp, cp, b, o + c0, out.ps, ow, nlast, relu); break;
                }
            }
        }
}

}  // namespace pyfer::avx2
