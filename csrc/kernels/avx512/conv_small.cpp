// AVX-512 direct small-cin convolution (the stem: cin 1 or 3, 3x3 or 7x7). Output channels are
// the vector dimension: a register tile of P consecutive output pixels x (NZ zmm + TY ymm)
// channel vectors, and per tap (ky, kx, ci) one weight load per vector, one broadcast per pixel
// (zmm and ymm broadcasts from memory: load-port work, the FMAs are the bound) and a FMA per accumulator.
// Channel blocks of up to 64: NZ full 16-channel zmm vectors, then the block's tail: a masked
// zmm for 9..15 channels, a masked ymm for 1..8 (Zen 4 splits a zmm op into two 256-bit halves,
// so the student's 24 channels are a zmm + a ymm: 3 halves of work instead of 4).
// 32 registers: up to 24 accumulators (P = 12 pixels x 2 vectors for the 24-channel stem), so
// each weight load is shared by 12 FMAs. Masked stores write exactly cout channels; masked loads
// read nothing past the packed row. Input zero padded by >= pad.
#include <immintrin.h>


#include "../kernels.hpp"
#include "../tiles.hpp"
#include "mask.hpp"

namespace pyfer::avx512 {

namespace {

// Accumulates tap t of a P x (NZ + TY) tile. The last zmm is masked by mz (all ones when full),
// the ymm by my.
template <int NZ, bool TY, int P>
static inline void tile(const float* ib, ptrdiff_t pstep, const ptrdiff_t* toff, int KK, const float* wp, int cp,
                        const float* bias, __mmask16 mz, __mmask8 my, float* o, ptrdiff_t ops, bool relu) {
    // zero-size arrays are not allowed: keep one slot even when NZ == 0 / !TY (never used then)
    constexpr int NZ1 = NZ > 0 ? NZ : 1;
    __m512 az[P][NZ1];
    __m256 ay[P];
#pragma GCC unroll 4
    for (int v = 0; v < NZ; ++v) {
        const __m512 b = _mm512_maskz_loadu_ps(v == NZ - 1 ? mz : __mmask16(0xFFFF), bias + 16 * v);
#pragma GCC unroll 12
        for (int p = 0; p < P; ++p) az[p][v] = b;
    }
    if (TY) {
        const __m256 b = _mm256_maskz_loadu_ps(my, bias + 16 * NZ);
#pragma GCC unroll 12
        for (int p = 0; p < P; ++p) ay[p] = b;
    }
    for (int t = 0; t < KK; ++t) {
        const float* wt = wp + size_t(t) * cp;
        __m512 wz[NZ1];
        __m256 wy = _mm256_setzero_ps();
#pragma GCC unroll 4
        for (int v = 0; v < NZ; ++v) wz[v] = _mm512_maskz_loadu_ps(v == NZ - 1 ? mz : __mmask16(0xFFFF), wt + 16 * v);
        if (TY) wy = _mm256_maskz_loadu_ps(my, wt + 16 * NZ);
        const float* a = ib + toff[t];
#pragma GCC unroll 12
        for (int p = 0; p < P; ++p) {
            if (NZ > 0) {
                const __m512 x = _mm512_set1_ps(a[p * pstep]);
#pragma GCC unroll 4
                for (int v = 0; v < NZ; ++v) az[p][v] = _mm512_fmadd_ps(x, wz[v], az[p][v]);
                if (TY) ay[p] = _mm256_fmadd_ps(_mm256_set1_ps(a[p * pstep]), wy, ay[p]);
            } else {
                ay[p] = _mm256_fmadd_ps(_mm256_set1_ps(a[p * pstep]), wy, ay[p]);
            }
        }
    }
    const __m512 zero = _mm512_setzero_ps();
#pragma GCC unroll 12
    for (int p = 0; p < P; ++p) {
        float* op = o + p * ops;
#pragma GCC unroll 4
        for (int v = 0; v < NZ; ++v) {
            __m512 r = az[p][v];
            if (relu) r = _mm512_maskz_max_ps(__mmask16(0xFFFF), zero, r);  // max(0, r), NaN propagates (maskz form: see dwconv.cpp)
            if (v == NZ - 1) _mm512_mask_storeu_ps(op + 16 * v, mz, r);
            else _mm512_storeu_ps(op + 16 * v, r);
        }
        if (TY) {
            __m256 r = ay[p];
            if (relu) r = _mm256_max_ps(_mm256_setzero_ps(), r);
            _mm256_mask_storeu_ps(op + 16 * NZ, my, r);
        }
    }
}

template <int NZ, bool TY, int P>
static void row(const float* ib, ptrdiff_t pstep, const ptrdiff_t* toff, int KK, const float* wp, int cp,
                const float* bias, __mmask16 mz, __mmask8 my, float* o, ptrdiff_t ops, int ow, bool relu) {
    int ox = 0;
    for (; ox + P <= ow; ox += P)
        tile<NZ, TY, P>(ib + ox * pstep, pstep, toff, KK, wp, cp, bias, mz, my, o + ox * ops, ops, relu);
    if (P > 4)
        for (; ox + 4 <= ow; ox += 4)
            tile<NZ, TY, 4>(ib + ox * pstep, pstep, toff, KK, wp, cp, bias, mz, my, o + ox * ops, ops, relu);
    for (; ox < ow; ++ox) tile<NZ, TY, 1>(ib + ox * pstep, pstep, toff, KK, wp, cp, bias, mz, my, o + ox * ops, ops, relu);
}

}  // namespace

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
            for (int c0 = 0; c0 < C; c0 += 64) {
                const int r = C - c0 < 64 ? C - c0 : 64;
                int nz = r / 16, rem = r % 16;
                bool ty = false;
                __mmask16 mz = 0xFFFF;
                __mmask8 my = 0;
                if (rem > 8) { ++nz; mz = first_lanes(rem); }
                else if (rem > 0) { ty = true; my = __mmask8((1u << rem) - 1u); }
                const float* wp = w.w.ptr + c0;
                const float* b = w.bias.ptr + c0;
                float* oc = o + c0;
                const ptrdiff_t ops = out.ps;
#define PYFER_ROW(NZ, TY, P) row<NZ, TY, P>(ib, pstep, toff, KK, wp, cp, b, mz, my, oc, ops, ow, relu)
                if (!ty) {
                    switch (nz) {
                        case 1: PYFER_ROW(1, false, 12); break;
                        case 2: PYFER_ROW(2, false, 12); break;
                        case 3: PYFER_ROW(3, false, 8); break;
                        default: PYFER_ROW(4, false, 6); break;
                    }
                } else {
                    switch (nz) {
                        case 0: PYFER_ROW(0, true, 12); break;
                        case 1: PYFER_ROW(1, true, 12); break;
                        case 2: PYFER_ROW(2, true, 8); break;
                        default: PYFER_ROW(3, true, 6); break;
                    }
                }
#undef PYFER_ROW
            }
        }
}

}  // namespace pyfer::avx512
