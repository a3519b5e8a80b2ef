#include "engine.hpp"

#include <algorithm>
#include <chrono>
#include <stdexcept>

#include "cpu_count.hpp"

namespace pyfer {

CpuEngine::CpuEngine(std::shared_ptr<const Model> m, int threads, const std::string& isa, int group)
    : K_(&kernels_select(isa)), net_(CpuNet::build(std::move(m))) {
    init(threads, group);
}

CpuEngine::CpuEngine(std::shared_ptr<const CpuNet> net, int threads, const std::string& isa, int group)
    : K_(&kernels_select(isa)), net_(std::move(net)) {
    init(threads, group);
}

void CpuEngine::init(int threads, int group) {
    threads_ = engine_threads(threads);
    if (group <= 0) group = 8;
    group_ = group;
    pool_ = std::make_unique<ThreadPool>(threads_);
    ws_.resize(threads_);
}

void CpuEngine::forward(const float* x, int n, float* logits) {
    if (n <= 0) return;
    const int T = std::min(threads_, n);
    if (T <= 1) {
        run_range(x, 0, n, ws_[0], logits, nullptr);
        return;
    }
    // in a fork() child the pool's workers stayed in the parent: a pool of this process's own
    // (the old one abandons its state; callers serialize forward: the bindings lock per engine)
    if (pool_->forked()) pool_ = std::make_unique<ThreadPool>(threads_);
    // contiguous image ranges per worker, balanced in whole groups where possible
    const int chunk = (n + T - 1) / T;
    pool_->run(T, [&](int t) {
        const int a = t * chunk, b = std::min(n, a + chunk);
        if (a < b) run_range(x, a, b, ws_[t], logits, nullptr);
    });
}

void CpuEngine::run_range(const float* x, int a, int b, Workspace& ws, float* logits, std::vector<BlockTiming>* prof) {
    const Model& m = *net_->model;
    const size_t img = size_t(m.in_channels) * m.input_size * m.input_size;
    for (int g = a; g < b; g += group_) {
        const int n = std::min(group_, b - g);
        run_group(x + size_t(g) * img, n, ws, logits + size_t(g) * m.num_classes, prof);
    }
}

void CpuEngine::run_group(const float* x, int n, Workspace& ws, float* logits, std::vector<BlockTiming>* prof) {
    const Kernels& K = *K_;
    const CpuNet& net = *net_;
    const Model& m = *net.model;
    using clk = std::chrono::steady_clock;
    auto t0 = clk::now();
    size_t pi = 0;
    auto lap = [&](const std::string& name, const std::string& kind, double flops) {
        if (!prof) return;
        auto t1 = clk::now();
        if (pi >= prof->size()) prof->push_back({name, kind, 1e30, flops * n});
        auto& bt = (*prof)[pi++];
        bt.seconds = std::min(bt.seconds, std::chrono::duration<double>(t1 - t0).count());
        t0 = t1;
    };
    int H = m.pool_out();
    int C = net.stem.cout;
    Slot cur = S_ACT0, nxt = S_ACT1;
    View A = padded_view(ws.get(cur, padded_size(n, H, H, C, 1)), H, H, C, 1);
    zero_border(A, n, H, H, C, 1);
    stem_forward(K, net.stem, x, n, m.input_size, ws, A);
    lap("stem", "stem conv+relu+maxpool", prof ? stem_flops(m.net, m.in_channels, m.input_size) : 0.0);
    for (size_t bi = 0; bi < net.blocks.size(); ++bi) {
        const BlockDesc& b = net.blocks[bi].desc;
        const int Ho = b.out_size(H);
        View O = padded_view(ws.get(nxt, padded_size(n, Ho, Ho, b.cout, 1)), Ho, Ho, b.cout, 1);
        // only a consumer with a 3x3 window on this map reads the zero border (not the head)
        const bool border = bi + 1 < net.blocks.size() && reads_input_border(net.blocks[bi + 1].desc.kind);
        if (border) zero_border(O, n, Ho, Ho, b.cout, 1);
        block_forward(K, net.blocks[bi], A, n, H, O, ws);
        lap(b.name, block_kind_label(b.kind), prof ? block_flops(b, H) : 0.0);
        A = O;
        H = Ho;
        std::swap(cur, nxt);
    }
    head_forward(K, net, A, n, H, ws, logits);
    lap("head", net.conv5 ? "conv5+avgpool+fc" : "avgpool+fc", prof ? head_flops(m.net, H, m.num_classes) : 0.0);
}

std::vector<BlockTiming> CpuEngine::profile(const float* x, int n, int reps) {
    std::vector<BlockTiming> prof;
    n = std::max(1, std::min(n, group_));
    std::vector<float> logits(size_t(n) * net_->model->num_classes);
    for (int r = 0; r < std::max(1, reps); ++r) run_group(x, n, ws_[0], logits.data(), &prof);
    return prof;
}

}  // namespace pyfer
