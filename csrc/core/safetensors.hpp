// safetensors reader.
//
// File layout: u64 little-endian header length N, N bytes of JSON header
// {"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ..., "__metadata__": {str: str}},
// then the raw tensor bytes; offsets are relative to the byte after the header.
// Everything is validated (sizes, offsets within the file, dtype sizes, overflow); errors throw
// pyfer::FormatError whose message names the file. The file is read whole into memory (at most
// 1 GiB), not mapped, so that a file truncated during the load is an error and not a SIGBUS;
// tensors are converted to float32 on request.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "json.hpp"

namespace pyfer {

struct FileNotFound : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct TensorInfo {
    std::string dtype;            // "F32", "F16", "BF16", ...
    std::vector<int64_t> shape;
    const uint8_t* data = nullptr;
    size_t nbytes = 0;
    int64_t numel() const;
};

class SafeTensors {
public:
    explicit SafeTensors(const std::string& path);  // throws FileNotFound / FormatError
    // An in-memory file image, borrowed (not copied): `data` must outlive this object. `label`
    // stands in for the path in error messages. Same validation as a file (used by the fuzzers
    // in tests/fuzz/, which hand it exact-size heap buffers so that ASan sees every read).
    SafeTensors(const std::string& label, const void* data, size_t size);
    SafeTensors(const SafeTensors&) = delete;
    SafeTensors& operator=(const SafeTensors&) = delete;

    const std::string& path() const { return path_; }
    const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
    const std::map<std::string, std::string>& metadata() const { return meta_; }
    bool has(const std::string& name) const { return tensors_.count(name) != 0; }
    // Tensor as float32 with the expected shape; throws FormatError on missing/shape/dtype mismatch.
    std::vector<float> get_f32(const std::string& name, const std::vector<int64_t>& shape) const;
    [[noreturn]] void fail(const std::string& msg) const;

private:
    void parse();  // validates the image at image_/size_ and fills tensors_ / meta_
    // Refuses the file when the metadata carries `key` and compute() disagrees with it
    template <class Compute>
    void check_crc32(const char* key, Compute compute, const char* what) const;
    uint32_t header_crc32(size_t header_end) const;  // see safetensors.cpp
    std::string path_;
    std::vector<uint8_t> file_;       // the file's bytes, when opened from a path
    const uint8_t* image_ = nullptr;  // file_.data(), or the borrowed in-memory image
    size_t size_ = 0;
    std::map<std::string, TensorInfo> tensors_;
    std::map<std::string, std::string> meta_;
};

float half_to_float(uint16_t h);

}  // namespace pyfer
