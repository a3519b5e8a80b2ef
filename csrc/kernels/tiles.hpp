// Index geometry shared by the kernel backends: where a Winograd tile and its input patch lie,
// and the tap offsets of a small-cin conv window. No SIMD here; everything has internal linkage
// (static functions, a class in an anonymous namespace, no std:: container), so each backend's
// translation unit keeps its own copy, compiled with its own ISA flags (an inline function would
// be merged across them by the linker: docs/architecture.md, "How to add a kernel").
#pragma once
#include <cstddef>
#include <memory>

#include "kernels.hpp"

namespace pyfer {

// Winograd F(2x2,3x3) tile t (winograd.inc) -> its image and tile row / column.
static inline void wino_tile_pos(int t, int th, int tw, int& img, int& ty, int& tx) {
    img = t / (th * tw);
    const int r = t % (th * tw);
    ty = r / tw;
    tx = r % tw;
}

// The 16 input pixels of tile t's 4x4 patch (rows 2ty-1 .. 2ty+2, cols 2tx-1 .. 2tx+2 of an H x W
// map zero padded by 1), row-major; those beyond the pad (odd H / W) point at `zero`.
static inline void wino_patch(const View& in, int H, int W, int t, int th, int tw, const float* zero,
                              const float* d[16]) {
    int img, ty, tx;
    wino_tile_pos(t, th, tw, img, ty, tx);
    for (int r = 0; r < 4; ++r)
        for (int q = 0; q < 4; ++q) {
            const int iy = 2 * ty - 1 + r, ix = 2 * tx - 1 + q;
            d[r * 4 + q] = (iy <= H && ix <= W) ? in.at(img, iy, ix) : zero;
        }
}

// At least n zeros (a thread's own buffer, never written): the patch pixels beyond the pad.
static inline const float* wino_zeros(int n) {
    thread_local AlignedBuf zeros;
    if (zeros.n < size_t(n)) zeros.resize(size_t(n));  // zero filled
    return zeros.ptr;
}

namespace {

// Offsets of a k x k x cin conv window's taps from its top-left input element, in the packed
// (ky, kx, ci) order of PackedSmall's K dimension.
class SmallConvTaps {
public:
    SmallConvTaps(const PackedSmall& w, const View& in) : kk_(w.k * w.k * w.cin) {
        ptrdiff_t* p = fixed_;
        if (kk_ > FIXED) {
            more_.reset(new ptrdiff_t[size_t(kk_)]);
            p = more_.get();
        }
        for (int ky = 0; ky < w.k; ++ky)
            for (int kx = 0; kx < w.k; ++kx)
                for (int ci = 0; ci < w.cin; ++ci) p[(ky * w.k + kx) * w.cin + ci] = ky * in.rs + kx * in.ps + ci;
        p_ = p;
    }
    SmallConvTaps(const SmallConvTaps&) = delete;
    SmallConvTaps& operator=(const SmallConvTaps&) = delete;
    const ptrdiff_t* data() const { return p_; }
    int size() const { return kk_; }

private:
    static constexpr int FIXED = 7 * 7 * 4;  // a 7x7 window over 4 channels without a heap allocation
    int kk_;
    ptrdiff_t fixed_[FIXED];
    std::unique_ptr<ptrdiff_t[]> more_;  // not a std::vector: its members would be shared (see top)
    const ptrdiff_t* p_;
};

}  // namespace

}  // namespace pyfer
