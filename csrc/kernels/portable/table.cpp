// Kernel table of the portable backend.
#include "../kernels.hpp"

namespace pyfer {
namespace portable {
void conv(const PackedConv&, const View&, int, int, int, int, int, const Epilogue&);
void dw3x3(const PackedDW&, const View&, int, int, int, int, int, const View&, bool);
void conv_small(const PackedSmall&, const View&, int, int, int, int, int, const View&, bool);
void wino_in(const View&, int, int, int, int, int, int, int, float*, size_t);
void wino_out(const float*, size_t, int, const float*, int, int, int, int, int, int, const Epilogue&);
void maxpool3s2(const View&, int, int, int, int, int, int, const View&);
void avgpool(const View&, int, int, int, int, float*);
void linear(const float*, int, int, const float*, const float*, int, float*);
double fma_peak(double);
}  // namespace portable

const Kernels& kernels_portable() {
    static const Kernels k{"portable", portable::conv, portable::dw3x3, portable::conv_small, portable::wino_in, portable::wino_out, portable::maxpool3s2,
                           portable::avgpool, portable::linear, portable::fma_peak};
    return k;
}

}  // namespace pyfer
