// Whole-network reference forward: the PyTorch module graph of training/models.py executed with
// the plain-loop ops of ops.cpp (explicit split / concat / channel_shuffle / add passes, no
// fusion, raw OIHW weights). Used as the "ref" backend and as the oracle for block tests.
#include <algorithm>

#include "../core/model.hpp"
#include "../runtime/backend.hpp"
#include "../runtime/cpu_count.hpp"
#include "ref.hpp"

namespace pyfer {

using ref::Tensor;

static Tensor run_conv(const Conv& c, const Tensor& x) {
    return ref::conv2d(x, c.w.data(), c.b.data(), c.cout, c.k, c.stride, c.groups, c.relu);
}

Tensor ref_block(const Block& b, const Tensor& x) {
    switch (b.desc.kind) {
        case BlockKind::ShuffleBasic: {
            const auto& c = b.as<ShuffleBasicConvs<Conv>>();
            const int half = b.desc.cout / 2;
            Tensor x1 = ref::slice_channels(x, 0, half), x2 = ref::slice_channels(x, half, b.desc.cout);
            Tensor y = run_conv(c.pw2, run_conv(c.dw, run_conv(c.pw1, x2)));
            return ref::channel_shuffle(ref::concat_channels(x1, y), 2);
        }
        case BlockKind::ShuffleDown: {
            const auto& c = b.as<ShuffleDownConvs<Conv>>();
            Tensor y1 = run_conv(c.b1_pw, run_conv(c.b1_dw, x));
            Tensor y2 = run_conv(c.pw2, run_conv(c.dw, run_conv(c.pw1, x)));
            return ref::channel_shuffle(ref::concat_channels(y1, y2), 2);
        }
        case BlockKind::Basic: {
            const auto& c = b.as<BasicConvs<Conv>>();
            Tensor y = run_conv(c.conv2, run_conv(c.conv1, x));
            Tensor id = c.shortcut ? run_conv(*c.shortcut, x) : x;
            return ref::relu(ref::add(y, id));
        }
        case BlockKind::FFE: {
            const auto& c = b.as<FFEConvs<Conv>>();
            const int G = FFE_GROUPS, w = b.desc.cout / G;
            Tensor xin = run_conv(c.conv_in, x);
            std::vector<Tensor> xs, left(G), right(G);
            for (int i = 0; i < G; ++i) xs.push_back(ref::slice_channels(xin, i * w, (i + 1) * w));
            for (int i = 0; i < G; ++i) left[i] = run_conv(c.left[i], i == 0 ? xs[i] : ref::add(xs[i], left[i - 1]));
            for (int i = G - 1; i >= 0; --i)
                right[i] = run_conv(c.right[i], i == G - 1 ? xs[i] : ref::add(xs[i], right[i + 1]));
            Tensor y = ref::add(left[0], right[0]);
            for (int i = 1; i < G; ++i) y = ref::concat_channels(y, ref::add(left[i], right[i]));
            Tensor o = run_conv(c.conv_out, y);
            Tensor id = c.shortcut ? run_conv(*c.shortcut, x) : x;
            return ref::relu(ref::add(o, id));
        }
    }
    return x;
}

std::vector<float> ref_forward(const Model& m, const float* x, int n) {
    const int S = m.input_size;
    Tensor t = ref::from_nchw(x, n, m.in_channels, S, S);
    t = ref::maxpool3s2(run_conv(m.stem_conv, t));
    for (auto& b : m.blocks) t = ref_block(b, t);
    if (m.conv5) t = run_conv(*m.conv5, t);
    auto feat = ref::global_avgpool(t);
    return ref::linear(feat, n, m.features, m.fc_w.data(), m.fc_b.data(), m.num_classes);
}

namespace {

class RefBackend final : public Backend {
public:
    RefBackend(std::shared_ptr<const Model> m, int threads) : m_(std::move(m)) {
        threads_ = engine_threads(threads);  // reported only: the reference runs on the calling thread
    }
    void forward(const float* x, int n, float* logits) override {
        if (n <= 0) return;
        auto y = ref_forward(*m_, x, n);
        std::copy(y.begin(), y.end(), logits);
    }
    std::string device() const override { return "cpu"; }
    std::string isa() const override { return "ref"; }
    int threads() const override { return threads_; }
    const Model& model() const override { return *m_; }

private:
    std::shared_ptr<const Model> m_;
    int threads_ = 1;
};

}  // namespace

void register_ref_backend() {
    register_backend("ref", [](const std::string& path, const std::string&, int threads, const std::string&)
                                -> std::unique_ptr<Backend> { return std::make_unique<RefBackend>(Model::load(path), threads); });
}

}  // namespace pyfer
