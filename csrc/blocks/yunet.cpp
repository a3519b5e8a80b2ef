// YuNet's forward pass on one image (see yunet.hpp). The front (image load into a zero-padded NHWC
// float buffer, bottom and right padded to the model's input_multiple with zeros as OpenCV's
// FaceDetectorYN does; stem; the stages before the first pyramid level; that level's max pool)
// runs as a row pipeline over windows of a few rows (RowPipeline below); the later stages, the
// top-down pyramid (upsample + add, lateral unit) and the stacked heads run on whole maps of
// strides 8-32, each unit in row bands. Every map that a 3x3 window reads (the image, 1x1 outputs)
// has a zero border; others are written interior only.
//
// Threads: each step's output rows are cut into one band per lane, and the lanes run as tasks of
// `run`. A front lane runs its own row pipeline from the rows its band needs (a few rows above
// the band are computed by both neighbours); a unit's lane computes the 1x1 rows its band's 3x3
// window reads, in a buffer of its own. Lanes write disjoint rows of the shared maps, and a step
// starts when the one before it has finished (run returns).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "yunet.hpp"

namespace pyfer {

namespace {

// the heads of one level stacked into one 1x1 conv and one depthwise conv
YuNetCpuUnit stack_heads(const std::vector<YuNetUnit>& heads) {
    Conv pw = heads[0].pw, dw = heads[0].dw;
    pw.w.clear(); pw.b.clear(); dw.w.clear(); dw.b.clear();
    pw.cout = 0;
    for (const YuNetUnit& h : heads) {
        pw.w.insert(pw.w.end(), h.pw.w.begin(), h.pw.w.end());
        pw.b.insert(pw.b.end(), h.pw.b.begin(), h.pw.b.end());
        dw.w.insert(dw.w.end(), h.dw.w.begin(), h.dw.w.end());
        dw.b.insert(dw.b.end(), h.dw.b.begin(), h.dw.b.end());
        pw.cout += h.pw.cout;
    }
    dw.cin = dw.cout = dw.groups = pw.cout;
    return {pack_cpu_conv(pw, ConvAlgo::Direct), pack_cpu_conv(dw, ConvAlgo::Depthwise)};
}

YuNetCpuUnit pack_unit(const YuNetUnit& u) {
    return {pack_cpu_conv(u.pw, ConvAlgo::Direct), pack_cpu_conv(u.dw, ConvAlgo::Depthwise)};
}

// floats of one band of a unit's rows (its 1x1 conv's wider side): about 32 KB, L1/L2 resident
constexpr int BAND_FLOATS = 8192;
// a lane's band of a step is at least this many rows and floats (of its widest side): smaller
// steps run on fewer lanes (measured in docs/recognizer.md, "YuNet on several threads")
constexpr int MIN_BAND_ROWS = 4;
constexpr size_t MIN_BAND_FLOATS = 4096;

// fixed slots of the shared maps; each level then has two (its stage output, its pyramid output)
enum : size_t { W_X, W_Y, W_SUM, W_LEVELS };
// slots of a lane's own buffers: a unit's 1x1 output (the heads' apart: another shape), then the
// front's row windows
enum : size_t { L_T, L_HEAD_T, L_FRONT };

// Output rows [y_begin, y_end) of one unit: the 1x1 conv into a zero-bordered buffer of the lane's,
// then the depthwise conv (+ReLU) into out, in bands of rows: each band's 1x1 rows (and the one
// row below it that its 3x3 window needs) are computed just before the depthwise conv reads them,
// so they are read back from L1/L2 instead of from a whole map that has left the cache (a
// 160x128x16 map is 1.3 MB). The lane's buffer holds the 1x1 rows its band's 3x3 window reads,
// [y_begin - 1, y_end + 1) within the map (its zero border rows are the map's where the band
// meets the map's edge), addressed by their row number in the map.
void unit_forward(const Kernels& K, const YuNetCpuUnit& u, const View& in, int h, int w, YuNetScratch& lane,
                  size_t tmp_slot, const View& out, int y_begin, int y_end) {
    const int r0 = std::max(0, y_begin - 1), r1 = std::min(h, y_end + 1);
    View t = lane.padded(tmp_slot, r1 - r0, w, u.pw.cout);
    t.p -= ptrdiff_t(r0) * t.rs;
    Epilogue ep;
    ep.out = t;
    const int band = std::max(2, BAND_FLOATS / (w * std::max(u.pw.cin, u.pw.cout)));
    int done = r0;  // 1x1 rows [r0, done) are computed
    for (int y0 = y_begin; y0 < y_end; y0 += band) {
        const int y1 = std::min(y_end, y0 + band), need = std::min(h, y1 + 1);
        K.conv(u.pw.pc, in, 0, 1, done, need, w, ep);
        done = need;
        K.dw3x3(u.dw.pd, t, 0, 1, y0, y1, w, out, u.dw.relu);
    }
}

// image rows [y0, y1) into the padded input (rows and columns beyond the image are zeros)
template <class T>
void load_rows(const ImageRef& img, const View& x, int wp, int y0, int y1) {
    const T* src = static_cast<const T*>(img.data);
    for (int y = y0; y < y1; ++y) {
        float* d = x.at(0, y, 0);
        if (y >= img.h) {
            std::fill(d, d + size_t(wp) * 3, 0.f);
            continue;
        }
        const T* s = src + y * img.row_stride;
        if (img.pixel_stride == 3) {  // packed pixels: one run of 3 * w values (vectorised)
            for (int i = 0; i < 3 * img.w; ++i) d[i] = float(s[i]);
            d += 3 * img.w;
        } else {
            for (int xx = 0; xx < img.w; ++xx, s += img.pixel_stride, d += 3) {
                d[0] = float(s[0]); d[1] = float(s[1]); d[2] = float(s[2]);
            }
        }
        std::fill(d, d + size_t(wp - img.w) * 3, 0.f);
    }
}

// One op of the front's row pipeline, producing rows of its output map (h x w x c) on demand.
// Its buffer holds `cap` rows plus a zero border: the whole map (the front's last op), or a
// window sliding down the map: rows [base, base + cap) are held and `out` addresses them by
// their row number in the map (out.p is offset by -base rows).
struct RowOp {
    enum Kind { Load, Stem, Pointwise, Depthwise, Pool } kind;
    const CpuConv* conv = nullptr;
    int h = 0, w = 0, c = 0;
    View out;
    float* row0 = nullptr;   // the buffer's first interior row
    int cap = 0, base = 0;
    int done = 0;            // rows [0, done) have been produced
};

// the rows [0, n) of op's input that its output rows [0, end) read (in_h: the input's height)
int input_rows(const RowOp& op, int end, int in_h) {
    switch (op.kind) {
        case RowOp::Stem: return std::min(in_h, 2 * end);       // 3x3/2, pad 1: row r reads 2r-1 .. 2r+1
        case RowOp::Pointwise: return end;
        case RowOp::Depthwise: return std::min(in_h, end + 1);  // 3x3/1, pad 1: row r reads r-1 .. r+1
        case RowOp::Pool: return 2 * end;                       // 2x2/2: row r reads 2r, 2r+1
        case RowOp::Load: break;
    }
    return 0;
}
// the first input row that op's output row y reads
int first_input_row(const RowOp& op, int y) {
    switch (op.kind) {
        case RowOp::Stem: return std::max(0, 2 * y - 1);
        case RowOp::Pointwise: return y;
        case RowOp::Depthwise: return std::max(0, y - 1);
        case RowOp::Pool: return 2 * y;
        case RowOp::Load: break;
    }
    return 0;
}

// The front of the network (image load, stem, the stages before the first pyramid level, that
// level's max pool) as a row pipeline: the last op's rows are asked for one at a time, and each
// op first makes sure the input rows it reads exist. The big maps of strides 1-4 then live in
// windows of a few rows that stay in L1/L2, instead of whole maps (1.3 MB each at 160x128x16)
// streamed through L3; every row is computed by the same kernel calls on row ranges, so the
// results are those of whole-map calls. A pipeline makes the last op's rows [r0, r1) (a lane's
// band): each op starts at the first row that the op after it reads.
struct RowPipeline {
    RowPipeline(const Kernels& kernels, const ImageRef& image) : K(kernels), img(image) {}
    const Kernels& K;
    const ImageRef& img;
    std::vector<RowOp> ops;

    void add(RowOp::Kind kind, const CpuConv* conv, int h, int w, int c) {
        RowOp op;
        op.kind = kind; op.conv = conv; op.h = h; op.w = w; op.c = c;
        ops.push_back(op);
    }
    // each op's window: the most rows it holds at once while the last op's rows [r0, r1) are
    // produced one by one (a dry run of ensure)
    void size_windows(int r0, int r1) {
        r0_ = r0;
        r1_ = r1;
        for (RowOp& op : ops) op.cap = 0;
        start();
        for (int r = r0 + 1; r <= r1; ++r) demand(ops.size() - 1, r);
        start();
    }
    // the windows in a lane's buffers; the last op writes into `last`, its whole map
    void allocate(YuNetScratch& lane, size_t first_slot, const View& last) {
        for (size_t i = 0; i + 1 < ops.size(); ++i) {
            RowOp& op = ops[i];
            op.out = lane.padded(first_slot + i, op.cap, op.w, op.c);
            op.row0 = op.out.p;
            op.out.p = op.row0 - ptrdiff_t(op.base) * op.out.rs;
        }
        RowOp& op = ops.back();
        op.out = last;
        op.row0 = last.p;
        op.base = 0;
        op.cap = op.h;
    }
    void run() {
        for (int r = r0_ + 1; r <= r1_; ++r) ensure(ops.size() - 1, r);
    }

private:
    int r0_ = 0, r1_ = 0;
    // every op at its first row: rows before it count as done (another lane's), the window starts there
    void start() {
        ops.back().done = r0_;
        for (size_t i = ops.size() - 1; i-- > 0;) ops[i].done = first_input_row(ops[i + 1], ops[i + 1].done);
        for (RowOp& op : ops) op.base = op.done;
    }
    // the first row that the op after ops[i] still reads
    int first_needed(size_t i) const {
        return i + 1 < ops.size() ? first_input_row(ops[i + 1], ops[i + 1].done) : ops[i].done;
    }
    void demand(size_t i, int end) {
        RowOp& op = ops[i];
        if (end <= op.done) return;
        if (i > 0) demand(i - 1, input_rows(op, end, ops[i - 1].h));
        op.cap = std::max(op.cap, end - first_needed(i));
        op.done = end;
    }
    // rows [0, end) of ops[i] exist afterwards
    void ensure(size_t i, int end) {
        RowOp& op = ops[i];
        if (end <= op.done) return;
        if (i > 0) ensure(i - 1, input_rows(op, end, ops[i - 1].h));
        if (end > op.base + op.cap) {  // slide the window: the rows still read move to its top
            const int first = first_needed(i);
            std::memmove(op.row0 - op.out.ps, op.out.at(0, first, 0) - op.out.ps,
                         sizeof(float) * size_t(op.done - first) * op.out.rs);
            op.base = first;
            op.out.p = op.row0 - ptrdiff_t(first) * op.out.rs;
            if (end > op.base + op.cap) throw std::logic_error("yunet_forward: row window too small");
        }
        const int y0 = op.done;
        const View& in = ops[i > 0 ? i - 1 : 0].out;
        switch (op.kind) {
            case RowOp::Load:
                if (img.u8) load_rows<uint8_t>(img, op.out, op.w, y0, end);
                else load_rows<float>(img, op.out, op.w, y0, end);
                break;
            case RowOp::Stem: K.conv_small(op.conv->ps, in, 0, 1, y0, end, op.w, op.out, true); break;
            case RowOp::Pointwise: {
                Epilogue ep;
                ep.out = op.out;
                K.conv(op.conv->pc, in, 0, 1, y0, end, op.w, ep);
                break;
            }
            case RowOp::Depthwise: K.dw3x3(op.conv->pd, in, 0, 1, y0, end, op.w, op.out, op.conv->relu); break;
            case RowOp::Pool: K.maxpool2s2(in, op.c, 0, 1, y0, end, op.w, op.out); break;
        }
        op.done = end;
        // the zero row below the map that a 3x3 window reads (a window's later rows are stale)
        if (end == op.h && op.cap < op.h) std::fill(op.out.at(0, op.h, 0), op.out.at(0, op.h, op.w), 0.f);
    }
};

}  // namespace

std::shared_ptr<const YuNetCpu> YuNetCpu::build(std::shared_ptr<const YuNetModel> m) {
    auto net = std::make_shared<YuNetCpu>();
    net->stem = pack_cpu_conv(m->stem, ConvAlgo::Small);
    for (const YuNetStage& s : m->stages) {
        net->stages.emplace_back();
        for (const YuNetUnit& u : s.units) net->stages.back().push_back(pack_unit(u));
    }
    for (const YuNetLevel& lv : m->levels) {
        net->laterals.push_back(pack_unit(lv.lateral));
        net->heads.push_back(stack_heads(lv.heads));
    }
    net->model = std::move(m);
    return net;
}

void serial_tasks(int ntasks, const std::function<void(int)>& task) {
    for (int t = 0; t < ntasks; ++t) task(t);
}

int yunet_padded(const YuNetModel& m, int side) {
    return (side + m.input_multiple - 1) / m.input_multiple * m.input_multiple;
}

void yunet_forward(const Kernels& K, const YuNetCpu& net, const ImageRef& img, YuNetWorkspace& ws,
                   const std::vector<float*>& outs, int lanes, const RunTasks& run) {
    const YuNetModel& m = *net.model;
    if (img.h < 1 || img.w < 1) throw std::invalid_argument("yunet_forward: empty image");
    if (outs.size() != m.levels.size()) throw std::invalid_argument("yunet_forward: one output per level");
    if (lanes < 1) throw std::invalid_argument("yunet_forward: lanes must be >= 1");
    const int hp = yunet_padded(m, img.h), wp = yunet_padded(m, img.w);
    if (ws.lanes.size() < size_t(lanes)) ws.lanes.resize(size_t(lanes));
    // rows [0, h) of a step cut into bands, one task per lane; `floats` (the step's widest map)
    // and h limit the bands: each costs its lane a task hand-over and the rows its 3x3 windows
    // read twice
    auto in_bands = [&](int h, size_t floats, const std::function<void(YuNetScratch&, int, int)>& step) {
        const int n = std::max(1, std::min({lanes, h / MIN_BAND_ROWS, int(floats / MIN_BAND_FLOATS)}));
        if (n == 1) return step(ws.lanes[0], 0, h);
        run(n, [&](int t) { step(ws.lanes[size_t(t)], h * t / n, h * (t + 1) / n); });
    };

    // the front, up to the first level's stage (and its max pool) as a row pipeline per lane
    const size_t first = size_t(m.levels.front().stage);
    RowPipeline front(K, img);
    front.add(RowOp::Load, nullptr, hp, wp, 3);
    int h = hp / 2, w = wp / 2, c = net.stem.cout;
    front.add(RowOp::Stem, &net.stem, h, w, c);
    for (size_t si = 0; si <= first; ++si) {
        if (m.stages[si].pool) {
            h /= 2; w /= 2;
            front.add(RowOp::Pool, nullptr, h, w, c);
        }
        if (si == first) break;
        for (const YuNetCpuUnit& u : net.stages[si]) {
            front.add(RowOp::Pointwise, &u.pw, h, w, u.pw.cout);
            front.add(RowOp::Depthwise, &u.dw, h, w, u.dw.cout);
            c = u.dw.cout;
        }
    }
    size_t cur = W_X;
    View in = ws.shared.padded(cur, h, w, c);
    const size_t stem_floats = size_t(hp / 2) * (wp / 2) * net.stem.cout;
    in_bands(h, stem_floats, [&](YuNetScratch& lane, int y0, int y1) {
        RowPipeline p = front;
        p.size_windows(y0, y1);
        p.allocate(lane, L_FRONT, in);
        p.run();
    });

    // the stages from there on, whole maps; a level's stage writes its output to that level's slot
    std::vector<View> stage_out(m.levels.size());
    for (size_t si = first; si < net.stages.size(); ++si) {
        if (m.stages[si].pool && si != first) {
            const size_t nxt = cur == W_X ? W_Y : W_X;
            const View pooled = ws.shared.padded(nxt, h / 2, w / 2, c);
            in_bands(h / 2, size_t(h) * w * c, [&](YuNetScratch&, int y0, int y1) {
                K.maxpool2s2(in, c, 0, 1, y0, y1, w / 2, pooled);
            });
            h /= 2; w /= 2;
            in = pooled; cur = nxt;
        }
        for (size_t ui = 0; ui < net.stages[si].size(); ++ui) {
            const YuNetCpuUnit& u = net.stages[si][ui];
            size_t nxt = cur == W_X ? W_Y : W_X;
            if (ui + 1 == net.stages[si].size())
                for (size_t li = 0; li < m.levels.size(); ++li)
                    if (m.levels[li].stage == int(si)) nxt = W_LEVELS + 2 * li;
            const View out = ws.shared.padded(nxt, h, w, u.pw.cout);
            in_bands(h, size_t(h) * w * std::max(u.pw.cin, u.pw.cout), [&](YuNetScratch& lane, int y0, int y1) {
                unit_forward(K, u, in, h, w, lane, L_T, out, y0, y1);
            });
            in = out; cur = nxt; c = u.pw.cout;
        }
        for (size_t li = 0; li < m.levels.size(); ++li)
            if (m.levels[li].stage == int(si)) stage_out[li] = in;
    }

    // the pyramid, coarsest first: level li = lateral(stage output + upsampled level li+1)
    std::vector<View> level_out(m.levels.size());
    for (size_t li = m.levels.size(); li-- > 0;) {
        const int s = m.levels[li].stride, lh = hp / s, lw = wp / s;
        const YuNetCpuUnit& lat = net.laterals[li];
        View src = stage_out[li];
        if (li + 1 < m.levels.size()) {
            src = ws.shared.padded(W_SUM, lh, lw, lat.pw.cin);
            in_bands(lh, size_t(lh) * lw * lat.pw.cin, [&](YuNetScratch&, int y0, int y1) {
                K.upsample2_add(stage_out[li], level_out[li + 1], lat.pw.cin, 0, 1, y0, y1, lw, src);
            });
        }
        level_out[li] = ws.shared.padded(W_LEVELS + 2 * li + 1, lh, lw, lat.pw.cout);
        in_bands(lh, size_t(lh) * lw * std::max(lat.pw.cin, lat.pw.cout), [&](YuNetScratch& lane, int y0, int y1) {
            unit_forward(K, lat, src, lh, lw, lane, L_T, level_out[li], y0, y1);
        });
    }

    // the stacked heads of each level, straight into the caller's dense NHWC map
    for (size_t li = 0; li < m.levels.size(); ++li) {
        const int s = m.levels[li].stride, lh = hp / s, lw = wp / s;
        const YuNetCpuUnit& hd = net.heads[li];
        const int C = hd.pw.cout;
        View o;
        o.p = outs[li]; o.ps = C; o.rs = ptrdiff_t(lw) * C; o.ns = 0;
        in_bands(lh, size_t(lh) * lw * hd.pw.cin, [&](YuNetScratch& lane, int y0, int y1) {
            unit_forward(K, hd, level_out[li], lh, lw, lane, L_HEAD_T, o, y0, y1);
            int c0 = 0;
            for (const YuNetHead& head : m.heads) {
                if (head.sigmoid)
                    for (size_t p = size_t(y0) * lw; p < size_t(y1) * lw; ++p)
                        for (int j = c0; j < c0 + head.channels; ++j) {
                            float& v = outs[li][p * C + j];
                            v = 1.f / (1.f + std::exp(-v));
                        }
                c0 += head.channels;
            }
        });
    }
}

}  // namespace pyfer
