// The sanitizers the including translation unit is compiled with, from the compiler's own macros
// (+ PYFER_SANITIZE_UNDEFINED from CMake: UBSan has no macro): "" for an ordinary build, else e.g.
// "address,undefined" or "thread". `static` on purpose: each unit answers for its own flags, so
// the core library and the Python module can each report theirs (build_info()["sanitized"]).
#pragma once
#include <string>

#ifndef __has_feature
#define __has_feature(x) 0
#endif

namespace pyfer {

static inline std::string sanitizers_of_this_unit() {
    std::string s;
#if defined(__SANITIZE_ADDRESS__) || __has_feature(address_sanitizer)
    s += "address,";
#endif
#if defined(__SANITIZE_THREAD__) || __has_feature(thread_sanitizer)
    s += "thread,";
#endif
#ifdef PYFER_SANITIZE_UNDEFINED
    s += "undefined,";
#endif
    if (!s.empty()) s.pop_back();
    return s;
}

}  // namespace pyfer
