// Winograd F(2x2,3x3) input/output transforms, AVX-512 (semantics: ../winograd.inc). Channels in
// 16-wide zmm blocks; the channel tail (C % 16) is one masked block, a zmm for 9..15 channels, a
// ymm for 1..8 (half the work on Zen 4's 256-bit units). Masked loads / stores, so nothing
// outside [0, cin) / [0, cout) of a pixel or tile row is touched. Per block, wino_in keeps the
// 16 input vectors' row transforms in registers (16 + 4 of the 32) and writes the 16 elements;
// wino_out reduces the 16 M vectors to the 2x2 outputs in registers, then runs the epilogue
// per valid output pixel.
#include <immintrin.h>

#include "../kernels.hpp"
#include "../tiles.hpp"
#include "vec.hpp"

namespace pyfer::avx512 {

namespace {

template <class V, bool MASK>
static inline void in_block(const float* const* d, int c, typename V::M m, float* o, size_t es) {
    using T = typename V::T;
    T s[16];
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) {  // B^T d
        T x[4];
#pragma GCC unroll 4
        for (int r = 0; r < 4; ++r) x[r] = V::template load<MASK>(d[r * 4 + q] + c, m);
        s[q] = V::sub(x[0], x[2]);
        s[4 + q] = V::add(x[1], x[2]);
        s[8 + q] = V::sub(x[2], x[1]);
        s[12 + q] = V::sub(x[1], x[3]);
    }
#pragma GCC unroll 4
    for (int r = 0; r < 4; ++r) {  // (B^T d) B
        const T a0 = s[4 * r], a1 = s[4 * r + 1], a2 = s[4 * r + 2], a3 = s[4 * r + 3];
        float* p = o + size_t(4 * r) * es + c;
        V::template store<MASK>(p, V::sub(a0, a2), m);
        V::template store<MASK>(p + es, V::add(a1, a2), m);
        V::template store<MASK>(p + 2 * es, V::sub(a2, a1), m);
        V::template store<MASK>(p + 3 * es, V::sub(a1, a3), m);
    }
}

template <class V, bool MASK>
static inline void out_block(const float* mb, size_t es, const float* bias, int c, typename V::M m, const Epilogue& ep,
                             int img, int ty, int tx, int H, int W) {
    using T = typename V::T;
    T s[8];
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) {  // A^T m
        T x[4];
#pragma GCC unroll 4
        for (int r = 0; r < 4; ++r) x[r] = V::template load<MASK>(mb + size_t(4 * r + q) * es + c, m);
        s[q] = V::add(V::add(x[0], x[1]), x[2]);
        s[4 + q] = V::sub(V::sub(x[1], x[2]), x[3]);
    }
    const T b = V::template load<MASK>(bias + c, m);
    T y[4];
    y[0] = V::add(V::add(V::add(s[0], s[1]), s[2]), b);
    y[1] = V::add(V::sub(V::sub(s[1], s[2]), s[3]), b);
    y[2] = V::add(V::add(V::add(s[4], s[5]), s[6]), b);
    y[3] = V::add(V::sub(V::sub(s[5], s[6]), s[7]), b);
    for (int p = 0; p < 4; ++p) {
        const int oy = 2 * ty + (p >> 1), ox = 2 * tx + (p & 1);
        if (oy >= H || ox >= W) continue;
        T v = y[p];
        if (ep.res) v = V::add(v, V::template load<MASK>(ep.res.at(img, oy, ox) + c, m));
        if (ep.relu) v = V::relu(v);
        if (ep.out) {
            float* o = ep.out.at(img, oy, ox) + c;
            V::template store<MASK>(o, ep.accumulate ? V::add(V::template load<MASK>(o, m), v) : v, m);
        }
        if (ep.out2)
            V::template store<MASK>(ep.out2.at(img, oy, ox) + c,
                                    V::add(v, V::template load<MASK>(ep.src2.at(img, oy, ox) + c, m)), m);
    }
}

}  // namespace

void wino_in(const View& in, int H, int W, int th, int tw, int t0, int t1, int cin, float* V, size_t es) {
    const float* zero = wino_zeros(cin);
    const int cfull = cin / 16 * 16, rem = cin - cfull;
    const __mmask16 mz = first_lanes(rem);
    const __mmask8 my = __mmask8((1u << (rem > 8 ? 8 : rem)) - 1u);
    for (int t = t0; t < t1; ++t) {
        const float* d[16];
        wino_patch(in, H, W, t, th, tw, zero, d);
        float* o = V + size_t(t - t0) * cin;
        for (int c = 0; c < cfull; c += 16) in_block<Z, false>(d, c, mz, o, es);
        if (rem > 8) in_block<Z, true>(d, cfull, mz, o, es);
        else if (rem > 0) in_block<Y, true>(d, cfull, my, o, es);
    }
}

void wino_out(const float* M, size_t es, int cout, const float* bias, int H, int W, int th, int tw, int t0, int t1,
              const Epilogue& ep) {
    const int cfull = cout / 16 * 16, rem = cout - cfull;
    const __mmask16 mz = first_lanes(rem);
    const __mmask8 my = __mmask8((1u << (rem > 8 ? 8 : rem)) - 1u);
    for (int t = t0; t < t1; ++t) {
        int img, ty, tx;
        wino_tile_pos(t, th, tw, img, ty, tx);
        const float* mb = M + size_t(t - t0) * cout;
        for (int c = 0; c < cfull; c += 16) out_block<Z, false>(mb, es, bias, c, mz, ep, img, ty, tx, H, W);
        if (rem > 8) out_block<Z, true>(mb, es, bias, cfull, mz, ep, img, ty, tx, H, W);
        else if (rem > 0) out_block<Y, true>(mb, es, bias, cfull, my, ep, img, ty, tx, H, W);
    }
}

}  // namespace pyfer::avx512
