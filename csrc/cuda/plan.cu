// Launch plan builder and the CPU emulator (see plan.cuh). No kernels here.
#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "plan.cuh"
#include "runner.hpp"

namespace pyfer::cuda {

namespace {

constexpr size_t ALIGN = 64;  // floats (256 bytes) between arena segments
size_t align_up(size_t v) { return (v + ALIGN - 1) / ALIGN * ALIGN; }

size_t push(std::vector<float>& arena, const float* p, size_t n) {
    const size_t off = arena.size();
    arena.insert(arena.end(), p, p + n);
    arena.resize(align_up(arena.size()), 0.f);
    return off;
}

ConvW pack_raw(std::vector<float>& arena, const NetConv& c) {  // depthwise [C][9], stem OIHW
    ConvW r;
    r.w = push(arena, c.w.data(), c.w.size());
    r.b = push(arena, c.b.data(), c.b.size());
    return r;
}

ConvW pack_gemm(std::vector<float>& arena, const NetConv& c) {  // OIHW -> B [K][Cout], k = (ky*ks+kx)*cin+ci
    if (c.groups != 1) throw std::logic_error("pack_gemm: grouped conv");
    const int K = c.k * c.k * c.cin;
    std::vector<float> B(size_t(K) * c.cout);
    for (int o = 0; o < c.cout; ++o)
        for (int ci = 0; ci < c.cin; ++ci)
            for (int t = 0; t < c.k * c.k; ++t)
                B[size_t(t * c.cin + ci) * c.cout + o] = c.w[(size_t(o) * c.cin + ci) * c.k * c.k + t];
    ConvW r;
    r.w = push(arena, B.data(), B.size());
    r.b = push(arena, c.b.data(), c.b.size());
    return r;
}

bool is_dw(const NetConv& c) { return c.depthwise; }

struct Arena {
    float* base;
    const Layout* L;
    size_t need[S_NSLOTS] = {};
    float* get(Slot s, size_t floats) {
        need[s] = std::max(need[s], floats);
        return base ? base + L->off[s] : nullptr;
    }
};

GemmDesc make_gemm(int mode, int n, int Hi, int Ho, int stride, int ks, int Cin, int Cout, Act a, const float* w,
                   const float* bias, float* out, int o_ps, int o_off, int o_step, bool relu) {
    GemmDesc d;
    d.mode = mode;
    d.N = n; d.Hi = Hi; d.Wi = Hi; d.Ho = Ho; d.Wo = Ho; d.stride = stride; d.ks = ks;
    d.Cin = Cin; d.K = mode == A_DENSE ? ks * ks * Cin : Cin; d.M = n * Ho * Ho; d.Cout = Cout;
    d.a = a; d.w = w; d.bias = bias;
    d.out = out; d.o_ps = o_ps; d.o_off = o_off; d.o_step = o_step; d.relu = relu ? 1 : 0;
    return d;
}

Step group(std::initializer_list<GemmDesc> ds) {
    Step s;
    s.kind = Step::GEMM;
    for (auto& d : ds) s.g.d[s.g.n++] = d;
    return s;
}

Act act(const float* p, int ps, int off = 0) { return Act{p, ps, off}; }

// One walk over the network; with A.base == nullptr it only measures the slots.
Plan walk(const Net& net, const Weights& W, const float* wb, Arena& A, int n) {
    auto WP = [&](size_t off) -> const float* { return wb ? wb + off : nullptr; };
    Plan p;
    p.n = n;
    const int S = net.input_size, ic = net.in_channels;
    p.x = A.get(S_X, size_t(n) * ic * S * S);
    int H = net.pool_out(), C = net.stem.cout;
    Slot cur = S_A0;
    float* X = A.get(cur, size_t(n) * H * H * C);
    {
        Step s;
        s.kind = Step::STEM;
        StemDesc& d = s.stem;
        d.x = p.x; d.N = n; d.Cin = ic; d.S = S;
        d.w = WP(W.stem.w); d.b = WP(W.stem.b);
        d.Cout = C; d.ks = net.stem.k; d.stride = net.stem.stride; d.Hc = net.stem_out(); d.Hp = H;
        d.out = X;
        p.steps.push_back(s);
    }
    for (size_t bi = 0; bi < net.blocks.size(); ++bi) {
        const BlockDesc& b = net.blocks[bi].desc;
        const BlockConvs<ConvW>& cw = W.blocks[bi];
        const int Ho = b.out_size(H);
        const Slot nxt = cur == S_A0 ? S_A1 : S_A0;
        float* O = A.get(nxt, size_t(n) * Ho * Ho * b.cout);
        switch (b.kind) {
            case BlockKind::ShuffleBasic: {
                const auto& c = std::get<ShuffleBasicConvs<ConvW>>(cw);
                const int half = b.cout / 2;
                float* T = A.get(S_T, size_t(n) * H * H * half);
                // branch2.0: 1x1 + ReLU on the second half (the split is a channel offset)
                p.steps.push_back(group({make_gemm(A_PW, n, H, H, 1, 1, half, half, act(X, C, half),
                                                   WP(c.pw1.w), WP(c.pw1.b), T, half, 0, 1, true)}));
                // branch2.1 dw3x3 (in the loader) + branch2.2 1x1 + ReLU -> odd channels;
                // the identity half x1 -> even channels (concat + shuffle as a store pattern)
                GemmDesc d = make_gemm(A_DWPW, n, H, H, 1, 3, half, half, act(T, half), WP(c.pw2.w), WP(c.pw2.b),
                                       O, b.cout, 1, 2, true);
                d.dww = WP(c.dw.w); d.dwb = WP(c.dw.b);
                d.pass = act(X, C, 0); d.pass_off = 0;
                p.steps.push_back(group({d}));
                break;
            }
            case BlockKind::ShuffleDown: {
                const auto& c = std::get<ShuffleDownConvs<ConvW>>(cw);
                const int half = b.cout / 2;
                float* T = A.get(S_T, size_t(n) * H * H * half);
                // branch2.0: 1x1 + ReLU at the input resolution
                p.steps.push_back(group({make_gemm(A_PW, n, H, H, 1, 1, b.cin, half, act(X, C),
                                                   WP(c.pw1.w), WP(c.pw1.b), T, half, 0, 1, true)}));
                // one launch: branch1 (dw/2 + 1x1 + ReLU -> even channels) and
                // branch2 (dw/2 + 1x1 + ReLU -> odd channels)
                GemmDesc d1 = make_gemm(A_DWPW, n, H, Ho, 2, 3, b.cin, half, act(X, C), WP(c.b1_pw.w),
                                        WP(c.b1_pw.b), O, b.cout, 0, 2, true);
                d1.dww = WP(c.b1_dw.w); d1.dwb = WP(c.b1_dw.b);
                GemmDesc d2 = make_gemm(A_DWPW, n, H, Ho, 2, 3, half, half, act(T, half), WP(c.pw2.w),
                                        WP(c.pw2.b), O, b.cout, 1, 2, true);
                d2.dww = WP(c.dw.w); d2.dwb = WP(c.dw.b);
                p.steps.push_back(group({d1, d2}));
                break;
            }
            case BlockKind::Basic: {
                const auto& c = std::get<BasicConvs<ConvW>>(cw);
                const auto& nc = net.blocks[bi].as<BasicConvs<NetConv>>();
                float* T = A.get(S_T, size_t(n) * Ho * Ho * b.cout);
                GemmDesc c1 = make_gemm(A_DENSE, n, H, Ho, b.stride, nc.conv1.k, b.cin, b.cout, act(X, C),
                                        WP(c.conv1.w), WP(c.conv1.b), T, b.cout, 0, 1, true);
                Act res = act(X, C);
                if (c.shortcut) {
                    float* SC = A.get(S_SC, size_t(n) * Ho * Ho * b.cout);
                    GemmDesc sc = make_gemm(A_PW, n, H, Ho, b.stride, 1, b.cin, b.cout, act(X, C), WP(c.shortcut->w),
                                            WP(c.shortcut->b), SC, b.cout, 0, 1, false);
                    p.steps.push_back(group({c1, sc}));
                    res = act(SC, b.cout);
                } else {
                    p.steps.push_back(group({c1}));
                }
                GemmDesc c2 = make_gemm(A_DENSE, n, Ho, Ho, 1, nc.conv2.k, b.cout, b.cout, act(T, b.cout),
                                        WP(c.conv2.w), WP(c.conv2.b), O, b.cout, 0, 1, true);
                c2.res = res;
                p.steps.push_back(group({c2}));
                break;
            }
            case BlockKind::FFE: {
                const auto& c = std::get<FFEConvs<ConvW>>(cw);
                const auto& nc = net.blocks[bi].as<FFEConvs<NetConv>>();
                const int Co = b.cout, w = Co / FFE_GROUPS;
                const size_t sz = size_t(n) * Ho * Ho * Co;
                float* T = A.get(S_T, sz);
                float* L = A.get(S_L, sz);
                float* R = A.get(S_R, sz);
                GemmDesc cin = make_gemm(A_DENSE, n, H, Ho, b.stride, nc.conv_in.k, b.cin, Co, act(X, C),
                                         WP(c.conv_in.w), WP(c.conv_in.b), T, Co, 0, 1, true);
                Act res = act(X, C);
                if (c.shortcut) {
                    float* SC = A.get(S_SC, sz);
                    GemmDesc sc = make_gemm(A_PW, n, H, Ho, b.stride, 1, b.cin, Co, act(X, C), WP(c.shortcut->w),
                                            WP(c.shortcut->b), SC, Co, 0, 1, false);
                    p.steps.push_back(group({cin, sc}));
                    res = act(SC, Co);
                } else {
                    p.steps.push_back(group({cin}));
                }
                // step i: left chain group i and right chain group G-1-i, independent, one launch.
                // Y_i^L = P_i^L(X_i + Y_{i-1}^L) (into L), Y_j^R = P_j^R(X_j + Y_{j+1}^R) (into R)
                for (int i = 0; i < FFE_GROUPS; ++i) {
                    const int j = FFE_GROUPS - 1 - i;
                    GemmDesc l = make_gemm(A_DENSE, n, Ho, Ho, 1, 3, w, w, act(T, Co, i * w), WP(c.left[i].w),
                                           WP(c.left[i].b), L, Co, i * w, 1, true);
                    if (i > 0) l.a2 = act(L, Co, (i - 1) * w);
                    GemmDesc r = make_gemm(A_DENSE, n, Ho, Ho, 1, 3, w, w, act(T, Co, j * w), WP(c.right[j].w),
                                           WP(c.right[j].b), R, Co, j * w, 1, true);
                    if (j < FFE_GROUPS - 1) r.a2 = act(R, Co, (j + 1) * w);
                    p.steps.push_back(group({l, r}));
                }
                // conv_out over Y = L + R (summed in the loader), + residual, ReLU
                GemmDesc co = make_gemm(A_DENSE, n, Ho, Ho, 1, 3, Co, Co, act(L, Co), WP(c.conv_out.w),
                                        WP(c.conv_out.b), O, Co, 0, 1, true);
                co.a2 = act(R, Co);
                co.res = res;
                p.steps.push_back(group({co}));
                break;
            }
        }
        X = O;
        H = Ho;
        C = b.cout;
        cur = nxt;
    }
    if (net.has_conv5) {
        float* F = A.get(S_F, size_t(n) * H * H * net.conv5.cout);
        p.steps.push_back(group({make_gemm(A_PW, n, H, H, 1, 1, C, net.conv5.cout, act(X, C), WP(W.conv5.w),
                                           WP(W.conv5.b), F, net.conv5.cout, 0, 1, true)}));
        X = F;
        C = net.conv5.cout;
    }
    p.logits = A.get(S_LOG, size_t(n) * net.num_classes);
    Step s;
    s.kind = Step::HEAD;
    HeadDesc& h = s.head;
    h.feat = X; h.N = n; h.HW = H * H; h.C = C;
    h.w = WP(W.fc_w); h.b = WP(W.fc_b); h.classes = net.num_classes; h.out = p.logits;
    p.steps.push_back(s);
    return p;
}

}  // namespace

Weights pack_weights(const Net& net) {
    Weights W;
    W.stem = pack_raw(W.host, net.stem);
    for (auto& b : net.blocks)  // module order, the kind's named convs
        W.blocks.push_back(b.map([&](const NetConv& c) { return is_dw(c) ? pack_raw(W.host, c) : pack_gemm(W.host, c); })
                               .convs);
    if (net.has_conv5) W.conv5 = pack_gemm(W.host, net.conv5);
    W.fc_w = push(W.host, net.fc_w.data(), net.fc_w.size());
    W.fc_b = push(W.host, net.fc_b.data(), net.fc_b.size());
    return W;
}

Layout layout_for(const Net& net, int cap) {
    Layout L;
    L.cap = cap;
    Weights none;  // offsets only matter with a weight base; measuring needs none
    for (auto& b : net.blocks) none.blocks.push_back(b.map([](const NetConv&) { return ConvW{}; }).convs);
    Arena A{nullptr, &L};
    walk(net, none, nullptr, A, cap);
    size_t off = 0;
    for (int s = 0; s < S_NSLOTS; ++s) {
        L.off[s] = off;
        off += align_up(A.need[s]);
    }
    L.total = off;
    return L;
}

Plan build_plan(const Net& net, const Weights& W, const float* wbase, float* abase, const Layout& layout, int n) {
    if (n < 1 || n > layout.cap) throw std::logic_error("build_plan: batch outside the arena's capacity");
    Arena A{abase, &layout};
    return walk(net, W, wbase, A, n);
}

// ---- CPU emulator ----------------------------------------------------------------------------
void run_plan_cpu(const Plan& p) {
    for (const Step& s : p.steps) {
        if (s.kind == Step::STEM) {
            const StemDesc& d = s.stem;
            for (int n = 0; n < d.N; ++n)
                for (int y = 0; y < d.Hp; ++y)
                    for (int x = 0; x < d.Hp; ++x)
                        for (int c = 0; c < d.Cout; ++c)
                            d.out[((size_t(n) * d.Hp + y) * d.Hp + x) * d.Cout + c] = stem_value(d, n, y, x, c);
        } else if (s.kind == Step::GEMM) {
            for (int gi = 0; gi < s.g.n; ++gi) {
                const GemmDesc& d = s.g.d[gi];
                std::vector<float> a(d.K);
                for (int m = 0; m < d.M; ++m) {
                    const int hw = d.Ho * d.Wo, n = m / hw, r = m - n * hw, oy = r / d.Wo, ox = r - oy * d.Wo;
                    for (int k = 0; k < d.K; ++k) a[k] = gemm_load_a(d, n, oy, ox, k);
                    for (int co = 0; co < d.Cout; ++co) {
                        float acc = 0.f;
                        for (int k = 0; k < d.K; ++k) acc += a[k] * d.w[size_t(k) * d.Cout + co];
                        gemm_store(d, m, co, acc);
                    }
                }
            }
        } else {
            const HeadDesc& d = s.head;
            std::vector<float> f(d.C);
            for (int n = 0; n < d.N; ++n) {
                for (int c = 0; c < d.C; ++c) {
                    float acc = 0.f;
                    for (int q = 0; q < d.HW; ++q) acc += d.feat[(size_t(n) * d.HW + q) * d.C + c];
                    f[c] = acc / float(d.HW);
                }
                for (int j = 0; j < d.classes; ++j) {
                    float acc = 0.f;
                    for (int c = 0; c < d.C; ++c) acc += d.w[size_t(j) * d.C + c] * f[c];
                    d.out[size_t(n) * d.classes + j] = acc + d.b[j];
                }
            }
        }
    }
}

std::vector<float> emulate(const Net& net, const float* x, int n) {
    Weights W = pack_weights(net);
    Layout L = layout_for(net, n);
    std::vector<float> arena(L.total + ALIGN, 0.f);
    Plan p = build_plan(net, W, W.host.data(), arena.data(), L, n);
    std::memcpy(p.x, x, sizeof(float) * size_t(n) * net.in_channels * net.input_size * net.input_size);
    run_plan_cpu(p);
    return std::vector<float>(p.logits, p.logits + size_t(n) * net.num_classes);
}

}  // namespace pyfer::cuda
