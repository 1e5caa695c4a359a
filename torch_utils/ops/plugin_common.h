// Host-glue helpers shared by the *_plugin.cpp files of torch_utils/ops.
//
// ILSGAN_HOST_EMULATION is a test-only build (tests/test_cuda_ops.py): the launcher is a host emulation of the
// kernels, and the op is registered for CPU tensors under the namespace ilsgan_<op>_emu.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/library.h>
#ifndef ILSGAN_HOST_EMULATION
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#endif

#include "kernel_common.h"

// ILSGAN_REGISTER_OP(op, schema), at file scope: registers the function `op` as the dispatcher op
// torch.ops.ilsgan_<op>.<op> for CUDA tensors, or as torch.ops.ilsgan_<op>_emu.<op> for CPU tensors in the host
// emulation.
#ifdef ILSGAN_HOST_EMULATION
#define ILSGAN_REGISTER_OP(op, schema) \
    TORCH_LIBRARY(ilsgan_##op##_emu, m) { m.def(schema); } \
    TORCH_LIBRARY_IMPL(ilsgan_##op##_emu, CPU, m) { m.impl(#op, &op); }
#else
#define ILSGAN_REGISTER_OP(op, schema) \
    TORCH_LIBRARY(ilsgan_##op, m) { m.def(schema); } \
    TORCH_LIBRARY_IMPL(ilsgan_##op, CUDA, m) { m.impl(#op, &op); }
#endif

namespace ilsgan {
namespace plugin {

// ILSGAN_DEVICE_NAME: the device the op is registered for, as named in error messages.
// on_device(t): t lives on that device. launch_error(err): message for a launcher's non-zero return code.
#ifdef ILSGAN_HOST_EMULATION
#define ILSGAN_DEVICE_NAME "CPU"
inline bool on_device(const at::Tensor& t) { return t.is_cpu(); }
inline const char* launch_error(int) { return "host emulation rejected the launch"; }
#else
#define ILSGAN_DEVICE_NAME "CUDA"
inline bool on_device(const at::Tensor& t) { return t.is_cuda(); }
inline const char* launch_error(int err) { return cudaGetErrorString(static_cast<cudaError_t>(err)); }
#endif

// Calls launch(stream) with the current stream of x's device (as a void* cudaStream_t; nullptr in the host
// emulation) under a device guard, and returns what it returns: the launcher's error code.
template <typename Launch>
int launch_on(const at::Tensor& x, const Launch& launch) {
#ifdef ILSGAN_HOST_EMULATION
    (void)x;
    return launch(static_cast<void*>(nullptr));
#else
    const c10::cuda::CUDAGuard guard(x.device());
    return launch(static_cast<void*>(c10::cuda::getCurrentCUDAStream().stream()));
#endif
}

// The DType code of a tensor dtype, or -1 when the kernels do not support it.
inline int dtype_code(at::ScalarType t) {
    switch (t) {
        case at::kFloat: return kFloat32;
        case at::kDouble: return kFloat64;
        case at::kHalf: return kFloat16;
        case at::kBFloat16: return kBFloat16;
        default: return -1;
    }
}

}  // namespace plugin
}  // namespace ilsgan
