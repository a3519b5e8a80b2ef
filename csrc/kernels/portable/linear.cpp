// Portable fully connected layer: y[n][o] = b[o] + dot(x[n], W[o]) (W row-major [out][in]).
#include "../kernels.hpp"

namespace pyfer::portable {

void linear(const float* x, int N, int in_f, const float* w, const float* b, int out_f, float* y) {
    for (int n = 0; n < N; ++n)
        for (int o = 0; o < out_f; ++o) {
            const float* wr = w + size_t(o) * in_f;
            const float* xr = x + size_t(n) * in_f;
            float acc = 0.f;
            for (int i = 0; i < in_f; ++i) acc += xr[i] * wr[i];
            y[size_t(n) * out_f + o] = acc + (b ? b[o] : 0.f);
        }
}

}  // namespace pyfer::portable
