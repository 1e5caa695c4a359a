// Host glue for the upfirdn2d CUDA op: argument checks, output allocation, launch.
// The autograd logic lives in Python (torch_utils/ops/cuda_plugins.py).
// Registered as the dispatcher op torch.ops.ilsgan_upfirdn2d.upfirdn2d (no pybind11).

#include <cstdlib>
#include <limits>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "upfirdn2d_kernel.h"
#include "plugin_common.h"

namespace {

using ilsgan::upfirdn2d::Params;
using namespace ilsgan::plugin;  // on_device, dtype_code, launch_on, launch_error

bool fits_int(int64_t v) { return v >= 0 && v <= std::numeric_limits<int>::max() / 4; }

// y = downsample(FIR(pad(zero_insert_upsample(x)))) * gain, see upfirdn2d_kernel.h.
// f: 2-D float32 filter on x's device. impl: 0 auto, 1 generic kernel, 2 tiled kernel (must apply).
at::Tensor upfirdn2d(const at::Tensor& x, const at::Tensor& f_in, int64_t upx, int64_t upy, int64_t downx,
                     int64_t downy, int64_t padx0, int64_t padx1, int64_t pady0, int64_t pady1, bool flip_filter,
                     double gain, int64_t impl) {
    TORCH_CHECK(on_device(x), "upfirdn2d: x must be a " ILSGAN_DEVICE_NAME " tensor");
    TORCH_CHECK(x.dim() == 4, "upfirdn2d: x must be [N, C, H, W]");
    const int dtype = dtype_code(x.scalar_type());
    TORCH_CHECK(dtype >= 0, "upfirdn2d: unsupported dtype ", x.scalar_type());
    TORCH_CHECK(f_in.device() == x.device(), "upfirdn2d: f must be on the device of x");
    TORCH_CHECK(f_in.scalar_type() == at::kFloat && f_in.dim() == 2 && f_in.numel() > 0,
                "upfirdn2d: f must be a non-empty 2-D float32 tensor");
    const at::Tensor f = f_in.contiguous();
    TORCH_CHECK(upx >= 1 && upy >= 1 && downx >= 1 && downy >= 1, "upfirdn2d: up/down must be >= 1");
    TORCH_CHECK(impl >= 0 && impl <= 2, "upfirdn2d: bad impl ", impl);

    const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
    const int64_t fh = f.size(0), fw = f.size(1);
    // Every coordinate the kernels form must fit comfortably in int.
    TORCH_CHECK(fits_int(N) && fits_int(C) && fits_int(fh) && fits_int(fw) && fits_int(upx) && fits_int(upy) &&
                    fits_int(downx) && fits_int(downy) &&
                    fits_int(H * upy + std::abs(pady0) + std::abs(pady1) + fh) &&
                    fits_int(W * upx + std::abs(padx0) + std::abs(padx1) + fw),
                "upfirdn2d: sizes too large");
    const int64_t OH = ilsgan::upfirdn2d::out_size(H, upy, downy, pady0, pady1, fh);
    const int64_t OW = ilsgan::upfirdn2d::out_size(W, upx, downx, padx0, padx1, fw);
    TORCH_CHECK(OH >= 1 && OW >= 1, "upfirdn2d: padding/filter leave no output pixels");

    const auto fmt = x.suggest_memory_format();
    at::Tensor y = at::empty({N, C, OH, OW}, x.options().memory_format(fmt));
    if (y.numel() == 0)
        return y;

    Params p;
    p.x = x.data_ptr();
    p.f = f.data_ptr<float>();
    p.y = y.data_ptr();
    p.N = static_cast<int>(N);
    p.C = static_cast<int>(C);
    p.H = static_cast<int>(H);
    p.W = static_cast<int>(W);
    p.OH = static_cast<int>(OH);
    p.OW = static_cast<int>(OW);
    p.sx_n = x.stride(0); p.sx_c = x.stride(1); p.sx_h = x.stride(2); p.sx_w = x.stride(3);
    p.sy_n = y.stride(0); p.sy_c = y.stride(1); p.sy_h = y.stride(2); p.sy_w = y.stride(3);
    p.fh = static_cast<int>(fh);
    p.fw = static_cast<int>(fw);
    p.upx = static_cast<int>(upx); p.upy = static_cast<int>(upy);
    p.downx = static_cast<int>(downx); p.downy = static_cast<int>(downy);
    p.padx0 = static_cast<int>(padx0); p.padx1 = static_cast<int>(padx1);
    p.pady0 = static_cast<int>(pady0); p.pady1 = static_cast<int>(pady1);
    p.flip_filter = flip_filter ? 1 : 0;
    p.c_fastest = (C > 1 && y.stride(1) == 1) ? 1 : 0;
    p.gain = static_cast<float>(gain);

    const int err = launch_on(x, [&](void* stream) {
        return ilsgan::upfirdn2d::launch_upfirdn2d(p, dtype, static_cast<int>(impl), stream);
    });
    TORCH_CHECK(err == 0, "upfirdn2d: kernel launch failed (", launch_error(err),
                impl == ilsgan::upfirdn2d::kTiled ? "; no tiled kernel for this configuration?)" : ")");
    return y;
}

}  // namespace

#define ILSGAN_UPFIRDN2D_SCHEMA \
    "upfirdn2d(Tensor x, Tensor f, int upx, int upy, int downx, int downy, int padx0, int padx1, " \
    "int pady0, int pady1, bool flip_filter, float gain, int impl) -> Tensor"

ILSGAN_REGISTER_OP(upfirdn2d, ILSGAN_UPFIRDN2D_SCHEMA)
