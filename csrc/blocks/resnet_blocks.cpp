// Teacher blocks, run over a whole group of images per conv (M = n*h*w pixels, so every weight
// panel is reused across the group).
//
// BasicBlock: T1 = relu(conv1(x)) into a padded buffer; the 1x1/s shortcut (if any) into SC;
//   conv2's epilogue adds the identity / shortcut and applies ReLU while storing (no add pass).
// FFE: X = relu(conv_in(x)) (padded, cout channels, groups X_i are channel slices of it);
//   left chain i = 0..3: Y[:, slice i] = P^L_i(in), with the epilogue also writing the next
//   chain input T = Y^L_i + X_{i+1} (ping-pong padded buffers TA/TB) — the add is fused;
//   right chain i = 3..0: the epilogue accumulates Y[:, slice i] += P^R_i(in) in place and writes
//   the next input T = Y^R_i + X_{i-1}. Concatenation is writing at channel offsets of Y.
//   out = relu(conv_out(Y) + shortcut) in conv_out's epilogue.
#include <algorithm>

#include "blocks.hpp"

namespace pyfer {

// Winograd F(2x2,3x3): tiles in chunks of TB (V and M of a chunk stay in L2): input transform,
// 16 GEMMs through the conv kernel (each a 1x1 conv over a 1 x tb "row" of tiles), output
// transform + epilogue.
void wino_conv(const Kernels& K, const PackedWino& pw, const View& in, int n, int H, const Epilogue& e,
                      Workspace& ws) {
    const int th = (H + 1) / 2, tw = th;
    const long T = long(n) * th * tw;
    const int cin = pw.cin, cout = pw.cout;
    int TB = 6144 / (cin + cout);  // V + M of a chunk: 16 * TB * (cin + cout) floats <= 384 KiB
    TB = std::max(12, std::min(240, TB / 6 * 6));
    if (T < TB) TB = int(T);
    float* V = ws.get(S_WV, size_t(16) * TB * cin);
    float* M = ws.get(S_WM, size_t(16) * TB * cout);
    for (long t0 = 0; t0 < T; t0 += TB) {
        const int tb = int(std::min<long>(TB, T - t0));
        const size_t ei = size_t(tb) * cin, eo = size_t(tb) * cout;
        K.wino_in(in, H, H, th, tw, int(t0), int(t0) + tb, cin, V, ei);
        for (int k = 0; k < 16; ++k) {
            View vv;
            vv.p = V + k * ei; vv.ps = cin; vv.rs = ptrdiff_t(ei); vv.ns = 0;
            Epilogue g;
            g.out.p = M + k * eo; g.out.ps = cout; g.out.rs = ptrdiff_t(eo); g.out.ns = 0;
            K.conv(pw.e[k], vv, 0, 1, 0, 1, tb, g);
        }
        K.wino_out(M, eo, cout, pw.bias.ptr, H, H, th, tw, int(t0), int(t0) + tb, e);
    }
}

void conv3x3(const Kernels& K, const CpuConv& c, const View& in, int n, int Ho, const Epilogue& e, Workspace& ws) {
    if (c.algo == ConvAlgo::Winograd) wino_conv(K, c.pw, in, n, Ho, e, ws);  // chosen where the map has the tiles
    else conv_rows(K, c, in, 0, n, 0, Ho, Ho, e);
}

void basic_block_forward(const Kernels& K, const BlockDesc& b, const BasicConvs<CpuConv>& c, const View& in, int n,
                         int H, const View& out, Workspace& ws) {
    const CpuConv &c1 = c.conv1, &c2 = c.conv2;
    const int C = b.cout, Ho = (H - 1) / b.stride + 1;
    float* t1 = ws.get(S_T1, padded_size(n, Ho, Ho, C, 1));
    View T1 = padded_view(t1, Ho, Ho, C, 1);
    zero_border(T1, n, Ho, Ho, C, 1);
    Epilogue e1;
    e1.out = T1; e1.relu = true;
    conv3x3(K, c1, in, n, Ho, e1, ws);
    Epilogue e2;
    e2.out = out; e2.relu = true; e2.res = in;
    if (c.shortcut) {
        float* s = ws.get(S_SC, padded_size(n, Ho, Ho, C, 0));
        View SC = padded_view(s, Ho, Ho, C, 0);
        Epilogue es;
        es.out = SC;
        conv_rows(K, *c.shortcut, in, 0, n, 0, Ho, Ho, es);
        e2.res = SC;
    }
    conv3x3(K, c2, T1, n, Ho, e2, ws);
}

void ffe_forward(const Kernels& K, const BlockDesc& b, const FFEConvs<CpuConv>& c, const View& in, int n, int H,
                 const View& out, Workspace& ws) {
    const int C = b.cout, w = C / FFE_GROUPS, Ho = (H - 1) / b.stride + 1;
    const CpuConv& cin = c.conv_in;
    const CpuConv& cout = c.conv_out;
    View X = padded_view(ws.get(S_X, padded_size(n, Ho, Ho, C, 1)), Ho, Ho, C, 1);
    View Y = padded_view(ws.get(S_Y, padded_size(n, Ho, Ho, C, 1)), Ho, Ho, C, 1);
    View T[2] = {padded_view(ws.get(S_TA, padded_size(n, Ho, Ho, w, 1)), Ho, Ho, w, 1),
                 padded_view(ws.get(S_TB, padded_size(n, Ho, Ho, w, 1)), Ho, Ho, w, 1)};
    zero_border(X, n, Ho, Ho, C, 1);
    zero_border(Y, n, Ho, Ho, C, 1);
    zero_border(T[0], n, Ho, Ho, w, 1);
    zero_border(T[1], n, Ho, Ho, w, 1);
    Epilogue e0;
    e0.out = X; e0.relu = true;
    conv3x3(K, cin, in, n, Ho, e0, ws);
    int cur = 0;
    for (int i = 0; i < 4; ++i) {  // left chain
        Epilogue e;
        e.out = Y.ch(i * w); e.relu = true;
        if (i < 3) { e.out2 = T[cur ^ 1]; e.src2 = X.ch((i + 1) * w); }
        conv3x3(K, c.left[i], i == 0 ? X.ch(0) : T[cur], n, Ho, e, ws);
        cur ^= 1;
    }
    for (int i = 3; i >= 0; --i) {  // right chain
        Epilogue e;
        e.out = Y.ch(i * w); e.relu = true; e.accumulate = true;
        if (i > 0) { e.out2 = T[cur ^ 1]; e.src2 = X.ch((i - 1) * w); }
        conv3x3(K, c.right[i], i == 3 ? X.ch(3 * w) : T[cur], n, Ho, e, ws);
        cur ^= 1;
    }
    Epilogue eo;
    eo.out = out; eo.relu = true; eo.res = in;
    if (c.shortcut) {
        View SC = padded_view(ws.get(S_SC, padded_size(n, Ho, Ho, C, 0)), Ho, Ho, C, 0);
        Epilogue es;
        es.out = SC;
        conv_rows(K, *c.shortcut, in, 0, n, 0, Ho, Ho, es);
        eo.res = SC;
    }
    conv3x3(K, cout, Y, n, Ho, eo, ws);
}

void head_forward(const Kernels& K, const CpuNet& net, const View& in, int n, int H, Workspace& ws, float* logits) {
    const Model& m = *net.model;
    const int F = m.features;
    float* feat = ws.get(S_FEAT, size_t(n) * F);
    if (net.conv5) {
        std::fill(feat, feat + size_t(n) * F, 0.f);
        Epilogue e;
        e.relu = true; e.pool = feat; e.pool_ns = F; e.pool_scale = 1.f / float(H * H);
        conv_rows(K, *net.conv5, in, 0, n, 0, H, H, e);
    } else {
        K.avgpool(in, F, n, H, H, feat);
    }
    K.linear(feat, n, F, net.fc_w.data(), net.fc_b.data(), m.num_classes, logits);
}

}  // namespace pyfer
