// The launch plan of one forward pass for a batch of n images: a list of steps (stem, GEMM
// groups, head) whose descriptors hold pointers into the weight arena and the activation arena.
// Built on the host; executed by kernels.cu (launch_plan) or by the CPU emulator (run_plan_cpu).
#pragma once
#include <cstddef>
#include <vector>

#include "net.hpp"
#include "ops.cuh"

namespace pyfer::cuda {

struct ConvW {  // offsets (in floats) into the weight arena
    size_t w = 0, b = 0;  // groups == 1: w is B [K][Cout]; depthwise: [C][9]; stem: OIHW
};

struct Weights {
    std::vector<float> host;  // the arena as uploaded once to the device
    ConvW stem, conv5;
    std::vector<BlockConvs<ConvW>> blocks;  // per block, its kind's named convs
    size_t fc_w = 0, fc_b = 0;
};
Weights pack_weights(const Net& net);

enum Slot { S_X = 0, S_A0, S_A1, S_T, S_SC, S_L, S_R, S_F, S_LOG, S_NSLOTS };

struct Layout {  // activation arena for batches of up to `cap` images
    int cap = 0;
    size_t off[S_NSLOTS] = {}, total = 0;  // floats
};
Layout layout_for(const Net& net, int cap);

struct Step {
    enum Kind { STEM, GEMM, HEAD } kind = GEMM;
    StemDesc stem;
    GemmGroup g;
    HeadDesc head;
};

struct Plan {
    int n = 0;
    float* x = nullptr;       // NCHW input slot
    float* logits = nullptr;  // [n][classes]
    std::vector<Step> steps;
};
// wbase: the weight arena (device or host); abase: activation arena laid out by `layout`
Plan build_plan(const Net& net, const Weights& W, const float* wbase, float* abase, const Layout& layout, int n);

void run_plan_cpu(const Plan& p);  // the emulator (plan.cu)

}  // namespace pyfer::cuda
