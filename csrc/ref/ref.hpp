// Plain-loop reference implementation of every op the engine uses. Written for clarity, not speed:
// dense NHWC tensors with no padding, explicit bounds checks, double-free of any cleverness.
// Optimised kernels and fused blocks are tested against these (csrc/tests/checks.cpp: the
// pyfer._checks test module and pyfer_selftest), and ref_forward runs a whole network with them:
// the "ref" backend (isa="ref").
#pragma once
#include <memory>
#include <string>
#include <vector>

namespace pyfer::ref {

struct Tensor {  // NHWC, dense
    int n = 0, h = 0, w = 0, c = 0;
    std::vector<float> d;
    Tensor() = default;
    Tensor(int n_, int h_, int w_, int c_) : n(n_), h(h_), w(w_), c(c_), d(size_t(n_) * h_ * w_ * c_, 0.f) {}
    float& at(int i, int y, int x, int j) { return d[((size_t(i) * h + y) * w + x) * c + j]; }
    float at(int i, int y, int x, int j) const { return d[((size_t(i) * h + y) * w + x) * c + j]; }
};

// weights OIHW ([cout][cin/groups][k][k]), zero padding k/2, optional bias and ReLU
Tensor conv2d(const Tensor& x, const float* w, const float* b, int cout, int k, int stride, int groups, bool relu);
Tensor maxpool3s2(const Tensor& x);                      // 3x3, stride 2, pad 1 (-inf padding)
Tensor maxpool2s2(const Tensor& x);                      // 2x2, stride 2, no padding (odd last row/col dropped)
Tensor upsample2_nearest(const Tensor& x, int oh, int ow);  // oh x ow, out(y, x) = x(y / 2, x / 2)
std::vector<float> global_avgpool(const Tensor& x);      // [n][c]
std::vector<float> linear(const std::vector<float>& x, int n, int in_f, const float* w, const float* b, int out_f);
std::vector<float> softmax(const std::vector<float>& x, int n, int classes);
Tensor slice_channels(const Tensor& x, int c0, int c1);
Tensor concat_channels(const Tensor& a, const Tensor& b);
Tensor channel_shuffle(const Tensor& x, int groups);
Tensor add(const Tensor& a, const Tensor& b);
Tensor relu(const Tensor& a);
Tensor from_nchw(const float* x, int n, int c, int h, int w);

}  // namespace pyfer::ref

namespace pyfer {

struct Model;
struct Conv;
template <class C> struct BlockT;
using Block = BlockT<Conv>;

// One block / the whole network with the ops above: the PyTorch module graph of
// training/models.py, unfused, raw OIHW weights (ref_net.cpp). x: NCHW, n images -> logits.
ref::Tensor ref_block(const Block& b, const ref::Tensor& x);
std::vector<float> ref_forward(const Model& m, const float* x, int n);

// Registers the "ref" backend (runtime/backend.hpp): make_backend(path, "cpu", threads, "ref").
void register_ref_backend();

}  // namespace pyfer
