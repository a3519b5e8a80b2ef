// Reference ops: textbook loops over NHWC tensors (see ref.hpp).
#include <cmath>
#include <limits>
#include <stdexcept>

#include "ref.hpp"

namespace pyfer::ref {

Tensor conv2d(const Tensor& x, const float* w, const float* b, int cout, int k, int stride, int groups, bool relu) {
    const int pad = k / 2;
    const int oh = (x.h + 2 * pad - k) / stride + 1, ow = (x.w + 2 * pad - k) / stride + 1;
    const int cig = x.c / groups, cog = cout / groups;
    Tensor y(x.n, oh, ow, cout);
    for (int n = 0; n < x.n; ++n)
        for (int oy = 0; oy < oh; ++oy)
            for (int ox = 0; ox < ow; ++ox)
                for (int o = 0; o < cout; ++o) {
                    const int g = o / cog;
                    double acc = b ? b[o] : 0.0;
                    for (int i = 0; i < cig; ++i)
                        for (int ky = 0; ky < k; ++ky)
                            for (int kx = 0; kx < k; ++kx) {
                                const int iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
                                if (iy < 0 || iy >= x.h || ix < 0 || ix >= x.w) continue;
                                acc += double(w[((size_t(o) * cig + i) * k + ky) * k + kx]) *
                                       x.at(n, iy, ix, g * cig + i);
                            }
                    float v = float(acc);
                    y.at(n, oy, ox, o) = relu && v < 0.f ? 0.f : v;
                }
    return y;
}

Tensor maxpool3s2(const Tensor& x) {
    const int oh = (x.h + 2 - 3) / 2 + 1, ow = (x.w + 2 - 3) / 2 + 1;
    Tensor y(x.n, oh, ow, x.c);
    for (int n = 0; n < x.n; ++n)
        for (int oy = 0; oy < oh; ++oy)
            for (int ox = 0; ox < ow; ++ox)
                for (int c = 0; c < x.c; ++c) {
                    float m = -std::numeric_limits<float>::infinity();
                    for (int ky = 0; ky < 3; ++ky)
                        for (int kx = 0; kx < 3; ++kx) {
                            const int iy = 2 * oy - 1 + ky, ix = 2 * ox - 1 + kx;
                            if (iy < 0 || iy >= x.h || ix < 0 || ix >= x.w) continue;
                            float v = x.at(n, iy, ix, c);
                            if (v > m || std::isnan(v)) m = v;
                        }
                    y.at(n, oy, ox, c) = m;
                }
    return y;
}

Tensor maxpool2s2(const Tensor& x) {
    Tensor y(x.n, x.h / 2, x.w / 2, x.c);
    for (int n = 0; n < x.n; ++n)
        for (int oy = 0; oy < y.h; ++oy)
            for (int ox = 0; ox < y.w; ++ox)
                for (int c = 0; c < x.c; ++c) {
                    float m = -std::numeric_limits<float>::infinity();
                    for (int ky = 0; ky < 2; ++ky)
                        for (int kx = 0; kx < 2; ++kx) {
                            const float v = x.at(n, 2 * oy + ky, 2 * ox + kx, c);
                            if (v > m || std::isnan(v)) m = v;
                        }
                    y.at(n, oy, ox, c) = m;
                }
    return y;
}

Tensor upsample2_nearest(const Tensor& x, int oh, int ow) {
    if (oh > 2 * x.h || ow > 2 * x.w) throw std::invalid_argument("upsample2_nearest: output too big");
    Tensor y(x.n, oh, ow, x.c);
    for (int n = 0; n < x.n; ++n)
        for (int oy = 0; oy < oh; ++oy)
            for (int ox = 0; ox < ow; ++ox)
                for (int c = 0; c < x.c; ++c) y.at(n, oy, ox, c) = x.at(n, oy / 2, ox / 2, c);
    return y;
}

std::vector<float> global_avgpool(const Tensor& x) {
    std::vector<float> out(size_t(x.n) * x.c);
    for (int n = 0; n < x.n; ++n)
        for (int c = 0; c < x.c; ++c) {
            double s = 0;
            for (int y = 0; y < x.h; ++y)
                for (int xx = 0; xx < x.w; ++xx) s += x.at(n, y, xx, c);
            out[size_t(n) * x.c + c] = float(s / (x.h * x.w));
        }
    return out;
}

std::vector<float> linear(const std::vector<float>& x, int n, int in_f, const float* w, const float* b, int out_f) {
    std::vector<float> y(size_t(n) * out_f);
    for (int i = 0; i < n; ++i)
        for (int o = 0; o < out_f; ++o) {
            double acc = b ? b[o] : 0.0;
            for (int k = 0; k < in_f; ++k) acc += double(x[size_t(i) * in_f + k]) * w[size_t(o) * in_f + k];
            y[size_t(i) * out_f + o] = float(acc);
        }
    return y;
}

std::vector<float> softmax(const std::vector<float>& x, int n, int classes) {
    std::vector<float> y(x.size());
    for (int i = 0; i < n; ++i) {
        const float* r = &x[size_t(i) * classes];
        float m = r[0];
        for (int j = 1; j < classes; ++j) m = r[j] > m ? r[j] : m;
        double s = 0;
        for (int j = 0; j < classes; ++j) s += std::exp(double(r[j] - m));
        for (int j = 0; j < classes; ++j) y[size_t(i) * classes + j] = float(std::exp(double(r[j] - m)) / s);
    }
    return y;
}

Tensor slice_channels(const Tensor& x, int c0, int c1) {
    Tensor y(x.n, x.h, x.w, c1 - c0);
    for (int n = 0; n < x.n; ++n)
        for (int yy = 0; yy < x.h; ++yy)
            for (int xx = 0; xx < x.w; ++xx)
                for (int c = c0; c < c1; ++c) y.at(n, yy, xx, c - c0) = x.at(n, yy, xx, c);
    return y;
}

Tensor concat_channels(const Tensor& a, const Tensor& b) {
    if (a.n != b.n || a.h != b.h || a.w != b.w) throw std::invalid_argument("concat: shape mismatch");
    Tensor y(a.n, a.h, a.w, a.c + b.c);
    for (int n = 0; n < a.n; ++n)
        for (int yy = 0; yy < a.h; ++yy)
            for (int xx = 0; xx < a.w; ++xx) {
                for (int c = 0; c < a.c; ++c) y.at(n, yy, xx, c) = a.at(n, yy, xx, c);
                for (int c = 0; c < b.c; ++c) y.at(n, yy, xx, a.c + c) = b.at(n, yy, xx, c);
            }
    return y;
}

// torch: x.view(n, g, c/g, h, w).transpose(1, 2): output channel i*g + gi <- input channel gi*(c/g) + i
Tensor channel_shuffle(const Tensor& x, int groups) {
    Tensor y(x.n, x.h, x.w, x.c);
    const int cpg = x.c / groups;
    for (int n = 0; n < x.n; ++n)
        for (int yy = 0; yy < x.h; ++yy)
            for (int xx = 0; xx < x.w; ++xx)
                for (int gi = 0; gi < groups; ++gi)
                    for (int i = 0; i < cpg; ++i) y.at(n, yy, xx, i * groups + gi) = x.at(n, yy, xx, gi * cpg + i);
    return y;
}

Tensor add(const Tensor& a, const Tensor& b) {
    Tensor y = a;
    for (size_t i = 0; i < y.d.size(); ++i) y.d[i] += b.d[i];
    return y;
}

Tensor relu(const Tensor& a) {
    Tensor y = a;
    for (auto& v : y.d) v = v < 0.f ? 0.f : v;
    return y;
}

Tensor from_nchw(const float* x, int n, int c, int h, int w) {
    Tensor y(n, h, w, c);
    for (int i = 0; i < n; ++i)
        for (int j = 0; j < c; ++j)
            for (int yy = 0; yy < h; ++yy)
                for (int xx = 0; xx < w; ++xx) y.at(i, yy, xx, j) = x[((size_t(i) * c + j) * h + yy) * w + xx];
    return y;
}

}  // namespace pyfer::ref
