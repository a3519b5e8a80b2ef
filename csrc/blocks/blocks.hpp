// The blocks layer: a model's convs packed for the CPU kernels (plan.cpp), and the fused network
// blocks that run them. Each block runs images [0, n) of a group held in padded NHWC views (pad 1,
// zero border), calling only the kernel table (so every kernel set gets the same fusion), and
// keeps its intermediates in a per-worker Workspace.
//
// Which algorithm a conv runs is decided once, where its weights are packed (plan_conv, after
// ncnn's create_pipeline): the block code reads CpuConv::algo and finds exactly that packing.
#pragma once
#include <memory>
#include <optional>
#include <vector>

#include "../core/model.hpp"
#include "../kernels/kernels.hpp"

namespace pyfer {

// ---- packed convs and the choice of algorithm ----------------------------------------------------
enum class ConvAlgo {
    Direct,     // implicit GEMM (K.conv): any k, stride, groups == 1               -> pc
    Winograd,   // F(2x2,3x3), 3x3 stride 1, maps with enough tiles (wino_conv)    -> pw
    Skip0,      // 1x1 stride 1 over a sparse post-ReLU input (K.conv1x1_skip0)      -> psk
    Depthwise,  // 3x3 depthwise (K.dw3x3)                                           -> pd
    Small,      // direct small-cin conv, output channels as vectors (K.conv_small) -> ps   (the stem)
    Im2col,     // im2col rows + one 1x1 GEMM, K = k*k*cin (stem; tests)            -> pc (flat)
};
const char* conv_algo_name(ConvAlgo a);

struct CpuConv {
    int cin = 0, cout = 0, k = 1, stride = 1, groups = 1;
    bool relu = true;
    ConvAlgo algo = ConvAlgo::Direct;
    // only the packing `algo` reads is filled
    PackedConv pc;
    PackedDW pd;
    PackedSmall ps;
    PackedWino pw;
    PackedSkip0 psk;
};
// Packs c's weights for algo (no choice made here; tests pick algorithms with it).
CpuConv pack_cpu_conv(const Conv& c, ConvAlgo algo);

struct PlanOptions {
    bool winograd = true;  // Winograd where a map has enough tiles (env PYFER_WINOGRAD=0: off, for A/B timing)
    bool skip0 = true;     // zero-skipping 1x1 convs over post-ReLU block outputs
    static PlanOptions from_env();
};
// Where a conv runs, as far as the choice goes.
struct ConvSite {
    int out_size = 0;           // output map is out_size x out_size
    bool sparse_input = false;  // reads a post-ReLU block output (about half zeros in the trained student)
    bool stem = false;
};
// The one rule: stem -> Small; depthwise -> Depthwise; 1x1/1 on a sparse input -> Skip0;
// 3x3/1 with >= WINO_MIN_TILES tiles per image -> Winograd; else Direct. It depends on the map
// size, never on how many images share a group, so an image's logits do not depend on the batch
// size or thread count.
ConvAlgo choose_conv_algo(const ConvSpec& c, const ConvSite& site, const PlanOptions& o);
// Winograd pays where the 16 GEMMs have enough rows (tiles) to reuse each transformed weight: at
// 16+ tiles per image (maps >= 7x7) it beat implicit GEMM at batch 1 and 8 on the teacher; 4x4
// maps (4 tiles) stay direct (16/9 the weight traffic for 4 GEMM rows).
constexpr int WINO_MIN_TILES = 16;

using CpuBlock = BlockT<CpuConv>;
// Block b packed for an in_size x in_size input; sparse_input: its input is a block's output.
CpuBlock plan_block(const Block& b, int in_size, bool sparse_input, const PlanOptions& o);

// A whole model packed for the CPU: built once per model, shared (read-only) by engines.
struct CpuNet {
    std::shared_ptr<const Model> model;
    CpuConv stem;
    std::vector<CpuBlock> blocks;
    std::optional<CpuConv> conv5;
    // The classifier, copied to 64-byte aligned memory: left in the model's std::vector, its
    // alignment followed the heap and linear's time varied 1.2x-1.9x between processes
    AlignedBuf fc_w, fc_b;  // [classes][features], [classes]
    static std::shared_ptr<const CpuNet> build(std::shared_ptr<const Model> m, const PlanOptions& o);
    static std::shared_ptr<const CpuNet> build(std::shared_ptr<const Model> m) { return build(std::move(m), PlanOptions::from_env()); }
};

// ---- per-worker scratch buffers --------------------------------------------------------------------
enum Slot {
    S_IN = 0, S_ACT0, S_ACT1, S_BAND, S_P, S_D, S_B1, S_T1, S_SC, S_X, S_Y, S_TA, S_TB, S_FEAT, S_WV, S_WM, S_NSLOTS
};

struct Workspace {
    ScratchBuf buf[S_NSLOTS];
    float* get(Slot s, size_t n) { return buf[s].raw(n); }
    View get_padded(Slot s, int h, int w, int c) { return buf[s].padded(h, w, c); }
};

// ---- the fused blocks ----------------------------------------------------------------------------
// Stem kxk conv + bias + ReLU + 3x3/2 max pool, row-band streamed (the full-resolution conv
// output is never materialised). x: NCHW input of n images. out: padded view (pad 1).
void stem_forward(const Kernels& K, const CpuConv& c, const float* x, int n, int in_size, Workspace& ws,
                  const View& out);
// One block, any kind: in is h x h (padded, zero border where reads_input_border(kind)), out is
// b.desc.out_size(h) square, padded.
void block_forward(const Kernels& K, const CpuBlock& b, const View& in, int n, int h, const View& out, Workspace& ws);
// Whether a block kind reads its input's zero border (a 3x3 window on it): all but the basic
// ShuffleNet unit, whose input only goes to 1x1 convs and the shuffle store.
bool reads_input_border(BlockKind k);
// The label of a block kind in profiles (pyfer bench)
const char* block_kind_label(BlockKind k);
// ShuffleNetV2 units, one pass per row block (see shuffle_unit.cpp).
void shuffle_down_forward(const Kernels& K, const BlockDesc& d, const ShuffleDownConvs<CpuConv>& c, const View& in,
                          int n, int h, const View& out, Workspace& ws);
void shuffle_basic_forward(const Kernels& K, const BlockDesc& d, const ShuffleBasicConvs<CpuConv>& c, const View& in,
                           int n, int h, const View& out, Workspace& ws);
// ResNet basic block and FFE module (see resnet_blocks.cpp).
void basic_block_forward(const Kernels& K, const BlockDesc& d, const BasicConvs<CpuConv>& c, const View& in, int n,
                         int h, const View& out, Workspace& ws);
void ffe_forward(const Kernels& K, const BlockDesc& d, const FFEConvs<CpuConv>& c, const View& in, int n, int h,
                 const View& out, Workspace& ws);
// A conv for output rows [oy0, oy1) of images [n0, n1) by its algorithm: Direct (any epilogue) or
// Skip0 (relu / out / pool epilogues only); others are whole-map (conv3x3, stem_forward) or their
// own kernel (dw3x3).
void conv_rows(const Kernels& K, const CpuConv& c, const View& in, int n0, int n1, int oy0, int oy1, int ow,
               const Epilogue& e);
// A 3x3 (pad 1) conv of images [0, n) at output size Ho x Ho with epilogue e, by its algorithm:
// Winograd (e: res / relu / out / accumulate / out2 only) or implicit GEMM.
void conv3x3(const Kernels& K, const CpuConv& c, const View& in, int n, int Ho, const Epilogue& e, Workspace& ws);
// The Winograd path itself (any tile count; H x H map, stride 1): ep may use res / relu / out /
// accumulate / out2.
void wino_conv(const Kernels& K, const PackedWino& pw, const View& in, int n, int H, const Epilogue& e, Workspace& ws);
// Head: [conv5 1x1+ReLU fused with] global average pool, then the classifier. logits: [n][classes].
void head_forward(const Kernels& K, const CpuNet& net, const View& in, int n, int h, Workspace& ws, float* logits);

}  // namespace pyfer
