// Kernel interface shared by every CPU backend (portable, AVX2+FMA, AVX-512).
//
// Activation layout: NHWC float32, addressed through a View: element (n, y, x, c) lives at
//   p + n*ns + y*rs + x*ps + c
// so a View can describe a channel slice (p offset by the first channel) of a wider tensor,
// a zero-padded buffer (p points at interior (0,0); borders at y=-1/x=-1 are valid memory), or a
// single row. Kernels that read a 3x3 / kxk neighbourhood rely on that zero padding instead of
// bounds checks; kernels never write outside the rows/cols they are asked for.
//
// Packed weights (built once at load time by pack_conv / pack_dw):
//   PackedConv: [coutp/NR][k*k][cin][NR] panels, NR=16 output channels per panel (zero padded
//     beyond cout), taps in (ky, kx) order, then input channels — the K dimension of an implicit
//     GEMM (im2col is never materialised; the micro-kernel walks tap pointers).
//   PackedDW: [9][cp] (cp = c rounded up to 8), tap-major, channels contiguous.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <type_traits>
#include <vector>

namespace pyfer {

constexpr int NR = 16;           // output channels per packed panel
constexpr int SLACK = 64;        // extra floats allocated after every buffer (vector over-reads)

// A zero-filled, 64-byte aligned float buffer (+SLACK floats). Every member that does work is
// defined out of line in common.cpp, which is compiled for the baseline CPU: an inline member
// would also be compiled into the AVX2/AVX-512 files, and the linker keeps one of those copies
// for the whole module, which could then run on a CPU without those instructions
// (scripts/check_isa_isolation.py fails the build if such a function appears).
struct AlignedBuf {
    float* ptr = nullptr;
    size_t n = 0;
    AlignedBuf() = default;
    explicit AlignedBuf(size_t count);
    AlignedBuf(const AlignedBuf& o);
    AlignedBuf& operator=(const AlignedBuf& o);
    AlignedBuf(AlignedBuf&& o) noexcept : ptr(o.ptr), n(o.n) { o.ptr = nullptr; o.n = 0; }
    AlignedBuf& operator=(AlignedBuf&& o) noexcept;
    ~AlignedBuf();
    // (Re)allocate to at least count floats (+SLACK), zero filled. Contents are not preserved.
    void resize(size_t count);
    float* data() const { return ptr; }
};

// A vector's values in 64-byte aligned memory (the classifier's weights: their alignment would
// otherwise follow the heap, and linear's time with it)
AlignedBuf aligned_copy(const std::vector<float>& v);

struct View {
    float* p = nullptr;
    ptrdiff_t ns = 0, rs = 0, ps = 0;
    float* at(int n, int y, int x) const { return p + n * ns + y * rs + x * ps; }
    View ch(int off) const { View v = *this; v.p += off; return v; }
    explicit operator bool() const { return p != nullptr; }
};

// A dense NHWC view over a buffer of n images of h x w x c with `pad` zero pixels on each side.
// The buffer must hold padded_size(n, h, w, c, pad) floats.
inline size_t padded_size(int n, int h, int w, int c, int pad) {
    return size_t(n) * (h + 2 * pad) * (w + 2 * pad) * c;
}
inline View padded_view(float* buf, int h, int w, int c, int pad) {
    View v;
    v.ps = c;
    v.rs = ptrdiff_t(w + 2 * pad) * c;
    v.ns = ptrdiff_t(h + 2 * pad) * v.rs;
    v.p = buf + pad * v.rs + pad * v.ps;
    return v;
}
// Zero the `pad`-wide border of n images of a padded view (interior untouched).
void zero_border(const View& v, int n, int h, int w, int c, int pad);

// A reusable scratch buffer. padded(): one image of h x w x c padded by 1 with a zero border;
// callers write only interiors between uses, so the border is zeroed only when the geometry
// changes (every basic unit of a stage reuses its predecessor's). raw(): plain floats.
struct ScratchBuf {
    AlignedBuf buf;
    uint64_t border_key = 0;  // the padded geometry whose zero border buf holds (0: none)
    float* raw(size_t n) {
        buf.resize(n);
        border_key = 0;
        return buf.data();
    }
    View padded(int h, int w, int c) {
        const uint64_t key = (uint64_t(h) << 40) | (uint64_t(w) << 20) | uint64_t(c);
        const size_t n = padded_size(1, h, w, c, 1);
        const bool keep = border_key == key && buf.n >= n;
        buf.resize(n);
        View v = padded_view(buf.data(), h, w, c, 1);
        v.ns = 0;
        if (!keep) zero_border(v, 1, h, w, c, 1);
        border_key = key;
        return v;
    }
};

// The widest dense conv kernel (k x k) the conv driver takes: its tap-offset table has k*k <= 64
// entries. The shipped networks use 1x1 and 3x3; pack_conv refuses more.
constexpr int kMaxConvKernel = 8;

struct PackedConv {
    int cin = 0, cout = 0, k = 1, stride = 1, pad = 0, coutp = 0;
    AlignedBuf w;     // [coutp/NR][k*k][cin][NR]
    AlignedBuf bias;  // [coutp]
    size_t kdim() const { return size_t(k) * k * cin; }
};
PackedConv pack_conv(const float* oihw, const float* bias, int cout, int cin, int k, int stride);

struct PackedDW {
    int c = 0, cp = 0, stride = 1;
    AlignedBuf w;     // [9][cp]
    AlignedBuf bias;  // [cp]
};
PackedDW pack_dw(const float* w_c133, const float* bias, int c, int stride);

// Direct convolution for few input channels (the stem: cin 1 or 3, K = k*k*cin small): weights
// [k*k*cin][cp] (cp = cout rounded up to 8, zero padded), taps (ky, kx, ci); output channels are
// the vector dimension, so nothing is wasted on a K=9 GEMM panel.
struct PackedSmall {
    int cin = 0, cout = 0, k = 1, stride = 1, pad = 0, cp = 0;
    AlignedBuf w;     // [k*k*cin][cp]
    AlignedBuf bias;  // [cp]
};
// Winograd F(2x2, 3x3) weights for a stride-1 3x3 conv: U = G g G^T per (out, in) pair, element
// e of the 4x4 transform packed as the 1x1 conv e[e] (cin -> cout, no bias); bias kept apart.
struct PackedWino {
    int cin = 0, cout = 0;
    std::vector<PackedConv> e;  // 16
    AlignedBuf bias;            // [cout]
    explicit operator bool() const { return !e.empty(); }
};
PackedWino pack_wino(const float* oihw, const float* bias, int cout, int cin);

PackedSmall pack_small(const float* oihw, const float* bias, int cout, int cin, int k, int stride);

// 1x1 conv weights for the zero-skipping kernel (conv1x1_skip0): output channels are cut into
// nb blocks of vecs[b] 8-channel vectors (<= SKIP_VMAX, about equal; a block is one register
// tile), block b's panel is [cin][vecs[b]*8] at w + off[b], its first channel is 8*first[b].
// Channels >= cout are zero.
constexpr int SKIP_VMAX = 12;
constexpr int SKIP_MAX_CIN = 2048;  // input channels pack_skip0 accepts
struct PackedSkip0 {
    int cin = 0, cout = 0, coutp = 0;
    std::vector<int> vecs, first;
    std::vector<size_t> off;
    AlignedBuf w;     // panels, see above
    AlignedBuf bias;  // [coutp]
    explicit operator bool() const { return cin > 0; }
};
PackedSkip0 pack_skip0(const float* oi, const float* bias, int cout, int cin);

// What a conv does with each output value v (= accumulated dot product + bias) of output
// channel j at pixel (n, y, x):
//   v += res[j]                                   if res
//   v = max(v, 0)                                 if relu
//   out[j] = v   (or out[j] += v if accumulate)    if out and not shuf
//   out[2j] = shuf[j], out[2j+1] = v              if shuf   (ShuffleNet concat+shuffle store)
//   out2[j] = v + src2[j]                         if out2   (FFE: next chain input)
//   pool[n*pool_ns + j] += v * pool_scale          if pool   (global average pool)
// n is the image's own index, for pool as for the views: a call for images [n0, n1) with n0 > 0
// adds to rows n0.. of pool, which points at image 0's row.
struct Epilogue {
    View out;
    bool relu = false;
    bool accumulate = false;
    View res;
    View shuf;
    View out2, src2;
    float* pool = nullptr;
    float pool_scale = 0.f;
    ptrdiff_t pool_ns = 0;
};

// One kernel set. A new op is a field here and its name in PYFER_KERNEL_OPS below
// (docs/architecture.md, "How to add a kernel").
struct Kernels {
    const char* name;
    // Implicit-GEMM convolution (any k, stride, groups=1) for output rows [oy0, oy1) of images
    // [n0, n1), output width ow. Input pixel of output (n, oy, ox), tap (ky, kx) is
    // in.at(n, oy*s - pad + ky, ox*s - pad + kx): `in` must be zero padded by >= pad.
    void (*conv)(const PackedConv& w, const View& in, int n0, int n1, int oy0, int oy1, int ow,
                 const Epilogue& ep);
    // 1x1 conv (stride 1) that skips zero inputs, for post-ReLU inputs (about half zeros in the
    // trained student): per pixel, only the weight rows of its non-zero input channels are
    // multiplied in, in channel order, so the result equals the dense conv's bit for bit.
    // Epilogue: relu, out (plain store) and pool only.
    void (*conv1x1_skip0)(const PackedSkip0& w, const View& in, int n0, int n1, int oy0, int oy1, int ow,
                          const Epilogue& ep);
    // Depthwise 3x3 (pad 1, stride w.stride) + bias (+ReLU): in must be zero padded by 1.
    void (*dw3x3)(const PackedDW& w, const View& in, int n0, int n1, int oy0, int oy1, int ow,
                  const View& out, bool relu);
    // Direct small-cin conv (pad k/2) + bias (+ReLU) for output rows [oy0, oy1) of images [n0, n1):
    // out(n, oy, ox)[0..cout) from in.at(n, oy*s - pad + ky, ox*s - pad + kx)[ci]; `in` zero padded
    // by >= pad. Writes exactly cout channels per pixel.
    void (*conv_small)(const PackedSmall& w, const View& in, int n0, int n1, int oy0, int oy1, int ow,
                       const View& out, bool relu);
    // Winograd F(2x2,3x3) transforms for tiles [t0, t1) (see winograd.inc): wino_in writes
    // V[16][t1-t0][cin] (element stride es) from `in` (zero padded by 1, an H x W map);
    // wino_out reads M[16][t1-t0][cout], adds bias and applies ep (res / relu / out / accumulate /
    // out2 only) to the valid output pixels.
    void (*wino_in)(const View& in, int H, int W, int th, int tw, int t0, int t1, int cin, float* V, size_t es);
    void (*wino_out)(const float* M, size_t es, int cout, const float* bias, int H, int W, int th, int tw, int t0,
                     int t1, const Epilogue& ep);
    // 3x3/2 max pool, pad 1, over NON-NEGATIVE inputs (post-ReLU) zero padded by 1.
    void (*maxpool3s2)(const View& in, int c, int n0, int n1, int oy0, int oy1, int ow, const View& out);
    // 2x2/2 max pool, no padding: out(n, oy, ox) = max of in's 2x2 window at (2*oy, 2*ox), c channels.
    void (*maxpool2s2)(const View& in, int c, int n0, int n1, int oy0, int oy1, int ow, const View& out);
    // Nearest x2 upsampling added to a map (a feature pyramid's top-down step), c channels:
    // out(n, y, x) = fine(n, y, x) + coarse(n, y / 2, x / 2) for rows [oy0, oy1), width ow.
    void (*upsample2_add)(const View& fine, const View& coarse, int c, int n0, int n1, int oy0, int oy1, int ow,
                          const View& out);
    // Global average pool: out[n*c + j] = mean over h x w.
    void (*avgpool)(const View& in, int c, int n, int h, int w, float* out);
    // y[n][o] = b[o] + sum_i x[n][i] * W[o][i]
    void (*linear)(const float* x, int n, int in_f, const float* w, const float* b, int out_f, float* y);
    // Measured fp32 multiply-add peak of this backend on one core, GFLOP/s (runs ~seconds).
    double (*fma_peak)(double seconds);
};

// The ops of the table, in one list: every kernel set defines each of them, in its namespace
// (portable, avx2, avx512), with the type of the Kernels field of that name. X(NS, op) is
// expanded once per op.
#define PYFER_KERNEL_OPS(X, NS)                                                                    \
    X(NS, conv) X(NS, conv1x1_skip0) X(NS, dw3x3) X(NS, conv_small) X(NS, wino_in) X(NS, wino_out) \
    X(NS, maxpool3s2) X(NS, maxpool2s2) X(NS, upsample2_add) X(NS, avgpool) X(NS, linear) X(NS, fma_peak)

// Each set's functions, declared from their field's type (the signature's one home is the field
// above; a definition with another signature is a link error naming it). Declared for every set,
// so an ISA that cannot speed an op up defines it by calling portable::op.
#define PYFER_DECLARE_KERNEL_OP(NS, op) std::remove_pointer_t<decltype(Kernels::op)> op;
namespace portable { PYFER_KERNEL_OPS(PYFER_DECLARE_KERNEL_OP, _) }
namespace avx2 { PYFER_KERNEL_OPS(PYFER_DECLARE_KERNEL_OP, _) }
namespace avx512 { PYFER_KERNEL_OPS(PYFER_DECLARE_KERNEL_OP, _) }

// A field missing from the list would stay null in every table: every field but name is a
// function pointer, so the list must count them all.
#define PYFER_COUNT_KERNEL_OP(NS, op) +1
constexpr int KERNEL_OP_COUNT = 0 PYFER_KERNEL_OPS(PYFER_COUNT_KERNEL_OP, _);
static_assert(sizeof(Kernels) == sizeof(const char*) + KERNEL_OP_COUNT * sizeof(void (*)()),
              "a Kernels field is missing from PYFER_KERNEL_OPS");

// Kernel set NS's table (its table.cpp returns it), filled by field name, so the order of the
// fields and of the list does not matter.
#define PYFER_SET_KERNEL_OP(NS, op) t.op = NS::op;
#define PYFER_KERNEL_TABLE(NS)                     \
    [] {                                           \
        Kernels t{};                               \
        t.name = #NS;                              \
        PYFER_KERNEL_OPS(PYFER_SET_KERNEL_OP, NS)  \
        return t;                                  \
    }()

// Each set's table, in the set's namespace like everything its files define, so that nothing
// compiled for AVX2/AVX-512 is reachable without the CPUID check (scripts/check_isa_isolation.py)
namespace portable { const Kernels& kernels(); }
namespace avx2 { const Kernels& kernels(); }    // only valid where cpu_has_avx2_fma()
namespace avx512 { const Kernels& kernels(); }  // only valid where cpu_has_avx512()
bool cpu_has_avx2_fma();
bool cpu_has_avx512();  // AVX-512 F, BW, DQ and VL (x86-64-v4) with ZMM state saved by the OS
bool compiled_avx2();   // the build has the AVX2 / AVX-512 sets (x86 targets)
bool compiled_avx512();
// The table the engine uses for isa "auto", "avx512", "avx2" or "portable" (kernels_auto_choice
// says which "auto" picks, and why); a forced isa this build or CPU lacks is refused.
const Kernels& kernels_select(const std::string& isa = "auto");
struct IsaChoice {
    std::string isa;  // "avx512", "avx2" or "portable"
    std::string why;  // one line: the rule that picked it
};
const IsaChoice& kernels_auto_choice();  // measures the FMA peaks where the rule needs them
const std::string& kernels_auto_isa();     // kernels_auto_choice().isa, measured only if it depends on it

}  // namespace pyfer
