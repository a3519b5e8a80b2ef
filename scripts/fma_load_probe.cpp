// How many zmm FMAs a cycle this CPU sustains when the FMAs also load their operands from L1,
// against register-only FMAs (what pyfer._engine.fma_peak measures). The engine's kernels load
// about one weight vector per FMA (the zero-skipping 1x1) or fewer (register tiles of several
// pixels), so this ratio bounds them. Not part of the build: a one-off probe (BENCHMARKS.md,
// session 44's Intel section).
//
//   g++ -O2 -mavx512f -mfma scripts/fma_load_probe.cpp -o /tmp/fma_load_probe && taskset -c 1 /tmp/fma_load_probe
//
// Each loop keeps 12 or 24 independent accumulators (enough to cover the FMA latency on two
// units) and reads a 8 KB buffer that stays in L1.
#include <immintrin.h>

#include <chrono>
#include <cstdio>

alignas(64) static float buffer[2048];

enum class Loop { registers, load_per_fma, tile_2x6, tile_4x6, conv_8x1, tile_8x2, tile_8x3 };

template <Loop L>
static double zmm_fmas_per_second(long iters) {
    __m512 acc[24];
    for (auto& a : acc) a = _mm512_setzero_ps();
    const __m512 b = _mm512_set1_ps(1e-7f), c = _mm512_set1_ps(0.5f);
    const float* p = buffer;
    const auto t0 = std::chrono::steady_clock::now();
    for (long it = 0; it < iters; ++it) {
        if constexpr (L == Loop::registers) {  // 12 FMAs, no loads
#pragma GCC unroll 12
            for (int i = 0; i < 12; ++i) acc[i] = _mm512_fmadd_ps(b, c, acc[i]);
        } else if constexpr (L == Loop::load_per_fma) {  // 12 FMAs, 12 loads
#pragma GCC unroll 12
            for (int i = 0; i < 12; ++i) acc[i] = _mm512_fmadd_ps(b, _mm512_load_ps(p + 16 * i), acc[i]);
        } else if constexpr (L == Loop::conv_8x1) {  // the conv kernel's tile: 1 weight load, 8 FMAs
            const __m512 w = _mm512_load_ps(p);             // each broadcasting its input from memory
#pragma GCC unroll 8
            for (int i = 0; i < 8; ++i) acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(p[64 + i]), w, acc[i]);
            const __m512 w2 = _mm512_load_ps(p + 16);
#pragma GCC unroll 8
            for (int i = 0; i < 8; ++i) acc[8 + i] = _mm512_fmadd_ps(_mm512_set1_ps(p[72 + i]), w2, acc[8 + i]);
        } else if constexpr (L == Loop::tile_8x2 || L == Loop::tile_8x3) {  // 8 inputs x NV weight vectors
            constexpr int NV = L == Loop::tile_8x2 ? 2 : 3;
            __m512 wv[NV];
            for (int v = 0; v < NV; ++v) wv[v] = _mm512_load_ps(p + 16 * v);
#pragma GCC unroll 8
            for (int i = 0; i < 8; ++i) {
                const __m512 in = _mm512_set1_ps(p[64 + i]);
#pragma GCC unroll 3
                for (int v = 0; v < NV; ++v) acc[8 * v + i] = _mm512_fmadd_ps(in, wv[v], acc[8 * v + i]);
            }
        } else {  // R broadcast inputs x 6 weight vectors: 6 + R loads, 6R FMAs
            constexpr int R = L == Loop::tile_2x6 ? 2 : 4;
            __m512 in[R];
            for (int r = 0; r < R; ++r) in[r] = _mm512_set1_ps(p[r]);
#pragma GCC unroll 6
            for (int i = 0; i < 6; ++i) {
                const __m512 w = _mm512_load_ps(p + 16 * i);
#pragma GCC unroll 4
                for (int r = 0; r < R; ++r) acc[6 * r + i] = _mm512_fmadd_ps(in[r], w, acc[6 * r + i]);
            }
        }
        p = buffer + ((it * 192) & 1023);  // move through the buffer, 64-byte aligned
        asm volatile("" : "+r"(p));        // so the loads are not hoisted out of the loop
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    alignas(64) float lanes[16];
    float sink = 0;
    for (auto& a : acc) {
        _mm512_store_ps(lanes, a);
        sink += lanes[0];
    }
    if (sink == 12345.f) std::printf(" ");  // keep the sums alive
    const int fmas = L == Loop::tile_4x6 || L == Loop::tile_8x3 ? 24 : L == Loop::conv_8x1 || L == Loop::tile_8x2 ? 16 : 12;
    return double(fmas) * iters / s;
}

int main() {
    const long n = 50'000'000;
    std::printf("G zmm FMAs/s: registers | 1 load per FMA | 2x6 tile (8 loads, 12 FMAs) | 4x6 tile (10 loads, "
                "24 FMAs) | 8x1 embedded broadcasts, twice (18 loads, 16 FMAs) | 8x2 tile (10 loads, 16 FMAs) | "
                "8x3 tile (11 loads, 24 FMAs)\n");
    for (int round = 0; round < 3; ++round)
        std::printf("%.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f\n", zmm_fmas_per_second<Loop::registers>(n) / 1e9,
                    zmm_fmas_per_second<Loop::load_per_fma>(n) / 1e9, zmm_fmas_per_second<Loop::tile_2x6>(n) / 1e9,
                    zmm_fmas_per_second<Loop::tile_4x6>(n) / 1e9, zmm_fmas_per_second<Loop::conv_8x1>(n) / 1e9,
                    zmm_fmas_per_second<Loop::tile_8x2>(n) / 1e9, zmm_fmas_per_second<Loop::tile_8x3>(n) / 1e9);
}
