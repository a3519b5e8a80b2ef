// AVX-512 implicit-GEMM convolution micro-kernel (this file alone is compiled with the x86-64-v4
// flags: AVX512 F/BW/DQ/VL + AVX2/FMA).
// Register tile: MR pixels x NR=16 output channels = MR zmm accumulators (one zmm = one packed
// 16-channel panel row), MR = MR_DRIVER below. Per K step: one aligned zmm load of the packed
// weight panel ([K][16]) and MR FMAs whose input scalar comes straight from memory as an
// embedded broadcast ({1to16}), one per pixel, from the zero-padded NHWC input (tap offset +
// channel): one instruction per FMA, no broadcast register.
// MR is 8, not the 12-16 that 32 registers allow: Zen 4 runs a zmm FMA as two 256-bit halves,
// so the FMA ceiling is the AVX2 kernel's and the convs here already run at it; what a bigger
// tile changes is overhead: at MR 12 the per-pixel pointers no longer fit the 16 GPRs (spilled
// to xmm / stack), and 16x16 or 8x8 rows split into more ragged tiles (measured on the
// student's and a teacher's shapes: MR 8 0.97-0.98x of AVX2's time, 12 1.0-1.06x, 16 1.15x).
// The epilogue (bias, residual, ReLU, plain / accumulate / shuffle-interleaved store, next-input
// add, pooling) runs from the accumulators; a partial last panel (nv < 16 channels) uses the
// same code with __mmask16 masked loads and stores (masked-off lanes are neither read nor
// written), so there is no tile buffer and no scalar tail. Driver: ../conv_driver.inc.
// Small 1x1 convs with a plain epilogue bypass the driver (conv_1x1_rows, below).
// Sums: zero accumulators, FMAs in K order (tap, then channel), then + bias, + residual, ReLU —
// the order of avx2/conv.cpp, so the fast path equals the driver and conv1x1_skip0 equals this
// conv bit for bit.
#include <immintrin.h>

#include <algorithm>

#include "../kernels.hpp"
#include "mask.hpp"

namespace pyfer::avx512 {

struct PixPtr;
template <int MR>
static void tile_kernel(const float* const* a, const ptrdiff_t* toff, int taps, int cin, const float* b,
                        const float* bias, int j0, int nv, const Epilogue& ep, const PixPtr* pp);

#include "../conv_driver.inc"

namespace {

constexpr int MR_DRIVER = 8;  // pixels per driver tile (see the top of the file)
constexpr int MR_ROWS = 8;    // pixels per conv_1x1_rows tile (16- and 8-wide rows: whole tiles)

// ShuffleNet concat + channel shuffle store of nv (<= 16) channels: o[2j] = s[j], o[2j+1] = v[j].
// Two two-source permutes build the 32 interleaved floats; the stores are masked to 2*nv floats.
static inline void store_shuffled(float* o, const float* s, __m512 v, int nv) {
    const __m512i lo_idx = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi_idx = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    const __m512 sv = _mm512_maskz_loadu_ps(first_lanes(nv), s);
    _mm512_mask_storeu_ps(o, first_lanes(2 * nv), _mm512_permutex2var_ps(sv, lo_idx, v));
    _mm512_mask_storeu_ps(o + 16, first_lanes(2 * nv - 16), _mm512_permutex2var_ps(sv, hi_idx, v));
}

}  // namespace

template <int MR>
static void tile_kernel(const float* const* a, const ptrdiff_t* toff, int taps, int cin, const float* b,
                        const float* bias, int j0, int nv, const Epilogue& ep, const PixPtr* pp) {
    __m512 c[MR];
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) c[i] = _mm512_setzero_ps();
    for (int t = 0; t < taps; ++t) {
        const float* ap[MR];
#pragma GCC unroll 16
        for (int i = 0; i < MR; ++i) ap[i] = a[i] + toff[t];
        for (int k = 0; k < cin; ++k) {
            const __m512 bv = _mm512_load_ps(b);
            b += NR;
#pragma GCC unroll 16
            for (int i = 0; i < MR; ++i) c[i] = _mm512_fmadd_ps(_mm512_set1_ps(ap[i][k]), bv, c[i]);
        }
    }
    const __m512 bz = _mm512_load_ps(bias);  // bias is [coutp], zero padded: an aligned full load
    const __m512 zero = _mm512_setzero_ps();
    const __mmask16 m = first_lanes(nv);
    // the student's two common epilogues (bias + ReLU, then a plain or a shuffle store) without
    // the per-pixel tests of the general one below
    if (ep.relu && ep.out && !ep.res && !ep.out2 && !ep.pool && !ep.accumulate) {
        if (ep.shuf) {
#pragma GCC unroll 16
            for (int i = 0; i < MR; ++i)
                store_shuffled(pp[i].out + 2 * j0, pp[i].shuf + j0, _mm512_max_ps(zero, _mm512_add_ps(c[i], bz)), nv);
        } else {
#pragma GCC unroll 16
            for (int i = 0; i < MR; ++i)
                _mm512_mask_storeu_ps(pp[i].out + j0, m, _mm512_max_ps(zero, _mm512_add_ps(c[i], bz)));
        }
        return;
    }
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
        const PixPtr& p = pp[i];
        __m512 v = _mm512_add_ps(c[i], bz);
        if (p.res) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, p.res + j0));
        if (ep.relu) v = _mm512_max_ps(zero, v);  // max(0, v): NaN in v propagates
        if (p.shuf) {
            store_shuffled(p.out + 2 * j0, p.shuf + j0, v, nv);
        } else if (p.out) {
            float* o = p.out + j0;
            // (v itself stays the conv result: out2 below needs it)
            _mm512_mask_storeu_ps(o, m, ep.accumulate ? _mm512_add_ps(_mm512_maskz_loadu_ps(m, o), v) : v);
        }
        if (p.out2) _mm512_mask_storeu_ps(p.out2 + j0, m, _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, p.src2 + j0)));
        if (p.pool) {
            float* q = p.pool + j0;
            _mm512_mask_storeu_ps(q, m, _mm512_fmadd_ps(v, _mm512_set1_ps(ep.pool_scale), _mm512_maskz_loadu_ps(m, q)));
        }
    }
}

namespace {

// Small 1x1 convs (stride 1, weights <= 32 KB: the student's 24 -> 58 and 58 -> 58, YuNet's
// pointwise convs) whose epilogue is bias (+ReLU) and a plain store. A row's pixels lie at a
// constant stride in both maps, so an MR-pixel tile needs one input and one output pointer
// instead of the driver's per-pixel table, and it computes every 16-channel panel while its
// input pixels and all the weights stay in L1; the epilogue runs from the accumulators, with a
// masked store on the last panel (so cout need not be a multiple of 16). Same sums in the same
// order as tile_kernel.
constexpr long ROWS_1X1_MAX_WEIGHTS = 8192;  // floats (32 KB: the L1D of Zen 4)

bool rows_1x1_applies(const PackedConv& w, const Epilogue& ep) {
    const bool small_1x1 =
        w.k == 1 && w.stride == 1 && w.pad == 0 && long(w.cin) * w.coutp <= ROWS_1X1_MAX_WEIGHTS;
    return small_1x1 && ep.out && !ep.res && !ep.shuf && !ep.out2 && !ep.pool && !ep.accumulate;
}

template <int MR, bool RELU>
void tile_1x1_rows(const float* a, ptrdiff_t aps, int cin, const float* b, const float* bias, float* o,
                   ptrdiff_t ops, __mmask16 m) {
    // the first K step is peeled (an FMA onto zero, as tile_kernel's zeroed accumulators give,
    // so even the sign of a zero sum matches)
    __m512 c[MR];
    {
        const __m512 bv = _mm512_load_ps(b), zero = _mm512_setzero_ps();
#pragma GCC unroll 16
        for (int i = 0; i < MR; ++i) c[i] = _mm512_fmadd_ps(_mm512_set1_ps(a[i * aps]), bv, zero);
        b += NR;
    }
    for (int k = 1; k < cin; ++k, b += NR) {
        const __m512 bv = _mm512_load_ps(b);
#pragma GCC unroll 16
        for (int i = 0; i < MR; ++i) c[i] = _mm512_fmadd_ps(_mm512_set1_ps(a[i * aps + k]), bv, c[i]);
    }
    const __m512 bz = _mm512_load_ps(bias);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
        __m512 v = _mm512_add_ps(c[i], bz);
        if (RELU) v = _mm512_max_ps(_mm512_setzero_ps(), v);  // max(0, v): NaN in v propagates
        _mm512_mask_storeu_ps(o + i * ops, m, v);
    }
}

template <int MR, bool RELU>
void tile_1x1_panels(const PackedConv& w, const float* a, ptrdiff_t aps, float* o, ptrdiff_t ops) {
    for (int j0 = 0; j0 < w.coutp; j0 += NR)
        tile_1x1_rows<MR, RELU>(a, aps, w.cin, w.w.ptr + size_t(j0) * w.cin, w.bias.ptr + j0, o + j0, ops,
                                first_lanes(w.cout - j0));
}

template <int MR, bool RELU>
void tile_1x1_tail(int r, const PackedConv& w, const float* a, ptrdiff_t aps, float* o, ptrdiff_t ops) {
    if (r == MR) tile_1x1_panels<MR, RELU>(w, a, aps, o, ops);
    else if constexpr (MR > 1) tile_1x1_tail<MR - 1, RELU>(r, w, a, aps, o, ops);
}

template <bool RELU>
void conv_1x1_rows(const PackedConv& w, const View& in, int n0, int n1, int oy0, int oy1, int ow, const View& out) {
    for (int n = n0; n < n1; ++n)
        for (int y = oy0; y < oy1; ++y) {
            const float* a = in.at(n, y, 0);
            float* o = out.at(n, y, 0);
            int x = 0;
            for (; x + MR_ROWS <= ow; x += MR_ROWS)
                tile_1x1_panels<MR_ROWS, RELU>(w, a + x * in.ps, in.ps, o + x * out.ps, out.ps);
            if (x < ow) tile_1x1_tail<MR_ROWS - 1, RELU>(ow - x, w, a + x * in.ps, in.ps, o + x * out.ps, out.ps);
        }
}

}  // namespace

void conv(const PackedConv& w, const View& in, int n0, int n1, int oy0, int oy1, int ow, const Epilogue& ep) {
    if (rows_1x1_applies(w, ep)) {
        if (ep.relu) conv_1x1_rows<true>(w, in, n0, n1, oy0, oy1, ow, ep.out);
        else conv_1x1_rows<false>(w, in, n0, n1, oy0, oy1, ow, ep.out);
        return;
    }
    conv_driver<MR_DRIVER>(w, in, n0, n1, oy0, oy1, ow, ep);
}

}  // namespace pyfer::avx512
