// Kernel table of the AVX2+FMA backend (compiled with -mavx2 -mfma; only called after CPUID).
#include "../kernels.hpp"

namespace pyfer {
namespace avx2 {
void conv(const PackedConv&, const View&, int, int, int, int, int, const Epilogue&);
void dw3x3(const PackedDW&, const View&, int, int, int, int, int, const View&, bool);
void conv_small(const PackedSmall&, const View&, int, int, int, int, int, const View&, bool);
void wino_in(const View&, int, int, int, int, int, int, int, float*, size_t);
void wino_out(const float*, size_t, int, const float*, int, int, int, int, int, int, const Epilogue&);
void maxpool3s2(const View&, int, int, int, int, int, int, const View&);
void avgpool(const View&, int, int, int, int, float*);
void linear(const float*, int, int, const float*, const float*, int, float*);
double fma_peak(double);
}  // namespace avx2

bool compiled_avx2() { return true; }

const Kernels& kernels_avx2() {
    static const Kernels k{"avx2", avx2::conv, avx2::dw3x3, avx2::conv_small, avx2::wino_in, avx2::wino_out, avx2::maxpool3s2, avx2::avgpool, avx2::linear, avx2::fma_peak};
    return k;
}

}  // namespace pyfer
