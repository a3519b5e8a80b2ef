// ReleasedGil: the GIL let go while C++ computes, taken back in a way a daemon thread survives at
// interpreter exit. Used instead of py::gil_scoped_release wherever pyfer's bindings let go of it.
//
// Why: once Python finalizes, CPython ends a thread that asks for the GIL with pthread_exit, and
// glibc implements that by unwinding the stack. pybind11 takes the GIL back in gil_scoped_release's
// destructor, which is noexcept, and an unwind out of a noexcept function is std::terminate: a
// service whose worker threads are daemons aborted with a core dump at every exit while a worker
// was inside pyfer (pybind11 issue 2215; a helper's review: 14 of 18 exits). Here:
//   - a thread that comes back while Python finalizes parks for good, as CPython 3.14 does with
//     such threads (the process is ending; the thread holds no pyfer lock by then). Not the main
//     thread: it runs the finalization and may still call in (an object's __del__);
//   - a thread already waiting for the GIL when the finalization starts is ended by CPython all
//     the same. With libstdc++ (gcc builds) that unwind is caught where it starts and the thread
//     parks there, so no destructor of ours runs without the GIL. libc++ (the wheels' zig builds)
//     cannot catch it (a catch handler there crashed in a test program), so the destructor is
//     noexcept(false) and the unwind goes on up through the binding: its destructors then run
//     without the GIL, in a process that is ending. pyfer.exit_gate makes the exit wait for
//     pyfer's Python calls under way, which keeps threads out of this window.
// A pthread_exit while another exception is already unwinding (the engine failed at that moment)
// is still std::terminate.
#pragma once

#include <pybind11/pybind11.h>

#include <chrono>
#include <thread>
#if defined(__GLIBCXX__)
#include <cxxabi.h>  // abi::__forced_unwind
#endif

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
        if (python_is_finalizing() && PyThread_get_thread_ident() != python_main_thread()) park();
#if defined(__GLIBCXX__)
        try {
            PyEval_RestoreThread(state_);
        } catch (abi::__forced_unwind&) {  // CPython ended this thread (never returns: no rethrow needed)
            park();
        }
#else
        PyEval_RestoreThread(state_);
#endif
    }

private:
    [[noreturn]] static void park() {
        for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
    }

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
