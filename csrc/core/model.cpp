#include "model.hpp"

#include <cctype>

namespace pyfer {

namespace {

// Reads each conv a ConvSpec names, with the shape it implies, and records what was used.
struct Loader {
    const SafeTensors& st;
    std::vector<std::string> used;
    Conv operator()(const ConvSpec& s) {
        Conv c;
        static_cast<ConvSpec&>(c) = s;
        c.w = st.get_f32(s.name + ".conv.weight", {s.cout, s.cin / s.groups, s.k, s.k});
        c.b = st.get_f32(s.name + ".conv.bias", {s.cout});
        used.push_back(s.name + ".conv.weight");
        used.push_back(s.name + ".conv.bias");
        return c;
    }
};

int meta_int(const SafeTensors& st, const Json& j, const char* key, int lo, int hi, const std::string& where = "") {
    const Json* v = j.get(key);
    if (!v || !v->is_int() || v->num < lo || v->num > hi)
        st.fail("metadata field '" + where + key + "' missing or not an integer in [" + std::to_string(lo) + ", " +
                std::to_string(hi) + "]");
    return int(v->as_int());
}

// module paths become tensor names: a short dotted identifier
bool valid_name(const std::string& s) {
    if (s.empty() || s.size() > 64 || s.front() == '.' || s.back() == '.') return false;
    for (char c : s)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.')) return false;
    return true;
}

constexpr int MAX_BLOCKS = 256, MAX_CHANNELS = 8192;
constexpr double MAX_MAP_FLOATS = double(1 << 26);

// "network": {"stem": {"cout": C, "k": K, "stride": S},
//             "blocks": [{"kind": "shuffle_down", "name": "stage2.0", "cin": 24, "cout": 116, "stride": 2}, ...],
//             "conv5": C5 (0: none)}
NetDesc parse_network(const SafeTensors& st, const Json& j) {
    if (j.type != Json::Object) st.fail("metadata 'network' is not a JSON object");
    NetDesc d;
    const Json* stem = j.get("stem");
    if (!stem || stem->type != Json::Object) st.fail("metadata 'network' has no 'stem' object");
    d.stem.cout = meta_int(st, *stem, "cout", 1, MAX_CHANNELS, "network.stem.");
    d.stem.k = meta_int(st, *stem, "k", 1, 11, "network.stem.");
    d.stem.stride = meta_int(st, *stem, "stride", 1, 2, "network.stem.");
    if (d.stem.k % 2 == 0) st.fail("metadata 'network.stem.k' must be odd");
    const Json* blocks = j.get("blocks");
    if (!blocks || blocks->type != Json::Array || blocks->arr.empty() || blocks->arr.size() > MAX_BLOCKS)
        st.fail("metadata 'network.blocks' must be a list of 1 to " + std::to_string(MAX_BLOCKS) + " blocks");
    for (const Json& bj : blocks->arr) {
        const std::string where = "network.blocks[" + std::to_string(d.blocks.size()) + "].";
        if (bj.type != Json::Object) st.fail("metadata '" + where.substr(0, where.size() - 1) + "' is not an object");
        BlockDesc b;
        const Json* kind = bj.get("kind");
        if (!kind || kind->type != Json::String || !parse_block_kind(kind->str, &b.kind))
            st.fail("metadata '" + where + "kind' must be one of shuffle_down, shuffle_basic, basic, ffe");
        const Json* name = bj.get("name");
        if (!name || name->type != Json::String || !valid_name(name->str))
            st.fail("metadata '" + where + "name' must be a module path (letters, digits, '_', '.')");
        b.name = name->str;
        b.cin = meta_int(st, bj, "cin", 1, MAX_CHANNELS, where);
        b.cout = meta_int(st, bj, "cout", 1, MAX_CHANNELS, where);
        b.stride = meta_int(st, bj, "stride", 1, 2, where);
        d.blocks.push_back(b);
    }
    d.conv5 = meta_int(st, j, "conv5", 0, MAX_CHANNELS, "network.");
    return d;
}

}  // namespace

std::optional<NetDesc> default_network(const std::string& arch, const std::string& stem) {
    if (stem != "small" && stem != "imagenet") return std::nullopt;
    const bool imagenet = stem == "imagenet";
    NetDesc d;
    if (arch == "shufflenetv2") {  // ShuffleNetV2 1.0x: STAGE_WIDTHS (24, 116, 232, 464, 1024), STAGE_REPEATS (4, 8, 4)
        d.stem = {24, 3, imagenet ? 2 : 1};
        const int widths[3] = {116, 232, 464}, repeats[3] = {4, 8, 4};
        int cin = 24;
        for (int s = 0; s < 3; ++s)
            for (int u = 0; u < repeats[s]; ++u) {
                const std::string name = "stage" + std::to_string(s + 2) + "." + std::to_string(u);
                if (u == 0) d.blocks.push_back({BlockKind::ShuffleDown, name, cin, widths[s], 2});
                else d.blocks.push_back({BlockKind::ShuffleBasic, name, widths[s], widths[s], 1});
                cin = widths[s];
            }
        d.conv5 = 1024;
        return d;
    }
    if (arch == "effresnet18") {  // ResNet18 layers; an FFE module as the second block of layer3 and layer4
        d.stem = imagenet ? StemDesc{64, 7, 2} : StemDesc{64, 3, 1};
        d.blocks = {{BlockKind::Basic, "layer1.0", 64, 64, 1},   {BlockKind::Basic, "layer1.1", 64, 64, 1},
                    {BlockKind::Basic, "layer2.0", 64, 128, 2},  {BlockKind::Basic, "layer2.1", 128, 128, 1},
                    {BlockKind::Basic, "layer3.0", 128, 256, 2}, {BlockKind::FFE, "layer3.1", 256, 256, 1},
                    {BlockKind::Basic, "layer4.0", 256, 512, 2}, {BlockKind::FFE, "layer4.1", 512, 512, 1}};
        d.conv5 = 0;
        return d;
    }
    return std::nullopt;
}

std::string check_network(const NetDesc& d, const std::string& arch, const std::string& stem) {
    const bool shuffle_family = arch == "shufflenetv2";
    if (!shuffle_family && arch != "effresnet18") return "unknown architecture '" + arch + "'";
    if (d.stem.stride != (stem == "imagenet" ? 2 : 1))
        return "stem stride " + std::to_string(d.stem.stride) + " does not match stem '" + stem + "'";
    if (d.blocks.empty()) return "no blocks";
    if (shuffle_family != (d.conv5 > 0)) return shuffle_family ? "shufflenetv2 needs conv5" : "effresnet18 has no conv5";
    int c = d.stem.cout;
    for (size_t i = 0; i < d.blocks.size(); ++i) {
        const BlockDesc& b = d.blocks[i];
        const std::string at = "block " + std::to_string(i) + " (" + b.name + ", " + block_kind_name(b.kind) + "): ";
        const bool shuffle_kind = b.kind == BlockKind::ShuffleDown || b.kind == BlockKind::ShuffleBasic;
        if (shuffle_kind != shuffle_family) return at + "not a block of architecture " + arch;
        if (b.cin != c) return at + "cin " + std::to_string(b.cin) + " but the map before it has " + std::to_string(c) + " channels";
        if (b.stride != 1 && b.stride != 2) return at + "stride must be 1 or 2";
        switch (b.kind) {
            case BlockKind::ShuffleDown:
                if (b.stride != 2 || b.cout % 2) return at + "needs stride 2 and an even cout";
                break;
            case BlockKind::ShuffleBasic:
                if (b.stride != 1 || b.cout != b.cin || b.cout % 2) return at + "needs stride 1 and cin == cout, even";
                break;
            case BlockKind::Basic: break;
            case BlockKind::FFE:
                if (b.cout % FFE_GROUPS) return at + "cout must divide into " + std::to_string(FFE_GROUPS) + " groups";
                break;
        }
        for (size_t j = 0; j < i; ++j)
            if (d.blocks[j].name == b.name) return at + "name used twice";
        if (b.name == "stem" || b.name == "conv5" || b.name == "fc") return at + "reserved name";
        c = b.cout;
    }
    return "";
}

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

    // the description: written by the export, or derived from arch + stem (older files)
    if (const Json* net = meta.get("network")) m->net = parse_network(st, *net);
    else m->net = *default_network(m->arch, m->stem);  // arch and stem were checked above
    const std::string problem = check_network(m->net, m->arch, m->stem);
    if (!problem.empty()) st.fail("metadata 'network': " + problem);
    // 2^26 floats (256 MiB) per map and image: every default network up to the 1024 px that
    // preprocessing allows (the teacher's stem map at 1024 px is exactly 2^26; at 64 px the
    // student's largest map is 98K floats, the teacher's 262K); a crafted description could
    // otherwise ask for gigabytes per image
    const double floats = largest_map_floats(m->net, m->in_channels, m->input_size);
    if (floats > MAX_MAP_FLOATS)
        st.fail("metadata 'network': its largest activation map holds " + std::to_string(int64_t(floats)) +
                " floats per image at input " + std::to_string(m->input_size) + ", over the engine's limit of " +
                std::to_string(int64_t(MAX_MAP_FLOATS)));

    // the weights, in module order
    Loader L{st, {}};
    m->stem_conv = L(stem_spec(m->net, m->in_channels));
    for (const BlockDesc& bd : m->net.blocks) m->blocks.push_back(Block{bd, block_convs(bd, L)});
    if (m->net.conv5) m->conv5 = L(conv5_spec(m->net));
    m->features = m->net.features();
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

}  // namespace pyfer
