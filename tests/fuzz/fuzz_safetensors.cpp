// libFuzzer target: a whole safetensors file image (u64 header length, JSON header, tensor
// data) through pyfer::SafeTensors (header + JSON parser + offset/shape/dtype validation), then
// every tensor read back as float32 (F32 copy, F16/BF16 conversion) and Model::load on it
// (the `pyfer` metadata reader and the architecture/tensor checks).
// The image is parsed in place from libFuzzer's exact-size heap buffer (the in-memory
// SafeTensors constructor, which skips only the file read), so ASan sees any read outside the
// file. Allowed failures: pyfer::FormatError only.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "../../csrc/core/model.hpp"

using namespace pyfer;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        SafeTensors st("fuzz.safetensors", data, size);
        for (auto& kv : st.tensors()) {
            const TensorInfo& t = kv.second;
            // the validated span must lie inside the buffer
            if (t.data < data || t.data + t.nbytes > data + size) std::abort();
            if (t.dtype == "F32" || t.dtype == "F16" || t.dtype == "BF16") {
                if (t.numel() > (1 << 22)) continue;  // bounded by the file size anyway
                std::vector<float> v = st.get_f32(kv.first, t.shape);
                if (int64_t(v.size()) != t.numel()) std::abort();
            }
        }
        for (auto& kv : st.metadata()) (void)kv.second.size();
        auto m = Model::load(st);  // reaches the architecture checks only for a full export
        if (m->num_classes < 2 || int(m->class_names.size()) != m->num_classes) std::abort();
    } catch (const FormatError&) {
    }
    return 0;
}
