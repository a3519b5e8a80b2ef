#include "checks.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>
#include <stdexcept>

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

Tensor rand_tensor(Rng& r, int n, int h, int w, int c, float lo = -1.f) {
    Tensor t(n, h, w, c);
    for (auto& x : t.d) x = r.u(lo, 1.f);
    return t;
}

// copy a dense tensor into a padded buffer (pad 1) and return the view
View to_padded(const Tensor& t, AlignedBuf& buf, int pad = 1) {
    buf.resize(padded_size(t.n, t.h, t.w, t.c, pad));
    std::fill(buf.ptr, buf.ptr + buf.n, 0.f);
    View v = padded_view(buf.ptr, t.h, t.w, t.c, pad);
    for (int i = 0; i < t.n; ++i)
        for (int y = 0; y < t.h; ++y)
            for (int x = 0; x < t.w; ++x)
                for (int c = 0; c < t.c; ++c) v.at(i, y, x)[c] = t.at(i, y, x, c);
    return v;
}

Tensor from_view(const View& v, int n, int h, int w, int c) {
    Tensor t(n, h, w, c);
    for (int i = 0; i < n; ++i)
        for (int y = 0; y < h; ++y)
            for (int x = 0; x < w; ++x)
                for (int j = 0; j < c; ++j) t.at(i, y, x, j) = v.at(i, y, x)[j];
    return t;
}

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
            const std::string& mode_arg, unsigned seed, int n0) {
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
    AlignedBuf xb;
    View xv = to_padded(x, xb, std::max(1, pad));
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
    AlignedBuf ob, eb, s2b, o2b;
    if (mode == "res") {
        ep.res = to_padded(extra, eb);
        want = ref::add(want, extra);
    }
    if (relu) want = ref::relu(want);
    std::vector<float> got_v, want_v;
    if (mode == "pool") {
        std::vector<float> pool(size_t(n) * cout, 0.f);
        ep.pool = pool.data(); ep.pool_ns = cout; ep.pool_scale = 1.f / float(oh * ow);
        run(0, oh, ep);
        return then_time(max_err(pool, ref::global_avgpool(want)), whole);
    }
    if (mode == "shuf") {
        Tensor o(n, oh, ow, 2 * cout);
        View ov = to_padded(o, ob);
        ep.out = ov; ep.shuf = to_padded(src2, s2b);
        run(0, oh, ep);
        Tensor want_s = ref::channel_shuffle(ref::concat_channels(src2, want), 2);
        return then_time(max_err(from_view(ov, n, oh, ow, 2 * cout).d, want_s.d), whole);
    }
    if (mode == "vs_driver") {
        // the plain store (which may take a backend's fast path) against the generic driver's
        // accumulating store onto zeros: the same sums, so |difference| must be exactly 0
        AlignedBuf pb, ab;
        const View pv = to_padded(Tensor(n, oh, ow, cout), pb), av = to_padded(Tensor(n, oh, ow, cout), ab);
        ep.out = pv;
        run(0, oh, ep);
        Epilogue acc = ep;
        acc.out = av;
        acc.accumulate = true;
        run(0, oh, acc);
        return then_time(max_err(from_view(pv, n, oh, ow, cout).d, from_view(av, n, oh, ow, cout).d), whole);
    }
    Tensor o0 = mode == "acc" ? extra : Tensor(n, oh, ow, cout);
    View ov = to_padded(o0, ob);
    ep.out = ov;
    double e = 0;
    if (mode == "acc") { ep.accumulate = true; }
    if (mode == "out2") {
        ep.out2 = to_padded(Tensor(n, oh, ow, cout), o2b);
        ep.src2 = to_padded(src2, s2b);
    }
    // compute only rows [1, oh) first then [0, 1) to exercise partial row ranges
    if (oh > 1 && !wino) {
        run(1, oh, ep);
        run(0, 1, ep);
    } else {
        run(0, oh, ep);
    }
    if (mode == "out2") e = max_err(from_view(ep.out2, n, oh, ow, cout).d, ref::add(want, src2).d);
    if (mode == "acc") want = ref::add(want, extra);
    return then_time(std::max(e, max_err(from_view(ov, n, oh, ow, cout).d, want.d)), whole);
}

double conv_skip0(const std::string& isa, int n, int h, int w, int cin, int cout, double zero_frac,
                  const std::string& mode, unsigned seed, bool relu, int n0) {
    const Kernels& K = kernels_select(isa);
    Rng r(seed);
    Conv c = rand_conv(r, "c", cin, cout, 1, 1, 1, relu);
    const CpuConv sk = pack_cpu_conv(c, ConvAlgo::Skip0), dense = pack_cpu_conv(c, ConvAlgo::Direct);
    Tensor x = rand_tensor(r, n, h, w, cin, 0.f);  // post-ReLU input: >= 0, with exact zeros
    for (auto& v : x.d)
        if (r.u(0.f, 1.f) < zero_frac) v = 0.f;
    if (mode == "nan") x.d[x.d.size() / 2] = NAN;
    AlignedBuf xb, ob, db;
    View xv = to_padded(x, xb);
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
        std::vector<float> pool(size_t(n) * cout, 0.f);
        ep.pool = pool.data(); ep.pool_ns = cout; ep.pool_scale = 1.f / float(h * w);
        run(0, h, ep);
        return then_time(max_err(pool, ref::global_avgpool(want)), whole);
    }
    View ov = to_padded(Tensor(n, h, w, cout), ob);
    ep.out = ov;
    if (h > 1) {  // partial row ranges, as the fused units call it
        run(1, h, ep);
        run(0, 1, ep);
    } else {
        run(0, h, ep);
    }
    const Tensor got = from_view(ov, n, h, w, cout);
    if (mode == "plain") return then_time(max_err(got.d, want.d), whole);
    // "dense" / "nan": the dense kernel on the same input; skipping exact zeros must not change
    // a single bit (NaN compares equal to NaN here; "nan" also requires NaN to reach the output)
    View dv = to_padded(Tensor(n, h, w, cout), db);
    Epilogue ed = ep;
    ed.out = dv;
    K.conv(dense.pc, xv, 0, n, 0, h, w, ed);
    const Tensor dense_out = from_view(dv, n, h, w, cout);
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

double dw3x3(const std::string& isa, int n, int h, int w, int c, int stride, bool relu, unsigned seed, int n0) {
    const Kernels& K = kernels_select(isa);
    Rng r(seed);
    Conv cv = rand_conv(r, "dw", c, c, 3, stride, c, relu);
    const CpuConv pd = pack_cpu_conv(cv, ConvAlgo::Depthwise);  // also for c == 1 (groups == 1)
    Tensor x = rand_tensor(r, n, h, w, c);
    AlignedBuf xb, ob;
    View xv = to_padded(x, xb);
    Tensor want = ref::conv2d(x, cv.w.data(), cv.b.data(), c, 3, stride, c, relu);
    View ov = to_padded(Tensor(n, want.h, want.w, c), ob);
    auto op = [&](const Kernels& set, int a, int b) { set.dw3x3(pd.pd, xv, a, b, 0, want.h, want.w, ov, relu); };
    over_images(n, n0, [&](int a, int b) { op(K, a, b); });
    return then_time(max_err(from_view(ov, n, want.h, want.w, c).d, want.d),
                     [&](const Kernels& set) { op(set, 0, n); });
}

double maxpool(const std::string& isa, int n, int h, int w, int c, unsigned seed, int n0) {
    const Kernels& K = kernels_select(isa);
    Rng r(seed);
    Tensor x = rand_tensor(r, n, h, w, c, 0.f);  // post-ReLU input (the kernel's contract)
    AlignedBuf xb, ob;
    View xv = to_padded(x, xb);
    Tensor want = ref::maxpool3s2(x);
    View ov = to_padded(Tensor(n, want.h, want.w, c), ob);
    auto op = [&](const Kernels& set, int a, int b) { set.maxpool3s2(xv, c, a, b, 0, want.h, want.w, ov); };
    over_images(n, n0, [&](int a, int b) { op(K, a, b); });
    return then_time(max_err(from_view(ov, n, want.h, want.w, c).d, want.d),
                     [&](const Kernels& set) { op(set, 0, n); });
}

double maxpool2s2(const std::string& isa, int n, int h, int w, int c, unsigned seed, int n0) {
    const Kernels& K = kernels_select(isa);
    Rng r(seed);
    Tensor x = rand_tensor(r, n, h, w, c);
    AlignedBuf xb, ob;
    View xv = to_padded(x, xb);
    Tensor want = ref::maxpool2s2(x);
    View ov = to_padded(Tensor(n, want.h, want.w, c), ob);
    auto op = [&](const Kernels& set, int a, int b) { set.maxpool2s2(xv, c, a, b, 0, want.h, want.w, ov); };
    over_images(n, n0, [&](int a, int b) { op(K, a, b); });
    return then_time(max_err(from_view(ov, n, want.h, want.w, c).d, want.d),
                     [&](const Kernels& set) { op(set, 0, n); });
}

double upsample2_add(const std::string& isa, int n, int h, int w, int c, unsigned seed, int n0) {
    const Kernels& K = kernels_select(isa);
    Rng r(seed);
    Tensor fine = rand_tensor(r, n, h, w, c), coarse = rand_tensor(r, n, (h + 1) / 2, (w + 1) / 2, c);
    AlignedBuf fb, cb, ob;
    View fv = to_padded(fine, fb), cv = to_padded(coarse, cb), ov = to_padded(Tensor(n, h, w, c), ob);
    auto op = [&](const Kernels& set, int a, int b) { set.upsample2_add(fv, cv, c, a, b, 0, h, w, ov); };
    over_images(n, n0, [&](int a, int b) { op(K, a, b); });
    return then_time(max_err(from_view(ov, n, h, w, c).d, ref::add(fine, ref::upsample2_nearest(coarse, h, w)).d),
                     [&](const Kernels& set) { op(set, 0, n); });
}

double avgpool(const std::string& isa, int n, int h, int w, int c, unsigned seed) {
    const Kernels& K = kernels_select(isa);
    Rng r(seed);
    Tensor x = rand_tensor(r, n, h, w, c);
    AlignedBuf xb;
    View xv = to_padded(x, xb);
    std::vector<float> got(size_t(n) * c);
    auto op = [&](const Kernels& set) { set.avgpool(xv, c, n, h, w, got.data()); };
    op(K);
    return then_time(max_err(got, ref::global_avgpool(x)), op);
}

double linear(const std::string& isa, int n, int in_f, int out_f, unsigned seed) {
    const Kernels& K = kernels_select(isa);
    Rng r(seed);
    auto x = r.vec(size_t(n) * in_f), wt = r.vec(size_t(out_f) * in_f), b = r.vec(out_f);
    // aligned as the engine holds them (CpuNet::fc_w, the head's feature scratch): timings of
    // heap-aligned vectors varied 1.2x-1.9x between processes
    const AlignedBuf xa = aligned_copy(x), wa = aligned_copy(wt), ba = aligned_copy(b);
    std::vector<float> got(size_t(n) * out_f);
    auto op = [&](const Kernels& set) { set.linear(xa.data(), n, in_f, wa.data(), ba.data(), out_f, got.data()); };
    op(K);
    return then_time(max_err(got, ref::linear(x, n, in_f, wt.data(), b.data(), out_f)), op);
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
    AlignedBuf xb, ob;
    View xv = to_padded(x, xb);
    View ov = to_padded(Tensor(n, want.h, want.w, cout), ob);
    Workspace ws;
    auto op = [&](const Kernels& set) { block_forward(set, cb, xv, n, h, ov, ws); };
    op(K);
    return then_time(max_err(from_view(ov, n, want.h, want.w, cout).d, want.d), op);
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
    AlignedBuf ob;
    View ov = to_padded(Tensor(n, want.h, want.w, cout), ob);
    Workspace ws;
    auto op = [&](const Kernels& set) { stem_forward(set, pc, x.data(), n, size, ws, ov); };
    op(K);
    return then_time(max_err(from_view(ov, n, want.h, want.w, cout).d, want.d), op);
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
