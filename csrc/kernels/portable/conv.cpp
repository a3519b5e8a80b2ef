// Portable (baseline x86-64 / any ISA) implicit-GEMM convolution micro-kernel.
// Register tile MR=4 pixels x NR=16 channels held in a local array the compiler maps onto
// SSE registers; K loop walks taps (pointer offsets into the zero-padded NHWC input) then
// input channels; B is the packed [K][16] panel. Driver/epilogue: ../conv_driver.inc.
#include "../kernels.hpp"

namespace pyfer::portable {

template <int MR>
static void ukr(const float* const* a, const ptrdiff_t* toff, int taps, int cin, const float* b, float* tile) {
    float acc[MR][NR];
    for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NR; ++j) acc[i][j] = 0.f;
    for (int t = 0; t < taps; ++t) {
        const float* ap[MR];
        for (int i = 0; i < MR; ++i) ap[i] = a[i] + toff[t];
        for (int k = 0; k < cin; ++k) {
            const float* bk = b + size_t(k) * NR;
            for (int i = 0; i < MR; ++i) {
                const float av = ap[i][k];
                for (int j = 0; j < NR; ++j) acc[i][j] += av * bk[j];
            }
        }
        b += size_t(cin) * NR;
    }
    for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NR; ++j) tile[i * NR + j] = acc[i][j];
}

struct PixPtr;
template <int MR>
static void tile_kernel(const float* const* a, const ptrdiff_t* toff, int taps, int cin, const float* b,
                        const float* bias, int j0, int nv, const Epilogue& ep, const PixPtr* pp);
#include "../conv_driver.inc"

template <int MR>
static void tile_kernel(const float* const* a, const ptrdiff_t* toff, int taps, int cin, const float* b,
                        const float* bias, int j0, int nv, const Epilogue& ep, const PixPtr* pp) {
    alignas(64) float tile[MR * NR];
    ukr<MR>(a, toff, taps, cin, b, tile);
    for (int i = 0; i < MR; ++i) epilogue_pixel(ep, tile + i * NR, bias, pp[i], j0, nv);
}

void conv(const PackedConv& w, const View& in, int n0, int n1, int oy0, int oy1, int ow, const Epilogue& ep) {
    conv_driver<4>(w, in, n0, n1, oy0, oy1, ow, ep);
}

}  // namespace pyfer::portable
