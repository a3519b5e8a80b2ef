// The 16-lane zmm view (Z, tail mask __mmask16) and the 8-lane ymm view (Y, AVX-512VL, mask
// __mmask8) of the same float ops, so one kernel template serves full 16-channel blocks and a
// channel tail of 1-8, which on Zen 4 (zmm ops issued as two 256-bit halves) costs half a zmm.
// Masked loads and stores touch only the lanes of the mask.
#pragma once
#include <immintrin.h>

#include "mask.hpp"

namespace pyfer::avx512 {

struct Z {
    using T = __m512;
    using M = __mmask16;
    static constexpr int W = 16;
    template <bool MASK = true> static T load(const float* p, M m) {
        return MASK ? _mm512_maskz_loadu_ps(m, p) : _mm512_loadu_ps(p);
    }
    static T loadu(const float* p) { return _mm512_loadu_ps(p); }
    template <bool MASK = true> static void store(float* p, T v, M m) {
        if (MASK) _mm512_mask_storeu_ps(p, m, v);
        else _mm512_storeu_ps(p, v);
    }
    static void storeu(float* p, T v) { _mm512_storeu_ps(p, v); }
    static T fma(T a, T b, T c) { return _mm512_fmadd_ps(a, b, c); }
    static T add(T a, T b) { return _mm512_add_ps(a, b); }
    static T sub(T a, T b) { return _mm512_sub_ps(a, b); }
    static T mul(T a, T b) { return _mm512_mul_ps(a, b); }
    static T max(T a, T b) { return _mm512_maskz_max_ps(M(0xFFFF), a, b); }
    // max(0, v), NaN propagating (the source operand wins on NaN)
    static T relu(T v) { return max(_mm512_setzero_ps(), v); }
    static T zero() { return _mm512_setzero_ps(); }
    static T set1(float x) { return _mm512_set1_ps(x); }
    static M unord(T a, T b) { return _mm512_cmp_ps_mask(a, b, _CMP_UNORD_Q); }  // a or b NaN
    static T nan_where(T v, M n) { return _mm512_mask_mov_ps(v, n, _mm512_castsi512_ps(_mm512_set1_epi32(-1))); }
};

struct Y {
    using T = __m256;
    using M = __mmask8;
    static constexpr int W = 8;
    template <bool MASK = true> static T load(const float* p, M m) {
        return MASK ? _mm256_maskz_loadu_ps(m, p) : _mm256_loadu_ps(p);
    }
    static T loadu(const float* p) { return _mm256_loadu_ps(p); }
    template <bool MASK = true> static void store(float* p, T v, M m) {
        if (MASK) _mm256_mask_storeu_ps(p, m, v);
        else _mm256_storeu_ps(p, v);
    }
    static void storeu(float* p, T v) { _mm256_storeu_ps(p, v); }
    static T fma(T a, T b, T c) { return _mm256_fmadd_ps(a, b, c); }
    static T add(T a, T b) { return _mm256_add_ps(a, b); }
    static T sub(T a, T b) { return _mm256_sub_ps(a, b); }
    static T mul(T a, T b) { return _mm256_mul_ps(a, b); }
    static T max(T a, T b) { return _mm256_max_ps(a, b); }
    static T relu(T v) { return max(_mm256_setzero_ps(), v); }
    static T zero() { return _mm256_setzero_ps(); }
    static T set1(float x) { return _mm256_set1_ps(x); }
    static M unord(T a, T b) { return _mm256_cmp_ps_mask(a, b, _CMP_UNORD_Q); }
    static T nan_where(T v, M n) { return _mm256_mask_mov_ps(v, n, _mm256_castsi256_ps(_mm256_set1_epi32(-1))); }
};

}  // namespace pyfer::avx512
