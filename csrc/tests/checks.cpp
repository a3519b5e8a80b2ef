#include "checks.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "../blocks/blocks.hpp"
#include "../ref/ref.hpp"

namespace pyfer::checks {

using ref::Tensor;

namespace {

struct Rng {
    std::mt19937 g;
    explicit Rng(unsigned s) : g(s) {}
    float u(float lo = -1.f, float hi = 1.f) { return std::uniform_real_distribution<float>(lo, hi)(g); }
    std::vector<float> vec(size_t n, float scale = 1.f) {
        std::vector<float> v(n);
        for (auto& x : v) x = u() * scale;
        return v;
    }
};

// Uniform in [lo, hi): widen it for an op whose cases lie outside [-1, 1] (a clamp at +-3)
Tensor rand_tensor(Rng& r, int n, int h, int w, int c, float lo = -1.f, float hi = 1.f) {
    Tensor t(n, h, w, c);
    for (auto& x : t.d) x = r.u(lo, hi);
    return t;
}

// ---- guarded maps ------------------------------------------------------------------------------
// The maps a check hands to a kernel: n images of h x w x c, NHWC, with a `pad`-wide border, laid
// out as the engine lays out its maps. Dense (slice = false): the pixel stride is c, as a map the
// engine allocates for one layer. Slice (slice = true): the map is channels [SLICE_BEFORE,
// SLICE_BEFORE + c) of a map SLICE_BEFORE + SLICE_AFTER channels wider, as the engine's channel
// slices: FFE's groups (Y.ch(i*w) written, X.ch(i*w) read), a shuffle unit's halves (pw1 reads
// in.ch(half), the shuffle store's source), its buffers P / D / B1 (pixel stride c rounded up to 8).
//
// Every float of the buffer that is not the map's own (the border, the other channels of each
// pixel, the allocator's slack after the last pixel) holds SENTINEL, except that an input's border
// is zero in the map's own channels (3x3 windows read it as the zero padding). read() returns the
// interior and throws, naming the map and the count, if any of those other floats changed: by the
// kernel contract (kernels.hpp) an op writes channels [0, c) of the output pixels it is asked for
// and nothing else, and in the engine the border is the next 3x3 conv's zero padding and the other
// channels are another layer's data. Without the guard, a 2-channel tail stored 8 or 16 wide into
// the next pixel, the border or a neighbouring slice passed: the next pixel's own store overwrote
// it, and nothing outside [0, c) of the interior was read back. Every check's outputs (blocks and
// stem included) are guarded: no op's contract lets it write its border or a whole pixel stride.
constexpr float SENTINEL = -1234.5f;  // compared bit for bit; finite, so that an input's neighbours
                                      // read into a result show as a large error
constexpr int SLICE_BEFORE = 3, SLICE_AFTER = 6;

enum class Role { Input, Output };

class Guarded {
public:
    View v;  // the map: interior pixel (0, 0), its first channel

    // t's values in the interior; role Input: a zero border in the map's channels
    Guarded(std::string name, const Tensor& t, Role role, bool slice = false, int pad = 1)
        : name_(std::move(name)), n_(t.n), h_(t.h), w_(t.w), c_(t.c), pad_(pad),
          off_(slice ? SLICE_BEFORE : 0), ps_(t.c + (slice ? SLICE_BEFORE + SLICE_AFTER : 0)) {
        const int hp = h_ + 2 * pad, wp = w_ + 2 * pad;
        buf_.resize(size_t(n_) * hp * wp * ps_);
        std::fill(buf_.ptr, buf_.ptr + floats(), SENTINEL);
        v.ps = ps_;
        v.rs = ptrdiff_t(wp) * ps_;
        v.ns = ptrdiff_t(hp) * v.rs;
        v.p = buf_.ptr + pad * v.rs + pad * v.ps + off_;
        for (int i = 0; i < n_; ++i)
            for (int y = -pad; y < h_ + pad; ++y)
                for (int x = -pad; x < w_ + pad; ++x) {
                    const bool interior = y >= 0 && y < h_ && x >= 0 && x < w_;
                    if (interior || role == Role::Input)
                        for (int j = 0; j < c_; ++j) v.at(i, y, x)[j] = interior ? t.at(i, y, x, j) : 0.f;
                }
        init_.assign(buf_.ptr, buf_.ptr + floats());
    }
    // [n][c] rows, no border (a pool's or a linear layer's output): v.p, row stride v.ns
    static Guarded rows(std::string name, int n, int c) {
        return Guarded(std::move(name), Tensor(n, 1, 1, c), Role::Output, false, 0);
    }
    Guarded(const Guarded&) = delete;
    Guarded& operator=(const Guarded&) = delete;
    Guarded(Guarded&&) = default;  // v stays valid: the buffer moves, not its floats

    // the interior; throws std::runtime_error if a float outside the map changed
    Tensor read() const {
        size_t changed = 0, first = 0;
        for (size_t k = 0; k < floats(); ++k)
            if (!own(k) && std::memcmp(buf_.ptr + k, init_.data() + k, sizeof(float)) != 0 && !changed++) first = k;
        if (changed)
            throw std::runtime_error(name_ + ": " + std::to_string(changed) + " float" + (changed > 1 ? "s" : "") +
                                     " outside the map written (the first: " + where(first) + ")");
        Tensor t(n_, h_, w_, c_);
        for (int i = 0; i < n_; ++i)
            for (int y = 0; y < h_; ++y)
                for (int x = 0; x < w_; ++x)
                    for (int j = 0; j < c_; ++j) t.at(i, y, x, j) = v.at(i, y, x)[j];
        return t;
    }

private:
    std::string name_;
    int n_, h_, w_, c_, pad_, off_, ps_;
    AlignedBuf buf_;
    std::vector<float> init_;  // the buffer as made: the floats outside the map must keep these bits

    size_t floats() const { return buf_.n + SLACK; }  // AlignedBuf allocates SLACK more
    // buffer float k -> image, row, column (border rows / columns: -pad.., h.., w..), channel
    bool locate(size_t k, int& i, int& y, int& x, int& ch) const {
        const int hp = h_ + 2 * pad_, wp = w_ + 2 * pad_;
        const size_t pix = k / ps_;
        if (pix >= buf_.n / ps_) return false;  // the slack
        ch = int(k % ps_);
        i = int(pix / (size_t(hp) * wp));
        y = int(pix / wp % hp) - pad_;
        x = int(pix % wp) - pad_;
        return true;
    }
    bool own(size_t k) const {
        int i, y, x, ch;
        return locate(k, i, y, x, ch) && y >= 0 && y < h_ && x >= 0 && x < w_ && ch >= off_ && ch < off_ + c_;
    }
    std::string where(size_t k) const {
        int i, y, x, ch;
        if (!locate(k, i, y, x, ch)) return "float " + std::to_string(k - buf_.n) + " after the last pixel";
        const bool border = y < 0 || y >= h_ || x < 0 || x >= w_;
        return "image " + std::to_string(i) + ", row " + std::to_string(y) + ", column " + std::to_string(x) +
               (border ? " (the border)" : "") + ", channel " + std::to_string(ch) + " of the pixel's " +
               std::to_string(ps_) + ", the map's being [" + std::to_string(off_) + ", " + std::to_string(off_ + c_) +
               ")";
    }
};

double max_err(const std::vector<float>& a, const std::vector<float>& b) {
    if (a.size() != b.size()) throw std::runtime_error("size mismatch in check");
    double e = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        double d = std::fabs(double(a[i]) - b[i]) / std::max(1.0, std::fabs(double(b[i])));
        if (std::isnan(d)) return INFINITY;
        e = std::max(e, d);
    }
    return e;
}

// Calls run(a, b) for images [a, b) covering [0, n): one call for n0 == 0, else [0, n0) then
// [n0, n) (a call with n0 > 0, as the engine's per-image calls make).
template <class Run>
void over_images(int n, int n0, Run&& run) {
    if (n0 < 0 || n0 >= n) throw std::invalid_argument("check: n0 must be in [0, n)");
    if (n0 > 0) run(0, n0);
    run(n0, n);
}

// time_check's request, seen by the check it runs in this thread (null elsewhere)
struct TimingRequest {
    std::vector<const Kernels*> sets;
    int reps = 1, rounds = 1;
    std::vector<double> seconds;  // per set, filled by the check's then_time
};
thread_local TimingRequest* timing_request = nullptr;

// A check's return: its error err, and under time_check, once err is taken (the timed calls
// overwrite or accumulate into the outputs), the time of op(set) for each requested set
// (checks.hpp, time_check).
template <class Op>
double then_time(double err, Op&& op) {
    TimingRequest* t = timing_request;
    if (!t) return err;
    auto seconds_per_call = [&](const Kernels& set, int calls) {
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < calls; ++i) op(set);
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / calls;
    };
    // calls per sample: >= ~20 us, so the clock's own cost stays small beside a tiny op
    double fastest = INFINITY;
    for (const Kernels* set : t->sets) {
        op(*set);  // warm-up: caches, first-touched pages
        fastest = std::min(fastest, seconds_per_call(*set, 1));
    }
    const int calls = int(std::clamp(20e-6 / fastest, 1.0, 1000.0));
    std::vector<std::vector<double>> best(t->sets.size(), std::vector<double>(t->rounds, INFINITY));
    for (int r = 0; r < t->rounds; ++r)
        for (size_t s = 0; s < t->sets.size(); ++s)
            for (int i = 0; i < t->reps; ++i) best[s][r] = std::min(best[s][r], seconds_per_call(*t->sets[s], calls));
    t->seconds.clear();
    for (std::vector<double>& b : best) {
        std::sort(b.begin(), b.end());
        t->seconds.push_back((b[(b.size() - 1) / 2] + b[b.size() / 2]) / 2);  // the median
    }
    return err;
}

// a conv with random weights (raw: pack it with pack_cpu_conv / plan_block)
Conv rand_conv(Rng& r, const ConvSpec& s) {
    Conv c;
    static_cast<ConvSpec&>(c) = s;
    const float scale = 1.5f / std::sqrt(float(s.cin / s.groups * s.k * s.k));
    c.w = r.vec(size_t(s.cout) * (s.cin / s.groups) * s.k * s.k, scale);
    c.b = r.vec(s.cout, 0.2f);
    return c;
}
Conv rand_conv(Rng& r, const std::string& name, int cin, int cout, int k, int stride, int groups, bool relu) {
    return rand_conv(r, ConvSpec{name, cin, cout, k, stride, groups, relu, true});
}

}  // namespace

double conv(const std::string& isa, int n, int h, int w, int cin, int cout, int k, int stride, bool relu,
            const std::string& mode_arg, unsigned seed, int n0, bool slice) {
    const Kernels& K = kernels_select(isa);
    Rng r(seed);
    Conv c = rand_conv(r, "c", cin, cout, k, stride, 1, relu);
    // "wino_<mode>": the Winograd F(2x2,3x3) path (k 3, stride 1, square map) with that epilogue
    const bool wino = mode_arg.rfind("wino_", 0) == 0;
    const std::string mode = wino ? mode_arg.substr(5) : mode_arg;
    if (wino) {
        if (k != 3 || stride != 1 || h != w) throw std::invalid_argument("wino check needs k=3, stride 1, h == w");
        if (mode == "pool" || mode == "shuf") throw std::invalid_argument("wino check: no pool / shuf epilogue");
        if (n0 != 0) throw std::invalid_argument("wino check: whole batches only (n0 = 0)");
    }
    const CpuConv pc = pack_cpu_conv(c, wino ? ConvAlgo::Winograd : ConvAlgo::Direct);
    Tensor x = rand_tensor(r, n, h, w, cin);
    const int pad = k / 2, oh = (h + 2 * pad - k) / stride + 1, ow = (w + 2 * pad - k) / stride + 1;
    const Guarded xg("conv in", x, Role::Input, slice, std::max(1, pad));
    const View xv = xg.v;
    Workspace wws;
    // the op on a kernel set for images [a, b), output rows [y0, y1)
    auto op = [&](const Kernels& set, int a, int b, int y0, int y1, const Epilogue& e) {
        if (!wino) set.conv(pc.pc, xv, a, b, y0, y1, ow, e);
        else if (a == 0 && b == n && y0 == 0 && y1 == oh) wino_conv(set, pc.pw, xv, n, h, e, wws);
        else throw std::logic_error("wino check: whole maps only");
    };
    auto run = [&](int y0, int y1, const Epilogue& e) {
        over_images(n, n0, [&](int a, int b) { op(K, a, b, y0, y1, e); });
    };
    Tensor want = ref::conv2d(x, c.w.data(), c.b.data(), cout, k, stride, 1, false);
    Tensor extra = rand_tensor(r, n, oh, ow, cout);
    Tensor src2 = rand_tensor(r, n, oh, ow, cout);
    Epilogue ep;
    ep.relu = relu;
    auto whole = [&](const Kernels& set) { op(set, 0, n, 0, oh, ep); };  // the timed call, ep as the mode sets it
    // the maps of the mode (each as a slice where slice is set)
    auto map = [&](const char* name, const Tensor& t, Role role) {
        return Guarded(std::string("conv ") + name, t, role, slice);
    };
    std::optional<Guarded> resg;
    if (mode == "res") {
        resg.emplace(map("res", extra, Role::Input));
        ep.res = resg->v;
        want = ref::add(want, extra);
    }
    if (relu) want = ref::relu(want);
    if (mode == "pool") {
        Guarded pool = Guarded::rows("conv pool", n, cout);
        ep.pool = pool.v.p; ep.pool_ns = pool.v.ns; ep.pool_scale = 1.f / float(oh * ow);
        run(0, oh, ep);
        return then_time(max_err(pool.read().d, ref::global_avgpool(want)), whole);
    }
    if (mode == "shuf") {
        Guarded o = map("out", Tensor(n, oh, ow, 2 * cout), Role::Output);
        const Guarded s = map("shuf", src2, Role::Input);
        ep.out = o.v; ep.shuf = s.v;
        run(0, oh, ep);
        Tensor want_s = ref::channel_shuffle(ref::concat_channels(src2, want), 2);
        return then_time(max_err(o.read().d, want_s.d), whole);
    }
    if (mode == "vs_driver") {
        // the plain store (which may take a backend's fast path) against the generic driver's
        // accumulating store onto zeros: the same sums, so |difference| must be exactly 0
        Guarded plain = map("out", Tensor(n, oh, ow, cout), Role::Output);
        Guarded acc = map("out (accumulated)", Tensor(n, oh, ow, cout), Role::Output);
        ep.out = plain.v;
        run(0, oh, ep);
        Epilogue ea = ep;
        ea.out = acc.v;
        ea.accumulate = true;
        run(0, oh, ea);
        return then_time(max_err(plain.read().d, acc.read().d), whole);
    }
    Guarded o = map("out", mode == "acc" ? extra : Tensor(n, oh, ow, cout), Role::Output);
    ep.out = o.v;
    ep.accumulate = mode == "acc";
    std::optional<Guarded> o2, s2;
    if (mode == "out2") {
        o2.emplace(map("out2", Tensor(n, oh, ow, cout), Role::Output));
        s2.emplace(map("src2", src2, Role::Input));
        ep.out2 = o2->v; ep.src2 = s2->v;
    }
    // compute only rows [1, oh) first then [0, 1) to exercise partial row ranges
    if (oh > 1 && !wino) {
        run(1, oh, ep);
        run(0, 1, ep);
    } else {
        run(0, oh, ep);
    }
    double e = 0;
    if (mode == "out2") e = max_err(o2->read().d, ref::add(want, src2).d);
    if (mode == "acc") want = ref::add(want, extra);
    return then_time(std::max(e, max_err(o.read().d, want.d)), whole);
}

double conv_skip0(const std::string& isa, int n, int h, int w, int cin, int cout, double zero_frac,
                  const std::string& mode, unsigned seed, bool relu, int n0, bool slice) {
    const Kernels& K = kernels_select(isa);
    Rng r(seed);
    Conv c = rand_conv(r, "c", cin, cout, 1, 1, 1, relu);
    const CpuConv sk = pack_cpu_conv(c, ConvAlgo::Skip0), dense = pack_cpu_conv(c, ConvAlgo::Direct);
    Tensor x = rand_tensor(r, n, h, w, cin, 0.f);  // post-ReLU input: >= 0, with exact zeros
    for (auto& v : x.d)
        if (r.u(0.f, 1.f) < zero_frac) v = 0.f;
    if (mode == "nan") x.d[x.d.size() / 2] = NAN;
    const Guarded xg("conv1x1_skip0 in", x, Role::Input, slice);
    const View xv = xg.v;
    Tensor want = ref::conv2d(x, c.w.data(), c.b.data(), cout, 1, 1, 1, relu);
    Epilogue ep;
    ep.relu = relu;
    // the op on a kernel set for images [a, b), output rows [y0, y1)
    auto op = [&](const Kernels& set, int a, int b, int y0, int y1, const Epilogue& e) {
        set.conv1x1_skip0(sk.psk, xv, a, b, y0, y1, w, e);
    };
    auto run = [&](int y0, int y1, const Epilogue& e) {
        over_images(n, n0, [&](int a, int b) { op(K, a, b, y0, y1, e); });
    };
    auto whole = [&](const Kernels& set) { op(set, 0, n, 0, h, ep); };  // the timed call, ep as the mode sets it
    if (mode == "pool") {
        Guarded pool = Guarded::rows("conv1x1_skip0 pool", n, cout);
        ep.pool = pool.v.p; ep.pool_ns = pool.v.ns; ep.pool_scale = 1.f / float(h * w);
        run(0, h, ep);
        return then_time(max_err(pool.read().d, ref::global_avgpool(want)), whole);
    }
    Guarded og("conv1x1_skip0 out", Tensor(n, h, w, cout), Role::Output, slice);
    ep.out = og.v;
    if (h > 1) {  // partial row ranges, as the fused units call it
        run(1, h, ep);
        run(0, 1, ep);
    } else {
        run(0, h, ep);
    }
    const Tensor got = og.read();
    if (mode == "plain") return then_time(max_err(got.d, want.d), whole);
    // "dense" / "nan": the dense kernel on the same input; skipping exact zeros must not change
    // a single bit (NaN compares equal to NaN here; "nan" also requires NaN to reach the output)
    Guarded dg("conv1x1_skip0 dense conv's out", Tensor(n, h, w, cout), Role::Output, slice);
    Epilogue ed = ep;
    ed.out = dg.v;
    K.conv(dense.pc, xv, 0, n, 0, h, w, ed);
    const Tensor dense_out = dg.read();
    double e = 0;
    bool nan_seen = false;
    for (size_t i = 0; i < got.d.size(); ++i) {
        const bool gn = std::isnan(got.d[i]), dn = std::isnan(dense_out.d[i]);
        nan_seen |= gn;
        if (gn != dn) return INFINITY;
        if (!gn) e = std::max(e, std::fabs(double(got.d[i]) - dense_out.d[i]));
    }
    if (mode == "nan" && !nan_seen) return INFINITY;
    return then_time(e, whole);
}

double dw3x3(const std::string& isa, int n, int h, int w, int c, int stride, bool relu, unsigned seed, int n0,
             bool slice) {
    const Kernels& K = kernels_select(isa);
    Rng r(seed);
    Conv cv = rand_conv(r, "dw", c, c, 3, stride, c, relu);
    const CpuConv pd = pack_cpu_conv(cv, ConvAlgo::Depthwise);  // also for c == 1 (groups == 1)
    Tensor x = rand_tensor(r, n, h, w, c);
    const Guarded xg("dw3x3 in", x, Role::Input, slice);
    Tensor want = ref::conv2d(x, cv.w.data(), cv.b.data(), c, 3, stride, c, relu);
    Guarded og("dw3x3 out", Tensor(n, want.h, want.w, c), Role::Output, slice);
    auto op = [&](const Kernels& set, int a, int b) { set.dw3x3(pd.pd, xg.v, a, b, 0, want.h, want.w, og.v, relu); };
    over_images(n, n0, [&](int a, int b) { op(K, a, b); });
    return then_time(max_err(og.read().d, want.d), [&](const Kernels& set) { op(set, 0, n); });
}

double conv_small(const std::string& isa, int n, int h, int w, int cin, int cout, int k, int stride, bool relu,
                  unsigned seed, int n0) {
    const Kernels& K = kernels_select(isa);
    Rng r(seed);
    Conv cv = rand_conv(r, "conv_small", cin, cout, k, stride, 1, relu);
    const CpuConv pc = pack_cpu_conv(cv, ConvAlgo::Small);
    Tensor x = rand_tensor(r, n, h, w, cin);
    const Guarded xg("conv_small in", x, Role::Input, false, k / 2);  // zero padded by k/2, the contract
    Tensor want = ref::conv2d(x, cv.w.data(), cv.b.data(), cout, k, stride, 1, relu);
    Guarded og("conv_small out", Tensor(n, want.h, want.w, cout), Role::Output);
    auto op = [&](const Kernels& set, int a, int b) { set.conv_small(pc.ps, xg.v, a, b, 0, want.h, want.w, og.v, relu); };
    over_images(n, n0, [&](int a, int b) { op(K, a, b); });
    return then_time(max_err(og.read().d, want.d), [&](const Kernels& set) { op(set, 0, n); });
}

double maxpool(const std::string& isa, int n, int h, int w, int c, unsigned seed, int n0) {
    const Kernels& K = kernels_select(isa);
    Rng r(seed);
    Tensor x = rand_tensor(r, n, h, w, c, 0.f);  // post-ReLU input (the kernel's contract)
    const Guarded xg("maxpool3s2 in", x, Role::Input);
    Tensor want = ref::maxpool3s2(x);
    Guarded og("maxpool3s2 out", Tensor(n, want.h, want.w, c), Role::Output);
    auto op = [&](const Kernels& set, int a, int b) { set.maxpool3s2(xg.v, c, a, b, 0, want.h, want.w, og.v); };
    over_images(n, n0, [&](int a, int b) { op(K, a, b); });
    return then_time(max_err(og.read().d, want.d), [&](const Kernels& set) { op(set, 0, n); });
}

double maxpool2s2(const std::string& isa, int n, int h, int w, int c, unsigned seed, int n0) {
    const Kernels& K = kernels_select(isa);
    Rng r(seed);
    Tensor x = rand_tensor(r, n, h, w, c);
    const Guarded xg("maxpool2s2 in", x, Role::Input);
    Tensor want = ref::maxpool2s2(x);
    Guarded og("maxpool2s2 out", Tensor(n, want.h, want.w, c), Role::Output);
    auto op = [&](const Kernels& set, int a, int b) { set.maxpool2s2(xg.v, c, a, b, 0, want.h, want.w, og.v); };
    over_images(n, n0, [&](int a, int b) { op(K, a, b); });
    return then_time(max_err(og.read().d, want.d), [&](const Kernels& set) { op(set, 0, n); });
}

double upsample2_add(const std::string& isa, int n, int h, int w, int c, unsigned seed, int n0) {
    const Kernels& K = kernels_select(isa);
    Rng r(seed);
    Tensor fine = rand_tensor(r, n, h, w, c), coarse = rand_tensor(r, n, (h + 1) / 2, (w + 1) / 2, c);
    const Guarded fg("upsample2_add fine", fine, Role::Input), cg("upsample2_add coarse", coarse, Role::Input);
    Guarded og("upsample2_add out", Tensor(n, h, w, c), Role::Output);
    auto op = [&](const Kernels& set, int a, int b) { set.upsample2_add(fg.v, cg.v, c, a, b, 0, h, w, og.v); };
    over_images(n, n0, [&](int a, int b) { op(K, a, b); });
    return then_time(max_err(og.read().d, ref::add(fine, ref::upsample2_nearest(coarse, h, w)).d),
                     [&](const Kernels& set) { op(set, 0, n); });
}

double avgpool(const std::string& isa, int n, int h, int w, int c, unsigned seed) {
    const Kernels& K = kernels_select(isa);
    Rng r(seed);
    Tensor x = rand_tensor(r, n, h, w, c);
    const Guarded xg("avgpool in", x, Role::Input);
    Guarded got = Guarded::rows("avgpool out", n, c);
    auto op = [&](const Kernels& set) { set.avgpool(xg.v, c, n, h, w, got.v.p); };
    op(K);
    return then_time(max_err(got.read().d, ref::global_avgpool(x)), op);
}

double linear(const std::string& isa, int n, int in_f, int out_f, unsigned seed) {
    const Kernels& K = kernels_select(isa);
    Rng r(seed);
    auto x = r.vec(size_t(n) * in_f), wt = r.vec(size_t(out_f) * in_f), b = r.vec(out_f);
    // aligned as the engine holds them (CpuNet::fc_w, the head's feature scratch): timings of
    // heap-aligned vectors varied 1.2x-1.9x between processes
    const AlignedBuf xa = aligned_copy(x), wa = aligned_copy(wt), ba = aligned_copy(b);
    Guarded got = Guarded::rows("linear out", n, out_f);
    auto op = [&](const Kernels& set) { set.linear(xa.data(), n, in_f, wa.data(), ba.data(), out_f, got.v.p); };
    op(K);
    return then_time(max_err(got.read().d, ref::linear(x, n, in_f, wt.data(), b.data(), out_f)), op);
}

double block(const std::string& isa, const std::string& kind_arg, int n, int h, int cin, int cout, int stride,
             unsigned seed) {
    const Kernels& K = kernels_select(isa);
    Rng r(seed);
    // "<kind>_wino": the planner may choose Winograd for the stride-1 3x3 convs (where the map has
    // enough tiles, choose_conv_algo); plain kinds run them as implicit GEMM
    const bool wino = kind_arg.size() > 5 && kind_arg.compare(kind_arg.size() - 5, 5, "_wino") == 0;
    const std::string kind = wino ? kind_arg.substr(0, kind_arg.size() - 5) : kind_arg;
    BlockDesc d;
    d.name = "b"; d.cin = cin; d.cout = cout; d.stride = stride;
    if (kind == "shuffle_down") { d.kind = BlockKind::ShuffleDown; d.stride = 2; }
    else if (kind == "shuffle_basic") { d.kind = BlockKind::ShuffleBasic; d.stride = 1; d.cin = cout; }
    else if (kind == "basic") d.kind = BlockKind::Basic;
    else if (kind == "ffe") d.kind = BlockKind::FFE;
    else throw std::invalid_argument("unknown block kind " + kind);
    // the block's convs from the one schema (block_convs), random weights, module order
    const Block b{d, block_convs(d, [&](const ConvSpec& s) { return rand_conv(r, s); })};
    PlanOptions o;
    o.winograd = wino;
    o.skip0 = false;  // block inputs here are not post-ReLU for the shuffle units (zero-skipping: conv_skip0)
    const CpuBlock cb = plan_block(b, h, false, o);
    Tensor x = rand_tensor(r, n, h, h, d.cin, kind.rfind("shuffle", 0) == 0 ? -1.f : 0.f);
    Tensor want = ref_block(b, x);
    const Guarded xg("block in", x, Role::Input);
    Guarded og("block out", Tensor(n, want.h, want.w, cout), Role::Output);
    Workspace ws;
    auto op = [&](const Kernels& set) { block_forward(set, cb, xg.v, n, h, og.v, ws); };
    op(K);
    return then_time(max_err(og.read().d, want.d), op);
}

double stem(const std::string& isa, int n, int size, int cin, int cout, int k, int stride, unsigned seed) {
    const Kernels& K = kernels_select(isa);
    Rng r(seed);
    Conv c = rand_conv(r, "stem", cin, cout, k, stride, 1, true);
    // seed % 3 == 0: im2col + 1x1 GEMM path, 1: implicit GEMM path, 2: direct small-cin conv (the planner's choice)
    const ConvAlgo algos[3] = {ConvAlgo::Im2col, ConvAlgo::Direct, ConvAlgo::Small};
    const CpuConv pc = pack_cpu_conv(c, algos[seed % 3]);
    auto x = r.vec(size_t(n) * cin * size * size);
    Tensor want = ref::maxpool3s2(ref::conv2d(ref::from_nchw(x.data(), n, cin, size, size), c.w.data(), c.b.data(),
                                              cout, k, stride, 1, true));
    Guarded og("stem out", Tensor(n, want.h, want.w, cout), Role::Output);
    Workspace ws;
    auto op = [&](const Kernels& set) { stem_forward(set, pc, x.data(), n, size, ws, og.v); };
    op(K);
    return then_time(max_err(og.read().d, want.d), op);
}

std::vector<double> time_check(const std::vector<std::string>& isas, int reps, int rounds,
                               const std::function<double(const std::string& isa)>& check) {
    if (isas.empty()) throw std::invalid_argument("time_check: no kernel set to time");
    if (reps < 1 || rounds < 1) throw std::invalid_argument("time_check: reps and rounds must be >= 1");
    TimingRequest t;
    t.reps = reps;
    t.rounds = rounds;
    for (const std::string& isa : isas) {
        if (std::count(isas.begin(), isas.end(), isa) > 1)
            throw std::invalid_argument("time_check: kernel set '" + isa + "' is listed twice");
        t.sets.push_back(&kernels_select(isa));  // refuses a set this build or CPU lacks
    }
    struct Scope {  // the request lives for this one check, also when it throws
        explicit Scope(TimingRequest* r) { timing_request = r; }
        ~Scope() { timing_request = nullptr; }
    } scope(&t);
    check(isas.front());
    if (t.seconds.empty())
        throw std::invalid_argument("time_check: the check returned before its timed call (it failed)");
    return t.seconds;
}

}  // namespace pyfer::checks
