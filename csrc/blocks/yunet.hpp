// YuNet (csrc/core/yunet_model.hpp) packed for the CPU kernels, and its forward pass on one image.
//
// Every conv gets one algorithm, fixed here: the stem the direct small-cin conv (conv_small), the
// 1x1 convs the implicit GEMM (conv), the 3x3 depthwise convs dw3x3. A level's heads are packed as
// ONE 1x1 conv (their weight rows stacked: 64 -> 16 channels for cls, obj, bbox, kps) and ONE
// depthwise conv, so each level's heads cost two kernel calls and write one NHWC map whose channels
// are the heads' outputs side by side.
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include "../core/yunet_model.hpp"
#include "../kernels/kernels.hpp"
#include "blocks.hpp"

namespace pyfer {

struct YuNetCpuUnit {
    CpuConv pw, dw;  // Direct 1x1, Depthwise 3x3
};

struct YuNetCpu {
    std::shared_ptr<const YuNetModel> model;
    CpuConv stem;                                 // Small
    std::vector<std::vector<YuNetCpuUnit>> stages;
    std::vector<YuNetCpuUnit> laterals, heads;    // per level
    static std::shared_ptr<const YuNetCpu> build(std::shared_ptr<const YuNetModel> m);
};

// An image for the detector: h x w pixels of 3 channels (B, G, R), uint8 or float32, with element
// strides between rows and pixels (channels contiguous).
struct ImageRef {
    const void* data = nullptr;
    bool u8 = true;
    int h = 0, w = 0;
    ptrdiff_t row_stride = 0, pixel_stride = 3;
};

// Scratch buffers (reused between calls; not shared between threads).
struct YuNetScratch {
    std::vector<ScratchBuf> buf;
    View padded(size_t slot, int h, int w, int c) {
        if (slot >= buf.size()) buf.resize(slot + 1);
        return buf[slot].padded(h, w, c);
    }
};

// The buffers of one forward pass: the maps that every task reads (`shared`: the front's output,
// the stage and pyramid outputs) and one set per task (`lanes`: the front's row windows, the 1x1
// outputs of a band of rows).
struct YuNetWorkspace {
    YuNetScratch shared;
    std::vector<YuNetScratch> lanes;
};

// Runs task(0) .. task(ntasks - 1), perhaps several at once on other threads, and returns when
// all are done (a thread pool's run; serial_tasks runs them in order on the calling thread).
using RunTasks = std::function<void(int ntasks, const std::function<void(int)>& task)>;
void serial_tasks(int ntasks, const std::function<void(int)>& task);

// Padded size of an h x w image: each side rounded up to the model's input_multiple.
int yunet_padded(const YuNetModel& m, int side);
// The forward pass: image -> per level an (rows x cols x head_channels) NHWC map at outs[level]
// (rows = padded h / stride, cols = padded w / stride), sigmoid applied to the sigmoid heads.
// Each step's rows are cut into `lanes` bands, one task each, handed to `run`; every output row
// is computed by the same kernel calls whatever the bands, so any lane count gives the same bits.
void yunet_forward(const Kernels& K, const YuNetCpu& net, const ImageRef& img, YuNetWorkspace& ws,
                   const std::vector<float*>& outs, int lanes = 1, const RunTasks& run = serial_tasks);

}  // namespace pyfer
