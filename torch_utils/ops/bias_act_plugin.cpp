// Host glue for the fused bias + activation CUDA op: argument checks, layout handling, launch.
// The autograd logic lives in Python (torch_utils/ops/cuda_plugins.py).
// Registered as the dispatcher op torch.ops.ilsgan_bias_act.bias_act (no pybind11: the lean
// includes below keep the build fast). Loaded with torch.utils.cpp_extension.load(is_python_module=False).
#include <optional>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include "bias_act_kernel.h"
#include "plugin_common.h"

namespace {

using ilsgan::bias_act::Params;
using namespace ilsgan::plugin;  // on_device, dtype_code, launch_on, launch_error

// True when a and b address their elements identically (strides of size-1 dims do not matter).
bool same_layout(const at::Tensor& a, const at::Tensor& b) {
    if (a.sizes() != b.sizes())
        return false;
    for (int64_t d = 0; d < a.dim(); d++)
        if (a.size(d) > 1 && a.stride(d) != b.stride(d))
            return false;
    return true;
}

// An optional operand: absent when it has no elements. Present ones must match `like` in shape
// and dtype and are copied into `like`'s memory layout when they differ.
at::Tensor operand(const std::optional<at::Tensor>& opt, const at::Tensor& like, const char* name) {
    if (!opt.has_value() || !opt->defined())
        return at::Tensor();
    const at::Tensor& t = *opt;
    TORCH_CHECK(t.device() == like.device(), "bias_act: ", name, " must be on the same device as x");
    TORCH_CHECK(t.scalar_type() == like.scalar_type(), "bias_act: ", name, " must have the dtype of x");
    TORCH_CHECK(t.sizes() == like.sizes(), "bias_act: ", name, " must have the shape of x");
    if (same_layout(t, like))
        return t;
    at::Tensor r = at::empty_like(like);
    r.copy_(t);
    return r;
}

// mode 0: y = clamp(act(x + b) * gain)
// mode 1: dx = x * act'(.) * gain, masked where clamped; x is dL/dy; needs xref (+b) or yref
// mode 2: x * dy * act''(.) * gain, masked where clamped
at::Tensor bias_act(const at::Tensor& x_in, const std::optional<at::Tensor>& b_opt,
                    const std::optional<at::Tensor>& xref_opt, const std::optional<at::Tensor>& yref_opt,
                    const std::optional<at::Tensor>& dy_opt, int64_t mode, int64_t dim, int64_t act,
                    double alpha, double gain, double clamp) {
    at::Tensor x = x_in;
    TORCH_CHECK(on_device(x), "bias_act: x must be a " ILSGAN_DEVICE_NAME " tensor");
    const int dtype = dtype_code(x.scalar_type());
    TORCH_CHECK(dtype >= 0, "bias_act: unsupported dtype ", x.scalar_type());
    TORCH_CHECK(act >= 0 && act < ilsgan::bias_act::kNumActs, "bias_act: bad activation id ", act);
    TORCH_CHECK(mode >= 0 && mode <= 2, "bias_act: bad mode ", mode);
    TORCH_CHECK(x.dim() == 0 ? dim == 0 : (dim >= 0 && dim < x.dim()), "bias_act: dim out of range");
    if (!x.is_non_overlapping_and_dense())
        x = x.contiguous();

    at::Tensor b;
    const bool has_b = b_opt.has_value() && b_opt->defined();
    if (has_b) {
        b = *b_opt;
        TORCH_CHECK(b.device() == x.device(), "bias_act: b must be on the same device as x");
        TORCH_CHECK(b.scalar_type() == x.scalar_type(), "bias_act: b must have the dtype of x");
        TORCH_CHECK(b.dim() == 1 && x.dim() > 0 && b.size(0) == x.size(dim),
                    "bias_act: b must be 1-D with x.shape[dim] elements");
        b = b.contiguous();
    }
    const at::Tensor xref = operand(xref_opt, x, "xref");
    const at::Tensor yref = operand(yref_opt, x, "yref");
    const at::Tensor dy = operand(dy_opt, x, "dy");
    if (mode != ilsgan::bias_act::kForward) {
        TORCH_CHECK(xref.defined() || yref.defined() || (act == ilsgan::bias_act::kLinear && clamp < 0),
                    "bias_act: gradient needs xref or yref");
        TORCH_CHECK(xref.defined() || ilsgan::bias_act::can_use_yref(static_cast<int>(act)),
                    "bias_act: this activation's gradient needs xref");
        TORCH_CHECK(clamp < 0 || xref.defined() || yref.defined(), "bias_act: clamp mask needs xref or yref");
    }
    if (mode == ilsgan::bias_act::kGrad2)
        TORCH_CHECK(dy.defined(), "bias_act: mode 2 needs dy");

    at::Tensor out = at::empty_like(x);  // dense x: same strides
    if (x.numel() == 0)
        return out;

    Params p;
    p.x = x.data_ptr();
    p.b = has_b ? b.data_ptr() : nullptr;
    p.xref = xref.defined() ? xref.data_ptr() : nullptr;
    p.yref = yref.defined() ? yref.data_ptr() : nullptr;
    p.dy = dy.defined() ? dy.data_ptr() : nullptr;
    p.out = out.data_ptr();
    p.numel = x.numel();
    p.bias_stride = has_b ? x.stride(dim) : 1;
    p.bias_size = has_b ? x.size(dim) : 0;
    p.act = static_cast<int>(act);
    p.mode = static_cast<int>(mode);
    p.alpha = static_cast<float>(alpha);
    p.gain = static_cast<float>(gain);
    p.clamp = static_cast<float>(clamp);

    const int err = launch_on(x, [&](void* stream) { return ilsgan::bias_act::launch_bias_act(p, dtype, stream); });
    TORCH_CHECK(err == 0, "bias_act: kernel launch failed: ", launch_error(err));
    return out;
}

}  // namespace

#define ILSGAN_BIAS_ACT_SCHEMA \
    "bias_act(Tensor x, Tensor? b, Tensor? xref, Tensor? yref, Tensor? dy, int mode, int dim, int act, " \
    "float alpha, float gain, float clamp) -> Tensor"

ILSGAN_REGISTER_OP(bias_act, ILSGAN_BIAS_ACT_SCHEMA)
