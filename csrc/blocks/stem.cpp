// Fused stem: conv kxk/s + BN(folded) + ReLU + 3x3/2 max pool (pad 1).
//
// The input (NCHW, C = 1 or 3) is first written into a zero-padded NHWC buffer (pad k/2). The
// max pool is computed in bands of BAND output rows: the conv rows the band needs
// (2*py0-1 .. 2*py1-1) are produced into a small band buffer (zero padded by one column on each
// side; rows outside the conv output are zero rows), then pooled straight into the output. ReLU
// makes every conv value >= 0, so zero padding is equivalent to max pool's -inf padding. One
// conv row per band is recomputed (the shared halo row); the full-resolution map never exists.
// The conv itself, by the algorithm it was packed for (plan.cpp): the direct small-cin kernel
// (K.conv_small, the planner's choice: output channels are the vector dimension, ~5x faster than a
// K=9 GEMM), or (tests) an im2col band + 1x1 GEMM or the implicit GEMM.
#include <algorithm>
#include <stdexcept>
#include <string>

#include "blocks.hpp"

namespace pyfer {

void stem_forward(const Kernels& K, const CpuConv& c, const float* x, int n, int S, Workspace& ws, const View& out) {
    if (c.algo != ConvAlgo::Small && c.algo != ConvAlgo::Im2col && c.algo != ConvAlgo::Direct)
        throw std::logic_error(std::string("stem_forward: a ") + conv_algo_name(c.algo) + " conv");
    const int k = c.k, s = c.stride, pad = k / 2, cin = c.cin, C = c.cout;
    const int H1 = (S + 2 * pad - k) / s + 1;
    const int H2 = (H1 - 1) / 2 + 1;
    float* inb = ws.get(S_IN, padded_size(n, S, S, cin, pad));
    View iv = padded_view(inb, S, S, cin, pad);
    zero_border(iv, n, S, S, cin, pad);
    for (int i = 0; i < n; ++i)
        for (int ch = 0; ch < cin; ++ch)
            for (int y = 0; y < S; ++y) {
                const float* src = x + ((size_t(i) * cin + ch) * S + y) * S;
                float* dst = iv.at(i, y, 0) + ch;
                if (cin == 1) std::copy(src, src + S, dst);
                else for (int xx = 0; xx < S; ++xx) dst[xx * cin] = src[xx];
            }
    const int BAND = std::max(1, std::min(H2, 256 / std::max(1, H1)));  // pool rows per band
    const int brows = 2 * BAND + 1;
    float* band = ws.get(S_BAND, size_t(brows) * (H1 + 2) * C);
    const ptrdiff_t brs = ptrdiff_t(H1 + 2) * C;
    for (int i = 0; i < n; ++i)
        for (int py0 = 0; py0 < H2; py0 += BAND) {
            const int py1 = std::min(H2, py0 + BAND);
            const int r0 = 2 * py0 - 1, r1 = std::min(H1, 2 * py1);  // conv rows [r0, r1) (r0 may be -1)
            View bv;
            bv.ps = C; bv.rs = brs; bv.ns = 0;
            bv.p = band + C - ptrdiff_t(r0) * brs - ptrdiff_t(i) * 0;  // conv row r -> band row r - r0
            // zero the side columns and any rows of the window outside the conv output
            for (int r = r0; r < r0 + brows; ++r) {
                if (r < 0 || r >= r1) std::fill(bv.at(0, r, -1), bv.at(0, r, -1) + (H1 + 2) * C, 0.f);
                else { std::fill(bv.at(0, r, -1), bv.at(0, r, 0), 0.f); std::fill(bv.at(0, r, H1), bv.at(0, r, H1 + 1), 0.f); }
            }
            const int c0 = std::max(0, r0);
            Epilogue ep;
            ep.out = bv;
            ep.relu = true;
            if (c.algo == ConvAlgo::Small) {  // direct small-cin conv: output channels are the vector dimension
                K.conv_small(c.ps, iv, i, i + 1, c0, r1, H1, bv, true);
            } else if (c.algo == ConvAlgo::Im2col) {  // im2col the band (K = k*k*cin values per pixel), then one 1x1 GEMM
                const int KK = c.pc.cin;
                float* col = ws.get(S_P, size_t(r1 - c0) * H1 * KK);
                View cv;
                cv.ps = KK; cv.rs = ptrdiff_t(H1) * KK; cv.ns = 0;
                cv.p = col - ptrdiff_t(c0) * cv.rs;
                for (int r = c0; r < r1; ++r)
                    for (int xx = 0; xx < H1; ++xx) {
                        float* dst = cv.at(0, r, xx);
                        const float* src = iv.at(i, r * s - pad, xx * s - pad);
                        for (int ky = 0; ky < k; ++ky)
                            for (int kx = 0; kx < k; ++kx)
                                for (int ch = 0; ch < cin; ++ch) *dst++ = src[ky * iv.rs + kx * iv.ps + ch];
                    }
                K.conv(c.pc, cv, i, i + 1, c0, r1, H1, ep);
            } else {  // Direct: implicit GEMM
                K.conv(c.pc, iv, i, i + 1, c0, r1, H1, ep);
            }
            K.maxpool3s2(bv, C, i, i + 1, py0, py1, H2, out);
        }
}

}  // namespace pyfer
