// Packing a model for the CPU kernels, the one choice of algorithm per conv, and the dispatch of a
// block to its fused implementation. The two per-kind switch points of this layer (plan_block
// maps any kind generically; block_forward, reads_input_border and block_kind_label name each).
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "blocks.hpp"

namespace pyfer {

const char* conv_algo_name(ConvAlgo a) {
    switch (a) {
        case ConvAlgo::Direct: return "direct";
        case ConvAlgo::Winograd: return "winograd";
        case ConvAlgo::Skip0: return "skip0";
        case ConvAlgo::Depthwise: return "depthwise";
        case ConvAlgo::Small: return "small";
        case ConvAlgo::Im2col: return "im2col";
    }
    return "?";
}

CpuConv pack_cpu_conv(const Conv& c, ConvAlgo algo) {
    CpuConv p;
    p.cin = c.cin; p.cout = c.cout; p.k = c.k; p.stride = c.stride; p.groups = c.groups; p.relu = c.relu;
    p.algo = algo;
    auto need = [&](bool ok) {
        if (!ok)
            throw std::logic_error(std::string("pack_cpu_conv: ") + conv_algo_name(algo) + " cannot run " + c.name +
                                   " (k " + std::to_string(c.k) + ", stride " + std::to_string(c.stride) +
                                   ", groups " + std::to_string(c.groups) + ")");
    };
    const float* w = c.w.data();
    const float* b = c.b.data();
    switch (algo) {
        case ConvAlgo::Direct:
            need(c.groups == 1);
            p.pc = pack_conv(w, b, c.cout, c.cin, c.k, c.stride);
            break;
        case ConvAlgo::Winograd:
            need(c.groups == 1 && c.k == 3 && c.stride == 1);
            p.pw = pack_wino(w, b, c.cout, c.cin);
            break;
        case ConvAlgo::Skip0:
            need(c.groups == 1 && c.k == 1 && c.stride == 1);
            p.psk = pack_skip0(w, b, c.cout, c.cin);
            break;
        case ConvAlgo::Depthwise:  // groups == cin == cout (a 1-channel conv is its own depthwise)
            need(c.k == 3 && c.cin == c.cout && c.groups == c.cin);
            p.pd = pack_dw(w, b, c.cout, c.stride);
            break;
        case ConvAlgo::Small:
            need(c.groups == 1);
            p.ps = pack_small(w, b, c.cout, c.cin, c.k, c.stride);
            break;
        case ConvAlgo::Im2col: {  // the kxk conv as a 1x1 over im2col columns ordered (ky, kx, ci)
            need(c.groups == 1);
            const int K = c.k * c.k * c.cin;
            std::vector<float> flat(size_t(c.cout) * K);
            for (int o = 0; o < c.cout; ++o)
                for (int ci = 0; ci < c.cin; ++ci)
                    for (int t = 0; t < c.k * c.k; ++t)
                        flat[size_t(o) * K + t * c.cin + ci] = w[(size_t(o) * c.cin + ci) * c.k * c.k + t];
            p.pc = pack_conv(flat.data(), b, c.cout, K, 1, 1);
            break;
        }
    }
    return p;
}

PlanOptions PlanOptions::from_env() {
    PlanOptions o;
    const char* w = std::getenv("PYFER_WINOGRAD");
    o.winograd = !(w && std::string(w) == "0");
    return o;
}

ConvAlgo choose_conv_algo(const ConvSpec& c, const ConvSite& site, const PlanOptions& o) {
    if (site.stem) return ConvAlgo::Small;  // cin 1 or 3: output channels are the vector dimension (~5x a K=9 GEMM)
    if (c.depthwise) return ConvAlgo::Depthwise;
    if (o.skip0 && site.sparse_input && c.k == 1 && c.stride == 1 && c.cin <= SKIP_MAX_CIN) return ConvAlgo::Skip0;
    if (o.winograd && c.k == 3 && c.stride == 1) {
        const int tiles = (site.out_size + 1) / 2;
        if (tiles * tiles >= WINO_MIN_TILES) return ConvAlgo::Winograd;
    }
    return ConvAlgo::Direct;
}

CpuBlock plan_block(const Block& b, int in_size, bool sparse_input, const PlanOptions& o) {
    const int ho = b.desc.out_size(in_size);
    return b.map([&](const Conv& c) {
        // only a conv reading the block's input sees that input's zeros
        const ConvSite site{c.out_size(in_size, ho), sparse_input && c.at_input, false};
        return pack_cpu_conv(c, choose_conv_algo(c, site, o));
    });
}

std::shared_ptr<const CpuNet> CpuNet::build(std::shared_ptr<const Model> m, const PlanOptions& o) {
    auto net = std::make_shared<CpuNet>();
    net->stem = pack_cpu_conv(m->stem_conv, choose_conv_algo(m->stem_conv, {m->stem_out(), false, true}, o));
    // A block's output is post-ReLU (every kind ends in one), about half zeros in the trained
    // student: the 1x1 convs reading it skip them. The first block reads the stem's max-pooled
    // map instead, ~99% non-zero: dense.
    int h = m->pool_out();
    for (size_t i = 0; i < m->blocks.size(); ++i) {
        net->blocks.push_back(plan_block(m->blocks[i], h, i > 0, o));
        h = m->blocks[i].desc.out_size(h);
    }
    if (m->conv5) net->conv5 = pack_cpu_conv(*m->conv5, choose_conv_algo(*m->conv5, {h, !m->blocks.empty(), false}, o));
    net->fc_w = aligned_copy(m->fc_w);
    net->fc_b = aligned_copy(m->fc_b);
    net->model = std::move(m);
    return net;
}

void conv_rows(const Kernels& K, const CpuConv& c, const View& in, int n0, int n1, int oy0, int oy1, int ow,
               const Epilogue& e) {
    switch (c.algo) {
        case ConvAlgo::Direct: K.conv(c.pc, in, n0, n1, oy0, oy1, ow, e); return;
        case ConvAlgo::Skip0: K.conv1x1_skip0(c.psk, in, n0, n1, oy0, oy1, ow, e); return;
        default: throw std::logic_error(std::string("conv_rows: a ") + conv_algo_name(c.algo) + " conv");
    }
}

// ---- per block kind --------------------------------------------------------------------------------
void block_forward(const Kernels& K, const CpuBlock& b, const View& in, int n, int h, const View& out, Workspace& ws) {
    switch (b.desc.kind) {
        case BlockKind::ShuffleDown:
            shuffle_down_forward(K, b.desc, b.as<ShuffleDownConvs<CpuConv>>(), in, n, h, out, ws);
            break;
        case BlockKind::ShuffleBasic:
            shuffle_basic_forward(K, b.desc, b.as<ShuffleBasicConvs<CpuConv>>(), in, n, h, out, ws);
            break;
        case BlockKind::Basic: basic_block_forward(K, b.desc, b.as<BasicConvs<CpuConv>>(), in, n, h, out, ws); break;
        case BlockKind::FFE: ffe_forward(K, b.desc, b.as<FFEConvs<CpuConv>>(), in, n, h, out, ws); break;
    }
}

bool reads_input_border(BlockKind k) { return k != BlockKind::ShuffleBasic; }

const char* block_kind_label(BlockKind k) {
    switch (k) {
        case BlockKind::ShuffleDown: return "shuffle unit (down)";
        case BlockKind::ShuffleBasic: return "shuffle unit (basic)";
        case BlockKind::Basic: return "resnet basic block";
        case BlockKind::FFE: return "FFE";
    }
    return "?";
}

}  // namespace pyfer
