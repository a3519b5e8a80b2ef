#include "backend.hpp"

#include <map>
#include <mutex>
#include <stdexcept>

#include "../core/sanitized.hpp"
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

std::string core_sanitized() { return sanitizers_of_this_unit(); }

}  // namespace pyfer
