// libFuzzer target: the `pyfer` metadata reader of Model::load (csrc/core/model.cpp). The input
// is the metadata string itself (the value of __metadata__["pyfer"], a JSON document); it is
// wrapped into an otherwise valid safetensors image with one tiny tensor, so every input gets
// past the file checks and into the metadata parsing (arch, stem, num_classes, in_channels,
// preprocess.input_size, class_names, format_version). A metadata document that passes ends
// at the tensor check ("missing tensor ..."). Allowed failures: pyfer::FormatError only.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "../../csrc/core/model.hpp"

using namespace pyfer;

static void json_escape(std::string& out, const uint8_t* s, size_t n) {
    out += '"';
    for (size_t i = 0; i < n; ++i) {
        const unsigned char c = s[i];
        if (c == '"' || c == '\\') { out += '\\'; out += char(c); }
        else if (c < 0x20) { char b[8]; std::snprintf(b, sizeof b, "\\u%04x", c); out += b; }
        else out += char(c);  // bytes >= 0x80 pass through: the reader must validate UTF-8
    }
    out += '"';
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string h = "{\"__metadata__\":{\"pyfer\":";
    json_escape(h, data, size);
    h += "},\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    std::vector<uint8_t> file(8 + h.size() + 4);
    uint64_t n = h.size();
    for (int i = 0; i < 8; ++i) file[i] = uint8_t(n >> (8 * i));
    std::memcpy(file.data() + 8, h.data(), h.size());
    std::memset(file.data() + 8 + h.size(), 0, 4);
    try {
        SafeTensors st("fuzz.safetensors", file.data(), file.size());
        auto m = Model::load(st);
        (void)m;
    } catch (const FormatError&) {
    }
    return 0;
}
