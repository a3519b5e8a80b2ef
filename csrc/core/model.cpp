#include "model.hpp"

#include <cstdlib>

#include <cmath>

namespace pyfer {

void Conv::pack() {
    if (groups == 1) pc = pack_conv(w.data(), b.data(), cout, cin, k, stride);
    else pd = pack_dw(w.data(), b.data(), cout, stride);
}

void Conv::pack_flat() {  // the kxk conv as a 1x1 over im2col columns ordered (ky, kx, ci)
    const int K = k * k * cin;
    std::vector<float> flat(size_t(cout) * K);
    for (int o = 0; o < cout; ++o)
        for (int ci = 0; ci < cin; ++ci)
            for (int t = 0; t < k * k; ++t) flat[size_t(o) * K + t * cin + ci] = w[(size_t(o) * cin + ci) * k * k + t];
    pc_flat = pack_conv(flat.data(), b.data(), cout, K, 1, 1);
}

namespace {

struct Loader {
    const SafeTensors& st;
    std::vector<std::string> used;
    Conv conv(const std::string& name, int cin, int cout, int k, int stride, int groups, bool relu) {
        Conv c;
        c.name = name; c.cin = cin; c.cout = cout; c.k = k; c.stride = stride; c.groups = groups; c.relu = relu;
        c.w = st.get_f32(name + ".conv.weight", {cout, cin / groups, k, k});
        c.b = st.get_f32(name + ".conv.bias", {cout});
        used.push_back(name + ".conv.weight");
        used.push_back(name + ".conv.bias");
        c.pack();
        return c;
    }
};

int meta_int(const SafeTensors& st, const Json& j, const char* key, int lo, int hi) {
    const Json* v = j.get(key);
    if (!v || !v->is_int() || v->num < lo || v->num > hi)
        st.fail(std::string("metadata field '") + key + "' missing or not an integer in [" + std::to_string(lo) +
                ", " + std::to_string(hi) + "]");
    return int(v->as_int());
}

}  // namespace

std::shared_ptr<Model> Model::load(const std::string& path) {
    SafeTensors st(path);
    return load(st);
}

std::shared_ptr<Model> Model::load(const SafeTensors& st) {
    auto m = std::make_shared<Model>();
    m->path = st.path();
    auto it = st.metadata().find("pyfer");
    if (it == st.metadata().end()) st.fail("no 'pyfer' metadata: not a pyfer export");
    m->meta_json = it->second;
    Json meta;
    try {
        meta = Json::parse(it->second.data(), it->second.size());
    } catch (const FormatError& e) {
        st.fail(std::string("'pyfer' metadata is not valid JSON: ") + e.what());
    }
    if (meta.type != Json::Object) st.fail("'pyfer' metadata is not a JSON object");
    if (const Json* fv = meta.get("format_version"))
        if (!fv->is_int() || fv->as_int() != 1)
            st.fail("unsupported format_version (this engine reads version 1)");
    const Json* arch = meta.get("arch");
    if (!arch || arch->type != Json::String) st.fail("metadata has no 'arch'");
    m->arch = arch->str;
    if (m->arch != "shufflenetv2" && m->arch != "effresnet18")
        st.fail("unknown architecture '" + m->arch + "' (expected shufflenetv2 or effresnet18)");
    const Json* stem = meta.get("stem");
    if (!stem || stem->type != Json::String || (stem->str != "small" && stem->str != "imagenet"))
        st.fail("metadata 'stem' must be \"small\" or \"imagenet\"");
    m->stem = stem->str;
    m->num_classes = meta_int(st, meta, "num_classes", 2, 100000);
    m->in_channels = meta_int(st, meta, "in_channels", 1, 3);
    if (m->in_channels == 2) st.fail("metadata 'in_channels' must be 1 or 3");
    const Json* prep = meta.get("preprocess");
    if (!prep || prep->type != Json::Object) st.fail("metadata has no 'preprocess' object");
    m->input_size = meta_int(st, *prep, "input_size", 8, 1024);
    if (const Json* cn = meta.get("class_names")) {
        if (cn->type != Json::Array || int(cn->arr.size()) != m->num_classes)
            st.fail("metadata 'class_names' must be a list of num_classes strings");
        for (auto& s : cn->arr) {
            if (s.type != Json::String) st.fail("metadata 'class_names' must hold strings");
            m->class_names.push_back(s.str);
        }
    } else {
        for (int i = 0; i < m->num_classes; ++i) m->class_names.push_back("class" + std::to_string(i));
    }

    Loader L{st, {}};
    const int ic = m->in_channels;
    if (m->arch == "shufflenetv2") {
        const int widths[5] = {24, 116, 232, 464, 1024};
        const int repeats[3] = {4, 8, 4};
        m->stem_conv = L.conv("stem", ic, 24, 3, m->stem == "imagenet" ? 2 : 1, 1, true);
        int cin = widths[0];
        for (int s = 0; s < 3; ++s) {
            const int cout = widths[s + 1], half = cout / 2;
            for (int u = 0; u < repeats[s]; ++u) {
                Block b;
                b.name = "stage" + std::to_string(s + 2) + "." + std::to_string(u);
                if (u == 0) {
                    b.kind = BlockKind::ShuffleDown; b.cin = cin; b.cout = cout; b.stride = 2;
                    b.convs.push_back(L.conv(b.name + ".branch1.0", cin, cin, 3, 2, cin, false));
                    b.convs.push_back(L.conv(b.name + ".branch1.1", cin, half, 1, 1, 1, true));
                    b.convs.push_back(L.conv(b.name + ".branch2.0", cin, half, 1, 1, 1, true));
                    b.convs.push_back(L.conv(b.name + ".branch2.1", half, half, 3, 2, half, false));
                    b.convs.push_back(L.conv(b.name + ".branch2.2", half, half, 1, 1, 1, true));
                } else {
                    b.kind = BlockKind::ShuffleBasic; b.cin = cout; b.cout = cout; b.stride = 1;
                    b.convs.push_back(L.conv(b.name + ".branch2.0", half, half, 1, 1, 1, true));
                    b.convs.push_back(L.conv(b.name + ".branch2.1", half, half, 3, 1, half, false));
                    b.convs.push_back(L.conv(b.name + ".branch2.2", half, half, 1, 1, 1, true));
                }
                // branch2's first 1x1 reads the unit input: post-ReLU, about half zeros, except
                // the first unit's (the stem's max-pooled output is ~99% non-zero)
                if (s > 0 || u > 0) b.convs[u == 0 ? 2 : 0].pack_skip0_only();
                m->blocks.push_back(std::move(b));
            }
            cin = cout;
        }
        m->has_conv5 = true;
        m->conv5 = L.conv("conv5", widths[3], widths[4], 1, 1, 1, true);
        m->conv5.pack_skip0_only();  // reads the last unit's output: post-ReLU
        m->features = widths[4];
    } else {
        if (m->stem == "imagenet") m->stem_conv = L.conv("stem", ic, 64, 7, 2, 1, true);
        else m->stem_conv = L.conv("stem", ic, 64, 3, 1, 1, true);
        struct Spec { const char* name; int cin, cout, stride; bool ffe; };
        const Spec specs[8] = {{"layer1.0", 64, 64, 1, false},   {"layer1.1", 64, 64, 1, false},
                               {"layer2.0", 64, 128, 2, false},  {"layer2.1", 128, 128, 1, false},
                               {"layer3.0", 128, 256, 2, false}, {"layer3.1", 256, 256, 1, true},
                               {"layer4.0", 256, 512, 2, false}, {"layer4.1", 512, 512, 1, true}};
        for (auto& sp : specs) {
            Block b;
            b.name = sp.name; b.cin = sp.cin; b.cout = sp.cout; b.stride = sp.stride;
            b.has_shortcut = sp.stride != 1 || sp.cin != sp.cout;
            if (!sp.ffe) {
                b.kind = BlockKind::Basic;
                b.convs.push_back(L.conv(b.name + ".conv1", sp.cin, sp.cout, 3, sp.stride, 1, true));
                b.convs.push_back(L.conv(b.name + ".conv2", sp.cout, sp.cout, 3, 1, 1, false));
            } else {
                b.kind = BlockKind::FFE;
                const int w = sp.cout / 4;
                b.convs.push_back(L.conv(b.name + ".conv_in", sp.cin, sp.cout, 3, sp.stride, 1, true));
                for (int i = 0; i < 4; ++i) b.convs.push_back(L.conv(b.name + ".left." + std::to_string(i), w, w, 3, 1, 1, true));
                for (int i = 0; i < 4; ++i) b.convs.push_back(L.conv(b.name + ".right." + std::to_string(i), w, w, 3, 1, 1, true));
                b.convs.push_back(L.conv(b.name + ".conv_out", sp.cout, sp.cout, 3, 1, 1, false));
            }
            if (b.has_shortcut) b.convs.push_back(L.conv(b.name + ".shortcut", sp.cin, sp.cout, 1, sp.stride, 1, false));
            m->blocks.push_back(std::move(b));
        }
        m->features = 512;
        // Winograd F(2x2,3x3) for the stride-1 3x3 convs (PYFER_WINOGRAD=0 turns it off, for A/B
        // timing; the blocks still pick direct conv where a map has too few tiles, see wino_worth)
        const char* wenv = std::getenv("PYFER_WINOGRAD");
        if (!(wenv && std::string(wenv) == "0"))
            for (auto& b : m->blocks)
                for (auto& c : b.convs)
                    if (c.k == 3 && c.stride == 1 && c.groups == 1) c.pack_wino();
    }
    m->stem_conv.pack_small();  // direct conv (csrc/kernels/*/conv_small.cpp)
    m->fc_w = st.get_f32("fc.weight", {m->num_classes, m->features});
    m->fc_b = st.get_f32("fc.bias", {m->num_classes});
    L.used.push_back("fc.weight");
    L.used.push_back("fc.bias");
    if (L.used.size() != st.tensors().size()) {
        for (auto& kv : st.tensors()) {
            bool found = false;
            for (auto& u : L.used) found = found || u == kv.first;
            if (!found) st.fail("unexpected tensor '" + kv.first + "' for architecture " + m->arch + " (stem " + m->stem + ")");
        }
    }
    return m;
}

int Model::stem_out() const {
    const int k = stem_conv.k, s = stem_conv.stride, p = k / 2;
    return (input_size + 2 * p - k) / s + 1;
}

std::vector<int> Model::block_out() const {
    std::vector<int> out;
    int h = pool_out();
    for (auto& b : blocks) {
        if (b.stride == 2) h = (h - 1) / 2 + 1;
        out.push_back(h);
    }
    return out;
}

double Model::total_flops() const {
    double f = stem_conv.flops(stem_out(), stem_out());
    int h = pool_out();
    for (auto& b : blocks) {
        const int hi = h;
        if (b.stride == 2) h = (h - 1) / 2 + 1;
        for (auto& c : b.convs) {
            // branch2.0 of a down unit runs at the input resolution
            const bool at_input = (b.kind == BlockKind::ShuffleDown && c.name.size() > 10 &&
                                   c.name.compare(c.name.size() - 10, 10, ".branch2.0") == 0);
            f += at_input ? c.flops(hi, hi) : c.flops(h, h);
        }
    }
    if (has_conv5) f += conv5.flops(h, h);
    f += 2.0 * features * num_classes;
    return f;
}

}  // namespace pyfer
