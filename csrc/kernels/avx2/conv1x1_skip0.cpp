// AVX2+FMA 1x1 convolution (stride 1) that skips zero input channels: the first 1x1 of every
// ShuffleNetV2 unit and conv5 read post-ReLU maps, about half zeros on real faces.
//
// Algorithm, per chunk of up to MC pixels (the driver, ../skip0_driver.inc, shared with the
// other SIMD backend: pointers from the NHWC View, n, oy, ox order):
//  1. a bit mask of each pixel's non-zero input channels, 64 channels per word (8 compares +
//     movemask per word; NaN counts as non-zero, so it still propagates);
//  2. per output block b (vecs[b] <= 12 vectors of 8 channels = that many ymm accumulators) and
//     per pass of one or two 64-channel K words (that slice of the block's panel, <= 32 KB, stays
//     in L1 while every pixel of the chunk passes over it), each pixel walks the set bits of its
//     mask words in channel order: one broadcast of the input value, V FMAs with the weight row;
//     sums between passes are parked in a per-chunk buffer;
//  3. after the last word: bias, ReLU, then a plain (masked on the channel tail) store and/or the
//     average-pool accumulation.
// Only exact zeros are skipped and the order of the sum is the dense kernel's, so the result equals
// the dense implicit-GEMM conv (avx2/conv.cpp) bit for bit; what changes is the work: FMAs in
// proportion to the non-zero inputs. Weight layout: PackedSkip0 (kernels.hpp).
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <utility>

#include "../kernels.hpp"
#include "tail.hpp"

namespace pyfer::avx2 {

struct PixOut;
// bit c set where a[c] != 0 (NaN included, so it propagates), for c < n <= 64
static inline uint64_t nonzero_bits(const float* a, int n);
template <int V>
static void run_block(const float* const* ap, int mc, const uint64_t* masks, int kwords, const float* w,
                      const float* bias, int c0, int cout, const PixOut* po, const Epilogue& ep, float* part);

#include "../skip0_driver.inc"

template <int V>
static void run_block(const float* const* ap, int mc, const uint64_t* masks, int kwords, const float* w,
                      const float* bias, int c0, int cout, const PixOut* po, const Epilogue& ep, float* part) {
    constexpr int W = V * 8;
    // K words a pixel walks before its sums are parked: as many as keep the weight slice
    // (64 rows per word x W channels) within L1 — two at W = 64 (32 KB; 116 -> 116: 6% faster),
    // else one (a 40 KB slice is 40% slower at 232 -> 232)
    constexpr int WORDS_PER_PASS = W <= 64 ? 2 : 1;
    const __m256 zero = _mm256_setzero_ps();
    const int nvalid = std::min(W, cout - c0);
    for (int g0 = 0; g0 < kwords; g0 += WORDS_PER_PASS) {
        const int g1 = std::min(kwords, g0 + WORDS_PER_PASS);
        const bool first = g0 == 0, last = g1 == kwords;
        for (int p = 0; p < mc; ++p) {
            __m256 acc[V];
            float* pp = part + size_t(p) * W;
            for (int v = 0; v < V; ++v) acc[v] = first ? zero : _mm256_load_ps(pp + 8 * v);
            for (int kw = g0; kw < g1; ++kw) {
                uint64_t m = masks[size_t(p) * kwords + kw];
                const float* a = ap[p] + kw * 64;
                const float* wk = w + size_t(kw) * 64 * W;
                // two set bits per trip: half the loop overhead, two independent loads per accumulator
                while (m) {
                    const int k0 = __builtin_ctzll(m);
                    m &= m - 1;
                    const __m256 a0 = _mm256_broadcast_ss(a + k0);
                    const float* w0 = wk + k0 * W;
                    if (!m) {
                        for (int v = 0; v < V; ++v) acc[v] = _mm256_fmadd_ps(a0, _mm256_load_ps(w0 + 8 * v), acc[v]);
                        break;
                    }
                    const int k1 = __builtin_ctzll(m);
                    m &= m - 1;
                    const __m256 a1 = _mm256_broadcast_ss(a + k1);
                    const float* w1 = wk + k1 * W;
                    for (int v = 0; v < V; ++v) {
                        acc[v] = _mm256_fmadd_ps(a0, _mm256_load_ps(w0 + 8 * v), acc[v]);
                        acc[v] = _mm256_fmadd_ps(a1, _mm256_load_ps(w1 + 8 * v), acc[v]);
                    }
                }
            }
            // the pw1 case, bias + ReLU + store from registers (for V <= 8 only: with more
            // accumulators GCC spills in the bit loop, 7% slower at V = 10)
            if (V <= 8 && last && ep.relu && ep.out && !ep.pool) {
                float* o = po[p].out + c0;
                for (int v = 0; v < V; ++v) {
                    const __m256 x = _mm256_max_ps(zero, _mm256_add_ps(acc[v], _mm256_loadu_ps(bias + c0 + 8 * v)));
                    if (8 * v + 8 <= nvalid) _mm256_storeu_ps(o + 8 * v, x);
                    else store_first(o + 8 * v, x, nvalid - 8 * v);
                }
                continue;
            }
            for (int v = 0; v < V; ++v) _mm256_store_ps(pp + 8 * v, acc[v]);
            if (!last) continue;
            // epilogue from the parked sums (keeps the bit loop's registers free of it)
            const __m256 scale = _mm256_set1_ps(ep.pool_scale);
            for (int j = 0; j < nvalid; j += 8) {
                __m256 x = _mm256_add_ps(_mm256_load_ps(pp + j), _mm256_loadu_ps(bias + c0 + j));
                if (ep.relu) x = _mm256_max_ps(zero, x);  // NaN in x propagates
                const int nv = std::min(8, nvalid - j);
                if (float* o = po[p].out) store_first(o + c0 + j, x, nv);
                if (float* q = po[p].pool) {
                    q += c0 + j;
                    store_first(q, _mm256_fmadd_ps(x, scale, _mm256_maskload_ps(q, first_lanes(nv))), nv);
                }
            }
        }
    }
}

static inline uint64_t nonzero_bits(const float* a, int n) {
    // reads up to 7 floats past the pixel's channels: next pixel or buffer slack, masked off
    const __m256 zero = _mm256_setzero_ps();
    uint64_t bits = 0;
    for (int c = 0; c < n; c += 8) {
        const __m256 x = _mm256_loadu_ps(a + c);
        bits |= uint64_t(unsigned(_mm256_movemask_ps(_mm256_cmp_ps(x, zero, _CMP_NEQ_UQ)))) << c;
    }
    return n < 64 ? bits & ((uint64_t(1) << n) - 1) : bits;
}

}  // namespace pyfer::avx2
