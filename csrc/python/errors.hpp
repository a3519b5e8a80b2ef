// pyfer's C++ errors as Python's: a missing file is FileNotFoundError, a malformed one ValueError.
// Shared by the shipped module (bindings.cpp) and the test-only one (checks_module.cpp).
#pragma once
#include <pybind11/pybind11.h>

#include <exception>

#include "../core/safetensors.hpp"

namespace pyfer {

inline void register_pyfer_exceptions() {
    pybind11::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const FileNotFound& e) {
            PyErr_SetString(PyExc_FileNotFoundError, e.what());
        } catch (const FormatError& e) {
            PyErr_SetString(PyExc_ValueError, e.what());
        }
    });
}

}  // namespace pyfer
