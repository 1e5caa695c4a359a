// CUDA kernels for the fused bias + activation op (see bias_act_kernel.h for the math).
// Compiled without any torch header: the host glue (bias_act_plugin.cpp) hands us a Params
// struct with raw pointers and we launch one templated grid-stride kernel.

#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>

#include "bias_act_kernel.h"

namespace ilsgan {
namespace bias_act {

// Half-precision storage accumulates in float. Written with explicit conversion intrinsics so
// that it compiles under torch's -D__CUDA_NO_HALF_CONVERSIONS__ and friends.
template <> struct Cvt<__half> {
    typedef float acc_t;
    ILSGAN_HD static float load(const __half* p, int64_t i) { return __half2float(p[i]); }
    ILSGAN_HD static __half to_storage(float v) { return __float2half_rn(v); }
};
template <> struct Cvt<__nv_bfloat16> {
    typedef float acc_t;
    ILSGAN_HD static float load(const __nv_bfloat16* p, int64_t i) { return __bfloat162float(p[i]); }
    ILSGAN_HD static __nv_bfloat16 to_storage(float v) { return __float2bfloat16_rn(v); }
};

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65536;

template <typename T, int ACT, int MODE>
__global__ void __launch_bounds__(kThreads) bias_act_kernel(Params p) {
    const int64_t step = static_cast<int64_t>(blockDim.x) * gridDim.x;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < p.numel; i += step)
        bias_act_element<T, ACT, MODE>(p, i);
}

template <typename T, int ACT, int MODE>
static cudaError_t launch_typed(const Params& p, cudaStream_t stream) {
    if (p.numel <= 0)
        return cudaSuccess;
    int64_t blocks = (p.numel + kThreads - 1) / kThreads;
    if (blocks > kMaxBlocks)
        blocks = kMaxBlocks;
    bias_act_kernel<T, ACT, MODE><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(p);
    return cudaGetLastError();
}

template <typename T, int ACT>
static cudaError_t launch_mode(const Params& p, cudaStream_t stream) {
    switch (p.mode) {
        case kForward: return launch_typed<T, ACT, kForward>(p, stream);
        case kGrad1: return launch_typed<T, ACT, kGrad1>(p, stream);
        case kGrad2:
            // The second derivative of linear/relu/lrelu is zero; the glue never asks for it.
            if constexpr (ACT != kLinear && ACT != kRelu && ACT != kLrelu)
                return launch_typed<T, ACT, kGrad2>(p, stream);
            return cudaErrorInvalidValue;
        default: return cudaErrorInvalidValue;
    }
}

template <typename T>
static cudaError_t launch_act(const Params& p, cudaStream_t stream) {
    switch (p.act) {
        case kLinear: return launch_mode<T, kLinear>(p, stream);
        case kRelu: return launch_mode<T, kRelu>(p, stream);
        case kLrelu: return launch_mode<T, kLrelu>(p, stream);
        case kTanh: return launch_mode<T, kTanh>(p, stream);
        case kSigmoid: return launch_mode<T, kSigmoid>(p, stream);
        case kElu: return launch_mode<T, kElu>(p, stream);
        case kSelu: return launch_mode<T, kSelu>(p, stream);
        case kSoftplus: return launch_mode<T, kSoftplus>(p, stream);
        case kSwish: return launch_mode<T, kSwish>(p, stream);
        default: return cudaErrorInvalidValue;
    }
}

int launch_bias_act(const Params& p, int dtype, void* stream) {
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    cudaError_t err;
    switch (dtype) {
        case kFloat32: err = launch_act<float>(p, s); break;
        case kFloat64: err = launch_act<double>(p, s); break;
        case kFloat16: err = launch_act<__half>(p, s); break;
        case kBFloat16: err = launch_act<__nv_bfloat16>(p, s); break;
        default: err = cudaErrorInvalidValue; break;
    }
    return static_cast<int>(err);
}

}  // namespace bias_act
}  // namespace ilsgan
