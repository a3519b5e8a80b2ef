// The model layer: a network's description (network.hpp) and its raw weights, loaded from an
// exported safetensors file. The description comes from the `pyfer` metadata ("network", written
// by training/export.py) or, for files exported before it, from "arch" + "stem"
// (default_network); it is validated (check_network), and every tensor it names is read with the
// shape it implies. Weights stay as exported (float32 OIHW, BatchNorm folded): packing them for a
// backend's kernels is that backend's business (csrc/blocks/plan.cpp, csrc/cuda/plan.cu).
// Nothing here depends on the kernels, the blocks or the runtime.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "network.hpp"
#include "safetensors.hpp"

namespace pyfer {

struct Conv : ConvSpec {
    std::vector<float> w, b;  // OIHW ([cout][cin/groups][k][k]), bias [cout]
};
using Block = BlockT<Conv>;

struct Model {
    std::string path, arch, stem, meta_json;
    int num_classes = 0, in_channels = 1, input_size = 0;
    std::vector<std::string> class_names;
    NetDesc net;  // what the layers above read: stem, blocks, conv5
    Conv stem_conv;
    std::vector<Block> blocks;  // net.blocks with their weights
    std::optional<Conv> conv5;
    int features = 0;  // classifier input width
    std::vector<float> fc_w, fc_b;

    static std::shared_ptr<Model> load(const std::string& path);  // throws FileNotFound/FormatError
    static std::shared_ptr<Model> load(const SafeTensors& st);     // same, from an opened file (fuzzers)

    // spatial sizes: after the stem conv, after its max pool
    int stem_out() const { return stem_out_size(net, input_size); }
    int pool_out() const { return pool_out_size(net, input_size); }
    double total_flops() const { return net_flops(net, in_channels, input_size, num_classes); }  // per image
};

// The description of files exported before "network" was written: arch "shufflenetv2" or
// "effresnet18" (training/models.py), stem "small" or "imagenet". Empty optional for others.
std::optional<NetDesc> default_network(const std::string& arch, const std::string& stem);

// "" when d is a network the engine runs and of the family `arch` names (shufflenetv2: ShuffleNet
// units + conv5; effresnet18: basic / FFE blocks, no conv5) with the stem stride `stem` implies
// ("imagenet": 2, "small": 1); else what is wrong.
std::string check_network(const NetDesc& d, const std::string& arch, const std::string& stem);

}  // namespace pyfer
