// Weight packing, border zeroing and run-time ISA dispatch (CPUID + XGETBV).
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define PYFER_X86 1
#endif

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>

#ifdef __linux__
#include <sys/mman.h>
#endif

#include "kernels.hpp"

#ifdef _WIN32
#include <malloc.h>  // _aligned_malloc: Windows has no std::aligned_alloc
#endif

namespace pyfer {

namespace {

// `bytes` must be a multiple of `align` (std::aligned_alloc's rule)
void* allocate_aligned(size_t align, size_t bytes) {
#ifdef _WIN32
    return _aligned_malloc(bytes, align);
#else
    return std::aligned_alloc(align, bytes);
#endif
}

void free_aligned(void* p) {
#ifdef _WIN32
    _aligned_free(p);
#else
    std::free(p);
#endif
}

}  // namespace

AlignedBuf::AlignedBuf(size_t count) { resize(count); }

AlignedBuf::AlignedBuf(const AlignedBuf& o) { *this = o; }

AlignedBuf& AlignedBuf::operator=(const AlignedBuf& o) {
    if (this != &o) {
        free_aligned(ptr); ptr = nullptr; n = 0;
        if (o.ptr) { resize(o.n); std::memcpy(ptr, o.ptr, (o.n + SLACK) * sizeof(float)); }
    }
    return *this;
}

AlignedBuf& AlignedBuf::operator=(AlignedBuf&& o) noexcept {
    if (this != &o) { free_aligned(ptr); ptr = o.ptr; n = o.n; o.ptr = nullptr; o.n = 0; }
    return *this;
}

AlignedBuf::~AlignedBuf() { free_aligned(ptr); }

void AlignedBuf::resize(size_t count) {
    if (count <= n && ptr) return;
    free_aligned(ptr);
    size_t bytes = ((count + SLACK) * sizeof(float) + 63) / 64 * 64;
#ifdef __linux__
    // big buffers (the teacher's packed weights: up to 9.4 MB per conv, ~45 MB in all, streamed
    // from DRAM at batch 1) on 2 MiB pages where the kernel allows it (THP "madvise" mode):
    // 4 KiB pages cost a TLB miss every 64 K-steps of a weight panel
    constexpr size_t HUGE = size_t(2) << 20;
    if (bytes >= 2 * HUGE) {
        bytes = (bytes + HUGE - 1) / HUGE * HUGE;
        ptr = static_cast<float*>(allocate_aligned(HUGE, bytes));
        if (ptr) madvise(ptr, bytes, MADV_HUGEPAGE);  // a hint: failure is harmless
    } else {
        ptr = static_cast<float*>(allocate_aligned(64, bytes));
    }
#else
    ptr = static_cast<float*>(allocate_aligned(64, bytes));
#endif
    if (!ptr) throw std::bad_alloc();
    std::memset(ptr, 0, bytes);
    n = count;
}

AlignedBuf aligned_copy(const std::vector<float>& v) {
    AlignedBuf b;
    b.resize(v.size());
    std::copy(v.begin(), v.end(), b.data());
    return b;
}

void zero_border(const View& v, int n, int h, int w, int c, int pad) {
    if (pad == 0) return;
    (void)c;
    const size_t row = sizeof(float) * size_t(w + 2 * pad) * v.ps;
    for (int i = 0; i < n; ++i) {
        for (int y = -pad; y < 0; ++y) std::memset(v.at(i, y, -pad), 0, row);
        for (int y = h; y < h + pad; ++y) std::memset(v.at(i, y, -pad), 0, row);
        // the right border of row y and the left border of row y + 1 are adjacent: one short
        // inline fill each (a memset call per border was ~1% of a student forward)
        const ptrdiff_t side = ptrdiff_t(pad) * v.ps;
        if (v.rs == ptrdiff_t(w + 2 * pad) * v.ps) {
            for (int y = -1; y < h; ++y) {
                float* p = v.at(i, y, w);
                for (ptrdiff_t k = 0; k < 2 * side; ++k) p[k] = 0.f;
            }
        } else {  // rows with a gap between them
            for (int y = 0; y < h; ++y) {
                std::fill(v.at(i, y, -pad), v.at(i, y, -pad) + side, 0.f);
                std::fill(v.at(i, y, w), v.at(i, y, w) + side, 0.f);
            }
        }
    }
}

PackedConv pack_conv(const float* oihw, const float* bias, int cout, int cin, int k, int stride) {
    if (k < 1 || k > kMaxConvKernel)
        throw std::invalid_argument("conv kernel " + std::to_string(k) + "x" + std::to_string(k) +
                                    ": the engine takes 1x1 to " + std::to_string(kMaxConvKernel) + "x" +
                                    std::to_string(kMaxConvKernel));
    PackedConv p;
    p.cin = cin; p.cout = cout; p.k = k; p.stride = stride; p.pad = k / 2;
    p.coutp = (cout + NR - 1) / NR * NR;
    const size_t K = p.kdim();
    p.w.resize(size_t(p.coutp) * K);
    p.bias.resize(p.coutp);
    for (int o = 0; o < cout; ++o) {
        p.bias.ptr[o] = bias ? bias[o] : 0.f;
        const int nb = o / NR, j = o % NR;
        for (int ky = 0; ky < k; ++ky)
            for (int kx = 0; kx < k; ++kx)
                for (int i = 0; i < cin; ++i) {
                    size_t kk = size_t(ky * k + kx) * cin + i;
                    p.w.ptr[(size_t(nb) * K + kk) * NR + j] = oihw[((size_t(o) * cin + i) * k + ky) * k + kx];
                }
    }
    return p;
}

PackedSkip0 pack_skip0(const float* oi, const float* bias, int cout, int cin) {
    if (cin < 1 || cin > SKIP_MAX_CIN || cout < 1)
        throw std::invalid_argument("pack_skip0: needs 1 <= cin <= " + std::to_string(SKIP_MAX_CIN) + ", cout >= 1");
    PackedSkip0 p;
    p.cin = cin; p.cout = cout;
    const int nvec = (cout + 7) / 8, nb = (nvec + SKIP_VMAX - 1) / SKIP_VMAX;
    p.coutp = nvec * 8;
    size_t off = 0;
    for (int b = 0, v0 = 0; b < nb; ++b) {  // nvec split as evenly as possible
        const int v = nvec / nb + (b < nvec % nb ? 1 : 0);
        p.vecs.push_back(v); p.first.push_back(v0); p.off.push_back(off);
        v0 += v;
        off += size_t(cin) * v * 8;
    }
    p.w.resize(off);
    p.bias.resize(p.coutp);
    for (int b = 0; b < nb; ++b) {
        const int width = p.vecs[b] * 8;
        for (int j = 0; j < width; ++j) {
            const int o = p.first[b] * 8 + j;
            if (o >= cout) continue;
            p.bias.ptr[o] = bias ? bias[o] : 0.f;
            for (int i = 0; i < cin; ++i) p.w.ptr[p.off[b] + size_t(i) * width + j] = oi[size_t(o) * cin + i];
        }
    }
    return p;
}

PackedDW pack_dw(const float* w, const float* bias, int c, int stride) {
    PackedDW p;
    p.c = c; p.cp = (c + 7) / 8 * 8; p.stride = stride;
    p.w.resize(size_t(9) * p.cp);
    p.bias.resize(p.cp);
    for (int j = 0; j < c; ++j) {
        p.bias.ptr[j] = bias ? bias[j] : 0.f;
        for (int t = 0; t < 9; ++t) p.w.ptr[size_t(t) * p.cp + j] = w[size_t(j) * 9 + t];
    }
    return p;
}

PackedWino pack_wino(const float* w, const float* bias, int cout, int cin) {
    PackedWino p;
    p.cin = cin; p.cout = cout;
    p.bias.resize(cout);
    for (int o = 0; o < cout; ++o) p.bias.ptr[o] = bias ? bias[o] : 0.f;
    // U = G g G^T in double, G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
    std::vector<float> u(size_t(16) * cout * cin);  // [16][cout][cin]
    static const double G[4][3] = {{1, 0, 0}, {.5, .5, .5}, {.5, -.5, .5}, {0, 0, 1}};
    for (int o = 0; o < cout; ++o)
        for (int i = 0; i < cin; ++i) {
            const float* g = w + (size_t(o) * cin + i) * 9;
            double tmp[4][3];
            for (int a = 0; a < 4; ++a)
                for (int kx = 0; kx < 3; ++kx)
                    tmp[a][kx] = G[a][0] * g[kx] + G[a][1] * g[3 + kx] + G[a][2] * g[6 + kx];
            for (int a = 0; a < 4; ++a)
                for (int b = 0; b < 4; ++b)
                    u[(size_t(a * 4 + b) * cout + o) * cin + i] =
                        float(tmp[a][0] * G[b][0] + tmp[a][1] * G[b][1] + tmp[a][2] * G[b][2]);
        }
    for (int e = 0; e < 16; ++e) p.e.push_back(pack_conv(u.data() + size_t(e) * cout * cin, nullptr, cout, cin, 1, 1));
    return p;
}

PackedSmall pack_small(const float* oihw, const float* bias, int cout, int cin, int k, int stride) {
    PackedSmall p;
    p.cin = cin; p.cout = cout; p.k = k; p.stride = stride; p.pad = k / 2;
    p.cp = (cout + 7) / 8 * 8;
    p.w.resize(size_t(k) * k * cin * p.cp);
    p.bias.resize(p.cp);
    for (int o = 0; o < cout; ++o) {
        p.bias.ptr[o] = bias ? bias[o] : 0.f;
        for (int ci = 0; ci < cin; ++ci)
            for (int t = 0; t < k * k; ++t)
                p.w.ptr[(size_t(t) * cin + ci) * p.cp + o] = oihw[(size_t(o) * cin + ci) * k * k + t];
    }
    return p;
}

bool cpu_has_avx2_fma() {
#ifndef PYFER_X86
    return false;
#else
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
    const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28);
    if (!(fma && osxsave && avx)) return false;
    unsigned xlo, xhi;
    __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
    if ((xlo & 0x6) != 0x6) return false;  // OS saves XMM and YMM state
    if (__get_cpuid_max(0, nullptr) < 7) return false;
    __cpuid_count(7, 0, a, b, c, d);
    return b & (1u << 5);  // AVX2
#endif
}

bool cpu_has_avx512() {
#ifndef PYFER_X86
    return false;
#else
    if (!cpu_has_avx2_fma()) return false;  // also checks OSXSAVE and CPUID leaf 7
    unsigned a, b, c, d;
    __cpuid_count(7, 0, a, b, c, d);
    const unsigned f = 1u << 16, dq = 1u << 17, bw = 1u << 30, vl = 1u << 31;
    if ((b & (f | dq | bw | vl)) != (f | dq | bw | vl)) return false;
    unsigned xlo, xhi;
    __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
    return (xlo & 0xE6) == 0xE6;  // OS saves XMM, YMM, opmask, ZMM0-15 upper halves and ZMM16-31
#endif
}

// The measured rule for AVX-512 CPUs (issue 14, BENCHMARKS.md "AVX-512"): with 512-bit FMA units
// the avx512 set has twice the peak and is chosen; where AVX-512 runs on 256-bit units (a zmm
// peak about equal to the ymm one) the set measured faster on such a CPU (Zen 4) is chosen.
constexpr double AVX512_FULL_WIDTH_RATIO = 1.5;
constexpr const char* AVX512_HALF_WIDTH_CHOICE = "avx512";
constexpr const char* AVX512_HALF_WIDTH_WHY = "on such a CPU (Zen 4) avx512 measured faster than avx2";

static bool env_force_portable() {
    const char* e = std::getenv("PYFER_FORCE_PORTABLE");
    return e && *e && std::string(e) != "0";
}

// PYFER_ISA: the set "auto" means in this process (avx512, avx2 or portable; unset, empty or
// "auto": the rule below), so that predict, the CLI and the speed tests can be compared across
// sets on one machine. PYFER_FORCE_PORTABLE=1 is PYFER_ISA=portable.
static std::string env_isa() {
    if (env_force_portable()) return "portable";
    const char* e = std::getenv("PYFER_ISA");
    return e && *e ? std::string(e) : "auto";
}

// Peak fp32 FMA rate of zmm over ymm code on this core: about 1.0 where AVX-512 runs on 256-bit
// units (Zen 4: a zmm FMA is issued as two halves), about 2.0 with 512-bit units (Zen 5, Intel
// servers). Each side's best of many short alternating trials: on a busy core the scheduler cuts
// into some trials, rarely into all of a side's. (Zen 4, a busy process on each core: 3 pairs of
// 2 ms fell in step with the time slices, one side cut in every pair, "zmm 118 vs ymm 38" in 11
// of 40 processes (34 of 40 with two busy processes per core); 10 pairs of 0.5 ms measured 118 vs
// 118 in all 40 both times, ~11 ms of CPU time.)
constexpr int FMA_PEAK_TRIALS = 10;
constexpr double FMA_PEAK_TRIAL_SECONDS = 0.0005;
static double zmm_over_ymm_fma_peak(double* zmm_gflops, double* ymm_gflops) {
    double z = 0, y = 0;
    for (int i = 0; i < FMA_PEAK_TRIALS; ++i) {
        z = std::max(z, avx512::kernels().fma_peak(FMA_PEAK_TRIAL_SECONDS));
        y = std::max(y, avx2::kernels().fma_peak(FMA_PEAK_TRIAL_SECONDS));
    }
    *zmm_gflops = z;
    *ymm_gflops = y;
    return y > 0 ? z / y : 0;
}

// Here rather than in the AVX2/AVX-512 files, which run only after the CPUID check
#ifdef PYFER_X86_KERNELS
bool compiled_avx2() { return true; }
bool compiled_avx512() { return true; }
#else
bool compiled_avx2() { return false; }
bool compiled_avx512() { return false; }
#endif

const IsaChoice& kernels_auto_choice() {
    static const IsaChoice choice = [] {
        if (env_force_portable()) return IsaChoice{"portable", "PYFER_FORCE_PORTABLE is set"};
        if (const std::string e = env_isa(); e != "auto") {
            try {
                kernels_select(e);  // refuses a set this build or CPU lacks, or an unknown name
            } catch (const std::invalid_argument& err) {
                throw std::invalid_argument("PYFER_ISA=" + e + ": " + err.what());
            }
            return IsaChoice{e, "PYFER_ISA is set"};
        }
        if (compiled_avx512() && cpu_has_avx512()) {
            double z = 0, y = 0;
            const double ratio = zmm_over_ymm_fma_peak(&z, &y);
            char peaks[96];
            std::snprintf(peaks, sizeof peaks, "zmm %.0f vs ymm %.0f GFLOP/s", z, y);
            if (ratio >= AVX512_FULL_WIDTH_RATIO)
                return IsaChoice{"avx512", std::string("AVX-512 on 512-bit FMA units (") + peaks + ")"};
            return IsaChoice{AVX512_HALF_WIDTH_CHOICE, std::string("AVX-512 on 256-bit FMA units (") + peaks +
                                                           "): " + AVX512_HALF_WIDTH_WHY};
        }
        if (compiled_avx2() && cpu_has_avx2_fma()) {
            if (compiled_avx512()) return IsaChoice{"avx2", "the CPU has AVX2+FMA but not AVX-512 (F, BW, DQ, VL)"};
            return IsaChoice{"avx2", "the CPU has AVX2+FMA (this build has no AVX-512 kernels)"};
        }
        if (!compiled_avx2()) return IsaChoice{"portable", "this build has no x86 SIMD kernels"};
        return IsaChoice{"portable", "the CPU has no AVX2+FMA"};
    }();
    return choice;
}

const Kernels& kernels_select(const std::string& isa) {
    if (isa == "portable") return portable::kernels();
    if (isa == "avx2") {
        if (!compiled_avx2()) throw std::invalid_argument("this build has no AVX2 kernels");
        if (!cpu_has_avx2_fma()) throw std::invalid_argument("this CPU does not support AVX2+FMA");
        return avx2::kernels();
    }
    if (isa == "avx512") {
        if (!compiled_avx512()) throw std::invalid_argument("this build has no AVX-512 kernels");
        if (!cpu_has_avx512()) throw std::invalid_argument("this CPU does not support AVX-512 (F, BW, DQ, VL)");
        return avx512::kernels();
    }
    if (isa != "auto")
        throw std::invalid_argument("unknown isa '" + isa + "' (expected auto, avx512, avx2 or portable)");
    return kernels_select(kernels_auto_isa());
}

// Where both AVX-512 rules pick the same set (today: avx512 on 512-bit and on 256-bit FMA units),
// "auto" needs no peak measured: the race only explains the choice (build_info's "why"). It cost
// every process 15-22 ms at its first engine (a helper's review, session 46, Zen 4).
const std::string& kernels_auto_isa() {
    static const std::string isa = [] {
        const bool rule_needs_no_race = std::string(AVX512_HALF_WIDTH_CHOICE) == "avx512";
        if (env_isa() == "auto" && rule_needs_no_race && compiled_avx512() && cpu_has_avx512())
            return std::string("avx512");
        return kernels_auto_choice().isa;
    }();
    return isa;
}

}  // namespace pyfer
