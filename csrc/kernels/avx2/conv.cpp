// AVX2+FMA implicit-GEMM convolution micro-kernel (this file alone is compiled -mavx2 -mfma).
// Register tile: MR=6 pixels x NR=16 output channels = 12 ymm accumulators; per K step two
// aligned loads of the packed weight panel ([K][16]) and six broadcasts of input scalars, one
// per pixel, from the zero-padded NHWC input (tap offset + channel): 12 FMAs per 8 loads.
// The epilogue is applied from registers (bias, residual, ReLU, plain / accumulate / shuffle-
// interleaved store, next-input add, pooling); a partial last panel (nv < 16) goes through a
// small tile buffer and the scalar epilogue. Driver: ../conv_driver.inc. Small 1x1 convs with a
// plain epilogue bypass the driver (conv_1x1_rows, below).
#include <immintrin.h>

#include <algorithm>

#include "../kernels.hpp"
#include "tail.hpp"

namespace pyfer::avx2 {

struct PixPtr;
template <int MR>
static void tile_kernel(const float* const* a, const ptrdiff_t* toff, int taps, int cin, const float* b,
                        const float* bias, int j0, int nv, const Epilogue& ep, const PixPtr* pp);

#include "../conv_driver.inc"

static inline void store_shuffled(float* o, const float* s, __m256 v0, __m256 v1) {
    // o[2j] = s[j], o[2j+1] = v[j] for j in 0..16
    const __m256 s0 = _mm256_loadu_ps(s), s1 = _mm256_loadu_ps(s + 8);
    const __m256 lo0 = _mm256_unpacklo_ps(s0, v0), hi0 = _mm256_unpackhi_ps(s0, v0);
    const __m256 lo1 = _mm256_unpacklo_ps(s1, v1), hi1 = _mm256_unpackhi_ps(s1, v1);
    _mm256_storeu_ps(o, _mm256_permute2f128_ps(lo0, hi0, 0x20));
    _mm256_storeu_ps(o + 8, _mm256_permute2f128_ps(lo0, hi0, 0x31));
    _mm256_storeu_ps(o + 16, _mm256_permute2f128_ps(lo1, hi1, 0x20));
    _mm256_storeu_ps(o + 24, _mm256_permute2f128_ps(lo1, hi1, 0x31));
}

// Partial last panel (nv < NR output channels): the epilogue with masked loads and tail stores.
// Kept out of line: inlined, its code makes GCC spill the main kernel's accumulators (2x slower).
template <int MR>
__attribute__((noinline)) static void epilogue_partial(const float* tile, const float* bias, int j0, int nv,
                                                       const Epilogue& ep, const PixPtr* pp) {
    const __m256 bias0 = _mm256_load_ps(bias), bias1 = _mm256_load_ps(bias + 8);
    const __m256 zero = _mm256_setzero_ps();
    alignas(32) static const int lanes[24] = {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                              -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    const int n0 = std::min(nv, 8), n1 = std::max(nv - 8, 0);
    const __m256i m0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(lanes + 16 - n0));
    const __m256i m1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(lanes + 16 - n1));
    for (int i = 0; i < MR; ++i) {
        const PixPtr& p = pp[i];
        __m256 v0 = _mm256_add_ps(_mm256_load_ps(tile + i * NR), bias0);
        __m256 v1 = _mm256_add_ps(_mm256_load_ps(tile + i * NR + 8), bias1);
        if (p.res) {
            v0 = _mm256_add_ps(v0, _mm256_maskload_ps(p.res + j0, m0));
            v1 = _mm256_add_ps(v1, _mm256_maskload_ps(p.res + j0 + 8, m1));
        }
        if (ep.relu) { v0 = _mm256_max_ps(zero, v0); v1 = _mm256_max_ps(zero, v1); }
        if (p.shuf) {
            // interleave into a 32-float tile, then store its first 2*nv floats
            alignas(32) float tmp[32], src[16];
            _mm256_store_ps(src, _mm256_maskload_ps(p.shuf + j0, m0));
            _mm256_store_ps(src + 8, _mm256_maskload_ps(p.shuf + j0 + 8, m1));
            store_shuffled(tmp, src, v0, v1);
            float* o = p.out + 2 * j0;
            for (int q = 0; q < 2 * nv; q += 8) store_first(o + q, _mm256_load_ps(tmp + q), 2 * nv - q);
        } else if (p.out) {
            float* o = p.out + j0;
            if (ep.accumulate) {  // (v itself stays the conv result: out2 below needs it)
                store_first(o, _mm256_add_ps(v0, _mm256_maskload_ps(o, m0)), n0);
                store_first(o + 8, _mm256_add_ps(v1, _mm256_maskload_ps(o + 8, m1)), n1);
            } else {
                store_first(o, v0, n0);
                store_first(o + 8, v1, n1);
            }
        }
        if (p.out2) {
            store_first(p.out2 + j0, _mm256_add_ps(v0, _mm256_maskload_ps(p.src2 + j0, m0)), n0);
            store_first(p.out2 + j0 + 8, _mm256_add_ps(v1, _mm256_maskload_ps(p.src2 + j0 + 8, m1)), n1);
        }
        if (p.pool) {
            const __m256 sc = _mm256_set1_ps(ep.pool_scale);
            store_first(p.pool + j0, _mm256_fmadd_ps(v0, sc, _mm256_maskload_ps(p.pool + j0, m0)), n0);
            store_first(p.pool + j0 + 8, _mm256_fmadd_ps(v1, sc, _mm256_maskload_ps(p.pool + j0 + 8, m1)), n1);
        }
    }
}

template <int MR>
static void tile_kernel(const float* const* a, const ptrdiff_t* toff, int taps, int cin, const float* b,
                        const float* bias, int j0, int nv, const Epilogue& ep, const PixPtr* pp) {
    __m256 c0[MR], c1[MR];
    for (int i = 0; i < MR; ++i) { c0[i] = _mm256_setzero_ps(); c1[i] = _mm256_setzero_ps(); }
    for (int t = 0; t < taps; ++t) {
        const float* ap[MR];
        for (int i = 0; i < MR; ++i) ap[i] = a[i] + toff[t];
        for (int k = 0; k < cin; ++k) {
            const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
            b += NR;
            for (int i = 0; i < MR; ++i) {
                const __m256 av = _mm256_broadcast_ss(ap[i] + k);
                c0[i] = _mm256_fmadd_ps(av, b0, c0[i]);
                c1[i] = _mm256_fmadd_ps(av, b1, c1[i]);
            }
        }
    }
    // accumulators go to an L1 tile first: keeps the K loop's registers free of the epilogue's
    // (unrolled, branchy) code, which otherwise makes the compiler spill the accumulators
    alignas(64) float tile[MR * NR];
    for (int i = 0; i < MR; ++i) {
        _mm256_store_ps(tile + i * NR, c0[i]);
        _mm256_store_ps(tile + i * NR + 8, c1[i]);
    }
    const __m256 bias0 = _mm256_load_ps(bias), bias1 = _mm256_load_ps(bias + 8);
    const __m256 zero = _mm256_setzero_ps();
    if (nv < NR) return epilogue_partial<MR>(tile, bias, j0, nv, ep, pp);
    // the student's two common epilogues (bias + ReLU, then a plain or a shuffle store) without
    // the per-pixel tests of the general one below (3-6% on the short-K 1x1 convs, K = 24, 58)
    if (ep.relu && ep.out && !ep.res && !ep.out2 && !ep.pool && !ep.accumulate) {
        for (int i = 0; i < MR; ++i) {
            const __m256 v0 = _mm256_max_ps(zero, _mm256_add_ps(_mm256_load_ps(tile + i * NR), bias0));
            const __m256 v1 = _mm256_max_ps(zero, _mm256_add_ps(_mm256_load_ps(tile + i * NR + 8), bias1));
            if (ep.shuf) {
                store_shuffled(pp[i].out + 2 * j0, pp[i].shuf + j0, v0, v1);
            } else {
                _mm256_storeu_ps(pp[i].out + j0, v0);
                _mm256_storeu_ps(pp[i].out + j0 + 8, v1);
            }
        }
        return;
    }
    for (int i = 0; i < MR; ++i) {
        const PixPtr& p = pp[i];
        __m256 v0 = _mm256_add_ps(_mm256_load_ps(tile + i * NR), bias0);
        __m256 v1 = _mm256_add_ps(_mm256_load_ps(tile + i * NR + 8), bias1);
        if (p.res) {
            v0 = _mm256_add_ps(v0, _mm256_loadu_ps(p.res + j0));
            v1 = _mm256_add_ps(v1, _mm256_loadu_ps(p.res + j0 + 8));
        }
        if (ep.relu) {  // max(0, v): NaN in v propagates
            v0 = _mm256_max_ps(zero, v0);
            v1 = _mm256_max_ps(zero, v1);
        }
        if (p.shuf) {
            store_shuffled(p.out + 2 * j0, p.shuf + j0, v0, v1);
        } else if (p.out) {
            float* o = p.out + j0;
            if (ep.accumulate) {
                _mm256_storeu_ps(o, _mm256_add_ps(_mm256_loadu_ps(o), v0));
                _mm256_storeu_ps(o + 8, _mm256_add_ps(_mm256_loadu_ps(o + 8), v1));
            } else {
                _mm256_storeu_ps(o, v0);
                _mm256_storeu_ps(o + 8, v1);
            }
        }
        if (p.out2) {
            _mm256_storeu_ps(p.out2 + j0, _mm256_add_ps(v0, _mm256_loadu_ps(p.src2 + j0)));
            _mm256_storeu_ps(p.out2 + j0 + 8, _mm256_add_ps(v1, _mm256_loadu_ps(p.src2 + j0 + 8)));
        }
        if (p.pool) {
            const __m256 sc = _mm256_set1_ps(ep.pool_scale);
            _mm256_storeu_ps(p.pool + j0, _mm256_fmadd_ps(v0, sc, _mm256_loadu_ps(p.pool + j0)));
            _mm256_storeu_ps(p.pool + j0 + 8, _mm256_fmadd_ps(v1, sc, _mm256_loadu_ps(p.pool + j0 + 8)));
        }
    }
}

// Small 1x1 convs (stride 1, weights <= 32 KB: YuNet's pointwise convs, 16-64 channels) whose
// epilogue is bias (+ReLU) and a plain store. A row's pixels lie at a constant stride in both maps,
// so a 6-pixel tile needs one input and one output pointer instead of the driver's per-pixel table,
// and it computes every 16-channel panel while its 6 input pixels and all the weights stay in L1;
// the epilogue runs from the accumulators (no round trip through a tile buffer). At K = 16-64
// those fixed costs were as large as the K loop. Same sums in the same order as tile_kernel.
constexpr long ROWS_1X1_MAX_WEIGHTS = 8192;  // floats (32 KB: the L1D of Zen 3 and Zen 4)

static bool rows_1x1_applies(const PackedConv& w, const Epilogue& ep) {
    const bool small_1x1 = w.k == 1 && w.stride == 1 && w.pad == 0 && w.cout == w.coutp &&
                           long(w.cin) * w.coutp <= ROWS_1X1_MAX_WEIGHTS;
    return small_1x1 && ep.out && !ep.res && !ep.shuf && !ep.out2 && !ep.pool && !ep.accumulate;
}

template <int MR, bool RELU>
static void tile_1x1_rows(const float* a, ptrdiff_t aps, int cin, const float* b, const float* bias, float* o,
                          ptrdiff_t ops) {
    // the first K step is peeled (an FMA onto zero, as tile_kernel's, so even the sign of a zero
    // sum matches): zeroing the accumulators in a loop of their own made GCC keep them in a stack
    // array (a rep stos on every call)
    __m256 c0[MR], c1[MR];
    {
        const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8), zero = _mm256_setzero_ps();
#pragma GCC unroll 6
        for (int i = 0; i < MR; ++i) {
            const __m256 av = _mm256_broadcast_ss(a + i * aps);
            c0[i] = _mm256_fmadd_ps(av, b0, zero);
            c1[i] = _mm256_fmadd_ps(av, b1, zero);
        }
        b += NR;
    }
    for (int k = 1; k < cin; ++k, b += NR) {
        const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 6
        for (int i = 0; i < MR; ++i) {
            const __m256 av = _mm256_broadcast_ss(a + i * aps + k);
            c0[i] = _mm256_fmadd_ps(av, b0, c0[i]);
            c1[i] = _mm256_fmadd_ps(av, b1, c1[i]);
        }
    }
    const __m256 bias0 = _mm256_load_ps(bias), bias1 = _mm256_load_ps(bias + 8);
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
        __m256 v0 = _mm256_add_ps(c0[i], bias0), v1 = _mm256_add_ps(c1[i], bias1);
        if (RELU) {  // max(0, v): NaN in v propagates
            v0 = _mm256_max_ps(_mm256_setzero_ps(), v0);
            v1 = _mm256_max_ps(_mm256_setzero_ps(), v1);
        }
        _mm256_storeu_ps(o + i * ops, v0);
        _mm256_storeu_ps(o + i * ops + 8, v1);
    }
}

template <int MR, bool RELU>
static void tile_1x1_panels(const PackedConv& w, const float* a, ptrdiff_t aps, float* o, ptrdiff_t ops) {
    for (int j0 = 0; j0 < w.coutp; j0 += NR)
        tile_1x1_rows<MR, RELU>(a, aps, w.cin, w.w.ptr + size_t(j0) * w.cin, w.bias.ptr + j0, o + j0, ops);
}

template <bool RELU>
static void conv_1x1_rows(const PackedConv& w, const View& in, int n0, int n1, int oy0, int oy1, int ow,
                          const View& out) {
    for (int n = n0; n < n1; ++n)
        for (int y = oy0; y < oy1; ++y) {
            const float* a = in.at(n, y, 0);
            float* o = out.at(n, y, 0);
            int x = 0;
            for (; x + 6 <= ow; x += 6) tile_1x1_panels<6, RELU>(w, a + x * in.ps, in.ps, o + x * out.ps, out.ps);
            const float* at = a + x * in.ps;
            float* ot = o + x * out.ps;
            switch (ow - x) {
                case 5: tile_1x1_panels<5, RELU>(w, at, in.ps, ot, out.ps); break;
                case 4: tile_1x1_panels<4, RELU>(w, at, in.ps, ot, out.ps); break;
                case 3: tile_1x1_panels<3, RELU>(w, at, in.ps, ot, out.ps); break;
                case 2: tile_1x1_panels<2, RELU>(w, at, in.ps, ot, out.ps); break;
                case 1: tile_1x1_panels<1, RELU>(w, at, in.ps, ot, out.ps); break;
                default: break;
            }
        }
}

void conv(const PackedConv& w, const View& in, int n0, int n1, int oy0, int oy1, int ow, const Epilogue& ep) {
    if (rows_1x1_applies(w, ep)) {
        if (ep.relu) conv_1x1_rows<true>(w, in, n0, n1, oy0, oy1, ow, ep.out);
        else conv_1x1_rows<false>(w, in, n0, n1, oy0, oy1, ow, ep.out);
        return;
    }
    conv_driver<6>(w, in, n0, n1, oy0, oy1, ow, ep);
}

}  // namespace pyfer::avx2
