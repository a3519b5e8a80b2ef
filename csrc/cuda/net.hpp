// Plain description of a network for the CUDA backend, free of the CPU engine's headers (so
// edits to csrc/kernels or csrc/core do not recompile the .cu files). backend.cpp fills it from
// a loaded pyfer::Model; weights are float32, OIHW, BatchNorm already folded.
#pragma once
#include <string>
#include <vector>

namespace pyfer::cuda {

struct NetConv {
    int cin = 0, cout = 0, k = 1, stride = 1, groups = 1;
    std::vector<float> w, b;  // OIHW ([cout][cin/groups][k][k]), bias [cout]
};

enum class NetBlockKind { ShuffleDown, ShuffleBasic, Basic, FFE };

// convs, in model order (as csrc/core/model.hpp):
//   ShuffleDown: branch1.0 (dw/2), branch1.1 (1x1), branch2.0 (1x1), branch2.1 (dw/2), branch2.2 (1x1)
//   ShuffleBasic: branch2.0, branch2.1 (dw), branch2.2
//   Basic: conv1, conv2 [, shortcut]       FFE: conv_in, left0..3, right0..3, conv_out [, shortcut]
struct NetBlock {
    NetBlockKind kind = NetBlockKind::Basic;
    int cin = 0, cout = 0, stride = 1;
    bool has_shortcut = false;
    std::vector<NetConv> convs;
};

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
