// CUDA kernels for the fused bias + activation op (see bias_act_kernel.h for the math).
// Compiled without any torch header: the host glue (bias_act_plugin.cpp) hands us a Params
// struct with raw pointers and we launch a grid-stride kernel templated on dtype and mode.

#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>

#include "bias_act_kernel.h"

namespace ilsgan {
namespace bias_act {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65536;

template <typename T, int MODE>
__global__ void __launch_bounds__(kThreads) bias_act_kernel(Params p) {
    const int64_t step = static_cast<int64_t>(blockDim.x) * gridDim.x;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < p.numel; i += step)
        bias_act_element_any<T, MODE>(p, i);
}

template <typename T, int MODE>
static cudaError_t launch_typed(const Params& p, cudaStream_t stream) {
    if (p.numel <= 0)
        return cudaSuccess;
    int64_t blocks = (p.numel + kThreads - 1) / kThreads;
    if (blocks > kMaxBlocks)
        blocks = kMaxBlocks;
    bias_act_kernel<T, MODE><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(p);
    return cudaGetLastError();
}

template <typename T>
static cudaError_t launch_mode(const Params& p, cudaStream_t stream) {
    if (p.act < 0 || p.act >= kNumActs)
        return cudaErrorInvalidValue;
    switch (p.mode) {
        case kForward: return launch_typed<T, kForward>(p, stream);
        case kGrad1: return launch_typed<T, kGrad1>(p, stream);
        case kGrad2: return launch_typed<T, kGrad2>(p, stream);
        default: return cudaErrorInvalidValue;
    }
}

int launch_bias_act(const Params& p, int dtype, void* stream) {
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    cudaError_t err;
    switch (dtype) {
        case kFloat32: err = launch_mode<float>(p, s); break;
        case kFloat64: err = launch_mode<double>(p, s); break;
        case kFloat16: err = launch_mode<__half>(p, s); break;
        case kBFloat16: err = launch_mode<__nv_bfloat16>(p, s); break;
        default: err = cudaErrorInvalidValue; break;
    }
    return static_cast<int>(err);
}

}  // namespace bias_act
}  // namespace ilsgan
