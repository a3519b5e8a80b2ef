// AVX2+FMA depthwise 3x3 convolution (pad 1, stride 1 or 2) + bias (+ReLU), NHWC.
// Loop order: 8-channel block, then output row, then output pixels in sixes (maps >= 12 wide)
// or quads, then a pair and a single for the rest. The block's nine tap weight vectors live in
// registers for the whole call (the bias too, except in the six-pixel step, which reads it from
// memory); the input is addressed as three row pointers plus multiples of the pixel stride (x86
// scaled-index addressing where it reaches), so no offset table spills. One accumulator per
// output; the sum runs in tap order (ky, kx) starting from the bias, a chain of 9 dependent FMAs,
// so the sixes and quads keep six or four chains in flight (a pair's two chains left the FMA
// units half idle on wide maps with few channels, YuNet's). A pixel pair shares its overlapping
// input columns: per row, 4 (stride 1) or 5 (stride 2) loads feed the 6 FMAs of both outputs.
// The channel tail (C % 8) is written with tail stores; its loads may read past the slice into
// the next pixel / buffer slack, and those lanes are discarded. Input zero padded by 1.
#include <immintrin.h>

#include "../kernels.hpp"
#include "tail.hpp"

namespace pyfer::avx2 {

namespace {

struct Taps {
    __m256 w[9], bias;
};

// One output pixel: columns at x0, x0 + ps, x0 + 2*ps of rows r0..r2 (byte offsets from r).
static inline __m256 one(const Taps& t, const float* r0, const float* r1, const float* r2, ptrdiff_t ps) {
    __m256 a = _mm256_fmadd_ps(_mm256_loadu_ps(r0), t.w[0], t.bias);
    a = _mm256_fmadd_ps(_mm256_loadu_ps(r0 + ps), t.w[1], a);
    a = _mm256_fmadd_ps(_mm256_loadu_ps(r0 + 2 * ps), t.w[2], a);
    a = _mm256_fmadd_ps(_mm256_loadu_ps(r1), t.w[3], a);
    a = _mm256_fmadd_ps(_mm256_loadu_ps(r1 + ps), t.w[4], a);
    a = _mm256_fmadd_ps(_mm256_loadu_ps(r1 + 2 * ps), t.w[5], a);
    a = _mm256_fmadd_ps(_mm256_loadu_ps(r2), t.w[6], a);
    a = _mm256_fmadd_ps(_mm256_loadu_ps(r2 + ps), t.w[7], a);
    return _mm256_fmadd_ps(_mm256_loadu_ps(r2 + 2 * ps), t.w[8], a);
}

// Two adjacent output pixels (stride S): pixel 0 reads columns 0..2, pixel 1 columns S..S+2.
template <int S>
static inline void pair_row(const Taps& t, int ky, const float* r, ptrdiff_t ps, __m256& a0, __m256& a1) {
    const __m256 w0 = t.w[3 * ky], w1 = t.w[3 * ky + 1], w2 = t.w[3 * ky + 2];
    const __m256 x0 = _mm256_loadu_ps(r), x1 = _mm256_loadu_ps(r + ps), x2 = _mm256_loadu_ps(r + 2 * ps);
    a0 = _mm256_fmadd_ps(x0, w0, a0);
    a0 = _mm256_fmadd_ps(x1, w1, a0);
    a0 = _mm256_fmadd_ps(x2, w2, a0);
    const __m256 x3 = _mm256_loadu_ps(r + 3 * ps);
    if constexpr (S == 1) {
        a1 = _mm256_fmadd_ps(x1, w0, a1);
        a1 = _mm256_fmadd_ps(x2, w1, a1);
        a1 = _mm256_fmadd_ps(x3, w2, a1);
    } else {
        a1 = _mm256_fmadd_ps(x2, w0, a1);
        a1 = _mm256_fmadd_ps(x3, w1, a1);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(r + 4 * ps), w2, a1);
    }
}

// P adjacent output pixels (stride S), tap by tap: P independent FMAs per tap, each reading its
// input column straight from memory (a memory operand: no register for it). P = 6 on wide maps:
// with an FMA latency of 4 cycles and two FMA units, 4 chains keep the units only half busy;
// 6 accumulators + 9 tap weights are 15 of the 16 ymm registers (the bias is read from memory).
template <int S, int P>
static inline void run(const Taps& t, const float* r0, const float* r1, const float* r2, ptrdiff_t ps, __m256 a[P]) {
#pragma GCC unroll 6
    for (int p = 0; p < P; ++p) a[p] = t.bias;
    const float* rows[3] = {r0, r1, r2};
#pragma GCC unroll 3
    for (int ky = 0; ky < 3; ++ky)
#pragma GCC unroll 3
        for (int kx = 0; kx < 3; ++kx)
#pragma GCC unroll 6
            for (int p = 0; p < P; ++p)
                a[p] = _mm256_fmadd_ps(_mm256_loadu_ps(rows[ky] + (p * S + kx) * ps), t.w[3 * ky + kx], a[p]);
}

template <int S, bool RELU>
static void block_rows(const Taps& t, const View& in, int n, int oy0, int oy1, int ow, int c, float* obase,
                       ptrdiff_t ors, ptrdiff_t ops, int nv) {
    const ptrdiff_t ps = in.ps;
    const __m256 zero = _mm256_setzero_ps();
    for (int oy = oy0; oy < oy1; ++oy) {
        const float* r0 = in.at(n, oy * S - 1, -1) + c;
        const float* r1 = r0 + in.rs;
        const float* r2 = r1 + in.rs;
        float* o = obase + oy * ors + c;
        int ox = 0;
        if (ow >= 12)  // (narrower maps, the student's 8 / 4 wide ones, stay in quads: 8 = 4 + 4, not 6 + 2)
            for (; ox + 6 <= ow; ox += 6, r0 += 6 * S * ps, r1 += 6 * S * ps, r2 += 6 * S * ps, o += 6 * ops) {
                __m256 a[6];
                run<S, 6>(t, r0, r1, r2, ps, a);
#pragma GCC unroll 6
                for (int p = 0; p < 6; ++p) store_first(o + p * ops, RELU ? _mm256_max_ps(zero, a[p]) : a[p], nv);
            }
        for (; ox + 4 <= ow; ox += 4, r0 += 4 * S * ps, r1 += 4 * S * ps, r2 += 4 * S * ps, o += 4 * ops) {
            __m256 a[4];
            run<S, 4>(t, r0, r1, r2, ps, a);
            for (int p = 0; p < 4; ++p) store_first(o + p * ops, RELU ? _mm256_max_ps(zero, a[p]) : a[p], nv);
        }
        for (; ox + 2 <= ow; ox += 2, r0 += 2 * S * ps, r1 += 2 * S * ps, r2 += 2 * S * ps, o += 2 * ops) {
            __m256 a0 = t.bias, a1 = t.bias;
            pair_row<S>(t, 0, r0, ps, a0, a1);
            pair_row<S>(t, 1, r1, ps, a0, a1);
            pair_row<S>(t, 2, r2, ps, a0, a1);
            if (RELU) {  // NaN propagates
                a0 = _mm256_max_ps(zero, a0);
                a1 = _mm256_max_ps(zero, a1);
            }
            store_first(o, a0, nv);
            store_first(o + ops, a1, nv);
        }
        if (ox < ow) {
            __m256 a = one(t, r0, r1, r2, ps);
            if (RELU) a = _mm256_max_ps(zero, a);
            store_first(o, a, nv);
        }
    }
}

}  // namespace

void dw3x3(const PackedDW& w, const View& in, int n0, int n1, int oy0, int oy1, int ow, const View& out,
           bool relu) {
    const int s = w.stride, C = w.c, cp = w.cp;
    for (int n = n0; n < n1; ++n) {
        float* obase = out.at(n, 0, 0);
        for (int c = 0; c < C; c += 8) {
            Taps t;
            for (int k = 0; k < 9; ++k) t.w[k] = _mm256_load_ps(w.w.ptr + k * cp + c);
            t.bias = _mm256_load_ps(w.bias.ptr + c);
            const int nv = C - c < 8 ? C - c : 8;
            if (s == 1) {
                if (relu) block_rows<1, true>(t, in, n, oy0, oy1, ow, c, obase, out.rs, out.ps, nv);
                else block_rows<1, false>(t, in, n, oy0, oy1, ow, c, obase, out.rs, out.ps, nv);
            } else {
                if (relu) block_rows<2, true>(t, in, n, oy0, oy1, ow, c, obase, out.rs, out.ps, nv);
                else block_rows<2, false>(t, in, n, oy0, oy1, ow, c, obase, out.rs, out.ps, nv);
            }
        }
    }
}

}  // namespace pyfer::avx2
