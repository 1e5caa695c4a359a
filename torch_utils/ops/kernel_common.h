// Declarations shared by the kernel headers of torch_utils/ops (bias_act_kernel.h, upfirdn2d_kernel.h).
//
// Plain C++ for host compilers (the *_plugin.cpp glue and the host-side emulation harness of
// tests/test_cuda_ops.py); under nvcc it also provides the half / bfloat16 storage conversions.
#pragma once

#include <cstdint>

#ifndef ILSGAN_HD
#if defined(__CUDACC__)
#define ILSGAN_HD __host__ __device__ __forceinline__
#else
#define ILSGAN_HD inline
#endif
#endif

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#endif

namespace ilsgan {

// Storage types understood by the launchers (the dtype argument of launch_*).
enum DType : int { kFloat32 = 0, kFloat64 = 1, kFloat16 = 2, kBFloat16 = 3 };

// Storage <-> accumulation conversion: acc_t is the type the kernels compute in.
template <typename T> struct Cvt;
template <> struct Cvt<float> {
    typedef float acc_t;
    ILSGAN_HD static float load(const float* p, int64_t i) { return p[i]; }
    ILSGAN_HD static float to_storage(float v) { return v; }
};
template <> struct Cvt<double> {
    typedef double acc_t;
    ILSGAN_HD static double load(const double* p, int64_t i) { return p[i]; }
    ILSGAN_HD static double to_storage(double v) { return v; }
};

#if defined(__CUDACC__)
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
#endif

}  // namespace ilsgan
