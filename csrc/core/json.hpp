// Minimal JSON reader (RFC 8259 subset sufficient for safetensors headers and pyfer metadata).
// Parses objects, arrays, strings (with \u escapes, BMP + surrogate pairs), numbers, true/false/null.
// Throws pyfer::FormatError on malformed input; depth limited to 64 to bound recursion.
#pragma once
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace pyfer {

struct FormatError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct Json {
    enum Type { Null, Bool, Number, String, Array, Object } type = Null;
    bool b = false;
    double num = 0.0;
    std::string str;
    std::vector<Json> arr;
    std::vector<std::pair<std::string, Json>> obj;  // insertion order kept

    const Json* get(const std::string& key) const;  // nullptr if absent or not an object
    bool is_int() const;                             // a Number with an integral value
    long long as_int() const { return static_cast<long long>(num); }

    static Json parse(const char* data, size_t len);  // throws FormatError
};

}  // namespace pyfer
