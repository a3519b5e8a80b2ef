// libFuzzer target: the JSON reader behind the safetensors header and the pyfer metadata
// (csrc/core/json.cpp). Built by scripts/fuzz.sh with clang -fsanitize=fuzzer,address,undefined.
// The input is parsed straight from libFuzzer's exact-size heap buffer, so any read past its end
// is an ASan heap-buffer-overflow. The only allowed failure is pyfer::FormatError; a parsed
// value is walked (and its integers/strings touched) to exercise the accessors.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "../../csrc/core/json.hpp"

using pyfer::Json;

static size_t walk(const Json& j, int depth) {
    size_t n = 1;
    if (depth > 200) std::abort();  // the parser limits nesting to 64
    switch (j.type) {
        case Json::Array:
            for (auto& v : j.arr) n += walk(v, depth + 1);
            break;
        case Json::Object:
            for (auto& kv : j.obj) {
                n += kv.first.size() + walk(kv.second, depth + 1);
                if (j.get(kv.first) == nullptr) std::abort();  // a key it holds must be found
            }
            break;
        case Json::Number:
            if (j.is_int()) n += size_t(j.as_int() & 1);
            break;
        case Json::String:
            n += j.str.size();
            break;
        default:
            break;
    }
    return n;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        Json j = Json::parse(reinterpret_cast<const char*>(data), size);
        volatile size_t sink = walk(j, 0);
        (void)sink;
    } catch (const pyfer::FormatError&) {
    }
    return 0;  // any other exception escapes and libFuzzer reports it as a crash
}
