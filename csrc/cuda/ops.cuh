// Launch descriptors and the per-element math of every CUDA kernel, as __host__ __device__
// functions: the kernels in kernels.cu tile and schedule them, the CPU emulator in plan.cu calls
// them with plain loops (so the index math is tested on machines without a GPU).
//
// Layout: activations are NHWC float32. An Act is a channel window of such a tensor: element
// (pixel p, channel c) lives at p * ps + off + c, where p = (n * H + y) * W + x. So a channel
// split (ShuffleNetV2's x1/x2, the FFE groups) is an offset, and concat + channel_shuffle(2) is
// a store with channel step 2 (output channel 2j <- first half j, 2j+1 <- second half j).
//
// Every conv is one GEMM: M = output pixels (n, oy, ox), N = output channels, K = reduction.
// The A operand is produced on the fly by one of three loaders:
//   A_PW    1x1 conv (optional stride: the ResNet shortcut); A[m][k] = a[pix, k] (+ a2[pix, k])
//   A_DWPW  depthwise 3x3 (pad 1, stride s) + bias, then the 1x1: A[m][k] = dw(a)[m, k]
//           (ShuffleNetV2's dw conv never touches memory on its own)
//   A_DENSE kxk conv, implicit im2col, k = (ky * ks + kx) * Cin + ci; value a (+ a2): the FFE
//           chains add the previous group's output to their input inside the loader
// The weights are B: [K][Cout] (row k, output channels contiguous).
// Epilogue: v = acc + bias[co] (+ res[m, co]); ReLU if relu; out[m * o_ps + o_off + co * o_step];
// optionally out[m * o_ps + pass_off + co * o_step] = pass[m, co] (ShuffleNetV2's identity half).
#pragma once
#include <cmath>
#include <cstddef>

#ifdef __CUDACC__
#define PF_HD __host__ __device__ __forceinline__
#else
#define PF_HD inline
#endif

namespace pyfer::cuda {

enum AMode : int { A_PW = 0, A_DWPW = 1, A_DENSE = 2 };

struct Act {
    const float* p = nullptr;
    int ps = 0, off = 0;
};

struct GemmDesc {
    int mode = A_PW;
    int N = 0, Hi = 0, Wi = 0, Ho = 0, Wo = 0, stride = 1, ks = 1;
    int Cin = 0, K = 0, M = 0, Cout = 0;
    Act a, a2;                    // a2.p: optional second source added to a (A_PW / A_DENSE)
    const float* dww = nullptr;   // A_DWPW: depthwise weights [Cin][9]
    const float* dwb = nullptr;   //         depthwise bias [Cin]
    const float* w = nullptr;     // [K][Cout]
    const float* bias = nullptr;  // [Cout]
    float* out = nullptr;
    int o_ps = 0, o_off = 0, o_step = 1;
    Act res;                      // optional residual (output pixel m, channel co), before ReLU
    Act pass;                     // optional pass-through copy (output pixel m, channel co)
    int pass_off = 0;
    int relu = 0;
};

constexpr int MAX_GROUP = 2;  // independent GEMMs in one launch (blockIdx.z picks one)
struct GemmGroup {
    GemmDesc d[MAX_GROUP];
    int n = 0;
};

struct StemDesc {  // kxk conv (pad k/2, stride) + bias + ReLU + 3x3/2 max pool (pad 1)
    const float* x = nullptr;  // NCHW input
    int N = 0, Cin = 0, S = 0;
    const float* w = nullptr;  // OIHW
    const float* b = nullptr;
    int Cout = 0, ks = 3, stride = 1, Hc = 0, Hp = 0;
    float* out = nullptr;  // NHWC [N][Hp][Hp][Cout]
};

struct HeadDesc {  // global average pool + linear
    const float* feat = nullptr;  // NHWC [N][HW][C]
    int N = 0, HW = 0, C = 0;
    const float* w = nullptr;  // [classes][C]
    const float* b = nullptr;
    int classes = 0;
    float* out = nullptr;  // [N][classes]
};

PF_HD float relu_nan(float v) { return v < 0.f ? 0.f : v; }  // keeps NaN (like the CPU engine)

// A[m][k] for output pixel (n, oy, ox)
PF_HD float gemm_load_a(const GemmDesc& d, int n, int oy, int ox, int k) {
    if (d.mode == A_PW) {
        const size_t pix = (size_t(n) * d.Hi + size_t(oy) * d.stride) * d.Wi + size_t(ox) * d.stride;
        float v = d.a.p[pix * d.a.ps + d.a.off + k];
        if (d.a2.p) v += d.a2.p[pix * d.a2.ps + d.a2.off + k];
        return v;
    }
    if (d.mode == A_DWPW) {
        float acc = d.dwb[k];
        const float* wk = d.dww + size_t(k) * 9;
        const int y0 = oy * d.stride - 1, x0 = ox * d.stride - 1;
        for (int ky = 0; ky < 3; ++ky) {
            const int iy = y0 + ky;
            if (iy < 0 || iy >= d.Hi) continue;
            for (int kx = 0; kx < 3; ++kx) {
                const int ix = x0 + kx;
                if (ix < 0 || ix >= d.Wi) continue;
                const size_t pix = (size_t(n) * d.Hi + iy) * d.Wi + ix;
                acc += wk[ky * 3 + kx] * d.a.p[pix * d.a.ps + d.a.off + k];
            }
        }
        return acc;
    }
    // A_DENSE
    const int t = k / d.Cin, ci = k - t * d.Cin;
    const int ky = t / d.ks, kx = t - ky * d.ks, pad = d.ks / 2;
    const int iy = oy * d.stride - pad + ky, ix = ox * d.stride - pad + kx;
    if (iy < 0 || iy >= d.Hi || ix < 0 || ix >= d.Wi) return 0.f;
    const size_t pix = (size_t(n) * d.Hi + iy) * d.Wi + ix;
    float v = d.a.p[pix * d.a.ps + d.a.off + ci];
    if (d.a2.p) v += d.a2.p[pix * d.a2.ps + d.a2.off + ci];
    return v;
}

PF_HD void gemm_store(const GemmDesc& d, int m, int co, float acc) {
    float v = acc + d.bias[co];
    if (d.res.p) v += d.res.p[size_t(m) * d.res.ps + d.res.off + co];
    if (d.relu) v = relu_nan(v);
    const size_t o = size_t(m) * d.o_ps + size_t(co) * d.o_step;
    d.out[o + d.o_off] = v;
    if (d.pass.p) d.out[o + d.pass_off] = d.pass.p[size_t(m) * d.pass.ps + d.pass.off + co];
}

PF_HD float stem_value(const StemDesc& d, int n, int py, int px, int co) {
    const int pad = d.ks / 2;
    float best = -INFINITY;
    for (int wy = 0; wy < 3; ++wy) {
        const int cy = 2 * py - 1 + wy;
        if (cy < 0 || cy >= d.Hc) continue;
        for (int wx = 0; wx < 3; ++wx) {
            const int cx = 2 * px - 1 + wx;
            if (cx < 0 || cx >= d.Hc) continue;
            float acc = d.b[co];
            for (int ci = 0; ci < d.Cin; ++ci) {
                const float* xin = d.x + (size_t(n) * d.Cin + ci) * d.S * d.S;
                const float* wk = d.w + (size_t(co) * d.Cin + ci) * d.ks * d.ks;
                for (int ky = 0; ky < d.ks; ++ky) {
                    const int iy = cy * d.stride - pad + ky;
                    if (iy < 0 || iy >= d.S) continue;
                    for (int kx = 0; kx < d.ks; ++kx) {
                        const int ix = cx * d.stride - pad + kx;
                        if (ix < 0 || ix >= d.S) continue;
                        acc += wk[ky * d.ks + kx] * xin[size_t(iy) * d.S + ix];
                    }
                }
            }
            const float v = relu_nan(acc);
            if (v > best || v != v) best = v;
        }
    }
    return best;
}

}  // namespace pyfer::cuda
