// Adapter between the runtime (Model, Backend) and the CUDA runner (Net, Runner).
#include "backend.hpp"

#include <stdexcept>

#include "../core/model.hpp"
#include "../runtime/backend.hpp"
#include "runner.hpp"

namespace pyfer {

namespace {

cuda::NetConv to_conv(const Conv& c) {
    cuda::NetConv r;
    r.cin = c.cin; r.cout = c.cout; r.k = c.k; r.stride = c.stride; r.groups = c.groups; r.depthwise = c.depthwise;
    r.w = c.w;
    r.b = c.b;
    return r;
}

cuda::Net to_net(const Model& m) {
    cuda::Net n;
    n.arch = m.arch;
    n.in_channels = m.in_channels; n.input_size = m.input_size; n.num_classes = m.num_classes;
    n.features = m.features;
    n.stem = to_conv(m.stem_conv);
    for (const Block& b : m.blocks) n.blocks.push_back(b.map(to_conv));
    n.has_conv5 = bool(m.conv5);
    if (m.conv5) n.conv5 = to_conv(*m.conv5);
    n.fc_w = m.fc_w;
    n.fc_b = m.fc_b;
    return n;
}

int parse_device(const std::string& device) {
    if (device == "cuda") return 0;
    const std::string idx = device.substr(5);  // after "cuda:"
    if (idx.empty() || idx.size() > 4 || idx.find_first_not_of("0123456789") != std::string::npos)
        throw std::invalid_argument("malformed device '" + device + "' (expected 'cuda' or 'cuda:N')");
    return std::stoi(idx);
}

class CudaBackend final : public Backend {
public:
    CudaBackend(std::shared_ptr<Model> m, int dev) : m_(std::move(m)), dev_(dev) {
        runner_ = cuda::make_runner(to_net(*m_), dev_);
        desc_ = runner_->describe();
    }
    void forward(const float* x, int n, float* logits) override {
        if (n > 0) runner_->forward(x, n, logits);
    }
    std::string device() const override { return "cuda:" + std::to_string(dev_); }
    std::string isa() const override { return desc_; }
    int threads() const override { return 1; }
    const Model& model() const override { return *m_; }

private:
    std::shared_ptr<Model> m_;
    int dev_;
    std::string desc_;
    std::unique_ptr<cuda::Runner> runner_;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(const std::string& path, const std::string& device) {
    const int dev = parse_device(device);
    std::string why;
    const int count = cuda::device_count(&why);
    if (count == 0)
        throw std::runtime_error("device='" + device + "' requested but no usable CUDA GPU was found (" + why +
                                 "); use device='cpu'");
    if (dev >= count)
        throw std::invalid_argument("device '" + device + "' does not exist (" + std::to_string(count) +
                                    " CUDA device(s))");
    auto m = Model::load(path);
    return std::make_unique<CudaBackend>(m, dev);
}

void register_cuda_backend() {
    register_backend("cuda", [](const std::string& path, const std::string& device, int, const std::string&) {
        return make_cuda_backend(path, device);
    });
}

std::vector<float> cuda_emulate_forward(const Model& m, const float* x, int n) {
    return cuda::emulate(to_net(m), x, n);
}

int cuda_device_count(std::string* why) { return cuda::device_count(why); }

std::string cuda_compiled_archs() { return cuda::compiled_archs(); }

}  // namespace pyfer
