// libFuzzer target: a YuNet detector file (safetensors with the `yunet` metadata that
// scripts/yunet_to_safetensors.py writes), as `YuNetDetector(model=PATH)` loads one from a user:
// pyfer::SafeTensors, YuNetModel::load (the network read from the metadata and the tensors'
// shapes), then, where the described network is small enough to run in about a millisecond,
// YuNetCpu::build (packing for the kernels) and one forward pass over a 48x40 image on the
// kernel set `auto` picks, into maps sized as YuNetEngine sizes them. ASan sees any read or write
// outside a map or a weight. Allowed failures: pyfer::FormatError only.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "../../csrc/blocks/yunet.hpp"

using namespace pyfer;

namespace {

constexpr int H = 48, W = 40;            // not multiples of the usual 32: the padding is exercised
constexpr double MAX_FLOPS = 2e7;        // per forward (the shipped YuNet: about 7e6 at 48x40)

const std::vector<uint8_t>& test_image() {
    static const std::vector<uint8_t> img = [] {
        std::vector<uint8_t> v(size_t(H) * W * 3);
        for (size_t i = 0; i < v.size(); ++i) v[i] = uint8_t((i * 37) ^ (i >> 5));
        return v;
    }();
    return img;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        SafeTensors st("fuzz_yunet.safetensors", data, size);
        std::shared_ptr<const YuNetModel> m = YuNetModel::load(st);
        if (!(m->flops(H, W) <= MAX_FLOPS)) return 0;  // (a model too big to run here still loaded)
        std::shared_ptr<const YuNetCpu> net = YuNetCpu::build(m);
        const int hp = yunet_padded(*m, H), wp = yunet_padded(*m, W), C = m->head_channels();
        std::vector<std::vector<float>> maps;
        std::vector<float*> outs;
        for (const YuNetLevel& lv : m->levels) {
            maps.emplace_back(size_t(hp / lv.stride) * size_t(wp / lv.stride) * size_t(C));
            outs.push_back(maps.back().data());
        }
        ImageRef img;
        img.data = test_image().data();
        img.h = H;
        img.w = W;
        img.row_stride = ptrdiff_t(W) * 3;
        YuNetWorkspace ws;
        yunet_forward(kernels_select("auto"), *net, img, ws, outs);
        // a sigmoid head's channels lie in [0, 1] (or NaN, where the weights are)
        for (size_t li = 0; li < maps.size(); ++li) {
            int c0 = 0;
            for (const YuNetHead& h : m->heads) {
                if (h.sigmoid)
                    for (size_t p = 0; p < maps[li].size() / size_t(C); ++p)
                        for (int c = c0; c < c0 + h.channels; ++c) {
                            const float v = maps[li][p * size_t(C) + size_t(c)];
                            if (v < 0.f || v > 1.f) std::abort();
                        }
                c0 += h.channels;
            }
        }
    } catch (const FormatError&) {
    }
    return 0;
}
