// libFuzzer target: YuNet detector files, as `YuNetDetector(model=PATH)` loads a user's. Each
// input is used twice:
//  1. as a whole file (safetensors with the `yunet` metadata that scripts/yunet_to_safetensors.py
//     writes): pyfer::SafeTensors, then YuNetModel::load, which reads the network from the
//     metadata and the tensors' shapes. Byte mutations mostly exercise the error paths here: a
//     changed width or an added stage needs matching tensor shapes, which they rarely make.
//  2. as the parameters of a network (FuzzedDataProvider): stages, units, pools and widths,
//     pyramid levels, the four decoded heads and perhaps another, input_multiple, weights (with
//     NaN, inf or huge values sometimes), and an image (size, uint8 or float, row padding). The
//     file is written here, so the loader must accept it; then YuNetCpu::build packs it and
//     yunet_forward runs it on the kernel set `auto` picks, once in one band and once in three
//     (the banded path of several threads, run in turn), into maps sized as YuNetEngine sizes
//     them: the two must agree bit for bit, and a sigmoid head's outputs lie in [0, 1] (or NaN).
// Networks costing over 2e7 FLOPs on their image are only loaded (the shipped YuNet: about 7e6
// at 48x40). ASan sees any read or write outside a map, a weight or the image. Allowed failures:
// pyfer::FormatError in part 1 only.
#include <fuzzer/FuzzedDataProvider.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../../csrc/blocks/yunet.hpp"

using namespace pyfer;

namespace {

constexpr double MAX_FLOPS = 2e7;

// n bytes of a fixed pattern: the test image's pixels
std::vector<uint8_t> pattern(size_t n) {
    std::vector<uint8_t> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = uint8_t((i * 37) ^ (i >> 5));
    return v;
}

// A safetensors file of F32 tensors and one metadata entry, built as text
struct FileWriter {
    std::string header = "{";
    std::vector<uint8_t> data;
    void tensor(const std::string& name, const std::vector<int>& shape, const std::vector<float>& values) {
        std::string dims;
        for (int d : shape) dims += (dims.empty() ? "" : ",") + std::to_string(d);
        const size_t at = data.size();
        data.resize(at + values.size() * sizeof(float));
        if (!values.empty()) std::memcpy(data.data() + at, values.data(), values.size() * sizeof(float));
        header += "\"" + name + "\":{\"dtype\":\"F32\",\"shape\":[" + dims + "],\"data_offsets\":[" +
                  std::to_string(at) + "," + std::to_string(data.size()) + "]},";
    }
    std::vector<uint8_t> finish(const std::string& yunet_json) {
        std::string escaped;
        for (char c : yunet_json) escaped += (c == '"' ? std::string("\\\"") : std::string(1, c));
        header += "\"__metadata__\":{\"yunet\":\"" + escaped + "\"}}";
        std::vector<uint8_t> out(8);
        const uint64_t n = header.size();
        for (int i = 0; i < 8; ++i) out[i] = uint8_t(n >> (8 * i));
        out.insert(out.end(), header.begin(), header.end());
        out.insert(out.end(), data.begin(), data.end());
        return out;
    }
};

struct Weights {  // values from a seeded generator, a few of them special
    uint32_t state;
    float special;
    int special_every;
    float next() {
        state = state * 1664525u + 1013904223u;
        if (special_every && state % uint32_t(special_every) == 0) return special;
        return float(int32_t(state >> 8) % 2001 - 1000) / 1000.f;
    }
    std::vector<float> many(size_t n) {
        std::vector<float> v(n);
        for (float& x : v) x = next();
        return v;
    }
};

void conv(FileWriter& f, Weights& w, const std::string& name, int cout, int cin, int k) {
    f.tensor(name + ".weight", {cout, cin, k, k}, w.many(size_t(cout) * cin * k * k));
    f.tensor(name + ".bias", {cout}, w.many(size_t(cout)));
}

void unit(FileWriter& f, Weights& w, const std::string& name, int cin, int cout) {
    conv(f, w, name + ".conv1", cout, cin, 1);
    conv(f, w, name + ".conv2", cout, 1, 3);  // depthwise
}

// Packs m and runs it on img in one band and in three: the maps must agree bit for bit, and each
// sigmoid head's outputs lie in [0, 1] (or are NaN)
void run_and_check(const std::shared_ptr<const YuNetModel>& m, const ImageRef& img) {
    std::shared_ptr<const YuNetCpu> net = YuNetCpu::build(m);
    const int hp = yunet_padded(*m, img.h), wp = yunet_padded(*m, img.w), C = m->head_channels();
    std::vector<std::vector<float>> maps[2];  // per run, one allocation per level: ASan bounds each
    for (int run = 0; run < 2; ++run) {
        std::vector<float*> outs;
        for (const YuNetLevel& lv : m->levels) {
            maps[run].emplace_back(size_t(hp / lv.stride) * size_t(wp / lv.stride) * size_t(C), -7.f);
            outs.push_back(maps[run].back().data());
        }
        YuNetWorkspace ws;
        yunet_forward(kernels_select("auto"), *net, img, ws, outs, run == 0 ? 1 : 3);
    }
    for (size_t li = 0; li < maps[0].size(); ++li) {
        const std::vector<float>& a = maps[0][li];
        if (std::memcmp(a.data(), maps[1][li].data(), a.size() * sizeof(float)) != 0) std::abort();
        int c0 = 0;
        for (const YuNetHead& h : m->heads) {
            if (h.sigmoid)
                for (size_t p = 0; p < a.size() / size_t(C); ++p)
                    for (int k = c0; k < c0 + h.channels; ++k) {
                        const float v = a[p * size_t(C) + size_t(k)];
                        if (v < 0.f || v > 1.f) std::abort();
                    }
            c0 += h.channels;
        }
    }
}

void run_structured(FuzzedDataProvider& fdp) {
    FileWriter f;
    Weights w{fdp.ConsumeIntegral<uint32_t>(), 0.f, 0};
    const float specials[] = {NAN, INFINITY, -INFINITY, 1e30f, -1e30f, 0.f};
    if (fdp.ConsumeBool()) {
        w.special = specials[fdp.ConsumeIntegralInRange<int>(0, 5)];
        w.special_every = fdp.ConsumeIntegralInRange<int>(2, 500);
    }
    const int stem_c = fdp.ConsumeIntegralInRange<int>(1, 12);
    std::string json = "{\"format\":1,";
    conv(f, w, "stem", stem_c, 3, 3);
    const int nstages = fdp.ConsumeIntegralInRange<int>(1, 4);
    const int nlevels = fdp.ConsumeIntegralInRange<int>(1, std::min(3, nstages));
    std::vector<int> stage_c, stage_stride;
    std::string stages;
    int c = stem_c, stride = 2;
    for (int s = 0; s < nstages; ++s) {
        // the levels' stages after the first are at twice the previous stride: pooled
        const bool pool = s > nstages - nlevels ? true : fdp.ConsumeBool();
        if (pool) stride *= 2;
        std::string units;
        for (int u = 0, n = fdp.ConsumeIntegralInRange<int>(1, 2); u < n; ++u) {
            const std::string name = "s" + std::to_string(s) + "u" + std::to_string(u);
            const int cout = fdp.ConsumeIntegralInRange<int>(1, 12);
            unit(f, w, name, c, cout);
            c = cout;
            units += (units.empty() ? "\"" : ",\"") + name + "\"";
        }
        stages += std::string(stages.empty() ? "" : ",") + "{\"pool\":" + (pool ? "true" : "false") +
                  ",\"units\":[" + units + "]}";
        stage_c.push_back(c);
        stage_stride.push_back(stride);
    }
    // levels: the last nlevels stages; a level's lateral output is added to the finer level's
    // stage output, so it has that width (the finest's is free)
    std::string levels;
    std::vector<int> level_c;
    for (int l = 0; l < nlevels; ++l) {
        const int s = nstages - nlevels + l;
        const int cout = l == 0 ? fdp.ConsumeIntegralInRange<int>(1, 12) : stage_c[s - 1];
        unit(f, w, "lat" + std::to_string(l), stage_c[s], cout);
        level_c.push_back(cout);
        levels += std::string(levels.empty() ? "" : ",") + "{\"stride\":" + std::to_string(stage_stride[s]) +
                  ",\"stage\":" + std::to_string(s) + ",\"lateral\":\"lat" + std::to_string(l) + "\"}";
    }
    struct Head { std::string name; int channels; bool sigmoid; };
    std::vector<Head> heads = {{"cls", 1, true}, {"obj", 1, true}, {"bbox", 4, false}, {"kps", 10, false}};
    if (fdp.ConsumeBool())
        heads.insert(heads.begin() + fdp.ConsumeIntegralInRange<int>(0, 4),
                     {"extra", fdp.ConsumeIntegralInRange<int>(1, 8), fdp.ConsumeBool()});
    std::string heads_json;
    for (const Head& h : heads) {
        for (int l = 0; l < nlevels; ++l) unit(f, w, h.name + "." + std::to_string(l), level_c[l], h.channels);
        heads_json += std::string(heads_json.empty() ? "" : ",") + "{\"name\":\"" + h.name + "\",\"module\":\"" +
                      h.name + "\",\"channels\":" + std::to_string(h.channels) + ",\"sigmoid\":" +
                      (h.sigmoid ? "true" : "false") + "}";
    }
    const int multiple = stage_stride.back() * fdp.ConsumeIntegralInRange<int>(1, 2);
    json += "\"input_multiple\":" + std::to_string(multiple) + ",\"stem\":\"stem\",\"stages\":[" + stages +
            "],\"levels\":[" + levels + "],\"heads\":[" + heads_json + "]}";
    const std::vector<uint8_t> file = f.finish(json);

    SafeTensors st("fuzz_yunet_structured.safetensors", file.data(), file.size());
    std::shared_ptr<const YuNetModel> m = YuNetModel::load(st);  // a FormatError here: a finding
    const int H = fdp.ConsumeIntegralInRange<int>(1, 72), W = fdp.ConsumeIntegralInRange<int>(1, 72);
    if (!(m->flops(H, W) <= MAX_FLOPS)) return;
    const bool u8 = fdp.ConsumeBool();
    const int pad = fdp.ConsumeIntegralInRange<int>(0, 5);  // extra pixels at the end of each row
    const ptrdiff_t row = ptrdiff_t(W + pad) * 3;
    const std::vector<uint8_t> bytes = pattern(size_t(H) * size_t(row));
    const std::vector<float> floats(bytes.begin(), bytes.end());
    ImageRef img;
    img.data = u8 ? static_cast<const void*>(bytes.data()) : static_cast<const void*>(floats.data());
    img.u8 = u8;
    img.h = H;
    img.w = W;
    img.row_stride = row;

    run_and_check(m, img);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::shared_ptr<const YuNetModel> loaded;
    try {
        SafeTensors st("fuzz_yunet.safetensors", data, size);
        loaded = YuNetModel::load(st);
    } catch (const FormatError&) {
    }
    if (loaded && loaded->flops(48, 40) <= MAX_FLOPS) {  // (the seeds: the shipped layout, small)
        static const std::vector<uint8_t> image = pattern(48 * 40 * 3);
        ImageRef img;
        img.data = image.data();
        img.h = 48;
        img.w = 40;
        img.row_stride = 40 * 3;
        run_and_check(loaded, img);
    }
    FuzzedDataProvider fdp(data, size);
    run_structured(fdp);
    return 0;
}
