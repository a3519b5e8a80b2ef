#include "backend.hpp"

#include <map>
#include <mutex>
#include <stdexcept>

#include "engine.hpp"

namespace pyfer {

namespace {
std::mutex& registry_mutex() {
    static std::mutex mu;
    return mu;
}
std::map<std::string, BackendFactory>& registry() {
    static std::map<std::string, BackendFactory> r;
    return r;
}
BackendFactory find(const std::string& name) {
    std::lock_guard<std::mutex> lk(registry_mutex());
    auto it = registry().find(name);
    return it == registry().end() ? nullptr : it->second;
}
}  // namespace

void register_backend(const std::string& name, BackendFactory factory) {
    std::lock_guard<std::mutex> lk(registry_mutex());
    registry()[name] = factory;
}

bool backend_registered(const std::string& name) { return find(name) != nullptr; }

std::unique_ptr<Backend> make_backend(const std::string& path, const std::string& device, int threads,
                                      const std::string& isa) {
    if (device == "cuda" || device.rfind("cuda:", 0) == 0) {
        BackendFactory f = find("cuda");
        if (!f)
            throw std::invalid_argument("device='cuda' requested but this pyfer build has no CUDA support "
                                        "(pyfer.build_info()['cuda'] is False); use device='cpu'");
        return f(path, device, threads, isa);
    }
    if (device != "cpu") throw std::invalid_argument("unknown device '" + device + "' (expected 'cpu' or 'cuda')");
    if (isa == "ref") {
        BackendFactory f = find("ref");
        if (!f) throw std::invalid_argument("isa 'ref': the reference backend is not registered in this program");
        return f(path, device, threads, isa);
    }
    return std::make_unique<CpuEngine>(Model::load(path), threads, isa);
}

#ifndef __has_feature
#define __has_feature(x) 0
#endif
std::string core_sanitized() {
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
