// Portable 1x1 convolution (stride 1) that skips zero input channels (see avx2/conv1x1_skip0.cpp
// for the why). Per pixel and output block: acc[0..V*8) over the block's [cin][V*8] panel rows
// of the non-zero inputs, in channel order (so it equals the portable dense conv bit for bit),
// then bias, ReLU, store / pool. The block width keeps acc in SSE registers.
#include <algorithm>

#include "../kernels.hpp"

namespace pyfer::portable {

void conv1x1_skip0(const PackedSkip0& w, const View& in, int n0, int n1, int oy0, int oy1, int ow,
                   const Epilogue& ep) {
    const int cin = w.cin;
    float acc[SKIP_VMAX * 8];
    for (int n = n0; n < n1; ++n)
        for (int oy = oy0; oy < oy1; ++oy)
            for (int ox = 0; ox < ow; ++ox) {
                const float* a = in.at(n, oy, ox);
                float* out = ep.out ? ep.out.at(n, oy, ox) : nullptr;
                float* pool = ep.pool ? ep.pool + ptrdiff_t(n) * ep.pool_ns : nullptr;
                for (size_t b = 0; b < w.vecs.size(); ++b) {
                    const int width = w.vecs[b] * 8, c0 = w.first[b] * 8;
                    const float* panel = w.w.ptr + w.off[b];
                    std::fill(acc, acc + width, 0.f);
                    for (int k = 0; k < cin; ++k) {
                        const float av = a[k];
                        if (av == 0.f) continue;  // NaN != 0: still multiplied in
                        const float* wr = panel + size_t(k) * width;
                        for (int j = 0; j < width; ++j) acc[j] += av * wr[j];
                    }
                    const int nvalid = std::min(width, w.cout - c0);
                    for (int j = 0; j < nvalid; ++j) {
                        float v = acc[j] + w.bias.ptr[c0 + j];
                        if (ep.relu) v = v < 0.f ? 0.f : v;  // keeps NaN
                        if (out) out[c0 + j] = v;
                        if (pool) pool[c0 + j] += v * ep.pool_scale;
                    }
                }
            }
}

}  // namespace pyfer::portable
