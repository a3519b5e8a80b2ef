// AVX-512 depthwise 3x3 convolution (pad 1, stride 1 or 2) + bias (+ReLU), NHWC.
// Loop order: channel block, then output row, then output pixels in eights (then four, two, one).
// Blocks are 16 channels (zmm); the channel tail is one block of C % 16 channels: a masked zmm
// when it is 9..15 channels, a masked ymm when it is 1..8 (Zen 4 runs a zmm op as two 256-bit
// halves, so a ymm tail does half the work: 24 channels are a zmm + a ymm, not two zmm).
// Masked loads / stores: lanes outside [0, C) are neither read nor written.
// The block's nine tap vectors and bias stay in registers for the whole call (32 registers: 9
// taps + 8 accumulators + the bias + column temporaries). Input columns are loaded once per row
// and shared by the neighbouring outputs that use them: per kernel row, an eight-pixel step loads
// 10 (stride 1) or 17 (stride 2) columns for its 24 FMAs, instead of 24 loads (pinned in registers:
// left alone, GCC folds them back into 24 memory operands, and on a 116- or 58-channel map most
// zmm loads split a cache line; the pin made stride 1 ~1.3x faster on Zen 4). One accumulator per
// output, summed in tap order (ky, kx) from the bias (as the other backends). Input zero padded by 1.
#include <immintrin.h>

#include "../kernels.hpp"
#include "vec.hpp"

namespace pyfer::avx512 {

namespace {

// P adjacent output pixels (stride S) of one row: for each kernel row, input columns
// 0 .. (P-1)*S + 2 are loaded once each and fed to every output whose window holds them.
template <class V, bool MASK, int S, int P, bool RELU>
static inline void step(const typename V::T* w, typename V::T bias, typename V::M m, const float* r0, ptrdiff_t rs,
                        ptrdiff_t ps, float* o, ptrdiff_t ops) {
    using T = typename V::T;
    T a[P];
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p) a[p] = bias;
#pragma GCC unroll 3
    for (int ky = 0; ky < 3; ++ky) {
        const float* r = r0 + ky * rs;
        // column-major: column j feeds output p at tap kx = j - p*S, so each output still sums its
        // taps in order kx = 0, 1, 2 and a column is live only while its (<= 3) FMAs issue
#pragma GCC unroll 17
        for (int j = 0; j < (P - 1) * S + 3; ++j) {
            const float* q = r + j * ps;
            T x = MASK ? V::load(q, m) : V::loadu(q);
            // keep the column in a register: without this GCC folds the load into each of its
            // FMAs (a memory operand per FMA: 3x the loads, most of them cache-line splits)
            asm("" : "+v"(x));
#pragma GCC unroll 8
            for (int p = 0; p < P; ++p) {
                const int kx = j - p * S;
                if (kx >= 0 && kx < 3) a[p] = V::fma(x, w[3 * ky + kx], a[p]);
            }
        }
    }
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p) {
        const T v = RELU ? V::relu(a[p]) : a[p];
        if (MASK) V::store(o + p * ops, v, m);
        else V::storeu(o + p * ops, v);
    }
}

template <class V, bool MASK, int S, bool RELU>
static void block_rows(const PackedDW& w, const View& in, int n, int oy0, int oy1, int ow, int c, typename V::M m,
                       float* obase, ptrdiff_t ors, ptrdiff_t ops) {
    using T = typename V::T;
    T t[9];
    for (int k = 0; k < 9; ++k) t[k] = V::load(w.w.ptr + size_t(k) * w.cp + c, m);
    const T bias = V::load(w.bias.ptr + c, m);
    const ptrdiff_t rs = in.rs, ps = in.ps;
    for (int oy = oy0; oy < oy1; ++oy) {
        const float* r = in.at(n, oy * S - 1, -1) + c;
        float* o = obase + oy * ors + c;
        int ox = 0;
        for (; ox + 8 <= ow; ox += 8, r += 8 * S * ps, o += 8 * ops) step<V, MASK, S, 8, RELU>(t, bias, m, r, rs, ps, o, ops);
        for (; ox + 4 <= ow; ox += 4, r += 4 * S * ps, o += 4 * ops) step<V, MASK, S, 4, RELU>(t, bias, m, r, rs, ps, o, ops);
        if (ox + 2 <= ow) { step<V, MASK, S, 2, RELU>(t, bias, m, r, rs, ps, o, ops); ox += 2; r += 2 * S * ps; o += 2 * ops; }
        if (ox < ow) step<V, MASK, S, 1, RELU>(t, bias, m, r, rs, ps, o, ops);
    }
}

template <class V, bool MASK>
static void block(const PackedDW& w, const View& in, int n, int oy0, int oy1, int ow, int c, typename V::M m,
                  float* obase, const View& out, bool relu) {
    if (w.stride == 1) {
        if (relu) block_rows<V, MASK, 1, true>(w, in, n, oy0, oy1, ow, c, m, obase, out.rs, out.ps);
        else block_rows<V, MASK, 1, false>(w, in, n, oy0, oy1, ow, c, m, obase, out.rs, out.ps);
    } else {
        if (relu) block_rows<V, MASK, 2, true>(w, in, n, oy0, oy1, ow, c, m, obase, out.rs, out.ps);
        else block_rows<V, MASK, 2, false>(w, in, n, oy0, oy1, ow, c, m, obase, out.rs, out.ps);
    }
}

}  // namespace

void dw3x3(const PackedDW& w, const View& in, int n0, int n1, int oy0, int oy1, int ow, const View& out,
           bool relu) {
    const int C = w.c;
    const int cfull = C / 16 * 16, rem = C - cfull;
    for (int n = n0; n < n1; ++n) {
        float* obase = out.at(n, 0, 0);
        for (int c = 0; c < cfull; c += 16) block<Z, false>(w, in, n, oy0, oy1, ow, c, 0xFFFF, obase, out, relu);
        if (rem == 8) block<Y, false>(w, in, n, oy0, oy1, ow, cfull, 0xFF, obase, out, relu);
        else if (rem > 8) block<Z, true>(w, in, n, oy0, oy1, ow, cfull, first_lanes(rem), obase, out, relu);
        else if (rem > 0) block<Y, true>(w, in, n, oy0, oy1, ow, cfull, __mmask8((1u << rem) - 1u), obase, out, relu);
    }
}

}  // namespace pyfer::avx512
