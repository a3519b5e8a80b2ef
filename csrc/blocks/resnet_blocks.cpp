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

void basic_block_forward(const Kernels& K, const Block& b, const View& in, int n, int H, const View& out,
                         Workspace& ws) {
    const Conv &c1 = b.convs[0], &c2 = b.convs[1];
    const int C = b.cout, Ho = (H - 1) / b.stride + 1;
    float* t1 = ws.get(S_T1, padded_size(n, Ho, Ho, C, 1));
    View T1 = padded_view(t1, Ho, Ho, C, 1);
    zero_border(T1, n, Ho, Ho, C, 1);
    Epilogue e1;
    e1.out = T1; e1.relu = true;
    K.conv(c1.pc, in, 0, n, 0, Ho, Ho, e1);
    Epilogue e2;
    e2.out = out; e2.relu = true; e2.res = in;
    if (b.has_shortcut) {
        const Conv& sc = b.convs[2];
        float* s = ws.get(S_SC, padded_size(n, Ho, Ho, C, 0));
        View SC = padded_view(s, Ho, Ho, C, 0);
        Epilogue es;
        es.out = SC;
        K.conv(sc.pc, in, 0, n, 0, Ho, Ho, es);
        e2.res = SC;
    }
    K.conv(c2.pc, T1, 0, n, 0, Ho, Ho, e2);
}

void ffe_forward(const Kernels& K, const Block& b, const View& in, int n, int H, const View& out, Workspace& ws) {
    const int C = b.cout, w = C / 4, Ho = (H - 1) / b.stride + 1;
    const Conv& cin = b.convs[0];
    const Conv& cout = b.convs[9];
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
    K.conv(cin.pc, in, 0, n, 0, Ho, Ho, e0);
    int cur = 0;
    for (int i = 0; i < 4; ++i) {  // left chain
        Epilogue e;
        e.out = Y.ch(i * w); e.relu = true;
        if (i < 3) { e.out2 = T[cur ^ 1]; e.src2 = X.ch((i + 1) * w); }
        K.conv(b.convs[1 + i].pc, i == 0 ? X.ch(0) : T[cur], 0, n, 0, Ho, Ho, e);
        cur ^= 1;
    }
    for (int i = 3; i >= 0; --i) {  // right chain
        Epilogue e;
        e.out = Y.ch(i * w); e.relu = true; e.accumulate = true;
        if (i > 0) { e.out2 = T[cur ^ 1]; e.src2 = X.ch((i - 1) * w); }
        K.conv(b.convs[5 + i].pc, i == 3 ? X.ch(3 * w) : T[cur], 0, n, 0, Ho, Ho, e);
        cur ^= 1;
    }
    Epilogue eo;
    eo.out = out; eo.relu = true; eo.res = in;
    if (b.has_shortcut) {
        const Conv& sc = b.convs[10];
        View SC = padded_view(ws.get(S_SC, padded_size(n, Ho, Ho, C, 0)), Ho, Ho, C, 0);
        Epilogue es;
        es.out = SC;
        K.conv(sc.pc, in, 0, n, 0, Ho, Ho, es);
        eo.res = SC;
    }
    K.conv(cout.pc, Y, 0, n, 0, Ho, Ho, eo);
}

void head_forward(const Kernels& K, const Model& m, const View& in, int n, int H, Workspace& ws, float* logits) {
    const int F = m.features;
    float* feat = ws.get(S_FEAT, size_t(n) * F);
    if (m.has_conv5) {
        std::fill(feat, feat + size_t(n) * F, 0.f);
        Epilogue e;
        e.relu = true; e.pool = feat; e.pool_ns = F; e.pool_scale = 1.f / float(H * H);
        K.conv(m.conv5.pc, in, 0, n, 0, H, H, e);
    } else {
        K.avgpool(in, F, n, H, H, feat);
    }
    K.linear(feat, n, F, m.fc_w.data(), m.fc_b.data(), m.num_classes, logits);
}

}  // namespace pyfer
