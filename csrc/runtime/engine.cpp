#include "engine.hpp"

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <thread>

namespace pyfer {

CpuEngine::CpuEngine(std::shared_ptr<Model> m, int threads, const std::string& isa, int group)
    : m_(std::move(m)) {
    K_ = &kernels_select(isa);
    if (threads <= 0) threads = std::max(1u, std::thread::hardware_concurrency());
    threads_ = std::min(threads, 256);
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
    // contiguous image ranges per worker, balanced in whole groups where possible
    const int chunk = (n + T - 1) / T;
    pool_->run(T, [&](int t) {
        const int a = t * chunk, b = std::min(n, a + chunk);
        if (a < b) run_range(x, a, b, ws_[t], logits, nullptr);
    });
}

void CpuEngine::run_range(const float* x, int a, int b, Workspace& ws, float* logits, std::vector<BlockTiming>* prof) {
    const size_t img = size_t(m_->in_channels) * m_->input_size * m_->input_size;
    for (int g = a; g < b; g += group_) {
        const int n = std::min(group_, b - g);
        run_group(x + size_t(g) * img, n, ws, logits + size_t(g) * m_->num_classes, prof);
    }
}

void CpuEngine::run_group(const float* x, int n, Workspace& ws, float* logits, std::vector<BlockTiming>* prof) {
    const Kernels& K = *K_;
    const Model& m = *m_;
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
    int C = m.stem_conv.cout;
    Slot cur = S_ACT0, nxt = S_ACT1;
    View A = padded_view(ws.get(cur, padded_size(n, H, H, C, 1)), H, H, C, 1);
    zero_border(A, n, H, H, C, 1);
    stem_forward(K, m.stem_conv, x, n, m.input_size, ws, A);
    lap("stem", "stem conv+relu+maxpool", m.stem_conv.flops(m.stem_out(), m.stem_out()));
    for (size_t bi = 0; bi < m.blocks.size(); ++bi) {
        const Block& b = m.blocks[bi];
        const int Ho = b.stride == 2 ? (H - 1) / 2 + 1 : H;
        View O = padded_view(ws.get(nxt, padded_size(n, Ho, Ho, b.cout, 1)), Ho, Ho, b.cout, 1);
        // only a consumer with a 3x3 window on this map reads the zero border: not a basic
        // ShuffleNet unit (its input goes to 1x1 convs and the shuffle store) nor the head
        const Block* next = bi + 1 < m.blocks.size() ? &m.blocks[bi + 1] : nullptr;
        if (next && next->kind != BlockKind::ShuffleBasic) zero_border(O, n, Ho, Ho, b.cout, 1);
        double fl = 0;
        const char* kind = "";
        switch (b.kind) {
            case BlockKind::ShuffleDown: shuffle_down_forward(K, b, A, n, H, O, ws); kind = "shuffle unit (down)"; break;
            case BlockKind::ShuffleBasic: shuffle_basic_forward(K, b, A, n, H, O, ws); kind = "shuffle unit (basic)"; break;
            case BlockKind::Basic: basic_block_forward(K, b, A, n, H, O, ws); kind = "resnet basic block"; break;
            case BlockKind::FFE: ffe_forward(K, b, A, n, H, O, ws); kind = "FFE"; break;
        }
        if (prof) {
            for (auto& c : b.convs) {
                const bool at_in = b.kind == BlockKind::ShuffleDown && c.name.size() > 10 &&
                                   c.name.compare(c.name.size() - 10, 10, ".branch2.0") == 0;
                fl += at_in ? c.flops(H, H) : c.flops(Ho, Ho);
            }
        }
        lap(b.name, kind, fl);
        A = O;
        H = Ho;
        std::swap(cur, nxt);
    }
    head_forward(K, m, A, n, H, ws, logits);
    lap("head", m.has_conv5 ? "conv5+avgpool+fc" : "avgpool+fc",
        (m.has_conv5 ? m.conv5.flops(H, H) : 0.0) + 2.0 * m.features * m.num_classes);
}

std::vector<BlockTiming> CpuEngine::profile(const float* x, int n, int reps) {
    std::vector<BlockTiming> prof;
    n = std::max(1, std::min(n, group_));
    std::vector<float> logits(size_t(n) * m_->num_classes);
    for (int r = 0; r < std::max(1, reps); ++r) run_group(x, n, ws_[0], logits.data(), &prof);
    return prof;
}

}  // namespace pyfer
