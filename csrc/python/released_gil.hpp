// ReleasedGil: the GIL let go while C++ computes, taken back in a way a daemon thread survives at
// interpreter exit. Used instead of py::gil_scoped_release by every binding that computes.
//
// Why: once Python finalizes, CPython ends a thread that asks for the GIL with pthread_exit, and
// glibc implements that by unwinding the stack. pybind11 takes the GIL back in gil_scoped_release's
// destructor, which is noexcept, and an unwind out of a noexcept function is std::terminate: a
// service whose worker threads are daemons aborted with a core dump at every exit while a worker
// was inside pyfer (pybind11 issue 2215; a helper's review: 14 of 18 exits). Here a thread that
// comes back while Python finalizes parks for good instead, as CPython 3.14 does with such threads
// (the process is ending; the thread holds no pyfer lock by then). The main thread, which runs the
// finalization and may still call in (an object's __del__), takes the GIL back as usual. A thread
// that slips between the check and the take-back is unwound by CPython as above; the destructor is
// noexcept(false) so that the unwind goes on up through the binding rather than ending in
// std::terminate.
#pragma once

#include <pybind11/pybind11.h>

#include <chrono>
#include <thread>

namespace pyfer {

// the interpreter's main thread (threading.main_thread(), whichever thread imported the module)
inline unsigned long& python_main_thread() {
    static unsigned long ident = 0;
    return ident;
}

// at each module's import, with the GIL held
inline void remember_python_main_thread() {
    python_main_thread() =
        pybind11::module_::import("threading").attr("main_thread")().attr("ident").cast<unsigned long>();
}

class ReleasedGil {
public:
    ReleasedGil() : state_(PyEval_SaveThread()) {}
    ReleasedGil(const ReleasedGil&) = delete;
    ReleasedGil& operator=(const ReleasedGil&) = delete;

    ~ReleasedGil() noexcept(false) {
        if (python_is_finalizing() && PyThread_get_thread_ident() != python_main_thread())
            for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
        PyEval_RestoreThread(state_);
    }

private:
    static bool python_is_finalizing() {
#if PY_VERSION_HEX >= 0x030D0000
        return Py_IsFinalizing();
#else
        return _Py_IsFinalizing();
#endif
    }

    PyThreadState* state_;
};

}  // namespace pyfer
