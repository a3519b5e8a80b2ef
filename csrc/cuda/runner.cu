// CudaRunner: weights uploaded once (one device arena), activations in a second arena sized
// for the largest chunk seen (at most chunk_cap_ images: MAX_CHUNK, or fewer where half the
// device memory free at creation holds fewer; bigger batches run in chunks), pinned
// host staging buffers for input and logits, one stream, and one CUDA graph per chunk size
// (upload + every kernel + download replayed with one cudaGraphLaunch).
// Nothing here runs at import time: the first CUDA call is device_count() from make_backend.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string>

#include "kernels.cuh"
#include "runner.hpp"

#ifndef PYFER_CUDA_ARCHS
#define PYFER_CUDA_ARCHS "unknown"
#endif

namespace pyfer::cuda {

namespace {

[[noreturn]] void fail(cudaError_t e, const char* what) {
    cudaGetLastError();  // reset the (non-sticky) last-error state
    throw std::runtime_error(std::string("pyfer CUDA backend: ") + what + " failed: " + cudaGetErrorName(e) +
                             " (" + cudaGetErrorString(e) + ")");
}
#define CK(call)                                    \
    do {                                            \
        cudaError_t e_ = (call);                    \
        if (e_ != cudaSuccess) fail(e_, #call);     \
    } while (0)

constexpr int MAX_CHUNK = 256;
constexpr size_t MAX_GRAPHS = 16;

// The driver's cuCtxGetCurrent / cuCtxSetCurrent, through the runtime (no link to libcuda): the
// runtime cannot tell a thread that never used CUDA (cudaGetDevice answers 0 there) from one on
// device 0. Null where the driver does not give them.
struct DriverContextCalls {
    using Get = int (*)(void** ctx);  // CUresult cuCtxGetCurrent(CUcontext*)
    using Set = int (*)(void* ctx);   // CUresult cuCtxSetCurrent(CUcontext)
    Get get = nullptr;
    Set set = nullptr;
    DriverContextCalls() {
        get = reinterpret_cast<Get>(entry_point("cuCtxGetCurrent"));
        set = reinterpret_cast<Set>(entry_point("cuCtxSetCurrent"));
        cudaGetLastError();
    }
    static void* entry_point(const char* name) {
        void* p = nullptr;
        cudaDriverEntryPointQueryResult found{};
#if CUDART_VERSION >= 12050  // the versioned query; the plain one is deprecated from 12.5 on
        cudaError_t e = cudaGetDriverEntryPointByVersion(name, &p, 12000, cudaEnableDefault, &found);
#else  // CUDA 12.0-12.4
        cudaError_t e = cudaGetDriverEntryPoint(name, &p, cudaEnableDefault, &found);
#endif
        return e == cudaSuccess && found == cudaDriverEntryPointSuccess ? p : nullptr;
    }
};

const DriverContextCalls& driver_context_calls() {
    static const DriverContextCalls calls;
    return calls;
}

// Makes `dev` current for a scope and gives the caller's thread what it had after: the
// application's current device (torch's, say) is not ours to change. A thread with a context on
// another device gets that device back. A thread that had no context at all (a fresh thread) gets
// none back: cudaSetDevice(0) would make a context on GPU 0 that the application never asked for
// (hundreds of MB); its binding is dropped instead (cuCtxSetCurrent(NULL)), as it was. Does not
// throw (the destructor uses it too); `set` holds cudaSetDevice's result.
class DeviceScope {
public:
    explicit DeviceScope(int dev) {
        const DriverContextCalls& driver = driver_context_calls();
        void* ctx = nullptr;
        had_none_ = driver.get && driver.set && driver.get(&ctx) == 0 && ctx == nullptr;
        if (had_none_ || cudaGetDevice(&prev_) != cudaSuccess || prev_ == dev) prev_ = -1;
        set = cudaSetDevice(dev);
    }
    cudaError_t set;
    ~DeviceScope() {
        if (had_none_) {
            driver_context_calls().set(nullptr);
        } else if (prev_ >= 0 && cudaSetDevice(prev_) != cudaSuccess) {
            cudaGetLastError();  // not left behind for the next launch check to report
        }
    }
    DeviceScope(const DeviceScope&) = delete;
    DeviceScope& operator=(const DeviceScope&) = delete;

private:
    int prev_ = -1;
    bool had_none_ = false;
};

class CudaRunner final : public Runner {
public:
    CudaRunner(const Net& net, int dev) : dev_(dev) {
        DeviceScope on(dev_);
        CK(on.set);
        try {
            acquire(net);
        } catch (...) {
            release();  // the destructor does not run for a half-built object
            throw;
        }
    }

    ~CudaRunner() override {
        DeviceScope on(dev_);
        release();
    }

    void forward(const float* x, int n, float* logits) override {
        DeviceScope on(dev_);
        CK(on.set);
        const int classes = net_.num_classes;
        for (int s = 0; s < n; s += chunk_cap_) {
            const int c = std::min(chunk_cap_, n - s);
            reserve(c);
            std::memcpy(hin_, x + size_t(s) * img_, sizeof(float) * c * img_);
            run(c);
            std::memcpy(logits + size_t(s) * classes, hout_, sizeof(float) * c * classes);
        }
    }

    std::string describe() const override { return desc_; }

private:
    void acquire(const Net& net) {
        cudaDeviceProp prop;
        CK(cudaGetDeviceProperties(&prop, dev_));
        sms_ = prop.multiProcessorCount;
        desc_ = "cuda:" + std::to_string(dev_) + " " + prop.name + " (sm_" + std::to_string(prop.major) +
                std::to_string(prop.minor) + ", " + std::to_string(sms_) + " SMs)";
        cudaError_t img = check_kernel_image();
        if (img != cudaSuccess)
            throw std::runtime_error("pyfer CUDA backend: this build has no kernels for " + desc_ +
                                     " (compiled for " PYFER_CUDA_ARCHS "): " + cudaGetErrorString(img));
        const char* g = std::getenv("PYFER_CUDA_GRAPHS");
        use_graphs_ = !(g && std::strcmp(g, "0") == 0);
        net_ = net;  // structure only below; the weights live on the device
        W_ = pack_weights(net_);
        for (auto* c : all_convs()) { c->w.clear(); c->w.shrink_to_fit(); c->b.clear(); c->b.shrink_to_fit(); }
        net_.fc_w.clear(); net_.fc_b.clear();
        img_ = size_t(net_.in_channels) * net_.input_size * net_.input_size;
        CK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
        CK(cudaMalloc(&wdev_, W_.host.size() * sizeof(float)));
        CK(cudaMemcpy(wdev_, W_.host.data(), W_.host.size() * sizeof(float), cudaMemcpyHostToDevice));
        W_.host.clear();
        W_.host.shrink_to_fit();
        // The activation arena grows with the chunk: a teacher at 1024 px needs 260 MiB per image,
        // so 256 of them would not fit any card. Cap the chunk by half the memory free now.
        size_t free_bytes = 0, total_bytes = 0;
        CK(cudaMemGetInfo(&free_bytes, &total_bytes));
        const size_t per_image = layout_for(net_, 1).total * sizeof(float);
        chunk_cap_ = int(std::clamp<size_t>(free_bytes / 2 / std::max<size_t>(per_image, 1), 1, MAX_CHUNK));
    }

    void release() {
        drop_graphs();
        if (stream_) cudaStreamSynchronize(stream_);
        cudaFree(adev_);
        cudaFree(wdev_);
        cudaFreeHost(hin_);
        cudaFreeHost(hout_);
        if (stream_) cudaStreamDestroy(stream_);
        cudaGetLastError();  // results ignored above: not left behind for a later launch check
        adev_ = wdev_ = hin_ = hout_ = nullptr;
        stream_ = nullptr;
    }

    std::vector<NetConv*> all_convs() {
        std::vector<NetConv*> v{&net_.stem, &net_.conv5};
        for (auto& b : net_.blocks) b.each_conv([&](NetConv& c) { v.push_back(&c); });
        return v;
    }

    void drop_graphs() {
        for (auto& kv : graphs_) cudaGraphExecDestroy(kv.second);
        graphs_.clear();
    }

    void reserve(int c) {
        if (c <= L_.cap) return;
        const int cap = std::max(c, std::min(chunk_cap_, 2 * L_.cap));  // grow geometrically
        CK(cudaStreamSynchronize(stream_));
        drop_graphs();
        cudaFree(adev_);
        adev_ = nullptr;
        cudaFreeHost(hin_);
        hin_ = nullptr;
        cudaFreeHost(hout_);
        hout_ = nullptr;
        L_ = Layout{};
        Layout L = layout_for(net_, cap);
        CK(cudaMalloc(&adev_, L.total * sizeof(float)));
        CK(cudaMemset(adev_, 0, L.total * sizeof(float)));
        CK(cudaMallocHost(&hin_, sizeof(float) * cap * img_));
        CK(cudaMallocHost(&hout_, sizeof(float) * cap * net_.num_classes));
        L_ = L;
    }

    void enqueue(const Plan& p) {
        const int c = p.n;
        CK(cudaMemcpyAsync(p.x, hin_, sizeof(float) * c * img_, cudaMemcpyHostToDevice, stream_));
        CK(launch_plan(p, stream_, sms_));
        CK(cudaMemcpyAsync(hout_, p.logits, sizeof(float) * c * net_.num_classes, cudaMemcpyDeviceToHost, stream_));
    }

    void run(int c) {
        if (!use_graphs_) {
            enqueue(build_plan(net_, W_, wdev_, adev_, L_, c));
            CK(cudaStreamSynchronize(stream_));
            return;
        }
        auto it = graphs_.find(c);
        if (it == graphs_.end()) {
            if (graphs_.size() >= MAX_GRAPHS) drop_graphs();
            Plan p = build_plan(net_, W_, wdev_, adev_, L_, c);
            CK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
            cudaGraph_t graph = nullptr;
            try {
                enqueue(p);
            } catch (...) {
                cudaStreamEndCapture(stream_, &graph);
                if (graph) cudaGraphDestroy(graph);
                throw;
            }
            CK(cudaStreamEndCapture(stream_, &graph));
            cudaGraphExec_t exec = nullptr;
            cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
            cudaGraphDestroy(graph);
            if (e != cudaSuccess) fail(e, "cudaGraphInstantiate");
            it = graphs_.emplace(c, exec).first;
        }
        CK(cudaGraphLaunch(it->second, stream_));
        CK(cudaStreamSynchronize(stream_));
    }

    int dev_ = 0, sms_ = 1, chunk_cap_ = MAX_CHUNK;
    std::string desc_;
    bool use_graphs_ = true;
    Net net_;
    Weights W_;
    size_t img_ = 0;
    cudaStream_t stream_ = nullptr;
    float* wdev_ = nullptr;
    float* adev_ = nullptr;
    float* hin_ = nullptr;
    float* hout_ = nullptr;
    Layout L_;
    std::map<int, cudaGraphExec_t> graphs_;
};

}  // namespace

int device_count(std::string* why) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        if (why) {
            *why = std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
            if (e == cudaErrorInsufficientDriver)
                *why += " (no NVIDIA driver found, or one older than the CUDA runtime this build uses)";
        }
        cudaGetLastError();
        return 0;
    }
    if (n == 0 && why) *why = "no CUDA device";
    return n;
}

std::unique_ptr<Runner> make_runner(const Net& net, int device) { return std::make_unique<CudaRunner>(net, device); }

std::string compiled_archs() { return PYFER_CUDA_ARCHS; }

}  // namespace pyfer::cuda
