// Fused bias + activation + gain + clamp: shared declarations and per-element math.
//
// This header is plain C++ (no torch, no CUDA types) so that it can be included by
//   * bias_act_kernel.cu   (device code: kernels and launcher),
//   * bias_act_plugin.cpp  (host glue: tensor checks and Python binding),
//   * the host-side emulation harness of tests/test_cuda_ops.py (g++ only), which runs the
//     very same per-element functions on the CPU to validate the math without a GPU.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernel_common.h"

namespace ilsgan {
namespace bias_act {

// Activation ids: Activation.kernel_id in torch_utils/ops/activations.py.
enum Act : int {
    kLinear = 0, kRelu = 1, kLrelu = 2, kTanh = 3, kSigmoid = 4,
    kElu = 5, kSelu = 6, kSoftplus = 7, kSwish = 8, kNumActs = 9
};

// What the kernel computes (x below is Params::x):
//   kForward: out = clamp(act(x + b) * gain)
//   kGrad1:   out = x * act'(s) * gain              (x is dL/dy; s = xref + b or recovered from yref)
//   kGrad2:   out = x * dy * act''(s) * gain        (x is d(dL/dx) of the second-order pass)
// In both gradient modes the result is zeroed where the forward output was clamped.
enum Mode : int { kForward = 0, kGrad1 = 1, kGrad2 = 2 };

struct Params {
    const void* x;     // main input (see Mode)
    void* out;
    const void* b;     // bias [bias_size] or nullptr
    const void* dy;    // first-order upstream gradient (kGrad2 only)
    const void* xref;  // forward input x (gradient modes), or nullptr
    const void* yref;  // forward output y (gradient modes), or nullptr
    int64_t numel;        // elements of x/out; all tensors share one dense memory layout
    int64_t bias_stride;  // memory stride of the bias dimension, in elements
    int64_t bias_size;    // extent of the bias dimension (0 when b == nullptr)
    int act;
    int mode;
    float alpha;  // lrelu slope
    float gain;
    float clamp;  // < 0: no clamping
};

// Which saved tensors a gradient mode can work from.
// - xref (with b) works for every activation.
// - yref works for every activation except swish (whose input cannot be recovered from its output).
// - the clamp mask needs yref, or xref (then the forward output is recomputed).
inline bool can_use_yref(int act) { return act != kSwish; }
inline bool has_second_derivative(int act) {
    return act != kLinear && act != kRelu && act != kLrelu;
}

// ---------------------------------------------------------------------------------------------
// Scalar math with float/double overloads usable on host and device.

ILSGAN_HD float m_exp(float v) { return expf(v); }
ILSGAN_HD double m_exp(double v) { return exp(v); }
ILSGAN_HD float m_expm1(float v) { return expm1f(v); }
ILSGAN_HD double m_expm1(double v) { return expm1(v); }
ILSGAN_HD float m_log1p(float v) { return log1pf(v); }
ILSGAN_HD double m_log1p(double v) { return log1p(v); }
ILSGAN_HD float m_tanh(float v) { return tanhf(v); }
ILSGAN_HD double m_tanh(double v) { return tanh(v); }
ILSGAN_HD float m_abs(float v) { return fabsf(v); }
ILSGAN_HD double m_abs(double v) { return fabs(v); }
ILSGAN_HD float m_nan(float) { return nanf(""); }
ILSGAN_HD double m_nan(double) { return nan(""); }

template <typename A>
ILSGAN_HD A m_sigmoid(A s) { return A(1) / (A(1) + m_exp(-s)); }

// ---------------------------------------------------------------------------------------------
// Per-activation math. For each activation:
//   f(s)          the activation itself
//   d1(s), d2(s)  first and second derivative from the pre-activation s
//   d1a(a), d2a(a) the same derivatives expressed through the activation value a = f(s)
// A is the accumulation type (float or double).

template <int ACT> struct ActMath;

template <> struct ActMath<kLinear> {
    template <typename A> ILSGAN_HD static A f(A s, A) { return s; }
    template <typename A> ILSGAN_HD static A d1(A, A) { return A(1); }
    template <typename A> ILSGAN_HD static A d2(A, A) { return A(0); }
    template <typename A> ILSGAN_HD static A d1a(A, A) { return A(1); }
    template <typename A> ILSGAN_HD static A d2a(A, A) { return A(0); }
};

template <> struct ActMath<kRelu> {
    template <typename A> ILSGAN_HD static A f(A s, A) { return s > A(0) ? s : A(0); }
    template <typename A> ILSGAN_HD static A d1(A s, A) { return s > A(0) ? A(1) : A(0); }
    template <typename A> ILSGAN_HD static A d2(A, A) { return A(0); }
    template <typename A> ILSGAN_HD static A d1a(A a, A) { return a > A(0) ? A(1) : A(0); }
    template <typename A> ILSGAN_HD static A d2a(A, A) { return A(0); }
};

template <> struct ActMath<kLrelu> {
    template <typename A> ILSGAN_HD static A f(A s, A alpha) { return s > A(0) ? s : s * alpha; }
    template <typename A> ILSGAN_HD static A d1(A s, A alpha) { return s > A(0) ? A(1) : alpha; }
    template <typename A> ILSGAN_HD static A d2(A, A) { return A(0); }
    // With alpha >= 0 the sign of a equals the sign of s.
    template <typename A> ILSGAN_HD static A d1a(A a, A alpha) { return a > A(0) ? A(1) : alpha; }
    template <typename A> ILSGAN_HD static A d2a(A, A) { return A(0); }
};

template <> struct ActMath<kTanh> {
    template <typename A> ILSGAN_HD static A f(A s, A) { return m_tanh(s); }
    template <typename A> ILSGAN_HD static A d1(A s, A al) { return d1a(m_tanh(s), al); }
    template <typename A> ILSGAN_HD static A d2(A s, A al) { return d2a(m_tanh(s), al); }
    template <typename A> ILSGAN_HD static A d1a(A a, A) { return A(1) - a * a; }
    template <typename A> ILSGAN_HD static A d2a(A a, A) { return A(-2) * a * (A(1) - a * a); }
};

template <> struct ActMath<kSigmoid> {
    template <typename A> ILSGAN_HD static A f(A s, A) { return m_sigmoid(s); }
    template <typename A> ILSGAN_HD static A d1(A s, A al) { return d1a(m_sigmoid(s), al); }
    template <typename A> ILSGAN_HD static A d2(A s, A al) { return d2a(m_sigmoid(s), al); }
    template <typename A> ILSGAN_HD static A d1a(A a, A) { return a * (A(1) - a); }
    template <typename A> ILSGAN_HD static A d2a(A a, A) { return a * (A(1) - a) * (A(1) - A(2) * a); }
};

// ELU with alpha = 1 (torch.nn.functional.elu default).
template <> struct ActMath<kElu> {
    template <typename A> ILSGAN_HD static A f(A s, A) { return s > A(0) ? s : m_expm1(s); }
    template <typename A> ILSGAN_HD static A d1(A s, A) { return s > A(0) ? A(1) : m_exp(s); }
    template <typename A> ILSGAN_HD static A d2(A s, A) { return s > A(0) ? A(0) : m_exp(s); }
    template <typename A> ILSGAN_HD static A d1a(A a, A) { return a > A(0) ? A(1) : a + A(1); }
    template <typename A> ILSGAN_HD static A d2a(A a, A) { return a > A(0) ? A(0) : a + A(1); }
};

// SELU constants as in torch.nn.functional.selu.
struct SeluConst {
    static constexpr double kAlpha = 1.6732632423543772848170429916717;
    static constexpr double kScale = 1.0507009873554804934193349852946;
};

template <> struct ActMath<kSelu> {
    template <typename A> ILSGAN_HD static A f(A s, A) {
        return s > A(0) ? A(SeluConst::kScale) * s
                        : A(SeluConst::kScale * SeluConst::kAlpha) * m_expm1(s);
    }
    template <typename A> ILSGAN_HD static A d1(A s, A) {
        return s > A(0) ? A(SeluConst::kScale) : A(SeluConst::kScale * SeluConst::kAlpha) * m_exp(s);
    }
    template <typename A> ILSGAN_HD static A d2(A s, A) {
        return s > A(0) ? A(0) : A(SeluConst::kScale * SeluConst::kAlpha) * m_exp(s);
    }
    template <typename A> ILSGAN_HD static A d1a(A a, A) {
        return a > A(0) ? A(SeluConst::kScale) : a + A(SeluConst::kScale * SeluConst::kAlpha);
    }
    template <typename A> ILSGAN_HD static A d2a(A a, A) {
        return a > A(0) ? A(0) : a + A(SeluConst::kScale * SeluConst::kAlpha);
    }
};

// Softplus with beta = 1, threshold = 20 (torch.nn.functional.softplus defaults).
template <> struct ActMath<kSoftplus> {
    template <typename A> ILSGAN_HD static A f(A s, A) { return s > A(20) ? s : m_log1p(m_exp(s)); }
    template <typename A> ILSGAN_HD static A d1(A s, A) { return s > A(20) ? A(1) : m_sigmoid(s); }
    template <typename A> ILSGAN_HD static A d2(A s, A) {
        if (s > A(20)) return A(0);
        A g = m_sigmoid(s);
        return g * (A(1) - g);
    }
    template <typename A> ILSGAN_HD static A d1a(A a, A) { return -m_expm1(-a); }
    template <typename A> ILSGAN_HD static A d2a(A a, A) {
        A g = -m_expm1(-a);
        return g * (A(1) - g);
    }
};

template <> struct ActMath<kSwish> {
    template <typename A> ILSGAN_HD static A f(A s, A) { return s * m_sigmoid(s); }
    template <typename A> ILSGAN_HD static A d1(A s, A) {
        A g = m_sigmoid(s);
        return g * (A(1) + s * (A(1) - g));
    }
    template <typename A> ILSGAN_HD static A d2(A s, A) {
        A g = m_sigmoid(s);
        return g * (A(1) - g) * (A(2) + s * (A(1) - A(2) * g));
    }
    // Not recoverable from the output; the host glue never asks for it.
    template <typename A> ILSGAN_HD static A d1a(A a, A) { return m_nan(a); }
    template <typename A> ILSGAN_HD static A d2a(A a, A) { return m_nan(a); }
};

// ---------------------------------------------------------------------------------------------
// Per-element kernel body. Storage <-> accumulation conversion (Cvt) comes from kernel_common.h.

// Index of the bias element that applies to linear element i (dense layout).
ILSGAN_HD int64_t bias_index(const Params& p, int64_t i) {
    if (p.numel <= 0xffffffffLL)  // 32-bit division is much cheaper on the GPU
        return static_cast<uint32_t>(static_cast<uint32_t>(i) / static_cast<uint32_t>(p.bias_stride)) %
               static_cast<uint32_t>(p.bias_size);
    return (i / p.bias_stride) % p.bias_size;
}

// One output element. T: storage type.
template <typename T, int ACT, int MODE>
ILSGAN_HD void bias_act_element(const Params& p, int64_t i) {
    typedef Cvt<T> C;
    typedef typename C::acc_t A;
    typedef ActMath<ACT> M;
    const T* x = static_cast<const T*>(p.x);
    T* out = static_cast<T*>(p.out);
    const A alpha = A(p.alpha);
    const A gain = A(p.gain);
    const bool use_x = MODE == kForward || p.xref != nullptr;

    A bias = A(0);
    if (p.b != nullptr && use_x)
        bias = C::load(static_cast<const T*>(p.b), bias_index(p, i));
    const A v = C::load(x, i);

    if (MODE == kForward) {
        A y = M::f(v + bias, alpha) * gain;
        if (p.clamp >= 0.0f) {
            const A c = A(p.clamp);
            y = y > c ? c : (y < -c ? -c : y);
        }
        out[i] = C::to_storage(y);
        return;
    }

    // Gradient modes.
    A d;           // act'(s) or act''(s)
    bool pass = true;  // false where the forward output was clamped
    if (p.xref != nullptr) {
        const A s = C::load(static_cast<const T*>(p.xref), i) + bias;
        d = MODE == kGrad1 ? M::d1(s, alpha) : M::d2(s, alpha);
        if (p.clamp >= 0.0f && p.yref == nullptr)
            pass = m_abs(M::f(s, alpha) * gain) < A(p.clamp);
    } else {
        // a = y / gain is exact wherever the output was not clamped; elsewhere the mask wins.
        const A a = gain != A(0) ? C::load(static_cast<const T*>(p.yref), i) / gain : A(0);
        d = MODE == kGrad1 ? M::d1a(a, alpha) : M::d2a(a, alpha);
    }
    if (p.clamp >= 0.0f && p.yref != nullptr) {
        // Compare against the clamp value as it was stored (rounded to T).
        const A c = C::load(static_cast<const T*>(p.yref), i);
        const T ct = C::to_storage(A(p.clamp));
        pass = m_abs(c) < C::load(&ct, 0);
    }
    A g = v * d * gain;
    if (MODE == kGrad2)
        g = g * C::load(static_cast<const T*>(p.dy), i);
    out[i] = C::to_storage(pass ? g : A(0));
}

// Same, with the activation chosen at run time (uniform across the grid, so the branch is cheap; one kernel per
// dtype and mode keeps the build short).
template <typename T, int MODE>
ILSGAN_HD void bias_act_element_any(const Params& p, int64_t i) {
    switch (p.act) {
        case kLinear: bias_act_element<T, kLinear, MODE>(p, i); break;
        case kRelu: bias_act_element<T, kRelu, MODE>(p, i); break;
        case kLrelu: bias_act_element<T, kLrelu, MODE>(p, i); break;
        case kTanh: bias_act_element<T, kTanh, MODE>(p, i); break;
        case kSigmoid: bias_act_element<T, kSigmoid, MODE>(p, i); break;
        case kElu: bias_act_element<T, kElu, MODE>(p, i); break;
        case kSelu: bias_act_element<T, kSelu, MODE>(p, i); break;
        case kSoftplus: bias_act_element<T, kSoftplus, MODE>(p, i); break;
        default: bias_act_element<T, kSwish, MODE>(p, i); break;
    }
}

// Launcher implemented in bias_act_kernel.cu. Returns 0 (cudaSuccess) or a CUDA error code.
// `stream` is a cudaStream_t passed as void* so that this header needs no CUDA include.
int launch_bias_act(const Params& p, int dtype, void* stream);

}  // namespace bias_act
}  // namespace ilsgan
