// The YuNet face detector (Wu, Peng, Yu 2023) as a model: its description and raw weights, loaded
// from the safetensors file scripts/yunet_to_safetensors.py writes (pyfer/models/yunet.safetensors).
// The description is the JSON under the metadata key "yunet" (documented in that script): a stem
// conv, stages of units (1x1 conv, then 3x3 depthwise + ReLU), each stage optionally after a 2x2/2
// max pool, a top-down feature pyramid over the last stages (upsample x2 + add, then a unit) and
// per level one head per output (1x1 conv, then 3x3 depthwise). Everything is validated (channel
// chain, strides, names, shapes) before a tensor is read. Weights stay as converted (float32 OIHW,
// BatchNorm folded); packing is the blocks layer's business (csrc/blocks/yunet.cpp).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "model.hpp"

namespace pyfer {

struct YuNetUnit {
    Conv pw, dw;  // 1x1 (no ReLU), then 3x3 depthwise + ReLU
};
struct YuNetStage {
    bool pool = false;  // a 2x2/2 max pool before the units
    std::vector<YuNetUnit> units;
};
struct YuNetHead {
    std::string name;    // "cls", "obj", "bbox", "kps"
    int channels = 0;
    bool sigmoid = false;
};
struct YuNetLevel {
    int stride = 0, stage = 0;      // reads the output of stages[stage], at this stride
    YuNetUnit lateral;              // after (stage output + the coarser level's output upsampled x2)
    std::vector<YuNetUnit> heads;   // one per YuNetModel::heads: 1x1 (no ReLU), 3x3 depthwise (no ReLU)
};

struct YuNetModel {
    std::string path, meta_json;
    int input_multiple = 32;  // the image is zero padded (bottom, right) to a multiple of this
    Conv stem;                // 3x3 stride 2 + ReLU on 3 channels (BGR, 0-255)
    std::vector<YuNetStage> stages;
    std::vector<YuNetLevel> levels;  // finest first
    std::vector<YuNetHead> heads;

    static std::shared_ptr<YuNetModel> load(const std::string& path);  // throws FileNotFound/FormatError
    static std::shared_ptr<YuNetModel> load(const SafeTensors& st);
    int head_channels() const;  // sum of the heads' channels: the width of each level's output
    double flops(int h, int w) const;  // per image of h x w (after padding to input_multiple)
};

}  // namespace pyfer
