// AVX-512 pooling, NHWC. Channels in 16-wide zmm blocks; the channel tail (C % 16) is one masked
// block, a zmm for 9..15 channels, a ymm for 1..8 (half the work on Zen 4's 256-bit units: 24
// channels are a zmm + a ymm). Masked loads / stores: nothing outside [0, C) is read or written.
//  - 3x3/2 max pool (pad 1, non-negative zero-padded input): per channel block, an output row is
//    walked left to right keeping the column maxima (max over the 3 rows) of the window's right
//    column, which is the next window's left one: 6 loads + 6 max per output instead of 9 + 8.
//  - 2x2/2 max pool (no padding): 4 loads + 3 max per vector.
//  - global average pool: vector sums over pixels, then one scale multiply.
// Max pools propagate NaN as PyTorch does: vmaxps drops a NaN in its first operand, so NaN lanes
// are tracked in a k mask (unordered compares) and written as all-ones bits (a NaN) at the end.
#include <immintrin.h>

#include "../kernels.hpp"
#include "vec.hpp"

namespace pyfer::avx512 {

namespace {

// A channel block's vector type and whether it is masked, as a tag for generic lambdas (C++17)
template <class V_, bool MASK_>
struct Blk {
    using V = V_;
    static constexpr bool MASK = MASK_;
};

// Runs f(Blk<V, MASK>{}, c, mask) over the channel blocks of C channels.
template <class F>
static inline void for_blocks(int C, F&& f) {
    const int cfull = C / 16 * 16, rem = C - cfull;
    for (int c = 0; c < cfull; c += 16) f(Blk<Z, false>{}, c, __mmask16(0xFFFF));
    if (rem == 8) f(Blk<Y, false>{}, cfull, __mmask8(0xFF));
    else if (rem > 8) f(Blk<Z, true>{}, cfull, first_lanes(rem));
    else if (rem > 0) f(Blk<Y, true>{}, cfull, __mmask8((1u << rem) - 1u));
}

// max over rows r, r + rs, r + 2*rs of one column, NaN lanes or'ed into nan
template <class V, bool MASK>
static inline typename V::T colmax(const float* r, ptrdiff_t rs, typename V::M m, typename V::M& nan) {
    const auto a = V::template load<MASK>(r, m), b = V::template load<MASK>(r + rs, m),
               c = V::template load<MASK>(r + 2 * rs, m);
    nan = nan | V::unord(a, b) | V::unord(c, c);
    return V::max(V::max(a, b), c);
}

}  // namespace

void maxpool3s2(const View& in, int C, int n0, int n1, int oy0, int oy1, int ow, const View& out) {
    const ptrdiff_t rs = in.rs, ps = in.ps;
    for (int n = n0; n < n1; ++n)
        for (int oy = oy0; oy < oy1; ++oy) {
            const float* ib = in.at(n, 2 * oy - 1, -1);
            float* ob = out.at(n, oy, 0);
            for_blocks(C, [&](auto blk, int c, auto m) {
                using V = typename decltype(blk)::V;
                constexpr bool MASK = decltype(blk)::MASK;
                const float* r = ib + c;
                float* o = ob + c;
                typename V::M nl = 0;  // left column (2*ox - 1) of the current window
                auto left = colmax<V, MASK>(r, rs, m, nl);
                for (int ox = 0; ox < ow; ++ox, r += 2 * ps, o += out.ps) {
                    typename V::M nm = 0, nr = 0;
                    const auto mid = colmax<V, MASK>(r + ps, rs, m, nm);
                    const auto right = colmax<V, MASK>(r + 2 * ps, rs, m, nr);
                    const auto v = V::max(V::max(left, mid), right);
                    V::template store<MASK>(o, V::nan_where(v, typename V::M(nl | nm | nr)), m);
                    left = right;
                    nl = nr;
                }
            });
        }
}

void maxpool2s2(const View& in, int C, int n0, int n1, int oy0, int oy1, int ow, const View& out) {
    const ptrdiff_t rs = in.rs, ps = in.ps;
    for (int n = n0; n < n1; ++n)
        for (int oy = oy0; oy < oy1; ++oy) {
            const float* a = in.at(n, 2 * oy, 0);
            float* o = out.at(n, oy, 0);
            for (int ox = 0; ox < ow; ++ox, a += 2 * ps, o += out.ps)
                for_blocks(C, [&](auto blk, int c, auto m) {
                    using V = typename decltype(blk)::V;
                    constexpr bool MASK = decltype(blk)::MASK;
                    const auto v0 = V::template load<MASK>(a + c, m), v1 = V::template load<MASK>(a + ps + c, m);
                    const auto v2 = V::template load<MASK>(a + rs + c, m), v3 = V::template load<MASK>(a + rs + ps + c, m);
                    const auto mx = V::max(V::max(v0, v1), V::max(v2, v3));
                    V::template store<MASK>(o + c, V::nan_where(mx, typename V::M(V::unord(v0, v1) | V::unord(v2, v3))), m);
                });
        }
}

void avgpool(const View& in, int C, int N, int H, int W, float* out) {
    const float scale = 1.f / float(H * W);
    for (int n = 0; n < N; ++n) {
        float* o = out + size_t(n) * C;
        for_blocks(C, [&](auto blk, int c, auto m) {
            using V = typename decltype(blk)::V;
            constexpr bool MASK = decltype(blk)::MASK;
            auto acc = V::zero();
            for (int y = 0; y < H; ++y)
                for (int x = 0; x < W; ++x) acc = V::add(acc, V::template load<MASK>(in.at(n, y, x) + c, m));
            V::template store<MASK>(o + c, V::mul(acc, V::set1(scale)), m);
        });
    }
}

}  // namespace pyfer::avx512
