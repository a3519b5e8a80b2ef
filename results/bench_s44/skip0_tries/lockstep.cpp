// AVX-512 1x1 convolution (stride 1) that skips zero input channels: the first 1x1 of every
// ShuffleNetV2 unit and conv5 read post-ReLU maps, about half zeros on real faces.
//
// Algorithm, per chunk of up to MC pixels (the driver, ../skip0_driver.inc, shared with the
// other SIMD backend: pointers from the NHWC View, n, oy, ox order):
//  1. a bit mask of each pixel's non-zero input channels, 64 channels per word: four
//     _mm512_cmp_ps_mask (NEQ_UQ: NaN counts as non-zero, so it still propagates) per word,
//     the last one a masked load of the channel tail (no bits past cin, no over-read);
//  2. per output block b (vecs[b] <= 12 vectors of 8 channels: Z = vecs/2 zmm accumulators, plus
//     one ymm when vecs is odd — the packing is shared with the AVX2 kernel) and per pass of one
//     or two 64-channel K words (that slice of the block's panel, <= 32 KB, stays in L1 while
//     every pixel of the chunk passes over it), each pixel walks the set bits of its mask words
//     in channel order: one broadcast of the input value, Z (+1) FMAs with the weight row (memory
//     operands); sums between passes are parked in a per-chunk buffer;
//  3. after the last word, from the accumulators: bias, ReLU, then a plain store and/or the
//     average-pool accumulation, masked (__mmask16 / __mmask8) to the block's valid channels.
// Only exact zeros are skipped and the order of the sum is the dense kernel's, so the result equals
// the dense implicit-GEMM conv (avx512/conv.cpp) bit for bit; what changes is the work: FMAs in
// proportion to the non-zero inputs. Weight layout: PackedSkip0 (kernels.hpp): block b's panel is
// [cin][vecs[b]*8] at w + off[b].
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <utility>

#include "../kernels.hpp"
#include "mask.hpp"

namespace pyfer::avx512 {

struct PixOut;
// bit c set where a[c] != 0 (NaN included, so it propagates), for c < n <= 64
static inline uint64_t nonzero_bits(const float* a, int n);
template <int V>
static void run_block(const float* const* ap, int mc, const uint64_t* masks, int kwords, const float* w,
                      const float* bias, int c0, int cout, const PixOut* po, const Epilogue& ep, float* part);

#include "../skip0_driver.inc"

namespace {

static inline __mmask8 first8(int n) { return __mmask8(first_lanes(n)); }

// One pixel's sums for an output block of V 8-channel vectors: V/2 zmm, plus a ymm when V is odd.
// Kept in registers: every loop over z is unrolled, so acc[] never reaches memory.
template <int V>
struct PixelSums {
    static constexpr int W = V * 8;  // block width, floats (one weight row)
    static constexpr int Z = V / 2;
    static constexpr bool H = (V & 1) != 0;
    __m512 acc[Z > 0 ? Z : 1];
    __m256 acch;

    // zero on the first pass, else the sums parked after the previous one
    void start(bool first, const float* parked) {
#pragma GCC unroll 8
        for (int z = 0; z < Z; ++z) acc[z] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(parked + 16 * z);
        acch = H && !first ? _mm256_load_ps(parked + 16 * Z) : _mm256_setzero_ps();
    }
    void park(float* parked) const {
#pragma GCC unroll 8
        for (int z = 0; z < Z; ++z) _mm512_storeu_ps(parked + 16 * z, acc[z]);
        if (H) _mm256_store_ps(parked + 16 * Z, acch);
    }
    // acc += a * w_row
    void add_row(float a, const float* row) {
        const __m512 av = _mm512_set1_ps(a);
#pragma GCC unroll 8
        for (int z = 0; z < Z; ++z) acc[z] = _mm512_fmadd_ps(av, _mm512_loadu_ps(row + 16 * z), acc[z]);
        if (H) acch = _mm256_fmadd_ps(_mm512_castps512_ps256(av), _mm256_load_ps(row + 16 * Z), acch);
    }
    // the rows of mask m's set bits, in channel order
    void add_rows(uint64_t m, const float* a, const float* wk) {
        for (; m; m &= m - 1) {
            const int k = __builtin_ctzll(m);
            add_row(a[k], wk + k * W);
        }
    }
    // bias, ReLU, then the plain store and/or the average-pool accumulation of the valid channels
    void finish(const float* bias, int nvalid, float* out, float* pool, const Epilogue& ep) const {
        const __m512 zero = _mm512_setzero_ps();
        const __m512 scale = _mm512_set1_ps(ep.pool_scale);
#pragma GCC unroll 8
        for (int z = 0; z < Z; ++z) {
            const __mmask16 mz = first_lanes(nvalid - 16 * z);
            __m512 x = _mm512_add_ps(acc[z], _mm512_maskz_loadu_ps(mz, bias + 16 * z));
            if (ep.relu) x = _mm512_max_ps(zero, x);  // max(0, x): NaN in x propagates
            if (out) _mm512_mask_storeu_ps(out + 16 * z, mz, x);
            if (pool)
                _mm512_mask_storeu_ps(pool + 16 * z, mz,
                                      _mm512_fmadd_ps(x, scale, _mm512_maskz_loadu_ps(mz, pool + 16 * z)));
        }
        if (H) {
            const __mmask8 mh = first8(nvalid - 16 * Z);
            __m256 x = _mm256_add_ps(acch, _mm256_maskz_loadu_ps(mh, bias + 16 * Z));
            if (ep.relu) x = _mm256_max_ps(_mm256_setzero_ps(), x);
            if (out) _mm256_mask_storeu_ps(out + 16 * Z, mh, x);
            if (pool)
                _mm256_mask_storeu_ps(pool + 16 * Z, mh,
                                      _mm256_fmadd_ps(x, _mm512_castps512_ps256(scale),
                                                      _mm256_maskz_loadu_ps(mh, pool + 16 * Z)));
        }
    }
};

}  // namespace

template <int V>
static void run_block(const float* const* ap, int mc, const uint64_t* masks, int kwords, const float* w,
                      const float* bias, int c0, int cout, const PixOut* po, const Epilogue& ep, float* part) {
    using Sums = PixelSums<V>;
    constexpr int W = Sums::W;
    // K words a pixel walks before its sums are parked: as many as keep the weight slice
    // (64 rows per word x W channels) within L1 (as the AVX2 kernel)
    constexpr int WORDS_PER_PASS = W <= 64 ? 2 : 1;
    const int nvalid = std::min(W, cout - c0);
    auto finish = [&](const Sums& s, int p) {
        s.finish(bias + c0, nvalid, po[p].out ? po[p].out + c0 : nullptr, po[p].pool ? po[p].pool + c0 : nullptr,
                 ep);
    };
    for (int g0 = 0; g0 < kwords; g0 += WORDS_PER_PASS) {
        const int g1 = std::min(kwords, g0 + WORDS_PER_PASS);
        const bool first = g0 == 0, last = g1 == kwords;
        int p = 0;
        // Two pixels at a time, their set bits walked in lockstep: each pixel's sums are one FMA
        // chain per register, and V/2 chains of one pixel cannot cover the FMA latency on CPUs
        // that issue two zmm FMAs a cycle (Intel servers, Zen 5); two pixels double the chains.
        for (; p + 1 < mc; p += 2) {
            Sums s0, s1;
            float* pp0 = part + size_t(p) * W;
            float* pp1 = pp0 + W;
            s0.start(first, pp0);
            s1.start(first, pp1);
            for (int kw = g0; kw < g1; ++kw) {
                uint64_t m0 = masks[size_t(p) * kwords + kw], m1 = masks[size_t(p + 1) * kwords + kw];
                const float* a0 = ap[p] + kw * 64;
                const float* a1 = ap[p + 1] + kw * 64;
                const float* wk = w + size_t(kw) * 64 * W;
                for (; m0 && m1; m0 &= m0 - 1, m1 &= m1 - 1) {
                    const int k0 = __builtin_ctzll(m0), k1 = __builtin_ctzll(m1);
                    s0.add_row(a0[k0], wk + k0 * W);
                    s1.add_row(a1[k1], wk + k1 * W);
                }
                s0.add_rows(m0, a0, wk);  // the longer walk's rest (the other mask is empty)
                s1.add_rows(m1, a1, wk);
            }
            if (last) {
                finish(s0, p);
                finish(s1, p + 1);
            } else {
                s0.park(pp0);
                s1.park(pp1);
            }
        }
        if (p < mc) {  // an odd pixel out
            Sums s;
            float* pp = part + size_t(p) * W;
            s.start(first, pp);
            for (int kw = g0; kw < g1; ++kw)
                s.add_rows(masks[size_t(p) * kwords + kw], ap[p] + kw * 64, w + size_t(kw) * 64 * W);
            if (last) finish(s, p);
            else s.park(pp);
        }
    }
}

static inline uint64_t nonzero_bits(const float* a, int n) {
    // channels past n are masked off the load: they read as 0 and give no bit (no over-read)
    const __m512 zero = _mm512_setzero_ps();
    uint64_t bits = 0;
    for (int c = 0; c < n; c += 16) {
        const __m512 x = _mm512_maskz_loadu_ps(first_lanes(n - c), a + c);
        bits |= uint64_t(_mm512_cmp_ps_mask(x, zero, _CMP_NEQ_UQ)) << c;
    }
    return bits;
}

}  // namespace pyfer::avx512
