// Measured single-core fp32 multiply-add peak of the portable build (what the compiler makes of
// 12 independent 4-wide chains at the baseline ISA). Returns GFLOP/s.
#include <chrono>

#include "../kernels.hpp"

namespace pyfer::portable {

double fma_peak(double seconds) {
    float acc[12][4];
    for (int i = 0; i < 12; ++i)
        for (int j = 0; j < 4; ++j) acc[i][j] = float(i + j) * 1e-3f;
    const float a = 0.999999f, b = 1e-7f;
    const long iters = 1 << 16;
    long total = 0;
    auto t0 = std::chrono::steady_clock::now();
    double el = 0;
    do {
        for (long it = 0; it < iters; ++it)
            for (int i = 0; i < 12; ++i)
                for (int j = 0; j < 4; ++j) acc[i][j] = acc[i][j] * a + b;
        total += iters;
        el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    } while (el < seconds);
    float s = 0;
    for (int i = 0; i < 12; ++i)
        for (int j = 0; j < 4; ++j) s += acc[i][j];
    volatile float sink = s;
    (void)sink;
    return double(total) * 12 * 4 * 2 / el / 1e9;
}

}  // namespace pyfer::portable
