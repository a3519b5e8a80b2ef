// Portable direct small-cin convolution (stem): per output pixel, taps outermost, output channels
// innermost over the packed [k*k*cin][cp] weights (contiguous in the output channel, so the inner
// loop vectorises). Input zero padded by >= pad.
#include "../kernels.hpp"

namespace pyfer::portable {

void conv_small(const PackedSmall& w, const View& in, int n0, int n1, int oy0, int oy1, int ow, const View& out,
                bool relu) {
    const int k = w.k, s = w.stride, pad = w.pad, cin = w.cin, C = w.cout, cp = w.cp;
    float acc[512];
    for (int n = n0; n < n1; ++n)
        for (int oy = oy0; oy < oy1; ++oy)
            for (int ox = 0; ox < ow; ++ox) {
                const float* ib = in.at(n, oy * s - pad, ox * s - pad);
                float* o = out.at(n, oy, ox);
                for (int c0 = 0; c0 < C; c0 += 512) {
                    const int cn = C - c0 < 512 ? C - c0 : 512;
                    for (int c = 0; c < cn; ++c) acc[c] = w.bias.ptr[c0 + c];
                    for (int ky = 0; ky < k; ++ky)
                        for (int kx = 0; kx < k; ++kx)
                            for (int ci = 0; ci < cin; ++ci) {
                                const float a = ib[ky * in.rs + kx * in.ps + ci];
                                const float* wr = w.w.ptr + size_t((ky * k + kx) * cin + ci) * cp + c0;
                                for (int c = 0; c < cn; ++c) acc[c] += a * wr[c];
                            }
                    for (int c = 0; c < cn; ++c) o[c0 + c] = relu && acc[c] < 0.f ? 0.f : acc[c];
                }
            }
}

}  // namespace pyfer::portable
