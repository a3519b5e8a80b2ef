// Network description built from an exported safetensors file: the architecture is rebuilt from
// the `pyfer` metadata (same module tree as training/models.py, hence the same tensor names),
// every tensor is validated against the expected shape, and weights are kept both raw (OIHW, for
// the reference path) and pre-packed for the optimised kernels.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "../kernels/kernels.hpp"
#include "safetensors.hpp"

namespace pyfer {

struct Conv {
    std::string name;  // module path, e.g. "stage2.0.branch2.1"
    int cin = 0, cout = 0, k = 1, stride = 1, groups = 1;
    bool relu = true;
    std::vector<float> w, b;  // OIHW, bias
    PackedConv pc;            // groups == 1
    PackedDW pd;              // depthwise 3x3
    PackedConv pc_flat;       // stem only: the kxk conv as a 1x1 over im2col rows (K = k*k*cin)
    PackedSmall ps;           // stem only: direct small-cin conv (used when packed)
    PackedWino pw;            // 3x3 stride 1 (teacher): Winograd F(2x2,3x3) weights, when packed
    PackedSkip0 psk;          // 1x1 over post-ReLU input: zero-skipping kernel's weights, when packed
    void pack();
    void pack_flat();  // fills pc_flat (stem)
    void pack_skip0() { psk = pyfer::pack_skip0(w.data(), b.data(), cout, cin); }
    // the engine's choice for post-ReLU 1x1s: the dense panels are then never read, so they are
    // dropped (conv5's alone are 1.9 MB)
    void pack_skip0_only() { pack_skip0(); pc = PackedConv(); }
    void pack_wino() { pw = pyfer::pack_wino(w.data(), b.data(), cout, cin); }
    void pack_small() { ps = pyfer::pack_small(w.data(), b.data(), cout, cin, k, stride); }  // fills ps (stem)
    double flops(int oh, int ow) const { return 2.0 * oh * ow * cout * (cin / groups) * k * k; }
};

enum class BlockKind { ShuffleDown, ShuffleBasic, Basic, FFE };

struct Block {
    BlockKind kind;
    std::string name;  // e.g. "stage3.0", "layer4.1"
    int cin = 0, cout = 0, stride = 1;
    // ShuffleDown: b1_dw, b1_pw, b2_pw1, b2_dw, b2_pw2     ShuffleBasic: pw1, dw, pw2
    // Basic: conv1, conv2 [, shortcut]     FFE: conv_in, left0..3, right0..3, conv_out [, shortcut]
    std::vector<Conv> convs;
    bool has_shortcut = false;
};

struct Model {
    std::string path, arch, stem, meta_json;
    int num_classes = 0, in_channels = 1, input_size = 0;
    std::vector<std::string> class_names;
    Conv stem_conv;
    std::vector<Block> blocks;
    bool has_conv5 = false;
    Conv conv5;
    int features = 0;
    std::vector<float> fc_w, fc_b;

    static std::shared_ptr<Model> load(const std::string& path);  // throws FileNotFound/FormatError
    static std::shared_ptr<Model> load(const SafeTensors& st);     // same, from an opened file (fuzzers)

    // spatial sizes: after stem conv, after max pool, and the output size of every block
    int stem_out() const;
    int pool_out() const { return (stem_out() - 1) / 2 + 1; }
    std::vector<int> block_out() const;
    double total_flops() const;  // per image
};

}  // namespace pyfer
