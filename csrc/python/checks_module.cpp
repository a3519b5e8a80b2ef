// pybind11 module pyfer._checks: the C++ self-checks (csrc/tests/checks.cpp: optimised kernels
// and fused blocks vs the csrc/ref reference on random data), their ops timed per kernel set
// (time_op, for scripts/bench_ops.py), the CUDA launch plan on the CPU emulator, and the cgroup
// reader on a fake tree with the thread-count rule; for tests/test_kernels.py,
// tests/test_bench_ops.py, tests/test_cuda.py and tests/test_cpu_count.py. A test-only target:
// built with PYFER_BUILD_TESTS (the default for cmake and editable installs, off for wheels), never
// part of pyfer._engine. Where it is absent (a wheel) those tests skip, saying so.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "../core/model.hpp"
#include "../runtime/cpu_count.hpp"
#include "../tests/checks.hpp"
#include "errors.hpp"
#include "released_gil.hpp"
#ifdef PYFER_HAVE_CUDA
#include "../cuda/backend.hpp"
#endif

namespace py = pybind11;
using namespace pyfer;

PYBIND11_MODULE(_checks, t) {
    t.doc() = "pyfer kernel self-checks vs the csrc/ref reference (tests only; PYFER_BUILD_TESTS)";
    remember_python_main_thread();
    register_pyfer_exceptions();
    t.def("conv", &checks::conv, py::arg("isa"), py::arg("n"), py::arg("h"), py::arg("w"), py::arg("cin"),
          py::arg("cout"), py::arg("k"), py::arg("stride"), py::arg("relu") = true, py::arg("mode") = "plain",
          py::arg("seed") = 0, py::arg("n0") = 0, py::arg("slice") = false, py::call_guard<ReleasedGil>());
    t.def("conv_skip0", &checks::conv_skip0, py::arg("isa"), py::arg("n"), py::arg("h"), py::arg("w"), py::arg("cin"),
          py::arg("cout"), py::arg("zero_frac") = 0.5, py::arg("mode") = "plain", py::arg("seed") = 0,
          py::arg("relu") = true, py::arg("n0") = 0, py::arg("slice") = false,
          py::call_guard<ReleasedGil>());
    t.def("dw3x3", &checks::dw3x3, py::arg("isa"), py::arg("n"), py::arg("h"), py::arg("w"), py::arg("c"),
          py::arg("stride"), py::arg("relu") = false, py::arg("seed") = 0, py::arg("n0") = 0, py::arg("slice") = false,
          py::call_guard<ReleasedGil>());
    t.def("maxpool", &checks::maxpool, py::arg("isa"), py::arg("n"), py::arg("h"), py::arg("w"), py::arg("c"),
          py::arg("seed") = 0, py::arg("n0") = 0);
    t.def("maxpool2s2", &checks::maxpool2s2, py::arg("isa"), py::arg("n"), py::arg("h"), py::arg("w"), py::arg("c"),
          py::arg("seed") = 0, py::arg("n0") = 0);
    t.def("upsample2_add", &checks::upsample2_add, py::arg("isa"), py::arg("n"), py::arg("h"), py::arg("w"),
          py::arg("c"), py::arg("seed") = 0, py::arg("n0") = 0);
    t.def("avgpool", &checks::avgpool, py::arg("isa"), py::arg("n"), py::arg("h"), py::arg("w"), py::arg("c"),
          py::arg("seed") = 0);
    t.def("linear", &checks::linear, py::arg("isa"), py::arg("n"), py::arg("in_f"), py::arg("out_f"),
          py::arg("seed") = 0);
    t.def("block", &checks::block, py::arg("isa"), py::arg("kind"), py::arg("n"), py::arg("h"), py::arg("cin"),
          py::arg("cout"), py::arg("stride"), py::arg("seed") = 0, py::call_guard<ReleasedGil>());
    t.def("conv_small", &checks::conv_small, py::arg("isa"), py::arg("n"), py::arg("h"), py::arg("w"),
          py::arg("cin"), py::arg("cout"), py::arg("k"), py::arg("stride"), py::arg("relu") = true,
          py::arg("seed") = 0, py::arg("n0") = 0);
    t.def("stem", &checks::stem, py::arg("isa"), py::arg("n"), py::arg("size"), py::arg("cin"), py::arg("cout"),
          py::arg("k"), py::arg("stride"), py::arg("seed") = 0);
    // time_op("dw3x3", ["avx512", "avx2"], 1, 8, 8, 58, 1, reps=20, rounds=11): the check of that
    // name with these arguments after its isa, its op timed on each set (checks::time_check,
    // scripts/bench_ops.py) -> {isa: seconds per call}, in the order of isas
    t.def("time_op", [](const std::string& check, const std::vector<std::string>& isas, const py::args& args,
                        int reps, int rounds, const py::kwargs& kwargs) {
        const py::module_ self = py::module_::import("pyfer._checks");
        if (check == "time_op" || !py::hasattr(self, check.c_str()))
            throw py::value_error("time_op: no check named '" + check + "'");
        const py::object run = self.attr(check.c_str());
        const std::vector<double> s = checks::time_check(isas, reps, rounds, [&](const std::string& isa) {
            return run(isa, *args, **kwargs).cast<double>();
        });
        py::dict times;
        for (size_t i = 0; i < isas.size(); ++i) times[py::str(isas[i])] = s[i];
        return times;
    }, py::arg("check"), py::arg("isas"), py::kw_only(), py::arg("reps") = 20, py::arg("rounds") = 11);
    // the cgroup CPU limit read from a fake /proc and /sys tree under fs_root (tests/test_cpu_count.py)
    t.def("cgroup_cpu_limit", &cgroup_cpu_limit, py::arg("fs_root"));
    t.def("default_threads_for", &default_threads_for, py::arg("usable"), py::arg("limit"));
#ifdef PYFER_HAVE_CUDA
    // the CUDA backend's launch plan executed on the CPU (index math, weight layouts; no GPU)
    t.def("cuda_emulate", [](const std::string& path, const py::array_t<float, py::array::c_style | py::array::forcecast>& x) {
        auto m = Model::load(path);
        const size_t img = size_t(m->in_channels) * m->input_size * m->input_size;
        if (x.ndim() != 4 || x.shape(0) < 1 || size_t(x.size()) != size_t(x.shape(0)) * img)
            throw py::value_error("cuda_emulate expects an (N, C, H, W) array matching the model input");
        const int n = int(x.shape(0));
        std::vector<float> y;
        {
            ReleasedGil nogil;
            y = cuda_emulate_forward(*m, x.data(), n);
        }
        py::array_t<float> out({py::ssize_t(n), py::ssize_t(m->num_classes)});
        std::copy(y.begin(), y.end(), out.mutable_data());
        return out;
    }, py::arg("path"), py::arg("x"));
#endif
}
