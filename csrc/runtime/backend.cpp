#include "backend.hpp"

#include <chrono>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "../core/sanitized.hpp"
#include "engine.hpp"
#include "fork_safe_mutex.hpp"

namespace pyfer {

namespace {
// a fork() while another thread looks a backend up must not leave the child's copy held
ForkSafeMutex& registry_mutex() {
    static ForkSafeMutex mu;
    return mu;
}
std::map<std::string, BackendFactory>& registry() {
    static std::map<std::string, BackendFactory> r;
    return r;
}
BackendFactory find(const std::string& name) {
    std::lock_guard<ForkSafeMutex> lk(registry_mutex());
    auto it = registry().find(name);
    return it == registry().end() ? nullptr : it->second;
}
}  // namespace

void register_backend(const std::string& name, BackendFactory factory) {
    std::lock_guard<ForkSafeMutex> lk(registry_mutex());
    registry()[name] = factory;
}

bool backend_registered(const std::string& name) { return find(name) != nullptr; }

void hold_backend_registry(double seconds) {
    std::lock_guard<ForkSafeMutex> lk(registry_mutex());
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
}

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
