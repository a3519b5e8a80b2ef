// Fused ShuffleNetV2 units, one pass over the image in blocks of RB output rows.
//
// Basic unit (stride 1, C channels, half = C/2), per row block [oy0, oy1):
//   1. pw1 (1x1 + BN + ReLU) on the input channels [half, C) — the split is just a channel
//      offset in the input View — for the rows not yet computed up to oy1 (+1 halo row), into a
//      zero-padded per-image buffer P (rows are produced in order, each exactly once);
//   2. dw 3x3 + BN over P -> row-block buffer D;
//   3. pw2 (1x1 + BN + ReLU) over D with the "shuffle store" epilogue: output channel 2j <- x1[j]
//      (input channel j, the identity half), 2j+1 <- branch[j]. Concat + channel_shuffle(2) are
//      thus a store pattern; no shuffle pass and no concat buffer.
// Down-sampling unit (stride 2): per row block, branch1 = dw3x3/2 + BN (input -> D) then
//   1x1 + BN + ReLU (D -> B1 row buffer); branch2 as above but pw1 reads all input channels and
//   dw has stride 2; the final store interleaves B1 (even channels) with branch2 (odd channels).
// RB is chosen so a row block holds >= ~24 pixels, a multiple of 6 where possible (full tiles).
// pw1 reads post-ReLU channels (about half zeros): it runs on the zero-skipping 1x1 kernel where the
// planner chose it (every unit but the first, plan.cpp), else on the dense one — the two agree bit
// for bit.
// P, D and B1 have a pixel stride rounded up to 8 channels (aligned depthwise loads); P keeps its
// zero border across the units of a stage (Workspace::get_padded).
#include <algorithm>

#include "blocks.hpp"

namespace pyfer {

// rows per block: >= 24 pixels, preferring a pixel count that is a multiple of 6 (the AVX2
// micro-kernel's tile height) so no tile runs part-empty
static int row_block(int w, int h) {
    const int base = std::min(h, std::max(1, (24 + w - 1) / w));
    for (int rb = base; rb <= std::min(h, 2 * base); ++rb)
        if ((rb * w) % 6 == 0 || rb == h) return rb;
    return base;
}

// branch 2's first 1x1 (+BN+ReLU) of image i into P, for the rows [done, need) not produced yet
// (each row exactly once, in order), by its algorithm: zero-skipping (post-ReLU input) or dense,
// which agree bit for bit
static void pw1_rows(const Kernels& K, const CpuConv& pw1, const View& in, const View& P, int i, int& done, int need,
                     int W) {
    if (done >= need) return;
    Epilogue e;
    e.out = P; e.relu = true;
    conv_rows(K, pw1, in, i, i + 1, done, need, W, e);
    done = need;
}

// pixel stride of the unit's private buffers (P, D, B1): channels rounded up to 8, so the
// depthwise conv's 8-channel loads and stores are 32-byte aligned (58 -> 64: ~20% faster dw)
static int aligned_stride(int c) { return (c + 7) / 8 * 8; }

static View rows_view(float* buf, int w, int c, int row0) {  // dense rows, row `row0` at buf
    View v;
    v.ps = c; v.rs = ptrdiff_t(w) * c; v.ns = 0;
    v.p = buf - ptrdiff_t(row0) * v.rs;
    return v;
}

void shuffle_basic_forward(const Kernels& K, const BlockDesc& b, const ShuffleBasicConvs<CpuConv>& c, const View& in,
                           int n, int H, const View& out, Workspace& ws) {
    const CpuConv &pw1 = c.pw1, &dw = c.dw, &pw2 = c.pw2;
    const int C = b.cout, half = C / 2, W = H, hs = aligned_stride(half);
    const int RB = row_block(W, H);
    const View P = ws.get_padded(S_P, H, W, hs);
    float* dbuf = ws.get(S_D, size_t(RB) * W * hs);
    for (int i = 0; i < n; ++i) {
        int done = 0;
        for (int oy0 = 0; oy0 < H; oy0 += RB) {
            const int oy1 = std::min(H, oy0 + RB);
            pw1_rows(K, pw1, in.ch(half), P, i, done, std::min(H, oy1 + 1), W);
            View D = rows_view(dbuf, W, hs, oy0);
            K.dw3x3(dw.pd, P, i, i + 1, oy0, oy1, W, D, false);
            Epilogue e2;  // the shuffle store: pw2 reads the depthwise output (dense), always Direct
            e2.out = out; e2.relu = true; e2.shuf = in;
            K.conv(pw2.pc, D, i, i + 1, oy0, oy1, W, e2);
        }
    }
}

void shuffle_down_forward(const Kernels& K, const BlockDesc& b, const ShuffleDownConvs<CpuConv>& c, const View& in,
                          int n, int H, const View& out, Workspace& ws) {
    const CpuConv &b1dw = c.b1_dw, &b1pw = c.b1_pw, &pw1 = c.pw1, &dw = c.dw, &pw2 = c.pw2;
    const int cin = b.cin, half = b.cout / 2, W = H, hs = aligned_stride(half), cs = aligned_stride(cin);
    const int Ho = (H - 1) / 2 + 1, Wo = Ho;
    const int RB = row_block(Wo, Ho);
    const View P = ws.get_padded(S_P, H, W, hs);
    float* dbuf = ws.get(S_D, size_t(RB) * Wo * std::max(cs, hs));
    float* b1buf = ws.get(S_B1, size_t(RB) * Wo * hs);
    for (int i = 0; i < n; ++i) {
        int done = 0;
        for (int oy0 = 0; oy0 < Ho; oy0 += RB) {
            const int oy1 = std::min(Ho, oy0 + RB);
            // branch 1
            View D1 = rows_view(dbuf, Wo, cs, oy0);
            K.dw3x3(b1dw.pd, in, i, i + 1, oy0, oy1, Wo, D1, false);
            View B1 = rows_view(b1buf, Wo, hs, oy0);
            Epilogue e1;
            e1.out = B1; e1.relu = true;
            conv_rows(K, b1pw, D1, i, i + 1, oy0, oy1, Wo, e1);
            // branch 2
            pw1_rows(K, pw1, in, P, i, done, std::min(H, 2 * oy1), W);
            View D2 = rows_view(dbuf, Wo, hs, oy0);
            K.dw3x3(dw.pd, P, i, i + 1, oy0, oy1, Wo, D2, false);
            Epilogue e2;
            e2.out = out; e2.relu = true; e2.shuf = B1;
            K.conv(pw2.pc, D2, i, i + 1, oy0, oy1, Wo, e2);
        }
    }
}

}  // namespace pyfer
