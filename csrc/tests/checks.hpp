// Kernel / block self-checks: random data, optimised kernel (chosen isa) vs the csrc/ref
// reference. Each returns max |opt - ref| / max(1, |ref|) over all outputs. Used by the test-only
// module pyfer._checks (csrc/python/checks_module.cpp, for tests/test_kernels.py) and by
// pyfer_selftest.
//
// n0 (the kernels taking an image range [n0, n1)): 0 runs the n images in one call; n0 in (0, n)
// runs [0, n0) and then [n0, n), a call with n0 > 0 as the engine's per-image calls make.
//
// Guarded maps: every map a kernel writes lies in a buffer whose other floats (the border, the
// other channels of its pixels, the slack after it) hold a sentinel; a check whose op changed one
// of them throws std::runtime_error naming the map and how many floats outside it were written
// (checks.cpp, Guarded). slice (conv, conv_skip0, dw3x3: the ops the engine runs on channel
// slices): every map of the check, read or written, is a channel slice of a wider map, its
// neighbouring channels holding the sentinel (an input's must not leak into the result either).
//
// Each check can also time its op (time_check, at the end).
#pragma once
#include <functional>
#include <string>
#include <vector>

namespace pyfer::checks {

// mode: plain | res | acc | out2 | pool | shuf (epilogue variants); vs_driver (the plain store vs
// the generic driver's accumulating one: expected exactly 0); wino_<plain|res|acc|out2> (Winograd)
double conv(const std::string& isa, int n, int h, int w, int cin, int cout, int k, int stride, bool relu,
            const std::string& mode, unsigned seed, int n0 = 0, bool slice = false);
// 1x1 zero-skipping conv on a post-ReLU input with about zero_frac exact zeros. mode: plain | pool
// (vs the reference), dense | nan (max |skip0 - dense conv| on the same ISA: expected exactly 0;
// "nan" puts a NaN in the input, which must reach the output, NaN == NaN)
double conv_skip0(const std::string& isa, int n, int h, int w, int cin, int cout, double zero_frac,
                  const std::string& mode, unsigned seed, bool relu = true, int n0 = 0, bool slice = false);
double dw3x3(const std::string& isa, int n, int h, int w, int c, int stride, bool relu, unsigned seed, int n0 = 0,
             bool slice = false);
double maxpool(const std::string& isa, int n, int h, int w, int c, unsigned seed, int n0 = 0);
// 2x2/2 max pool (any sign, NaN-free) of an h x w map
double maxpool2s2(const std::string& isa, int n, int h, int w, int c, unsigned seed, int n0 = 0);
// nearest x2 upsampling of a ceil(h/2) x ceil(w/2) map added to an h x w map
double upsample2_add(const std::string& isa, int n, int h, int w, int c, unsigned seed, int n0 = 0);
double avgpool(const std::string& isa, int n, int h, int w, int c, unsigned seed);
double linear(const std::string& isa, int n, int in_f, int out_f, unsigned seed);
// kind: shuffle_down | shuffle_basic | basic | ffe ; h = input map size (square)
double block(const std::string& isa, const std::string& kind, int n, int h, int cin, int cout, int stride,
             unsigned seed);
// the direct small-cin conv alone (the stem's and YuNet's first conv), every output pixel
double conv_small(const std::string& isa, int n, int h, int w, int cin, int cout, int k, int stride, bool relu,
                  unsigned seed = 0, int n0 = 0);
double stem(const std::string& isa, int n, int size, int cin, int cout, int k, int stride, unsigned seed);

// A/B timing of kernel sets (pyfer._checks.time_op, scripts/bench_ops.py): runs check(isas[0]),
// one of the checks above, which checks its op as usual and then times the op's call on each set
// of isas on the data it prepared: one call over all n images and rows, as the check makes it (for
// the fused stem, block and Winograd conv that those checks run, that whole call); never the data
// setup or the reference. Sets are interleaved so that a busy machine slows them alike: per round,
// each set in turn takes the best of `reps` samples (a sample repeats the call for >= ~20 us); a
// set's time is the median of its per-round bests. In the calling thread. Returns seconds per
// call, in the order of isas; refuses (std::invalid_argument) a set this build or CPU lacks.
std::vector<double> time_check(const std::vector<std::string>& isas, int reps, int rounds,
                               const std::function<double(const std::string& isa)>& check);

}  // namespace pyfer::checks
