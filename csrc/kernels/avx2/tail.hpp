// Stores of the first n (0..8) lanes of a ymm, for channel tails. VMASKMOVPS stores cost about
// 12 cycles each on this Zen 4 (measured: 3.3 ns vs 0.8 ns for a plain store), and the shipped
// student has a 2-channel tail at every 58-channel map, so tails are written with at most three
// SSE stores (4 + 2 + 1 lanes) instead. Masked loads are as fast as plain ones and stay
// (first_lanes gives their mask).
#pragma once
#include <immintrin.h>

namespace pyfer::avx2 {

static inline __m256i first_lanes(int n) {  // mask of lanes [0, n), n in 0..8
    alignas(32) static const int m[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(m + 8 - n));
}

static inline void store_first(float* p, __m256 v, int n) {
    if (n >= 8) {
        _mm256_storeu_ps(p, v);
        return;
    }
    __m128 x = _mm256_castps256_ps128(v);
    if (n & 4) {
        _mm_storeu_ps(p, x);
        x = _mm256_extractf128_ps(v, 1);
        p += 4;
    }
    if (n & 2) {
        _mm_storel_pi(reinterpret_cast<__m64*>(p), x);
        x = _mm_movehl_ps(x, x);
        p += 2;
    }
    if (n & 1) _mm_store_ss(p, x);
}

}  // namespace pyfer::avx2
