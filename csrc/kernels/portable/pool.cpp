// Portable pooling, NHWC: 3x3/2 max pool (pad 1) over non-negative zero-padded input; 2x2/2 max
// pool (no padding: each output is the max of its 2x2 window, channels innermost); global average
// pool (sum over pixels per channel, channels innermost so it vectorises, then scale).
#include "../kernels.hpp"

namespace pyfer::portable {

void maxpool3s2(const View& in, int C, int n0, int n1, int oy0, int oy1, int ow, const View& out) {
    for (int n = n0; n < n1; ++n)
        for (int oy = oy0; oy < oy1; ++oy)
            for (int ox = 0; ox < ow; ++ox) {
                const float* ib = in.at(n, 2 * oy - 1, 2 * ox - 1);
                float* o = out.at(n, oy, ox);
                for (int c = 0; c < C; ++c) {
                    float m = ib[c];
                    for (int ky = 0; ky < 3; ++ky)
                        for (int kx = 0; kx < 3; ++kx) {
                            float v = ib[ky * in.rs + kx * in.ps + c];
                            if (v > m || v != v) m = v;  // NaN propagates (as in PyTorch)
                        }
                    o[c] = m;
                }
            }
}

void maxpool2s2(const View& in, int C, int n0, int n1, int oy0, int oy1, int ow, const View& out) {
    for (int n = n0; n < n1; ++n)
        for (int oy = oy0; oy < oy1; ++oy)
            for (int ox = 0; ox < ow; ++ox) {
                const float* a = in.at(n, 2 * oy, 2 * ox);
                const float* window[4] = {a, a + in.ps, a + in.rs, a + in.rs + in.ps};
                float* o = out.at(n, oy, ox);
                for (int c = 0; c < C; ++c) {
                    float m = window[0][c];
                    for (int t = 1; t < 4; ++t) {
                        const float v = window[t][c];
                        if (v > m || v != v) m = v;  // NaN propagates
                    }
                    o[c] = m;
                }
            }
}

void avgpool(const View& in, int C, int N, int H, int W, float* out) {
    const float scale = 1.f / float(H * W);
    for (int n = 0; n < N; ++n) {
        float* o = out + size_t(n) * C;
        for (int c = 0; c < C; ++c) o[c] = 0.f;
        for (int y = 0; y < H; ++y)
            for (int x = 0; x < W; ++x) {
                const float* p = in.at(n, y, x);
                for (int c = 0; c < C; ++c) o[c] += p[c];
            }
        for (int c = 0; c < C; ++c) o[c] *= scale;
    }
}

}  // namespace pyfer::portable
