// pybind11 module pyfer._engine: a thin layer over the runtime (csrc/runtime), the top of the
// layers (docs/architecture.md). It registers the ref and cuda backends, validates arrays (the
// Python wrapper pyfer/engine.py converts dtypes first), maps errors to FileNotFoundError /
// ValueError / TypeError and releases the GIL while the engine computes. Test-only entry points
// live in the separate pyfer._checks module (csrc/python/checks_module.cpp, PYFER_BUILD_TESTS).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <sstream>
#include <thread>

#include "../core/sanitized.hpp"
#include "../ref/ref.hpp"
#include "../runtime/cpu_count.hpp"
#include "../runtime/engine.hpp"
#include "../runtime/fork_safe_mutex.hpp"
#include "../runtime/yunet_engine.hpp"
#include "errors.hpp"
#include "released_gil.hpp"
#ifdef PYFER_HAVE_CUDA
#include "../cuda/backend.hpp"
#endif

namespace py = pybind11;
using namespace pyfer;

#ifndef PYFER_VERSION  // set by CMake from the package version (pyfer/__init__.py) in pip builds
#define PYFER_VERSION "unknown"
#endif

namespace {

std::string shape_str(const py::array& a) {
    std::ostringstream o;
    o << "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) o << (i ? ", " : "") << a.shape(i);
    if (a.ndim() == 1) o << ",";
    o << ")";
    return o.str();
}

class PyEngine {
public:
    PyEngine(const std::string& path, const std::string& device, int threads, const std::string& isa) {
        backend_ = make_backend(path, device, threads, isa);
    }

    py::array_t<float> forward(const py::array& x) {
        const Model& m = backend_->model();
        if (!py::isinstance<py::array_t<float>>(x) || x.dtype().kind() != 'f' || x.itemsize() != 4)
            throw py::type_error("Engine.forward expects a float32 array, got dtype " +
                                 std::string(py::str(x.dtype())));
        const int S = m.input_size, C = m.in_channels;
        if (x.ndim() != 4)
            throw py::value_error("Engine.forward expects a 4-D (N, C, H, W) array, got shape " + shape_str(x));
        if (x.shape(0) == 0) throw py::value_error("Engine.forward got an empty batch (N = 0)");
        if (x.shape(1) != C)
            throw py::value_error("expected " + std::to_string(C) + " input channel(s), got shape " + shape_str(x));
        if (x.shape(2) != S || x.shape(3) != S)
            throw py::value_error("expected input of shape (N, " + std::to_string(C) + ", " + std::to_string(S) + ", " +
                                  std::to_string(S) + "), got " + shape_str(x));
        if (!(x.flags() & py::array::c_style))
            throw py::value_error("Engine.forward expects a C-contiguous array (use numpy.ascontiguousarray)");
        if (x.shape(0) > (1 << 24)) throw py::value_error("batch too large");
        const int n = int(x.shape(0));
        py::array_t<float> out({py::ssize_t(n), py::ssize_t(m.num_classes)});
        const float* src = static_cast<const float*>(x.data());
        float* dst = out.mutable_data();
        {
            ReleasedGil nogil;  // released before the lock, taken back after it (fork_safe_mutex.hpp)
            std::lock_guard<ForkSafeMutex> lk(mu_);
            backend_->forward(src, n, dst);
        }
        return out;
    }

    py::dict info() const {
        const Model& m = backend_->model();
        py::dict d;
        d["architecture"] = m.arch;
        d["stem"] = m.stem;
        d["input_size"] = m.input_size;
        d["input_shape"] = py::make_tuple(m.in_channels, m.input_size, m.input_size);
        d["in_channels"] = m.in_channels;
        d["num_classes"] = m.num_classes;
        d["device"] = backend_->device();
        d["isa"] = backend_->isa();
        d["threads"] = backend_->threads();
        d["gflops_per_image"] = m.total_flops() / 1e9;
        d["weights"] = m.path;
        if (auto* c = dynamic_cast<CpuEngine*>(backend_.get())) d["group"] = c->group();
        return d;
    }

    py::list profile(const py::array_t<float, py::array::c_style | py::array::forcecast>& x, int reps) {
        auto* c = dynamic_cast<CpuEngine*>(backend_.get());
        if (!c) throw py::value_error("profiling needs the CPU backend");
        const Model& m = backend_->model();
        const size_t img = size_t(m.in_channels) * m.input_size * m.input_size;
        if (x.ndim() != 4 || size_t(x.size()) < img || size_t(x.size()) % img != 0)
            throw py::value_error("profile expects an (N, C, H, W) array matching the model input");
        std::vector<BlockTiming> t;
        {
            ReleasedGil nogil;
            std::lock_guard<ForkSafeMutex> lk(mu_);
            t = c->profile(x.data(), int(x.size() / img), reps);
        }
        py::list out;
        for (auto& b : t) {
            py::dict d;
            d["name"] = b.name; d["kind"] = b.kind; d["seconds"] = b.seconds; d["flops"] = b.flops;
            out.append(d);
        }
        return out;
    }

    const Model& model() const { return backend_->model(); }

private:
    std::unique_ptr<Backend> backend_;
    ForkSafeMutex mu_;  // one call at a time: one workspace per engine
};

// The YuNet face detector (pyfer/yunet.py decodes its outputs): forward(image) -> per level an
// (rows, cols, channels) float32 map of the heads' raw outputs side by side (heads: name, channels,
// sigmoid applied), for an (H, W, 3) BGR uint8 or float32 image (any row and pixel strides,
// contiguous channels: crops of a bigger image need no copy).
class PyYuNet {
public:
    // threads <= 0: the engine's default (every CPU this process may use, within its quota)
    PyYuNet(const std::string& path, const std::string& isa, int threads) : eng_(path, isa, threads) {}

    py::list forward(const py::array& image) {
        const bool u8 = image.dtype().is(py::dtype::of<uint8_t>());
        if (!u8 && !image.dtype().is(py::dtype::of<float>()))
            throw py::type_error("YuNet.forward expects a uint8 or float32 image, got dtype " +
                                 std::string(py::str(image.dtype())));
        if (image.ndim() != 3 || image.shape(2) != 3)
            throw py::value_error("YuNet.forward expects an (H, W, 3) BGR image, got shape " + shape_str(image));
        if (image.shape(0) < 1 || image.shape(1) < 1 || image.shape(0) > 16384 || image.shape(1) > 16384)
            throw py::value_error("YuNet.forward: image sides must lie in [1, 16384], got shape " + shape_str(image));
        const py::ssize_t item = image.itemsize();
        if (image.strides(2) != item || image.strides(0) % item || image.strides(1) % item || image.strides(0) < 0 ||
            image.strides(1) < 0)
            throw py::value_error("YuNet.forward expects contiguous channels and positive strides "
                                  "(use numpy.ascontiguousarray)");
        ImageRef img;
        img.data = image.data();
        img.u8 = u8;
        img.h = int(image.shape(0));
        img.w = int(image.shape(1));
        img.row_stride = image.strides(0) / item;
        img.pixel_stride = image.strides(1) / item;
        const int C = eng_.model().head_channels();
        py::list maps;
        std::vector<float*> outs;
        for (const auto& lv : eng_.levels(img.h, img.w)) {
            py::array_t<float> a({py::ssize_t(lv.rows), py::ssize_t(lv.cols), py::ssize_t(C)});
            outs.push_back(a.mutable_data());
            maps.append(a);
        }
        {
            ReleasedGil nogil;
            eng_.forward(img, outs);
        }
        return maps;
    }

    py::dict info() const {
        const YuNetModel& m = eng_.model();
        py::dict d;
        d["isa"] = eng_.isa();
        d["threads"] = eng_.threads();
        d["weights"] = m.path;
        d["input_multiple"] = m.input_multiple;
        py::list strides, heads;
        for (const YuNetLevel& lv : m.levels) strides.append(lv.stride);
        for (const YuNetHead& h : m.heads) heads.append(py::make_tuple(h.name, h.channels, h.sigmoid));
        d["strides"] = strides;
        d["heads"] = heads;
        d["gflops_320x240"] = m.flops(240, 320) / 1e9;
        return d;
    }

private:
    YuNetEngine eng_;
};

py::dict build_info() {
    py::dict d;
    d["version"] = PYFER_VERSION;
    const int usable = usable_cpus();
    const double limit = cgroup_cpu_limit();
    d["default_threads"] = default_threads_for(usable, limit);  // what threads=None gives an engine
    d["usable_cpus"] = usable;
    d["cpu_limit"] = limit > 0 ? py::cast(limit) : py::none();  // a cgroup's CPU quota, in CPUs
    // "" for an ordinary build; the sanitizer steps (scripts/sanitize.sh, scripts/tsan.sh) refuse
    // to run their tests unless the imported module reports the instrumentation they built
    const std::string core = core_sanitized(), mod = sanitizers_of_this_unit();
    d["sanitized"] = core == mod ? core : "mixed (core: " + core + ", module: " + mod + ")";
    // compiled: the kernel sets in this build; runnable: those this CPU also runs (what tests and
    // `pyfer bench --isa all` cover); detected: the widest the CPU has; selected / why: what "auto"
    // picks and the rule that picked it
    py::dict isa;
    py::list compiled, runnable;
    compiled.append("portable");
    runnable.append("portable");
    if (compiled_avx2()) compiled.append("avx2");
    if (compiled_avx512()) compiled.append("avx512");
    if (compiled_avx2() && cpu_has_avx2_fma()) runnable.append("avx2");
    if (compiled_avx512() && cpu_has_avx512()) runnable.append("avx512");
    isa["compiled"] = compiled;
    isa["runnable"] = runnable;
    isa["detected"] = cpu_has_avx512() ? "avx512" : cpu_has_avx2_fma() ? "avx2" : "portable";
    isa["selected"] = kernels_auto_choice().isa;
    isa["why"] = kernels_auto_choice().why;
    d["isa"] = isa;
    d["cuda"] = backend_registered("cuda");
#ifdef PYFER_HAVE_CUDA
    d["cuda_archs"] = cuda_compiled_archs();
#endif
#if defined(__clang__)
    d["compiler"] = "clang " __clang_version__;
#elif defined(__GNUC__)
    d["compiler"] = "gcc " __VERSION__;
#endif
    return d;
}

}  // namespace

PYBIND11_MODULE(_engine, m) {
    m.doc() = "pyfer C++ inference engine (see pyfer.engine for the public wrapper)";
    remember_python_main_thread();
    register_ref_backend();
#ifdef PYFER_HAVE_CUDA
    register_cuda_backend();
#endif
    register_pyfer_exceptions();

    py::class_<PyEngine>(m, "Engine")
        .def(py::init<const std::string&, const std::string&, int, const std::string&>(), py::arg("path"),
             py::arg("device") = "cpu", py::arg("threads") = 0, py::arg("isa") = "auto")
        .def("forward", &PyEngine::forward, py::arg("x"))
        .def("info", &PyEngine::info)
        .def("profile", &PyEngine::profile, py::arg("x"), py::arg("reps") = 5)
        .def_property_readonly("meta_json", [](const PyEngine& e) { return e.model().meta_json; })
        .def_property_readonly("class_names", [](const PyEngine& e) { return e.model().class_names; })
        .def_property_readonly("num_classes", [](const PyEngine& e) { return e.model().num_classes; })
        .def_property_readonly("input_shape", [](const PyEngine& e) {
            const Model& mm = e.model();
            return py::make_tuple(mm.in_channels, mm.input_size, mm.input_size);
        });
    py::class_<PyYuNet>(m, "YuNet")
        .def(py::init<const std::string&, const std::string&, int>(), py::arg("path"), py::arg("isa") = "auto",
             py::arg("threads") = 0)
        .def("forward", &PyYuNet::forward, py::arg("image"))
        .def("info", &PyYuNet::info);
    m.def("build_info", &build_info);
    // (count, reason): usable CUDA devices; the first CUDA runtime call happens here, not at import
    m.def("_cuda_devices", []() {
#ifdef PYFER_HAVE_CUDA
        std::string why;
        int n = cuda_device_count(&why);
        return py::make_tuple(n, why);
#else
        return py::make_tuple(0, std::string("this pyfer build has no CUDA support"));
#endif
    });

    // measured fp32 multiply-add peak of one core with a kernel set, GFLOP/s (pyfer bench)
    m.def("fma_peak", [](const std::string& isa, double seconds) { return kernels_select(isa).fma_peak(seconds); },
          py::arg("isa") = "auto", py::arg("seconds") = 0.2, py::call_guard<ReleasedGil>());
#ifdef PYFER_SANITIZER_CANARY
    // Sanitizer builds only (-DPYFER_SANITIZE=...; never a shipped module): canaries for
    // scripts/sanitize.sh and scripts/tsan.sh, a deliberate bug that the instrumented module must
    // report (showing the runtime is live in that process setup). Never called otherwise. "race":
    // two threads increment a plain int; "heap-overflow": a read one byte past an 8-byte heap block.
    auto t = m.def_submodule("_testing", "sanitizer canaries (sanitizer builds only)");
    t.def("sanitizer_canary", [](const std::string& kind) {
        if (kind == "race") {
            static int counter = 0;
            auto bump = [] { for (int i = 0; i < 1000; ++i) counter = counter + 1; };
            std::thread a(bump), b(bump);
            a.join();
            b.join();
            return counter;
        }
        if (kind == "heap-overflow") {
            volatile char* p = new char[8];
            const int v = p[8];
            delete[] p;
            return v;
        }
        throw py::value_error("kind must be 'race' or 'heap-overflow'");
    }, py::arg("kind"), py::call_guard<ReleasedGil>());
#endif
}
