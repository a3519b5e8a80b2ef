// AVX-512 nearest x2 upsampling fused with an add (a feature pyramid's top-down step), NHWC:
// out(n, y, x) = fine(n, y, x) + coarse(n, y/2, x/2). Per output row, each coarse pixel's
// channel vectors are loaded once and added to the two fine pixels it covers. Channels in 16-wide
// zmm blocks; the tail (C % 16) is one masked block, zmm for 9..15 channels, ymm for 1..8 (half
// the work on Zen 4's 256-bit units); masked loads / stores touch nothing outside [0, C). No
// padding read or written.
#include <immintrin.h>

#include "../kernels.hpp"
#include "mask.hpp"

namespace pyfer::avx512 {

namespace {

template <bool MASK>
static inline void blk(const float* g, const float* f0, const float* f1, float* o0, float* o1, __mmask16 m) {
    const __m512 up = MASK ? _mm512_maskz_loadu_ps(m, g) : _mm512_loadu_ps(g);
    const __m512 a = _mm512_add_ps(MASK ? _mm512_maskz_loadu_ps(m, f0) : _mm512_loadu_ps(f0), up);
    if (MASK) _mm512_mask_storeu_ps(o0, m, a);
    else _mm512_storeu_ps(o0, a);
    if (f1) {
        const __m512 b = _mm512_add_ps(MASK ? _mm512_maskz_loadu_ps(m, f1) : _mm512_loadu_ps(f1), up);
        if (MASK) _mm512_mask_storeu_ps(o1, m, b);
        else _mm512_storeu_ps(o1, b);
    }
}

static inline void blk_y(const float* g, const float* f0, const float* f1, float* o0, float* o1, __mmask8 m) {
    const __m256 up = _mm256_maskz_loadu_ps(m, g);
    _mm256_mask_storeu_ps(o0, m, _mm256_add_ps(_mm256_maskz_loadu_ps(m, f0), up));
    if (f1) _mm256_mask_storeu_ps(o1, m, _mm256_add_ps(_mm256_maskz_loadu_ps(m, f1), up));
}

}  // namespace

void upsample2_add(const View& fine, const View& coarse, int C, int n0, int n1, int oy0, int oy1, int ow,
                   const View& out) {
    const int cfull = C / 16 * 16, rem = C - cfull;
    const __mmask16 mz = first_lanes(rem);
    const __mmask8 my = __mmask8((1u << (rem > 8 ? 8 : rem)) - 1u);
    for (int n = n0; n < n1; ++n)
        for (int oy = oy0; oy < oy1; ++oy) {
            const float* f = fine.at(n, oy, 0);
            const float* g = coarse.at(n, oy / 2, 0);
            float* o = out.at(n, oy, 0);
            for (int ox = 0; ox < ow; ox += 2, g += coarse.ps) {
                const bool pair = ox + 1 < ow;  // the right column of an odd-width map has no twin
                const float* f0 = f + ox * fine.ps;
                const float* f1 = pair ? f0 + fine.ps : nullptr;
                float* q0 = o + ox * out.ps;
                float* q1 = q0 + out.ps;
                int c = 0;
                for (; c < cfull; c += 16) blk<false>(g + c, f0 + c, f1 ? f1 + c : nullptr, q0 + c, q1 + c, 0xFFFF);
                if (rem > 8) blk<true>(g + c, f0 + c, f1 ? f1 + c : nullptr, q0 + c, q1 + c, mz);
                else if (rem > 0) blk_y(g + c, f0 + c, f1 ? f1 + c : nullptr, q0 + c, q1 + c, my);
            }
        }
}

}  // namespace pyfer::avx512
