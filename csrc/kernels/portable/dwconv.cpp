// Portable depthwise 3x3 convolution (pad 1, stride 1 or 2) + bias (+ReLU), NHWC.
// Per output pixel, channels innermost: acc[c] = b[c] + sum_t w[t][c] * in[tap_t][c], with the
// packed weights [9][cp] contiguous in c so the inner loop vectorises. Input zero padded by 1.
#include "../kernels.hpp"

namespace pyfer::portable {

void dw3x3(const PackedDW& w, const View& in, int n0, int n1, int oy0, int oy1, int ow, const View& out,
           bool relu) {
    const int s = w.stride, C = w.c, cp = w.cp;
    for (int n = n0; n < n1; ++n)
        for (int oy = oy0; oy < oy1; ++oy)
            for (int ox = 0; ox < ow; ++ox) {
                const float* ib = in.at(n, oy * s - 1, ox * s - 1);
                float* o = out.at(n, oy, ox);
                for (int c = 0; c < C; ++c) {
                    float acc = w.bias.ptr[c];
                    for (int ky = 0; ky < 3; ++ky)
                        for (int kx = 0; kx < 3; ++kx)
                            acc += w.w.ptr[(ky * 3 + kx) * cp + c] * ib[ky * in.rs + kx * in.ps + c];
                    o[c] = relu && acc < 0.f ? 0.f : acc;
                }
            }
}

}  // namespace pyfer::portable
