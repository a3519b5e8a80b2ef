// Weight packing, border zeroing and run-time ISA dispatch (CPUID + XGETBV).
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define PYFER_X86 1
#endif

#include <cstdlib>
#include <stdexcept>

#include "kernels.hpp"

namespace pyfer {

void zero_border(const View& v, int n, int h, int w, int c, int pad) {
    if (pad == 0) return;
    for (int i = 0; i < n; ++i) {
        for (int y = -pad; y < h + pad; ++y) {
            if (y < 0 || y >= h) {
                std::memset(v.at(i, y, -pad), 0, sizeof(float) * size_t(w + 2 * pad) * v.ps);
            } else {
                std::memset(v.at(i, y, -pad), 0, sizeof(float) * size_t(pad) * v.ps);
                std::memset(v.at(i, y, w), 0, sizeof(float) * size_t(pad) * v.ps);
            }
        }
    }
    (void)c;
}

PackedConv pack_conv(const float* oihw, const float* bias, int cout, int cin, int k, int stride) {
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

static bool env_force_portable() {
    const char* e = std::getenv("PYFER_FORCE_PORTABLE");
    return e && *e && std::string(e) != "0";
}

const Kernels& kernels_select(const std::string& isa) {
    if (isa == "portable") return kernels_portable();
    if (isa == "avx2") {
        if (!compiled_avx2()) throw std::invalid_argument("this build has no AVX2 kernels");
        if (!cpu_has_avx2_fma()) throw std::invalid_argument("this CPU does not support AVX2+FMA");
        return kernels_avx2();
    }
    if (isa != "auto") throw std::invalid_argument("unknown isa '" + isa + "' (expected auto, avx2 or portable)");
    if (!env_force_portable() && compiled_avx2() && cpu_has_avx2_fma()) return kernels_avx2();
    return kernels_portable();
}

}  // namespace pyfer
