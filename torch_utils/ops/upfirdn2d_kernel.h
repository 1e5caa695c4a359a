// upfirdn2d: zero-insert upsample, pad/crop, FIR filter, downsample -- shared declarations and
// the per-thread bodies of the kernels.
//
// Plain C++ (no torch, no CUDA types) so that the same code is compiled into
//   * upfirdn2d_kernel.cu   (device kernels + launcher),
//   * upfirdn2d_plugin.cpp  (host glue: checks, output allocation, Python binding),
//   * the host-side emulation harness of tests/test_cuda_ops.py, which runs these bodies
//     thread by thread (and phase by phase around the barriers) on the CPU.
//
// Semantics for one (n, c) image, per axis (shown for y; x is the same):
//   upsampled u[k] = x[k / up] if k % up == 0 and k / up < H, else 0     (k in [0, H*up))
//   padded    p[j] = u[j - pad0]                                         (zero outside)
//   filtered  q[o] = sum_t p[o + t] * fc[t],  fc = flip_filter ? f : reversed(f)
//   output    y[o] = q[o * down] * gain,  o in [0, OH),  OH = (H*up + pad0 + pad1 - fh) / down + 1
#pragma once

#include <cstdint>

#include "kernel_common.h"

// Loop unrolling hint for the device pass only (host compilers warn about the unknown pragma).
#if defined(__CUDA_ARCH__)
#define ILSGAN_UNROLL _Pragma("unroll")
#else
#define ILSGAN_UNROLL
#endif

namespace ilsgan {
namespace upfirdn2d {

// Kernel selection: kAuto picks a tiled kernel when one is instantiated for the configuration.
enum Impl : int { kAuto = 0, kGeneric = 1, kTiled = 2 };

struct Params {
    const void* x;   // input  [N, C, H, W] with strides sx_*
    const float* f;  // filter [fh, fw], row-major contiguous, float32
    void* y;         // output [N, C, OH, OW] with strides sy_*
    int N, C, H, W;
    int OH, OW;
    int64_t sx_n, sx_c, sx_h, sx_w;
    int64_t sy_n, sy_c, sy_h, sy_w;
    int fh, fw;
    int upx, upy, downx, downy;
    int padx0, padx1, pady0, pady1;
    int flip_filter;  // nonzero: correlate with f as given; zero: with f reversed in both axes
    int c_fastest;    // generic kernel: make channels the fastest-varying thread index (channels_last)
    float gain;
};

// Integer division rounding toward -inf / +inf (b > 0).
ILSGAN_HD int floor_div(int a, int b) { return (a >= 0 ? a : a - b + 1) / b; }
ILSGAN_HD int ceil_div(int a, int b) { return floor_div(a + b - 1, b); }
ILSGAN_HD int imin(int a, int b) { return a < b ? a : b; }
ILSGAN_HD int imax(int a, int b) { return a > b ? a : b; }

// Output extent along one axis; <= 0 means the configuration produces no output.
inline int64_t out_size(int64_t in, int64_t up, int64_t down, int64_t pad0, int64_t pad1, int64_t ftaps) {
    const int64_t span = in * up + pad0 + pad1 - ftaps;  // last valid filter origin
    return span < 0 ? 0 : span / down + 1;
}

// Correlation tap (ty, tx) of the filter, honouring flip_filter.
ILSGAN_HD float filter_tap(const Params& p, int ty, int tx) {
    return p.flip_filter ? p.f[ty * p.fw + tx] : p.f[(p.fh - 1 - ty) * p.fw + (p.fw - 1 - tx)];
}

// =============================================================================================
// Generic kernel: one thread per output pixel; loops over the taps that land on input samples.

// Total number of output elements (= number of generic-kernel threads).
inline int64_t generic_work(const Params& p) {
    return static_cast<int64_t>(p.N) * p.C * p.OH * p.OW;
}

// Thread `idx` (linear) computes one output element.
template <typename T>
ILSGAN_HD void generic_pixel(const Params& p, int64_t idx) {
    typedef Cvt<T> CV;
    typedef typename CV::acc_t A;
    int n, c, oy, ox;
    if (p.c_fastest) {
        c = static_cast<int>(idx % p.C); idx /= p.C;
        ox = static_cast<int>(idx % p.OW); idx /= p.OW;
        oy = static_cast<int>(idx % p.OH); idx /= p.OH;
        n = static_cast<int>(idx);
    } else {
        ox = static_cast<int>(idx % p.OW); idx /= p.OW;
        oy = static_cast<int>(idx % p.OH); idx /= p.OH;
        c = static_cast<int>(idx % p.C); idx /= p.C;
        n = static_cast<int>(idx);
    }
    const T* x = static_cast<const T*>(p.x) + n * p.sx_n + c * p.sx_c;

    // Upsampled coordinate of filter tap 0, and the input samples covered by the filter window.
    const int uy0 = oy * p.downy - p.pady0;
    const int ux0 = ox * p.downx - p.padx0;
    const int iy_lo = imax(ceil_div(uy0, p.upy), 0);
    const int iy_hi = imin(floor_div(uy0 + p.fh - 1, p.upy), p.H - 1);
    const int ix_lo = imax(ceil_div(ux0, p.upx), 0);
    const int ix_hi = imin(floor_div(ux0 + p.fw - 1, p.upx), p.W - 1);

    A acc = A(0);
    for (int iy = iy_lo; iy <= iy_hi; iy++) {
        const int ty = iy * p.upy - uy0;
        const T* xrow = x + iy * p.sx_h;
        for (int ix = ix_lo; ix <= ix_hi; ix++) {
            const int tx = ix * p.upx - ux0;
            acc += CV::load(xrow, ix * p.sx_w) * A(filter_tap(p, ty, tx));
        }
    }
    T* y = static_cast<T*>(p.y);
    y[n * p.sy_n + c * p.sy_c + oy * p.sy_h + ox * p.sy_w] = CV::to_storage(acc * A(p.gain));
}

// =============================================================================================
// Tiled kernel: a block computes a TOH x TOW output tile of one (n, c) image at a time from an
// input tile staged in shared memory. Up/down factors and the filter size are compile-time
// constants (same in x and y).

constexpr int kTiledThreads = 256;

template <int UP, int DOWN, int K, int TOW, int TOH>
struct TileCfg {
    static constexpr int kUp = UP, kDown = DOWN, kTaps = K, kTileW = TOW, kTileH = TOH;
    // Input samples a tile can touch: multiples of UP inside a window of (TO-1)*DOWN + K.
    static constexpr int kInW = ((TOW - 1) * DOWN + K + UP - 1) / UP;
    static constexpr int kInH = ((TOH - 1) * DOWN + K + UP - 1) / UP;
    static constexpr int kTapsPerPhase = (K + UP - 1) / UP;  // taps per axis that hit a sample
};

// The instantiated tiled configurations. Keep in sync with the dispatch in upfirdn2d_kernel.cu.
typedef TileCfg<1, 1, 4, 32, 32> TileUp1Down1K4;
typedef TileCfg<2, 1, 4, 32, 32> TileUp2Down1K4;
typedef TileCfg<1, 2, 4, 32, 16> TileUp1Down2K4;

enum TiledConfig : int { kTileNone = 0, kTileU1D1K4 = 1, kTileU2D1K4 = 2, kTileU1D2K4 = 3 };

inline int tiled_config(const Params& p) {
    if (p.upx != p.upy || p.downx != p.downy || p.fw != 4 || p.fh != 4)
        return kTileNone;
    if (p.upx == 1 && p.downx == 1) return kTileU1D1K4;
    if (p.upx == 2 && p.downx == 1) return kTileU2D1K4;
    if (p.upx == 1 && p.downx == 2) return kTileU1D2K4;
    return kTileNone;
}

struct TileGrid {
    int tiles_x, tiles_y;
    int64_t images;  // N * C
};

template <class Cfg>
inline TileGrid tiled_grid(const Params& p) {
    TileGrid g;
    g.tiles_x = (p.OW + Cfg::kTileW - 1) / Cfg::kTileW;
    g.tiles_y = (p.OH + Cfg::kTileH - 1) / Cfg::kTileH;
    g.images = static_cast<int64_t>(p.N) * p.C;
    return g;
}

struct TileOrigin {
    int ox0, oy0;  // first output pixel of the tile
    int ix0, iy0;  // input sample staged at shared-memory position (0, 0)
};

template <class Cfg>
ILSGAN_HD TileOrigin tile_origin(const Params& p, int tile_x, int tile_y) {
    TileOrigin o;
    o.ox0 = tile_x * Cfg::kTileW;
    o.oy0 = tile_y * Cfg::kTileH;
    o.ix0 = ceil_div(o.ox0 * Cfg::kDown - p.padx0, Cfg::kUp);
    o.iy0 = ceil_div(o.oy0 * Cfg::kDown - p.pady0, Cfg::kUp);
    return o;
}

// Phase 0 (once per block): correlation-ordered filter taps into shared memory sf[K*K].
template <class Cfg>
ILSGAN_HD void tile_load_filter(const Params& p, float* sf, int tid, int nthreads) {
    for (int k = tid; k < Cfg::kTaps * Cfg::kTaps; k += nthreads)
        sf[k] = filter_tap(p, k / Cfg::kTaps, k % Cfg::kTaps);
}

// Phase 1: input tile of image (n, c) into shared memory sx[kInH * kInW], zero outside the image.
template <class Cfg, typename T>
ILSGAN_HD void tile_load_input(const Params& p, const TileOrigin& o, int n, int c,
                               typename Cvt<T>::acc_t* sx, int tid, int nthreads) {
    typedef typename Cvt<T>::acc_t A;
    const T* x = static_cast<const T*>(p.x) + n * p.sx_n + c * p.sx_c;
    for (int k = tid; k < Cfg::kInH * Cfg::kInW; k += nthreads) {
        const int iy = o.iy0 + k / Cfg::kInW;
        const int ix = o.ix0 + k % Cfg::kInW;
        A v = A(0);
        if (iy >= 0 && iy < p.H && ix >= 0 && ix < p.W)
            v = Cvt<T>::load(x, iy * p.sx_h + ix * p.sx_w);
        sx[k] = v;
    }
}

// Phase 2: every thread computes its share of the output tile from shared memory.
template <class Cfg, typename T>
ILSGAN_HD void tile_compute(const Params& p, const TileOrigin& o, int n, int c,
                            const typename Cvt<T>::acc_t* sx, const float* sf, int tid, int nthreads) {
    typedef typename Cvt<T>::acc_t A;
    constexpr int U = Cfg::kUp, D = Cfg::kDown, K = Cfg::kTaps, P = Cfg::kTapsPerPhase;
    T* y = static_cast<T*>(p.y) + n * p.sy_n + c * p.sy_c;
    const int tx = tid % Cfg::kTileW;
    const int ox = o.ox0 + tx;
    if (ox >= p.OW)
        return;
    // Horizontal phase: first input column under the window and the tap that hits it.
    const int ux0 = ox * D - p.padx0;
    const int ix_first = ceil_div(ux0, U);
    const int tx0 = ix_first * U - ux0;  // in [0, U)
    const int cx = ix_first - o.ix0;     // shared-memory column of ix_first

    for (int ty_out = tid / Cfg::kTileW; ty_out < Cfg::kTileH; ty_out += nthreads / Cfg::kTileW) {
        const int oy = o.oy0 + ty_out;
        if (oy >= p.OH)
            break;
        const int uy0 = oy * D - p.pady0;
        const int iy_first = ceil_div(uy0, U);
        const int ty0 = iy_first * U - uy0;
        const int cy = iy_first - o.iy0;

        A acc = A(0);
ILSGAN_UNROLL
        for (int j = 0; j < P; j++) {
            const int fy = ty0 + j * U;
            if (fy < K) {
                const A* srow = sx + (cy + j) * Cfg::kInW + cx;
ILSGAN_UNROLL
                for (int i = 0; i < P; i++) {
                    const int fx = tx0 + i * U;
                    if (fx < K)
                        acc += srow[i] * A(sf[fy * K + fx]);
                }
            }
        }
        y[oy * p.sy_h + ox * p.sy_w] = Cvt<T>::to_storage(acc * A(p.gain));
    }
}

// Launcher implemented in upfirdn2d_kernel.cu. Returns 0 (cudaSuccess) or a CUDA error code.
// `impl` is an Impl; kTiled with an unsupported configuration returns cudaErrorInvalidValue.
int launch_upfirdn2d(const Params& p, int dtype, int impl, void* stream);

}  // namespace upfirdn2d
}  // namespace ilsgan
