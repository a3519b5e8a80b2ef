// The network as the CUDA backend sees it: the one description (core/network.hpp: block kinds
// and their named convs) over NetConv, free of the CPU engine's headers (so edits to
// csrc/kernels or csrc/blocks do not recompile the .cu files). backend.cpp fills it from a loaded
// pyfer::Model; weights are float32, OIHW, BatchNorm already folded.
#pragma once
#include <string>
#include <vector>

#include "../core/network.hpp"

namespace pyfer::cuda {

struct NetConv {
    int cin = 0, cout = 0, k = 1, stride = 1, groups = 1;
    bool depthwise = false;  // as ConvSpec::depthwise
    std::vector<float> w, b;  // OIHW ([cout][cin/groups][k][k]), bias [cout]
};

using NetBlock = BlockT<NetConv>;  // desc (kind, cin, cout, stride) + the kind's named convs

struct Net {
    std::string arch;
    int in_channels = 1, input_size = 0, num_classes = 0, features = 0;
    NetConv stem;  // kxk conv + ReLU, then 3x3/2 max pool (pad 1)
    std::vector<NetBlock> blocks;
    bool has_conv5 = false;
    NetConv conv5;  // 1x1 + ReLU (ShuffleNetV2)
    std::vector<float> fc_w, fc_b;  // [classes][features], [classes]

    int stem_out() const { return (input_size + 2 * (stem.k / 2) - stem.k) / stem.stride + 1; }
    int pool_out() const { return (stem_out() - 1) / 2 + 1; }
};

}  // namespace pyfer::cuda
