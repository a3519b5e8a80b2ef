// C++ self-test: kernel checks vs the reference (every ISA this build has and this CPU runs) and the golden file.
//   pyfer_selftest [GOLDEN_DIR]     (default tests/golden) -> exit 0 when everything passes
// GOLDEN_DIR holds student_golden.safetensors (weights) and golden_io.safetensors (tensors
// "input" (N,C,S,S) and "logits" (N,classes)), written by scripts/make_golden.py.
#include <cmath>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "../runtime/engine.hpp"
#include "checks.hpp"

using namespace pyfer;

static int failures = 0;
static void expect(const char* what, double err, double tol = 1e-4, const char* why = "") {
    const bool ok = err <= tol;
    if (!ok) ++failures;
    std::printf("%-60s max rel err %.3g %s%s\n", what, err, ok ? "ok" : "FAIL", why);
}
// one check: a check that throws (a write outside its output map: checks.hpp) fails, saying why
template <class Check>
static void expect(const char* what, Check&& check) {
    try {
        expect(what, check());
    } catch (const std::exception& e) {
        expect(what, INFINITY, 0, (std::string(": ") + e.what()).c_str());
    }
}

int main(int argc, char** argv) {
    const std::string dir = argc > 1 ? argv[1] : "tests/golden";
    std::vector<std::string> isas = {"portable"};
    if (compiled_avx2() && cpu_has_avx2_fma()) isas.push_back("avx2");
    if (compiled_avx512() && cpu_has_avx512()) isas.push_back("avx512");
    char buf[256];
    for (auto& isa : isas) {
        for (int n : {1, 7})
            for (int k : {1, 3}) for (int s : {1, 2}) for (int cin : {3, 17}) for (int cout : {5, 24, 33}) {
                std::snprintf(buf, sizeof buf, "[%s] conv n%d k%d s%d %d->%d 9x7", isa.c_str(), n, k, s, cin, cout);
                expect(buf, [&] { return checks::conv(isa, n, 9, 7, cin, cout, k, s, true, "plain", 1); });
            }
        for (const char* mode : {"res", "acc", "out2", "pool", "shuf"}) {
            std::snprintf(buf, sizeof buf, "[%s] conv epilogue %s", isa.c_str(), mode);
            expect(buf, [&] { return checks::conv(isa, 2, 5, 5, 13, 21, 3, 1, true, mode, 2); });
        }
        for (const char* mode : {"plain", "pool", "dense"}) {
            std::snprintf(buf, sizeof buf, "[%s] conv1x1_skip0 %s 5x3 65->100", isa.c_str(), mode);
            expect(buf, [&] { return checks::conv_skip0(isa, 2, 5, 3, 65, 100, 0.5, mode, 4); });
        }
        for (const char* mode : {"plain", "pool", "dense"}) {  // a shortcut's epilogue: no ReLU
            std::snprintf(buf, sizeof buf, "[%s] conv1x1_skip0 %s no relu 5x3 65->100", isa.c_str(), mode);
            expect(buf, [&] { return checks::conv_skip0(isa, 2, 5, 3, 65, 100, 0.5, mode, 4, false); });
        }
        for (int s : {1, 2}) for (int c : {1, 13, 16, 32, 58, 64}) {  // 16, 32, 64: no channel tail
            std::snprintf(buf, sizeof buf, "[%s] dw3x3 s%d c%d", isa.c_str(), s, c);
            expect(buf, [&] { return checks::dw3x3(isa, 2, 7, 6, c, s, false, 3); });
        }
        // on channel slices of wider maps, as the engine calls them (FFE's groups, a shuffle
        // unit's halves and its 8-rounded buffers): channel tails of 2, 5 and 7 (8 lanes), 13 (16)
        for (int c : {2, 13, 23}) {
            for (const char* mode : {"plain", "acc", "out2", "shuf", "wino_acc", "wino_out2"}) {
                std::snprintf(buf, sizeof buf, "[%s] conv %s slice c%d", isa.c_str(), mode, c);
                expect(buf, [&] { return checks::conv(isa, 2, 6, 6, c, c, 3, 1, true, mode, 17, 0, true); });
            }
            std::snprintf(buf, sizeof buf, "[%s] conv 1x1 slice c%d", isa.c_str(), c);
            expect(buf, [&] { return checks::conv(isa, 2, 5, 7, c, c, 1, 1, true, "plain", 18, 0, true); });
            std::snprintf(buf, sizeof buf, "[%s] conv1x1_skip0 slice c%d", isa.c_str(), c);
            expect(buf, [&] { return checks::conv_skip0(isa, 2, 5, 7, c, c, 0.5, "plain", 19, true, 0, true); });
            for (int s : {1, 2}) {
                std::snprintf(buf, sizeof buf, "[%s] dw3x3 s%d slice c%d", isa.c_str(), s, c);
                expect(buf, [&] { return checks::dw3x3(isa, 2, 7, 13, c, s, false, 20, 0, true); });
            }
        }
        // a full group (8 images) in one call, and split so that the second call has n0 > 0 (the
        // engine's per-image calls); pool rows are indexed by the image's own n
        for (int n0 : {0, 1, 7}) {
            std::snprintf(buf, sizeof buf, "[%s] group of 8, n0 %d: conv plain", isa.c_str(), n0);
            expect(buf, [&] { return checks::conv(isa, 8, 5, 4, 13, 21, 3, 1, true, "plain", 10, n0); });
            std::snprintf(buf, sizeof buf, "[%s] group of 8, n0 %d: conv pool", isa.c_str(), n0);
            expect(buf, [&] { return checks::conv(isa, 8, 5, 4, 13, 21, 1, 1, true, "pool", 10, n0); });
            for (const char* mode : {"plain", "pool"}) {
                std::snprintf(buf, sizeof buf, "[%s] group of 8, n0 %d: conv1x1_skip0 %s", isa.c_str(), n0, mode);
                expect(buf, [&] { return checks::conv_skip0(isa, 8, 3, 5, 65, 100, 0.5, mode, 11, true, n0); });
            }
            std::snprintf(buf, sizeof buf, "[%s] group of 8, n0 %d: dw3x3 c32", isa.c_str(), n0);
            expect(buf, [&] { return checks::dw3x3(isa, 8, 7, 6, 32, 1, true, 12, n0); });
            std::snprintf(buf, sizeof buf, "[%s] group of 8, n0 %d: maxpool3s2", isa.c_str(), n0);
            expect(buf, [&] { return checks::maxpool(isa, 8, 7, 9, 13, 13, n0); });
        }
        std::snprintf(buf, sizeof buf, "[%s] maxpool3s2 13 h9x7", isa.c_str());
        expect(buf, [&] { return checks::maxpool(isa, 2, 9, 7, 13, 14); });
        std::snprintf(buf, sizeof buf, "[%s] avgpool 13 h5x7", isa.c_str());
        expect(buf, [&] { return checks::avgpool(isa, 2, 5, 7, 13, 15); });
        std::snprintf(buf, sizeof buf, "[%s] linear 100->7 n3", isa.c_str());
        expect(buf, [&] { return checks::linear(isa, 3, 100, 7, 16); });
        for (const char* mode : {"wino_plain", "wino_res", "wino_acc", "wino_out2"})
            for (int h : {1, 5, 12}) {  // Winograd F(2x2,3x3): odd maps, channel tails, chunked tiles
                std::snprintf(buf, sizeof buf, "[%s] conv %s h%d 29->35", isa.c_str(), mode, h);
                expect(buf, [&] { return checks::conv(isa, 3, h, h, 29, 35, 3, 1, true, mode, 8); });
            }
        std::snprintf(buf, sizeof buf, "[%s] conv wino_plain h12 200->180 (6 tile chunks)", isa.c_str());
        expect(buf, [&] { return checks::conv(isa, 2, 12, 12, 200, 180, 3, 1, false, "wino_plain", 9); });
        for (int cin : {1, 3}) for (int s : {1, 2}) {  // stem: direct small-cin conv (seed % 3 == 2)
            std::snprintf(buf, sizeof buf, "[%s] stem direct cin%d s%d 33", isa.c_str(), cin, s);
            expect(buf, [&] { return checks::stem(isa, 2, 17, cin, 33, 3, s, 2); });
        }
        std::snprintf(buf, sizeof buf, "[%s] block ffe_wino 36 h7", isa.c_str());
        expect(buf, [&] { return checks::block(isa, "ffe_wino", 2, 7, 36, 36, 1, 6); });
        std::snprintf(buf, sizeof buf, "[%s] block basic_wino 16 h9", isa.c_str());
        expect(buf, [&] { return checks::block(isa, "basic_wino", 2, 9, 16, 16, 1, 7); });
        std::snprintf(buf, sizeof buf, "[%s] block shuffle_down 24->116 h9", isa.c_str());
        expect(buf, [&] { return checks::block(isa, "shuffle_down", 2, 9, 24, 116, 2, 4); });
        std::snprintf(buf, sizeof buf, "[%s] block shuffle_basic 116 h5", isa.c_str());
        expect(buf, [&] { return checks::block(isa, "shuffle_basic", 2, 5, 116, 116, 1, 5); });
        std::snprintf(buf, sizeof buf, "[%s] block ffe 36 h5", isa.c_str());
        expect(buf, [&] { return checks::block(isa, "ffe", 2, 5, 36, 36, 1, 6); });
        std::snprintf(buf, sizeof buf, "[%s] block basic 16->32 s2 h7", isa.c_str());
        expect(buf, [&] { return checks::block(isa, "basic", 2, 7, 16, 32, 2, 7); });
        std::snprintf(buf, sizeof buf, "[%s] maxpool2s2 13 h7x9", isa.c_str());
        expect(buf, [&] { return checks::maxpool2s2(isa, 2, 7, 9, 13, 8); });
        std::snprintf(buf, sizeof buf, "[%s] upsample2_add 13 h7x9", isa.c_str());
        expect(buf, [&] { return checks::upsample2_add(isa, 2, 7, 9, 13, 9); });
    }
    // golden file
    try {
        SafeTensors io(dir + "/golden_io.safetensors");
        auto& x = io.tensors().at("input");
        auto& y = io.tensors().at("logits");
        auto xin = io.get_f32("input", x.shape);
        auto want = io.get_f32("logits", y.shape);
        auto model = Model::load(dir + "/student_golden.safetensors");
        for (auto& isa : isas) {
            CpuEngine eng(model, 1, isa);
            std::vector<float> got(want.size());
            eng.forward(xin.data(), int(x.shape[0]), got.data());
            double err = 0;
            for (size_t i = 0; i < got.size(); ++i)
                err = std::fmax(err, std::fabs(got[i] - want[i]) / std::fmax(1.0, std::fabs(want[i])));
            std::printf("golden [%s] first logits: %.6f %.6f %.6f (expected %.6f %.6f %.6f)\n", isa.c_str(), got[0],
                        got[1], got[2], want[0], want[1], want[2]);
            std::snprintf(buf, sizeof buf, "[%s] golden logits", isa.c_str());
            expect(buf, err);
        }
    } catch (const std::exception& e) {
        std::printf("golden: FAIL: %s\n", e.what());
        ++failures;
    }
    std::printf("%s (%d failure%s)\n", failures ? "FAILED" : "PASSED", failures, failures == 1 ? "" : "s");
    return failures ? 1 : 0;
}
