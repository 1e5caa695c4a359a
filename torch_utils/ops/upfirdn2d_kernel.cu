// CUDA kernels for upfirdn2d (see upfirdn2d_kernel.h for the semantics and the per-thread bodies).
// Compiled without any torch header; upfirdn2d_plugin.cpp fills a Params struct and calls
// launch_upfirdn2d().

#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>

#include "upfirdn2d_kernel.h"

namespace ilsgan {
namespace upfirdn2d {

constexpr int kGenericThreads = 256;
constexpr int64_t kMaxGenericBlocks = 1 << 20;
constexpr int64_t kMaxGridZ = 65535;

// ---------------------------------------------------------------------------------------------
// Generic kernel.

template <typename T>
__global__ void __launch_bounds__(kGenericThreads) upfirdn2d_generic_kernel(Params p, int64_t total) {
    const int64_t step = static_cast<int64_t>(blockDim.x) * gridDim.x;
    for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total; idx += step)
        generic_pixel<T>(p, idx);
}

template <typename T>
static cudaError_t launch_generic(const Params& p, cudaStream_t stream) {
    const int64_t total = generic_work(p);
    if (total <= 0)
        return cudaSuccess;
    int64_t blocks = (total + kGenericThreads - 1) / kGenericThreads;
    if (blocks > kMaxGenericBlocks)
        blocks = kMaxGenericBlocks;
    upfirdn2d_generic_kernel<T><<<static_cast<unsigned>(blocks), kGenericThreads, 0, stream>>>(p, total);
    return cudaGetLastError();
}

// ---------------------------------------------------------------------------------------------
// Tiled kernel: grid (tiles_x, tiles_y, z); block z walks images nc = z, z + gridDim.z, ...

template <class Cfg, typename T>
__global__ void __launch_bounds__(kTiledThreads) upfirdn2d_tiled_kernel(Params p) {
    typedef typename Cvt<T>::acc_t A;
    __shared__ A sx[Cfg::kInH * Cfg::kInW];
    __shared__ float sf[Cfg::kTaps * Cfg::kTaps];
    const int tid = static_cast<int>(threadIdx.x);
    const int nthreads = static_cast<int>(blockDim.x);

    tile_load_filter<Cfg>(p, sf, tid, nthreads);
    const TileOrigin o = tile_origin<Cfg>(p, static_cast<int>(blockIdx.x), static_cast<int>(blockIdx.y));
    const int64_t images = static_cast<int64_t>(p.N) * p.C;
    for (int64_t nc = blockIdx.z; nc < images; nc += gridDim.z) {
        const int n = static_cast<int>(nc / p.C);
        const int c = static_cast<int>(nc % p.C);
        __syncthreads();  // previous image's readers are done with sx (and sf is complete)
        tile_load_input<Cfg, T>(p, o, n, c, sx, tid, nthreads);
        __syncthreads();
        tile_compute<Cfg, T>(p, o, n, c, sx, sf, tid, nthreads);
    }
}

template <class Cfg, typename T>
static cudaError_t launch_tiled(const Params& p, cudaStream_t stream) {
    const TileGrid g = tiled_grid<Cfg>(p);
    if (g.images <= 0 || g.tiles_x <= 0 || g.tiles_y <= 0)
        return cudaSuccess;
    if (g.tiles_y > 65535)
        return launch_generic<T>(p, stream);
    const dim3 grid(static_cast<unsigned>(g.tiles_x), static_cast<unsigned>(g.tiles_y),
                    static_cast<unsigned>(g.images < kMaxGridZ ? g.images : kMaxGridZ));
    upfirdn2d_tiled_kernel<Cfg, T><<<grid, kTiledThreads, 0, stream>>>(p);
    return cudaGetLastError();
}

template <typename T>
static cudaError_t launch_typed(const Params& p, int impl, cudaStream_t stream) {
    const int cfg = impl == kGeneric ? static_cast<int>(kTileNone) : tiled_config(p);
    if (impl == kTiled && cfg == kTileNone)
        return cudaErrorInvalidValue;
    switch (cfg) {
        case kTileU1D1K4: return launch_tiled<TileUp1Down1K4, T>(p, stream);
        case kTileU2D1K4: return launch_tiled<TileUp2Down1K4, T>(p, stream);
        case kTileU1D2K4: return launch_tiled<TileUp1Down2K4, T>(p, stream);
        default: return launch_generic<T>(p, stream);
    }
}

int launch_upfirdn2d(const Params& p, int dtype, int impl, void* stream) {
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    cudaError_t err;
    switch (dtype) {
        case kFloat32: err = launch_typed<float>(p, impl, s); break;
        case kFloat64: err = launch_typed<double>(p, impl, s); break;
        case kFloat16: err = launch_typed<__half>(p, impl, s); break;
        case kBFloat16: err = launch_typed<__nv_bfloat16>(p, impl, s); break;
        default: err = cudaErrorInvalidValue; break;
    }
    return static_cast<int>(err);
}

}  // namespace upfirdn2d
}  // namespace ilsgan
