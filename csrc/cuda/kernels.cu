// CUDA kernels of the fused network: stem (conv + ReLU + max pool in one pass), one tiled GEMM
// kernel that runs every conv through its loader/epilogue (ops.cuh: pointwise, depthwise+pointwise
// fused, dense kxk implicit GEMM; split/concat/shuffle/residual/pass-through as indexing), and the
// head (global average pool + classifier). fp32 throughout, FFMA accumulation.
#include "kernels.cuh"

namespace pyfer::cuda {

namespace {

// Tiled GEMM: a BM x BN output tile per block, BK-deep slices of A (pixels x K, produced by the
// loader) and B (weights, [K][Cout]) staged in shared memory; each thread owns TM x TN outputs at
// rows ty + i*TY and columns tx + j*TX (consecutive threads -> consecutive output channels, so
// shared-memory reads are conflict-free and the NHWC stores coalesce).
template <int BM, int BN, int BK, int TM, int TN>
__global__ void __launch_bounds__((BM / TM) * (BN / TN))
gemm_kernel(const __grid_constant__ GemmGroup grp) {
    constexpr int TX = BN / TN, TY = BM / TM, NT = TX * TY;
    constexpr int AR = BM * BK / NT, BR = BK * BN / NT;
    static_assert(AR * NT == BM * BK && BR * NT == BK * BN, "tile shape");
    const GemmDesc& d = grp.d[blockIdx.z];
    const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
    if (m0 >= d.M || n0 >= d.Cout) return;

    __shared__ float As[BK][BM + 1];
    __shared__ float Bs[BK][BN];
    const int tid = threadIdx.x, tx = tid % TX, ty = tid / TX;

    // this thread's A elements: fixed (pixel, k-in-slice) for every slice
    int a_n[AR], a_oy[AR], a_ox[AR], a_mm[AR], a_kk[AR];
    bool a_ok[AR];
    const int hw = d.Ho * d.Wo;
#pragma unroll
    for (int r = 0; r < AR; ++r) {
        const int i = tid + r * NT;
        a_mm[r] = i / BK;
        a_kk[r] = i % BK;
        const int m = m0 + a_mm[r];
        a_ok[r] = m < d.M;
        const int mm = a_ok[r] ? m : 0;
        a_n[r] = mm / hw;
        const int rem = mm - a_n[r] * hw;
        a_oy[r] = rem / d.Wo;
        a_ox[r] = rem - a_oy[r] * d.Wo;
    }

    float acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;

    for (int k0 = 0; k0 < d.K; k0 += BK) {
#pragma unroll
        for (int r = 0; r < AR; ++r) {
            const int k = k0 + a_kk[r];
            As[a_kk[r]][a_mm[r]] = (a_ok[r] && k < d.K) ? gemm_load_a(d, a_n[r], a_oy[r], a_ox[r], k) : 0.f;
        }
#pragma unroll
        for (int r = 0; r < BR; ++r) {
            const int i = tid + r * NT, kk = i / BN, nn = i % BN;
            const int k = k0 + kk, co = n0 + nn;
            Bs[kk][nn] = (k < d.K && co < d.Cout) ? __ldg(d.w + size_t(k) * d.Cout + co) : 0.f;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < BK; ++kk) {
            float av[TM], bv[TN];
#pragma unroll
            for (int i = 0; i < TM; ++i) av[i] = As[kk][ty + i * TY];
#pragma unroll
            for (int j = 0; j < TN; ++j) bv[j] = Bs[kk][tx + j * TX];
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int m = m0 + ty + i * TY;
        if (m >= d.M) continue;
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            const int co = n0 + tx + j * TX;
            if (co < d.Cout) gemm_store(d, m, co, acc[i][j]);
        }
    }
}

__global__ void stem_kernel(const __grid_constant__ StemDesc d) {
    const size_t total = size_t(d.N) * d.Hp * d.Hp * d.Cout;
    const size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= total) return;
    const int c = int(i % d.Cout);
    size_t r = i / d.Cout;
    const int x = int(r % d.Hp);
    r /= d.Hp;
    const int y = int(r % d.Hp);
    const int n = int(r / d.Hp);
    d.out[i] = stem_value(d, n, y, x, c);
}

// one block per image: channel means into shared memory, then one warp per class
__global__ void head_kernel(const __grid_constant__ HeadDesc d) {
    extern __shared__ float feat[];
    const int n = blockIdx.x;
    const float* src = d.feat + size_t(n) * d.HW * d.C;
    const float inv = 1.f / float(d.HW);
    for (int c = threadIdx.x; c < d.C; c += blockDim.x) {
        float s = 0.f;
        for (int q = 0; q < d.HW; ++q) s += src[size_t(q) * d.C + c];
        feat[c] = s * inv;
    }
    __syncthreads();
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nw = blockDim.x / 32;
    for (int j = warp; j < d.classes; j += nw) {
        const float* w = d.w + size_t(j) * d.C;
        float s = 0.f;
        for (int c = lane; c < d.C; c += 32) s = fmaf(w[c], feat[c], s);
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (lane == 0) d.out[size_t(n) * d.classes + j] = s + d.b[j];
    }
}

template <int BM, int BN>
size_t tiles(const GemmGroup& g) {
    size_t t = 0;
    for (int i = 0; i < g.n; ++i) t += size_t((g.d[i].M + BM - 1) / BM) * ((g.d[i].Cout + BN - 1) / BN);
    return t;
}

template <int BM, int BN, int BK, int TM, int TN>
void launch_gemm(const GemmGroup& g, cudaStream_t s) {
    int gx = 0, gy = 0;
    for (int i = 0; i < g.n; ++i) {
        gx = std::max(gx, (g.d[i].M + BM - 1) / BM);
        gy = std::max(gy, (g.d[i].Cout + BN - 1) / BN);
    }
    gemm_kernel<BM, BN, BK, TM, TN><<<dim3(gx, gy, g.n), (BM / TM) * (BN / TN), 0, s>>>(g);
}

}  // namespace

cudaError_t launch_plan(const Plan& p, cudaStream_t s, int sms) {
    for (const Step& st : p.steps) {
        if (st.kind == Step::STEM) {
            const size_t total = size_t(st.stem.N) * st.stem.Hp * st.stem.Hp * st.stem.Cout;
            stem_kernel<<<unsigned((total + 255) / 256), 256, 0, s>>>(st.stem);
        } else if (st.kind == Step::GEMM) {
            // the largest tile that still gives every SM work (big batches: 128x128, 8x8 per
            // thread, for the dense 3x3 convs; batch 1: 32x32 tiles, latency over efficiency)
            bool wide = true;
            for (int i = 0; i < st.g.n; ++i) wide = wide && st.g.d[i].Cout >= 128 && st.g.d[i].K >= 64;
            if (wide && tiles<128, 128>(st.g) >= size_t(sms)) launch_gemm<128, 128, 8, 8, 8>(st.g, s);
            else if (tiles<64, 64>(st.g) >= size_t(2 * sms)) launch_gemm<64, 64, 16, 4, 4>(st.g, s);
            else launch_gemm<32, 32, 16, 2, 2>(st.g, s);
        } else {
            head_kernel<<<st.head.N, 256, sizeof(float) * st.head.C, s>>>(st.head);
        }
        cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess) return e;
    }
    return cudaSuccess;
}

cudaError_t check_kernel_image() {
    cudaFuncAttributes a;
    return cudaFuncGetAttributes(&a, gemm_kernel<64, 64, 16, 4, 4>);
}

}  // namespace pyfer::cuda
