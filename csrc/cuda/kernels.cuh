#pragma once
#include <cuda_runtime.h>

#include "plan.cuh"

namespace pyfer::cuda {
// Enqueues every step of the plan on `stream` (capturable into a CUDA graph). Returns the first
// launch error. sms: the device's multiprocessor count (picks the GEMM tile size).
cudaError_t launch_plan(const Plan& p, cudaStream_t stream, int sms);
// Checks that this binary holds code the current device can run (cudaErrorNoKernelImageForDevice
// otherwise).
cudaError_t check_kernel_image();
}  // namespace pyfer::cuda
