// Placeholder binding until the engine lands: proves the compiled build is real.
#include <pybind11/pybind11.h>
namespace py = pybind11;
PYBIND11_MODULE(_engine, m) {
    m.def("build_info", []() {
        py::dict d;
        d["version"] = "0.1.0";
        d["cuda"] = false;
        return d;
    });
}
