// Portable nearest x2 upsampling fused with an add (a feature pyramid's top-down step), NHWC:
// out(n, y, x)[c] = fine(n, y, x)[c] + coarse(n, y/2, x/2)[c]; per output pixel one coarse pixel,
// channels innermost so the loop vectorises. No padding read or written.
#include "../kernels.hpp"

namespace pyfer::portable {

void upsample2_add(const View& fine, const View& coarse, int C, int n0, int n1, int oy0, int oy1, int ow,
                   const View& out) {
    for (int n = n0; n < n1; ++n)
        for (int oy = oy0; oy < oy1; ++oy)
            for (int ox = 0; ox < ow; ++ox) {
                const float* f = fine.at(n, oy, ox);
                const float* g = coarse.at(n, oy / 2, ox / 2);
                float* o = out.at(n, oy, ox);
                for (int c = 0; c < C; ++c) o[c] = f[c] + g[c];
            }
}

}  // namespace pyfer::portable
