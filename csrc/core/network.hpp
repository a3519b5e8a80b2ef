// The one description of a network the engine runs, and the one schema of each block kind.
//
// A network is a stem (kxk conv + ReLU, then a 3x3/2 max pool), a list of blocks (kind, module
// path, channels, stride), an optional 1x1 conv5 (+ ReLU), global average pooling and the
// classifier. training/export.py writes it into the weights' metadata ("network", built from the
// PyTorch module tree by training.models.network_description); for files exported before that,
// the loader derives the same description from "arch" + "stem" (default_network).
//
// Each block kind's convs form a named struct, templated on what a conv is in a layer: Conv (raw
// OIHW weights: the model, csrc/ref), CpuConv (packed for one algorithm: csrc/blocks), NetConv /
// ConvW (csrc/cuda). block_convs() is the schema mapping a block to its convs: module paths (the
// tensor names of training/models.py), shapes, ReLU and where each conv reads. Adding a block
// kind starts here (docs/architecture.md).
//
// Plain C++17 and the standard library only: the CUDA sources include it.
#pragma once
#include <algorithm>
#include <array>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace pyfer {

enum class BlockKind { ShuffleDown, ShuffleBasic, Basic, FFE };  // order = BlockConvs' alternatives

// "shuffle_down", "shuffle_basic", "basic", "ffe": the spelling in the metadata
inline const char* block_kind_name(BlockKind k) {
    switch (k) {
        case BlockKind::ShuffleDown: return "shuffle_down";
        case BlockKind::ShuffleBasic: return "shuffle_basic";
        case BlockKind::Basic: return "basic";
        case BlockKind::FFE: return "ffe";
    }
    return "?";
}
inline bool parse_block_kind(const std::string& s, BlockKind* k) {
    for (BlockKind c : {BlockKind::ShuffleDown, BlockKind::ShuffleBasic, BlockKind::Basic, BlockKind::FFE})
        if (s == block_kind_name(c)) { *k = c; return true; }
    return false;
}

constexpr int FFE_GROUPS = 4;  // training.models.NUM_FFE_GROUPS

struct BlockDesc {
    BlockKind kind = BlockKind::Basic;
    std::string name;  // module path, e.g. "stage3.0", "layer4.1"
    int cin = 0, cout = 0, stride = 1;
    int out_size(int h) const { return stride == 2 ? (h - 1) / 2 + 1 : h; }
    // Basic / FFE: a 1x1/stride conv on the residual path where the shape changes
    bool has_shortcut() const {
        return (kind == BlockKind::Basic || kind == BlockKind::FFE) && (stride != 1 || cin != cout);
    }
};

struct StemDesc {
    int cout = 0, k = 3, stride = 1;
};

struct NetDesc {
    StemDesc stem;
    std::vector<BlockDesc> blocks;
    int conv5 = 0;  // output channels of the 1x1 conv + ReLU before pooling; 0: none
    int features() const { return conv5 ? conv5 : blocks.empty() ? stem.cout : blocks.back().cout; }
};

// One conv: module path, shape, ReLU, and whether it reads the block's input map (else a map at
// the block's output resolution). Zero padding k/2.
struct ConvSpec {
    std::string name;  // e.g. "stage2.0.branch2.1" (tensors <name>.conv.weight / .conv.bias)
    int cin = 0, cout = 0, k = 1, stride = 1, groups = 1;
    bool relu = true;
    bool at_input = true;
    // one filter per channel (groups == cin == cout): said, not read from groups, which is 1 for
    // a one-channel depthwise conv as for a dense one, and each is packed for its own kernel
    bool depthwise = false;
    // output size of this conv in a block whose input is h x h and output ho x ho
    int out_size(int h, int ho) const { return at_input ? (h + 2 * (k / 2) - k) / stride + 1 : ho; }
    double flops(int oh, int ow) const { return 2.0 * oh * ow * cout * (cin / groups) * k * k; }
};

// ---- the convs of each block kind, by name -----------------------------------------------------
// each(f): every conv in module order (the export's tensor order); map(f): the same struct over
// f's results (f(const C&) -> C2), in that order.

template <class C>
struct ShuffleDownConvs {  // stride 2: branch1 = dw3x3/2, 1x1+ReLU; branch2 = 1x1+ReLU, dw3x3/2, 1x1+ReLU
    C b1_dw, b1_pw, pw1, dw, pw2;
    template <class F> void each(F&& f) const { f(b1_dw); f(b1_pw); f(pw1); f(dw); f(pw2); }
    template <class F> void each(F&& f) { f(b1_dw); f(b1_pw); f(pw1); f(dw); f(pw2); }
    template <class F> auto map(F&& f) const -> ShuffleDownConvs<decltype(f(b1_dw))> {
        return {f(b1_dw), f(b1_pw), f(pw1), f(dw), f(pw2)};
    }
};

template <class C>
struct ShuffleBasicConvs {  // stride 1, on the second half of the channels: 1x1+ReLU, dw3x3, 1x1+ReLU
    C pw1, dw, pw2;
    template <class F> void each(F&& f) const { f(pw1); f(dw); f(pw2); }
    template <class F> void each(F&& f) { f(pw1); f(dw); f(pw2); }
    template <class F> auto map(F&& f) const -> ShuffleBasicConvs<decltype(f(pw1))> { return {f(pw1), f(dw), f(pw2)}; }
};

template <class C>
struct BasicConvs {  // ResNet basic block: 3x3/s+ReLU, 3x3; shortcut 1x1/s where the shape changes
    C conv1, conv2;
    std::optional<C> shortcut;
    template <class F> void each(F&& f) const { f(conv1); f(conv2); if (shortcut) f(*shortcut); }
    template <class F> void each(F&& f) { f(conv1); f(conv2); if (shortcut) f(*shortcut); }
    template <class F> auto map(F&& f) const -> BasicConvs<decltype(f(conv1))> {
        using C2 = decltype(f(conv1));
        BasicConvs<C2> r{f(conv1), f(conv2), std::nullopt};
        if (shortcut) r.shortcut = f(*shortcut);
        return r;
    }
};

template <class C>
struct FFEConvs {  // conv_in 3x3/s+ReLU, left/right chains of FFE_GROUPS 3x3+ReLU, conv_out 3x3; shortcut
    C conv_in;
    std::array<C, FFE_GROUPS> left, right;
    C conv_out;
    std::optional<C> shortcut;
    template <class F> void each(F&& f) const {
        f(conv_in);
        for (auto& c : left) f(c);
        for (auto& c : right) f(c);
        f(conv_out);
        if (shortcut) f(*shortcut);
    }
    template <class F> void each(F&& f) {
        f(conv_in);
        for (auto& c : left) f(c);
        for (auto& c : right) f(c);
        f(conv_out);
        if (shortcut) f(*shortcut);
    }
    template <class F> auto map(F&& f) const -> FFEConvs<decltype(f(conv_in))> {
        using C2 = decltype(f(conv_in));
        C2 ci = f(conv_in);  // sequenced: module order
        std::array<C2, FFE_GROUPS> l{f(left[0]), f(left[1]), f(left[2]), f(left[3])};
        std::array<C2, FFE_GROUPS> r{f(right[0]), f(right[1]), f(right[2]), f(right[3])};
        FFEConvs<C2> out{std::move(ci), std::move(l), std::move(r), f(conv_out), std::nullopt};
        if (shortcut) out.shortcut = f(*shortcut);
        return out;
    }
};
static_assert(FFE_GROUPS == 4, "FFEConvs::map spells out the groups");

template <class C>
using BlockConvs = std::variant<ShuffleDownConvs<C>, ShuffleBasicConvs<C>, BasicConvs<C>, FFEConvs<C>>;

// A block of a network in one layer's representation: its description and its convs.
template <class C>
struct BlockT {
    BlockDesc desc;
    BlockConvs<C> convs;
    template <class F> void each_conv(F&& f) const { std::visit([&](const auto& s) { s.each(f); }, convs); }
    template <class F> void each_conv(F&& f) { std::visit([&](auto& s) { s.each(f); }, convs); }
    template <class F> auto map(F&& f) const -> BlockT<std::decay_t<decltype(f(std::declval<const C&>()))>> {
        using C2 = std::decay_t<decltype(f(std::declval<const C&>()))>;
        return {desc, std::visit([&](const auto& s) -> BlockConvs<C2> { return s.map(f); }, convs)};
    }
    template <class S> const S& as() const { return std::get<S>(convs); }
};

// ---- the schema ----------------------------------------------------------------------------------
// The convs of block b (module paths, shapes, ReLU, input side), each made by make(const ConvSpec&),
// in module order. The caller has validated b (check_network).
template <class Make>
auto block_convs(const BlockDesc& b, Make&& make) -> BlockConvs<std::decay_t<decltype(make(ConvSpec{}))>> {
    using C = std::decay_t<decltype(make(ConvSpec{}))>;
    auto spec = [&](const char* suffix, int cin, int cout, int k, int stride, bool relu, bool at_input) {
        return ConvSpec{b.name + "." + suffix, cin, cout, k, stride, 1, relu, at_input};
    };
    auto depthwise3x3 = [&](const char* suffix, int c, int stride, bool at_input) {
        return ConvSpec{b.name + "." + suffix, c, c, 3, stride, c, false, at_input, true};
    };
    const int half = b.cout / 2;
    switch (b.kind) {
        case BlockKind::ShuffleDown: {
            C b1_dw = make(depthwise3x3("branch1.0", b.cin, 2, true));
            C b1_pw = make(spec("branch1.1", b.cin, half, 1, 1, true, false));
            C pw1 = make(spec("branch2.0", b.cin, half, 1, 1, true, true));
            C dw = make(depthwise3x3("branch2.1", half, 2, true));
            C pw2 = make(spec("branch2.2", half, half, 1, 1, true, false));
            return ShuffleDownConvs<C>{std::move(b1_dw), std::move(b1_pw), std::move(pw1), std::move(dw), std::move(pw2)};
        }
        case BlockKind::ShuffleBasic: {
            C pw1 = make(spec("branch2.0", half, half, 1, 1, true, true));
            C dw = make(depthwise3x3("branch2.1", half, 1, false));
            C pw2 = make(spec("branch2.2", half, half, 1, 1, true, false));
            return ShuffleBasicConvs<C>{std::move(pw1), std::move(dw), std::move(pw2)};
        }
        case BlockKind::Basic: {
            C c1 = make(spec("conv1", b.cin, b.cout, 3, b.stride, true, true));
            C c2 = make(spec("conv2", b.cout, b.cout, 3, 1, false, false));
            BasicConvs<C> r{std::move(c1), std::move(c2), std::nullopt};
            if (b.has_shortcut()) r.shortcut = make(spec("shortcut", b.cin, b.cout, 1, b.stride, false, true));
            return r;
        }
        case BlockKind::FFE: {
            const int w = b.cout / FFE_GROUPS;
            C ci = make(spec("conv_in", b.cin, b.cout, 3, b.stride, true, true));
            auto chain = [&](const char* side, int i) {
                return make(ConvSpec{b.name + "." + side + "." + std::to_string(i), w, w, 3, 1, 1, true, false});
            };
            std::array<C, FFE_GROUPS> l{chain("left", 0), chain("left", 1), chain("left", 2), chain("left", 3)};
            std::array<C, FFE_GROUPS> r{chain("right", 0), chain("right", 1), chain("right", 2), chain("right", 3)};
            C co = make(spec("conv_out", b.cout, b.cout, 3, 1, false, false));
            FFEConvs<C> out{std::move(ci), std::move(l), std::move(r), std::move(co), std::nullopt};
            if (b.has_shortcut()) out.shortcut = make(spec("shortcut", b.cin, b.cout, 1, b.stride, false, true));
            return out;
        }
    }
    throw std::logic_error("block_convs: unknown block kind");
}

inline ConvSpec stem_spec(const NetDesc& d, int in_channels) {
    return ConvSpec{"stem", in_channels, d.stem.cout, d.stem.k, d.stem.stride, 1, true, true};
}
inline ConvSpec conv5_spec(const NetDesc& d) {  // only where d.conv5 > 0
    const int cin = d.blocks.empty() ? d.stem.cout : d.blocks.back().cout;
    return ConvSpec{"conv5", cin, d.conv5, 1, 1, 1, true, true};
}

// ---- sizes and FLOPs, from the description -------------------------------------------------------
inline int stem_out_size(const NetDesc& d, int input_size) {
    const int k = d.stem.k, p = k / 2;
    return (input_size + 2 * p - k) / d.stem.stride + 1;
}
inline int pool_out_size(const NetDesc& d, int input_size) { return (stem_out_size(d, input_size) - 1) / 2 + 1; }

// FLOPs of one image through block b with an h x h input (multiply-add = 2)
inline double block_flops(const BlockDesc& b, int h) {
    const int ho = b.out_size(h);
    double f = 0;
    auto convs = block_convs(b, [](const ConvSpec& s) { return s; });
    std::visit([&](const auto& s) {
        s.each([&](const ConvSpec& c) {
            const int o = c.out_size(h, ho);
            f += c.flops(o, o);
        });
    }, convs);
    return f;
}
inline double stem_flops(const NetDesc& d, int in_channels, int input_size) {
    const int o = stem_out_size(d, input_size);
    return stem_spec(d, in_channels).flops(o, o);
}
// conv5 (if any) + the classifier, on an h x h map
inline double head_flops(const NetDesc& d, int h, int num_classes) {
    return (d.conv5 ? conv5_spec(d).flops(h, h) : 0.0) + 2.0 * d.features() * num_classes;
}
inline double net_flops(const NetDesc& d, int in_channels, int input_size, int num_classes) {
    double f = stem_flops(d, in_channels, input_size);
    int h = pool_out_size(d, input_size);
    for (const BlockDesc& b : d.blocks) {
        f += block_flops(b, h);
        h = b.out_size(h);
    }
    return f + head_flops(d, h, num_classes);
}

// Floats of the largest activation map of one image (the input, the stem's output, each block's
// input and output at its widest, conv5's output): the engine's workspace is a few such maps per
// image of a batch group, so this bounds what a description can make it allocate.
inline double largest_map_floats(const NetDesc& d, int in_channels, int input_size) {
    const double s = input_size, so = stem_out_size(d, input_size);
    double most = std::max(s * s * in_channels, so * so * d.stem.cout);
    double h = pool_out_size(d, input_size);
    for (const BlockDesc& b : d.blocks) {
        // at the input's resolution: the input, and a down unit's first 1x1 (half its output);
        // every other conv of a block writes at the output's
        const int at_input = b.kind == BlockKind::ShuffleDown ? std::max(b.cin, b.cout / 2) : b.cin;
        most = std::max(most, h * h * at_input);
        h = b.out_size(int(h));
        most = std::max(most, h * h * b.cout);
    }
    return std::max(most, h * h * d.conv5);
}

}  // namespace pyfer
