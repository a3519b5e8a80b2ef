// AVX2 nearest x2 upsampling fused with an add (a feature pyramid's top-down step), NHWC:
// out(n, y, x) = fine(n, y, x) + coarse(n, y/2, x/2). Per output row, each coarse pixel's 8-channel
// vectors are loaded once and added to the two fine pixels it covers; the channel tail is written
// with tail stores (its loads may read past the slice into the next pixel or buffer slack, lanes
// that are not stored). No padding read or written.
#include <immintrin.h>

#include "../kernels.hpp"
#include "tail.hpp"

namespace pyfer::avx2 {

void upsample2_add(const View& fine, const View& coarse, int C, int n0, int n1, int oy0, int oy1, int ow,
                   const View& out) {
    for (int n = n0; n < n1; ++n)
        for (int oy = oy0; oy < oy1; ++oy) {
            const float* f = fine.at(n, oy, 0);
            const float* g = coarse.at(n, oy / 2, 0);
            float* o = out.at(n, oy, 0);
            for (int ox = 0; ox < ow; ox += 2, g += coarse.ps) {
                const bool pair = ox + 1 < ow;
                for (int c = 0; c < C; c += 8) {
                    const __m256 up = _mm256_loadu_ps(g + c);
                    const int nv = C - c;
                    store_first(o + ox * out.ps + c, _mm256_add_ps(_mm256_loadu_ps(f + ox * fine.ps + c), up), nv);
                    if (pair)
                        store_first(o + (ox + 1) * out.ps + c,
                                    _mm256_add_ps(_mm256_loadu_ps(f + (ox + 1) * fine.ps + c), up), nv);
                }
            }
        }
}

}  // namespace pyfer::avx2
