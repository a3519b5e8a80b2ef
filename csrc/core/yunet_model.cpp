#include "yunet_model.hpp"

#include <cctype>
#include <set>

namespace pyfer {

namespace {

constexpr int MAX_CHANNELS = 1024, MAX_STAGES = 16, MAX_UNITS = 16, MAX_HEADS = 8;

struct Reader {
    const SafeTensors& st;
    std::set<std::string> used;

    Conv conv(const std::string& name, int cin, int cout, int k, int stride, bool depthwise, bool relu) {
        Conv c;
        c.name = name; c.cin = cin; c.cout = cout; c.k = k; c.stride = stride;
        c.groups = depthwise ? cin : 1;
        c.depthwise = depthwise;
        c.relu = relu;
        c.w = st.get_f32(name + ".weight", {cout, cin / c.groups, k, k});
        c.b = st.get_f32(name + ".bias", {cout});
        used.insert(name + ".weight");
        used.insert(name + ".bias");
        return c;
    }
    // the output width of a k x k conv on cin channels, from its weight's shape ([cout, cin, k, k])
    int out_channels(const std::string& name, int cin, int k) {
        auto it = st.tensors().find(name + ".weight");
        if (it == st.tensors().end()) st.fail("missing tensor '" + name + ".weight'");
        const auto& s = it->second.shape;
        if (s.size() != 4 || s[1] != cin || s[2] != k || s[3] != k || s[0] < 1 || s[0] > MAX_CHANNELS)
            st.fail("tensor '" + name + ".weight' must be a conv [cout <= " + std::to_string(MAX_CHANNELS) + ", " +
                    std::to_string(cin) + ", " + std::to_string(k) + ", " + std::to_string(k) + "]");
        return int(s[0]);
    }
    YuNetUnit unit(const std::string& name, int cin, bool relu, int cout = 0) {
        if (cout == 0) cout = out_channels(name + ".conv1", cin, 1);
        YuNetUnit u;
        u.pw = conv(name + ".conv1", cin, cout, 1, 1, false, false);
        u.dw = conv(name + ".conv2", cout, cout, 3, 1, true, relu);
        return u;
    }
};

bool valid_name(const std::string& s) {
    if (s.empty() || s.size() > 96 || s.front() == '.' || s.back() == '.') return false;
    for (char c : s)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.')) return false;
    return true;
}

const Json& field(const SafeTensors& st, const Json& j, const char* key, Json::Type type, const std::string& where) {
    const Json* v = j.get(key);
    if (!v || v->type != type) st.fail("metadata 'yunet" + where + "." + key + "' missing or of the wrong type");
    return *v;
}
int int_field(const SafeTensors& st, const Json& j, const char* key, int lo, int hi, const std::string& where) {
    const Json& v = field(st, j, key, Json::Number, where);
    if (!v.is_int() || v.num < lo || v.num > hi)
        st.fail("metadata 'yunet" + where + "." + key + "' must be an integer in [" + std::to_string(lo) + ", " +
                std::to_string(hi) + "]");
    return int(v.as_int());
}
std::string name_field(const SafeTensors& st, const Json& j, const char* key, const std::string& where) {
    const Json& v = field(st, j, key, Json::String, where);
    if (!valid_name(v.str)) st.fail("metadata 'yunet" + where + "." + key + "' is not a module path");
    return v.str;
}

}  // namespace

std::shared_ptr<YuNetModel> YuNetModel::load(const std::string& path) {
    SafeTensors st(path);
    return load(st);
}

std::shared_ptr<YuNetModel> YuNetModel::load(const SafeTensors& st) {
    auto it = st.metadata().find("yunet");
    if (it == st.metadata().end())
        st.fail("no 'yunet' description in the metadata (not a file of scripts/yunet_to_safetensors.py)");
    Json j;
    try {
        j = Json::parse(it->second.data(), it->second.size());
    } catch (const FormatError& e) {
        st.fail(std::string("'yunet' metadata is not valid JSON: ") + e.what());
    }
    if (j.type != Json::Object) st.fail("metadata 'yunet' is not a JSON object");
    if (int_field(st, j, "format", 1, 1, "") != 1) st.fail("unknown yunet format");
    auto m = std::make_shared<YuNetModel>();
    m->path = st.path();
    m->meta_json = it->second;
    m->input_multiple = int_field(st, j, "input_multiple", 1, 1024, "");
    Reader r{st, {}};

    // stem: 3x3/2 conv + ReLU on the 3-channel image
    const std::string stem = name_field(st, j, "stem", "");
    m->stem = r.conv(stem, 3, r.out_channels(stem, 3, 3), 3, 2, false, true);
    int c = m->stem.cout, stride = 2;

    // stages: units chained on channels; a pool doubles the stride
    const Json& stages = field(st, j, "stages", Json::Array, "");
    if (stages.arr.empty() || stages.arr.size() > MAX_STAGES) st.fail("metadata 'yunet.stages' must hold 1 to 16 stages");
    std::vector<int> stage_c, stage_stride;
    for (size_t si = 0; si < stages.arr.size(); ++si) {
        const std::string where = ".stages[" + std::to_string(si) + "]";
        const Json& sj = stages.arr[si];
        if (sj.type != Json::Object) st.fail("metadata 'yunet" + where + "' is not an object");
        YuNetStage s;
        s.pool = field(st, sj, "pool", Json::Bool, where).b;
        if (s.pool) stride *= 2;
        const Json& units = field(st, sj, "units", Json::Array, where);
        if (units.arr.empty() || units.arr.size() > MAX_UNITS) st.fail("metadata 'yunet" + where + ".units' must hold 1 to 16 units");
        for (const Json& u : units.arr) {
            if (u.type != Json::String || !valid_name(u.str)) st.fail("metadata 'yunet" + where + ".units' holds a non-name");
            s.units.push_back(r.unit(u.str, c, true));
            c = s.units.back().pw.cout;
        }
        m->stages.push_back(std::move(s));
        stage_c.push_back(c);
        stage_stride.push_back(stride);
    }

    // heads: what each level outputs
    const Json& heads = field(st, j, "heads", Json::Array, "");
    if (heads.arr.empty() || heads.arr.size() > MAX_HEADS) st.fail("metadata 'yunet.heads' must hold 1 to 8 heads");
    std::vector<std::string> head_modules;
    for (size_t hi = 0; hi < heads.arr.size(); ++hi) {
        const std::string where = ".heads[" + std::to_string(hi) + "]";
        const Json& hj = heads.arr[hi];
        if (hj.type != Json::Object) st.fail("metadata 'yunet" + where + "' is not an object");
        YuNetHead h;
        h.name = name_field(st, hj, "name", where);
        h.channels = int_field(st, hj, "channels", 1, 64, where);
        h.sigmoid = field(st, hj, "sigmoid", Json::Bool, where).b;
        head_modules.push_back(name_field(st, hj, "module", where));
        m->heads.push_back(h);
    }

    // levels, finest first: consecutive stages' outputs, each at twice the previous stride
    const Json& levels = field(st, j, "levels", Json::Array, "");
    if (levels.arr.empty() || levels.arr.size() > stages.arr.size()) st.fail("metadata 'yunet.levels' must hold 1 to #stages levels");
    for (size_t li = 0; li < levels.arr.size(); ++li) {
        const std::string where = ".levels[" + std::to_string(li) + "]";
        const Json& lj = levels.arr[li];
        if (lj.type != Json::Object) st.fail("metadata 'yunet" + where + "' is not an object");
        YuNetLevel lv;
        lv.stage = int_field(st, lj, "stage", 0, int(stages.arr.size()) - 1, where);
        lv.stride = int_field(st, lj, "stride", 1, 1 << 20, where);
        if (lv.stride != stage_stride[lv.stage])
            st.fail("metadata 'yunet" + where + ".stride' is " + std::to_string(lv.stride) + ", but stage " +
                    std::to_string(lv.stage) + " runs at stride " + std::to_string(stage_stride[lv.stage]));
        if (li > 0 && (lv.stage <= m->levels.back().stage || lv.stride != 2 * m->levels.back().stride))
            st.fail("metadata 'yunet" + where + "': levels must be later stages at twice the previous stride");
        lv.lateral = r.unit(name_field(st, lj, "lateral", where), stage_c[lv.stage], true);
        m->levels.push_back(std::move(lv));
    }
    // the top-down adds: a level's stage output and the next coarser level's output have one width
    for (size_t li = 0; li + 1 < m->levels.size(); ++li)
        if (m->levels[li + 1].lateral.dw.cout != stage_c[m->levels[li].stage])
            st.fail("metadata 'yunet.levels[" + std::to_string(li) + "]': stage width " +
                    std::to_string(stage_c[m->levels[li].stage]) + " differs from the coarser level's " +
                    std::to_string(m->levels[li + 1].lateral.dw.cout) + " (they are added)");
    if (m->levels.back().stage + 1 != int(m->stages.size()))
        st.fail("metadata 'yunet.levels': the coarsest level must read the last stage");
    if (m->input_multiple % m->levels.back().stride != 0)
        st.fail("metadata 'yunet.input_multiple' must be a multiple of the coarsest stride");
    for (size_t li = 0; li < m->levels.size(); ++li) {
        YuNetLevel& lv = m->levels[li];
        for (size_t hi = 0; hi < m->heads.size(); ++hi) {
            YuNetUnit u = r.unit(head_modules[hi] + "." + std::to_string(li), lv.lateral.dw.cout, false, m->heads[hi].channels);
            lv.heads.push_back(std::move(u));
        }
    }
    for (const auto& [name, t] : st.tensors())
        if (!r.used.count(name)) st.fail("tensor '" + name + "' is not part of the described network");
    return m;
}

int YuNetModel::head_channels() const {
    int c = 0;
    for (const YuNetHead& h : heads) c += h.channels;
    return c;
}

double YuNetModel::flops(int h, int w) const {
    const int m = input_multiple;
    h = (h + m - 1) / m * m;
    w = (w + m - 1) / m * m;
    auto conv = [](const Conv& c, int oh, int ow) { return 2.0 * oh * ow * c.cout * (c.cin / c.groups) * c.k * c.k; };
    auto unit = [&](const YuNetUnit& u, int s) { return conv(u.pw, h / s, w / s) + conv(u.dw, h / s, w / s); };
    double f = conv(stem, h / 2, w / 2);
    int s = 2;
    for (const YuNetStage& st : stages) {
        if (st.pool) s *= 2;
        for (const YuNetUnit& u : st.units) f += unit(u, s);
    }
    for (const YuNetLevel& lv : levels) {
        f += unit(lv.lateral, lv.stride);
        for (const YuNetUnit& u : lv.heads) f += unit(u, lv.stride);
    }
    return f;
}

}  // namespace pyfer
