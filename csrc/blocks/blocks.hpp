// Fused network blocks. Each runs one block for images [0, n) of a group held in padded NHWC
// views (pad 1, zero border), calling only the kernel table (so every backend gets the same
// fusion), and keeps its intermediates in a per-worker Workspace.
#pragma once
#include "../core/model.hpp"
#include "../kernels/kernels.hpp"

namespace pyfer {

enum Slot {
    S_IN = 0, S_ACT0, S_ACT1, S_BAND, S_P, S_D, S_B1, S_T1, S_SC, S_X, S_Y, S_TA, S_TB, S_FEAT, S_WV, S_WM, S_NSLOTS
};

struct Workspace {
    AlignedBuf buf[S_NSLOTS];
    // per slot: the padded geometry whose zero border it holds (0 = none); get() forgets it
    uint64_t border_key[S_NSLOTS] = {};
    float* get(Slot s, size_t n) {
        buf[s].resize(n);
        border_key[s] = 0;
        return buf[s].data();
    }
    // A one-image padded (pad 1) h x w x c buffer with a zero border. Only interiors are written
    // between calls, so the border is zeroed only when the geometry changes (every basic unit of
    // a stage reuses its predecessor's).
    View get_padded(Slot s, int h, int w, int c) {
        const uint64_t key = (uint64_t(h) << 40) | (uint64_t(w) << 20) | uint64_t(c);
        const size_t n = padded_size(1, h, w, c, 1);
        const bool keep = border_key[s] == key && buf[s].n >= n;
        buf[s].resize(n);
        View v = padded_view(buf[s].data(), h, w, c, 1);
        v.ns = 0;
        if (!keep) zero_border(v, 1, h, w, c, 1);
        border_key[s] = key;
        return v;
    }
};

// Stem kxk conv + bias + ReLU + 3x3/2 max pool, row-band streamed (the full-resolution conv
// output is never materialised). x: NCHW input of n images. out: padded view (pad 1).
void stem_forward(const Kernels& K, const Conv& c, const float* x, int n, int in_size, Workspace& ws,
                  const View& out);
// ShuffleNetV2 units, one pass per row block (see shuffle_unit.cpp).
void shuffle_down_forward(const Kernels& K, const Block& b, const View& in, int n, int h, const View& out,
                          Workspace& ws);
void shuffle_basic_forward(const Kernels& K, const Block& b, const View& in, int n, int h, const View& out,
                           Workspace& ws);
// ResNet basic block and FFE module (see resnet_blocks.cpp).
void basic_block_forward(const Kernels& K, const Block& b, const View& in, int n, int h, const View& out,
                         Workspace& ws);
void ffe_forward(const Kernels& K, const Block& b, const View& in, int n, int h, const View& out, Workspace& ws);
// A 3x3 (pad 1) conv of images [0, n) at output size Ho x Ho with epilogue e: Winograd F(2x2,3x3)
// when c.pw is packed, the epilogue allows it and the map has enough tiles, else implicit GEMM.
void conv3x3(const Kernels& K, const Conv& c, const View& in, int n, int Ho, const Epilogue& e, Workspace& ws);
bool wino_worth(const Conv& c, int n, int Ho);
// The Winograd path itself (any tile count; H x H map, stride 1): ep may use res / relu / out /
// accumulate / out2.
void wino_conv(const Kernels& K, const PackedWino& pw, const View& in, int n, int H, const Epilogue& e, Workspace& ws);
// Head: [conv5 1x1+ReLU fused with] global average pool, then the classifier. logits: [n][classes].
void head_forward(const Kernels& K, const Model& m, const View& in, int n, int h, Workspace& ws, float* logits);

}  // namespace pyfer
