// Lane masks for the AVX-512 backend's channel tails. AVX-512 masked loads and stores (k
// registers) replace the AVX2 backend's maskload / split SSE tail stores: a store of the first
// n lanes of a zmm is one instruction, and masked-off lanes are neither read nor written (no
// fault, no over-write), so tails need no scratch tile.
#pragma once
#include <immintrin.h>

// GCC 12 flags the _mm512_undefined_* pass-through values inside its own intrinsics
// (_mm512_max_ps, _mm512_extractf64x4_pd, ...) as (maybe) uninitialized once they are inlined into
// unrolled loops (GCC bug 105593): a false positive in the header, silenced for the AVX-512 files
#pragma GCC diagnostic ignored "-Wuninitialized"
#ifndef __clang__  // (a GCC-only warning: clang would warn about the name)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace pyfer::avx512 {

// mask of lanes [0, n) of a 16-float vector, n in 0..16 (n >= 16: all lanes)
static inline __mmask16 first_lanes(int n) {
    return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n < 0 ? 0 : n)) - 1u);
}

}  // namespace pyfer::avx512
