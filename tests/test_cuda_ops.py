"""Tests of the optional CUDA plugins: torch_utils/custom_ops.py, torch_utils/ops/cuda_plugins.py and the kernels.

Without a GPU (always run when the tools exist):
  * compile check of the real sources: nvcc for the .cu files (sm_80 + sm_90), g++ for the .cpp glue, -Werror;
  * host emulation: the per-thread kernel bodies in *_kernel.h compiled with g++ and driven thread by thread (and
    phase by phase around __syncthreads for the tiled upfirdn2d kernel), compared with the pure-PyTorch references;
  * the Python autograd glue (first and second derivatives) run on the CPU on top of the emulated kernels;
  * get_plugin's failure handling (one warning, then None) and the ILSGAN_NO_CUDA_OPS switch.
With a CUDA GPU: the real plugins against torch_utils.ops.bias_act._bias_act_ref / upfirdn2d._upfirdn2d_ref.
"""
import concurrent.futures
import ctypes
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
import warnings

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if __name__ == '__main__':  # `python tests/test_cuda_ops.py` prints the compile-check commands
    sys.path.insert(0, ROOT)

from torch_utils import custom_ops  # noqa: E402
from torch_utils.ops import cuda_plugins  # noqa: E402
from torch_utils.ops.activations import activation_funcs  # noqa: E402

OPS_DIR = os.path.join(ROOT, 'torch_utils', 'ops')

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
GPU = 'cuda'  # device of the GPU tests (a dry run of their logic on the CPU may point it elsewhere)

ACTS = list(activation_funcs)
ACT_IDS = {a: spec.kernel_id for a, spec in activation_funcs.items()}

# (up, down, padding (px0, px1, py0, py1), filter shape (fh, fw) or (k,) for separable, flip, gain, input [N,C,H,W])
UPFIRDN_CONFIGS = [
    ((1, 1), (1, 1), (2, 1, 2, 1), (4, 4), False, 1.0, (2, 3, 37, 70)),     # filter2d        (tiled U1D1)
    ((2, 2), (1, 1), (2, 1, 2, 1), (4, 4), False, 4.0, (2, 3, 20, 35)),     # upsample2d      (tiled U2D1)
    ((1, 1), (2, 2), (1, 1, 1, 1), (4, 4), False, 1.0, (2, 3, 40, 67)),     # downsample2d    (tiled U1D2)
    ((1, 1), (1, 1), (-1, 3, 4, -2), (4, 4), True, 0.5, (1, 2, 33, 34)),    # crop + pad      (tiled U1D1)
    ((2, 2), (1, 1), (0, -3, 5, 2), (4,), False, 4.0, (1, 2, 17, 19)),      # separable 1-D   (tiled U2D1)
    ((1, 1), (2, 2), (3, -1, 0, 4), (4, 4), True, 2.0, (2, 1, 35, 9)),      # asym pads       (tiled U1D2)
    ((1, 1), (1, 1), (1, 2, 0, 3), (3, 5), False, 1.0, (2, 2, 11, 13)),     # generic
    ((2, 3), (1, 1), (1, 0, 2, -1), (2, 3), True, 6.0, (1, 3, 7, 9)),       # generic, anisotropic up
    ((1, 1), (3, 2), (2, 2, 1, 1), (5, 5), False, 1.0, (2, 2, 19, 17)),     # generic, anisotropic down
    ((2, 2), (2, 2), (1, 2, 1, 2), (4, 4), False, 4.0, (1, 2, 10, 12)),     # generic up + down
    ((1, 1), (1, 1), (0, 0, 0, 0), (1, 1), False, 3.0, (2, 2, 5, 6)),       # 1x1 filter
    ((3, 1), (1, 3), (-2, -2, -1, -3), (6, 2), True, 1.0, (1, 2, 12, 9)),   # generic, crops both sides
]


def _upfirdn_id(cfg):
    up, down, pad, fshape, flip, gain, shape = cfg
    return f'up{up[0]}x{up[1]}-down{down[0]}x{down[1]}-pad{"_".join(map(str, pad))}-f{"x".join(map(str, fshape))}' \
           f'{"-flip" if flip else ""}'


def _make_filter(fshape, gen, device='cpu'):
    f = torch.rand(fshape, generator=gen, dtype=torch.float64) + 0.1
    return (f / f.sum()).to(device=device, dtype=torch.float32)


def _refs():
    """The pure-PyTorch reference ops (imported lazily)."""
    try:
        from torch_utils.ops.bias_act import _bias_act_ref
        from torch_utils.ops.upfirdn2d import _upfirdn2d_ref
    except ImportError as exc:  # pragma: no cover - only while the references are being written
        pytest.skip(f'reference ops not importable yet: {exc}')
    return _bias_act_ref, _upfirdn2d_ref


def _ref_upfirdn(ref, x, f, up, down, pad, flip, gain):
    return ref(x, f, up=list(up), down=list(down), padding=list(pad), flip_filter=flip, gain=gain)


def _close(actual, expected, rtol, what=''):
    """|a - e| <= rtol * max(|e|.max(), 1) elementwise (relative to the tensor's scale)."""
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    actual = actual.detach().double().cpu()
    expected = expected.detach().double().cpu()
    assert torch.isfinite(actual).all(), f'{what}: non-finite values'
    scale = max(expected.abs().max().item(), 1.0)
    err = (actual - expected).abs().max().item()
    assert err <= rtol * scale, f'{what}: max abs error {err:.3g} > {rtol:g} * {scale:.3g}'


# ================================================================================================================
# Compile check of the real sources (no GPU needed).

def _find_nvcc():
    for cand in [os.environ.get('CUDA_HOME'), os.environ.get('CUDA_PATH')]:
        if cand and os.path.isfile(os.path.join(cand, 'bin', 'nvcc')):
            return os.path.join(cand, 'bin', 'nvcc')
    return shutil.which('nvcc') or (os.path.isfile('/usr/local/cuda/bin/nvcc') and '/usr/local/cuda/bin/nvcc') or None


def _cuda_include_dir(nvcc):
    """The toolkit's include directory, as nvcc itself sees it (nvcc may be a wrapper script)."""
    out = subprocess.run([nvcc, '--dryrun', '-c', '-x', 'cu', os.devnull, '-o', os.devnull],
                         capture_output=True, text=True).stderr
    m = re.search(r'^#\$ _HERE_=(.*)$', out, re.MULTILINE)
    if m:
        inc = os.path.join(os.path.dirname(m.group(1).strip()), 'include')
        if os.path.isfile(os.path.join(inc, 'cuda_runtime_api.h')):
            return inc
    inc = os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))), 'include')
    return inc


NVCC_FLAGS = [
    '-std=c++20', '-O3',
    # what torch.utils.cpp_extension adds for every .cu
    '-D__CUDA_NO_HALF_OPERATORS__', '-D__CUDA_NO_HALF_CONVERSIONS__', '-D__CUDA_NO_BFLOAT16_CONVERSIONS__',
    '-D__CUDA_NO_HALF2_OPERATORS__', '--expt-relaxed-constexpr',
    '-gencode', 'arch=compute_80,code=sm_80', '-gencode', 'arch=compute_90,code=sm_90',
    '-Xcompiler', '-fPIC,-Wall,-Wextra', '-Werror', 'all-warnings',
]


def compile_check_commands(out_dir):
    """The exact commands of the compile check (also printed by `python tests/test_cuda_ops.py`)."""
    from torch.utils import cpp_extension
    nvcc = _find_nvcc()
    cxx = shutil.which('g++') or shutil.which('c++')
    torch_inc = cpp_extension.include_paths()  # CPU torch: the CUDA headers of ATen/c10 are shipped anyway
    cuda_inc = _cuda_include_dir(nvcc)
    cxx_flags = ['-std=c++20', '-O0', '-fPIC', '-Wall', '-Wextra', '-Werror']  # -O0: same diagnostics, faster
    # A CPU-only torch wheel lacks the generated c10/cuda/impl/cuda_cmake_macros.h (it only defines the Windows
    # export macro C10_CUDA_BUILD_SHARED_LIBS); a CUDA wheel has it.
    if not any(os.path.isfile(os.path.join(p, 'c10', 'cuda', 'impl', 'cuda_cmake_macros.h')) for p in torch_inc):
        cxx_flags.append('-DC10_CUDA_NO_CMAKE_CONFIGURE_FILE')
    cxx_flags += [a for p in torch_inc + [cuda_inc] for a in ('-isystem', p)]
    cmds = []
    for name in ['bias_act', 'upfirdn2d']:
        cmds.append([nvcc, '-c', os.path.join(OPS_DIR, f'{name}_kernel.cu'), '-o',
                     os.path.join(out_dir, f'{name}_kernel.o')] + NVCC_FLAGS)
        cmds.append([cxx, '-c', os.path.join(OPS_DIR, f'{name}_plugin.cpp'), '-o',
                     os.path.join(out_dir, f'{name}_plugin.o')] + cxx_flags)
    return cmds


def _run_all(cmds):
    def run(cmd):
        t0 = time.time()
        r = subprocess.run(cmd, capture_output=True, text=True)
        return cmd, r, time.time() - t0
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(cmds)) as pool:
        return list(pool.map(run, cmds))


@pytest.mark.skipif(_find_nvcc() is None, reason='nvcc not found (CUDA toolkit not installed)')
@pytest.mark.skipif(shutil.which('g++') is None and shutil.which('c++') is None, reason='no host C++ compiler')
def test_compile_check(tmp_path):
    """Both plugins compile warning-free: nvcc (sm_80 + sm_90, torch's half flags) and g++ against torch's headers."""
    results = _run_all(compile_check_commands(str(tmp_path)))
    for cmd, r, secs in results:
        out = (r.stdout + r.stderr).strip()
        assert r.returncode == 0 and not out, f'{" ".join(cmd)}\n(exit {r.returncode}, {secs:.0f}s)\n{out}'
        assert os.path.getsize(cmd[cmd.index('-o') + 1]) > 0


def test_kernel_activation_ids_match_the_table():
    with open(os.path.join(OPS_DIR, 'bias_act_kernel.h'), encoding='utf-8') as f:
        enum = re.search(r'enum Act : int \{(.*?)\};', f.read(), re.S).group(1)
    ids = {name.lower(): int(i) for name, i in re.findall(r'k(\w+) = (\d+)', enum) if name != 'NumActs'}
    assert ids == ACT_IDS


def _quoted_includes(path):
    with open(path) as fh:
        return re.findall(r'^\s*#\s*include\s+"([^"]+)"', fh.read(), re.MULTILINE)


@pytest.mark.parametrize('name', ['bias_act', 'upfirdn2d'])
def test_plugin_headers_cover_includes(name):
    """get_plugin copies and hashes only the headers it is given: they must be every header the sources include."""
    listed = cuda_plugins.plugin_headers(name)
    todo, seen = [f'{name}_plugin.cpp', f'{name}_kernel.cu'], set()
    while todo:
        f = todo.pop()
        for inc in _quoted_includes(os.path.join(OPS_DIR, f)):
            if inc not in seen:
                seen.add(inc)
                todo.append(inc)
    assert seen == set(listed), (sorted(seen), listed)


# ================================================================================================================
# get_plugin failure handling and the ILSGAN_NO_CUDA_OPS switch (CPU).

@pytest.fixture
def plugin_cache(tmp_path, monkeypatch):
    cache = tmp_path / 'cache'
    monkeypatch.setenv('ILSGAN_CUDA_OPS_CACHE', str(cache))
    monkeypatch.delenv('ILSGAN_NO_CUDA_OPS', raising=False)
    monkeypatch.delenv('ILSGAN_CUDA_OPS_VERBOSE', raising=False)
    return cache


def _fallback_warnings(record):
    return [w for w in record if 'Falling back to the pure-PyTorch implementation' in str(w.message)]


def test_get_plugin_broken_source_warns_once(tmp_path, plugin_cache):
    src = tmp_path / 'broken_plugin.cpp'
    src.write_text('this is not C++ at all;\n')
    name = f'ilsgan_test_broken_{uuid.uuid4().hex[:8]}_plugin'
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter('always')
        assert custom_ops.get_plugin(name, [str(src)]) is None
        assert custom_ops.get_plugin(name, [str(src)]) is None  # failure remembered: no retry, no 2nd warning
        assert custom_ops.get_plugin(name, ['broken_plugin.cpp'], source_dir=str(tmp_path)) is None
    msgs = [str(w.message) for w in _fallback_warnings(record)]
    assert len(msgs) == 1, msgs
    op = name[:-len('_plugin')]
    assert msgs[0].startswith(f'Falling back to the pure-PyTorch implementation of {op}: ')
    assert '\n' not in msgs[0]


def test_get_plugin_missing_source_warns_once(tmp_path, plugin_cache):
    name = f'ilsgan_test_missing_{uuid.uuid4().hex[:8]}'
    with pytest.warns(RuntimeWarning, match='Falling back to the pure-PyTorch implementation of ilsgan_test_missing'):
        assert custom_ops.get_plugin(name, [str(tmp_path / 'nope.cpp')]) is None


@pytest.mark.skipif(shutil.which('c++') is None and shutil.which('g++') is None, reason='no host C++ compiler')
def test_get_plugin_builds_caches_and_rebuilds_on_edit(tmp_path, plugin_cache):
    from torch.utils import cpp_extension
    if not cpp_extension.is_ninja_available():
        pytest.skip('ninja is not installed')
    src = tmp_path / 'answer_plugin.cpp'
    src.write_text('extern "C" int ilsgan_test_answer() { return 42; }\n')
    name = f'ilsgan_test_ok_{uuid.uuid4().hex[:8]}'
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter('always')
        lib = custom_ops.get_plugin(name, [str(src)], is_python_module=False)
        assert lib is not None and custom_ops.get_plugin(name, [str(src)], is_python_module=False) is lib
    assert not _fallback_warnings(record)
    assert ctypes.CDLL(lib).ilsgan_test_answer() == 42
    builds = [d for d in os.listdir(plugin_cache) if d.startswith(name)]
    assert len(builds) == 1
    # An edited source hashes to a new build directory (checked without loading it into this process).
    digest = custom_ops._digest([str(src)], {'is_python_module': False}, False)
    src.write_text('extern "C" int ilsgan_test_answer() { return 43; }\n')
    assert custom_ops._digest([str(src)], {'is_python_module': False}, False) != digest
    assert builds[0].endswith(digest)


def test_no_cuda_ops_switch(tmp_path, plugin_cache, monkeypatch):
    monkeypatch.setenv('ILSGAN_NO_CUDA_OPS', '1')
    assert custom_ops.plugins_disabled()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter('always')
        # Would warn (missing file) if a build were attempted.
        assert custom_ops.get_plugin(f'ilsgan_test_off_{uuid.uuid4().hex[:8]}', [str(tmp_path / 'x.cu')]) is None
        assert cuda_plugins.is_available() is False
        x = torch.zeros(2, 3)
        assert cuda_plugins.bias_act_cuda(x, None, 1, 'relu', 0.0, 1.0, -1.0) is None
        assert cuda_plugins.upfirdn2d_cuda(x[None, None], torch.ones(2, 2), (1, 1), (1, 1), (0, 0, 0, 0), False, 1.0) \
            is None
    assert not _fallback_warnings(record)
    assert not os.path.exists(plugin_cache)
    monkeypatch.setenv('ILSGAN_NO_CUDA_OPS', '0')
    assert not custom_ops.plugins_disabled()


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the behaviour without CUDA')
def test_unavailable_without_cuda():
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter('always')
        assert cuda_plugins.is_available() is False
        x = torch.randn(2, 3, 4, 4)
        assert cuda_plugins.bias_act_cuda(x, torch.zeros(3), 1, 'lrelu', 0.2, 2 ** 0.5, -1.0) is None
        assert cuda_plugins.upfirdn2d_cuda(x, torch.ones(4), (2, 2), (1, 1), (2, 1, 2, 1), False, 4.0) is None
    assert not _fallback_warnings(record)  # CPU tensors never try to build anything


# ================================================================================================================
# Host emulation of the kernels (g++), shared by the kernel-level and the glue tests.

_HARNESS = r'''
// Host emulation of the CUDA kernels of torch_utils/ops (generated by tests/test_cuda_ops.py).
#include <cstdint>
#include <limits>
#include <vector>

#include "bias_act_kernel.h"
#include "upfirdn2d_kernel.h"

using namespace ilsgan;

template <typename T>
static int ba_act(const bias_act::Params& p) {
    if (p.act < 0 || p.act >= bias_act::kNumActs) return 1;
    for (int64_t i = 0; i < p.numel; i++) {  // every index of the grid-stride loop, once
        switch (p.mode) {
            case 0: bias_act::bias_act_element_any<T, 0>(p, i); break;
            case 1: bias_act::bias_act_element_any<T, 1>(p, i); break;
            case 2: bias_act::bias_act_element_any<T, 2>(p, i); break;
            default: return 1;
        }
    }
    return 0;
}

extern "C" int emu_bias_act(int dtype, const void* x, const void* b, const void* xref, const void* yref,
                            const void* dy, void* out, int64_t numel, int64_t bias_stride, int64_t bias_size,
                            int act, int mode, float alpha, float gain, float clamp) {
    bias_act::Params p;
    p.x = x; p.b = b; p.xref = xref; p.yref = yref; p.dy = dy; p.out = out;
    p.numel = numel; p.bias_stride = bias_stride; p.bias_size = bias_size;
    p.act = act; p.mode = mode; p.alpha = alpha; p.gain = gain; p.clamp = clamp;
    if (dtype == 0) return ba_act<float>(p);
    if (dtype == 1) return ba_act<double>(p);
    return 1;
}

template <typename T>
static void up_generic(const upfirdn2d::Params& p) {
    const int64_t total = upfirdn2d::generic_work(p);
    for (int64_t i = 0; i < total; i++)
        upfirdn2d::generic_pixel<T>(p, i);
}

// The tiled kernel block by block, thread by thread, phase by phase (phases = the code between __syncthreads).
// Shared memory is surrounded by NaN guards and reset to NaN per block so that stray reads show up.
template <class Cfg, typename T>
static void up_tiled(const upfirdn2d::Params& p) {
    typedef typename Cvt<T>::acc_t A;
    const int nthreads = upfirdn2d::kTiledThreads;
    const upfirdn2d::TileGrid g = upfirdn2d::tiled_grid<Cfg>(p);
    const int64_t gz = g.images < 65535 ? g.images : 65535;
    const int guard = 256;
    const A nan = std::numeric_limits<A>::quiet_NaN();
    std::vector<A> sx_buf(Cfg::kInH * Cfg::kInW + 2 * guard, nan);
    std::vector<float> sf_buf(Cfg::kTaps * Cfg::kTaps + 2 * guard, std::numeric_limits<float>::quiet_NaN());
    A* sx = sx_buf.data() + guard;
    float* sf = sf_buf.data() + guard;
    for (int64_t bz = 0; bz < gz; bz++)
        for (int by = 0; by < g.tiles_y; by++)
            for (int bx = 0; bx < g.tiles_x; bx++) {
                for (int k = 0; k < Cfg::kInH * Cfg::kInW; k++) sx[k] = nan;
                for (int t = 0; t < nthreads; t++) upfirdn2d::tile_load_filter<Cfg>(p, sf, t, nthreads);
                const upfirdn2d::TileOrigin o = upfirdn2d::tile_origin<Cfg>(p, bx, by);
                for (int64_t nc = bz; nc < g.images; nc += gz) {
                    const int n = static_cast<int>(nc / p.C), c = static_cast<int>(nc % p.C);
                    for (int t = 0; t < nthreads; t++) upfirdn2d::tile_load_input<Cfg, T>(p, o, n, c, sx, t, nthreads);
                    for (int t = 0; t < nthreads; t++) upfirdn2d::tile_compute<Cfg, T>(p, o, n, c, sx, sf, t, nthreads);
                }
            }
}

template <typename T>
static int up_typed(const upfirdn2d::Params& p, int impl) {
    const int cfg = impl == upfirdn2d::kGeneric ? static_cast<int>(upfirdn2d::kTileNone) : upfirdn2d::tiled_config(p);
    if (impl == upfirdn2d::kTiled && cfg == upfirdn2d::kTileNone) return 2;
    switch (cfg) {
        case upfirdn2d::kTileU1D1K4: up_tiled<upfirdn2d::TileUp1Down1K4, T>(p); return 0;
        case upfirdn2d::kTileU2D1K4: up_tiled<upfirdn2d::TileUp2Down1K4, T>(p); return 0;
        case upfirdn2d::kTileU1D2K4: up_tiled<upfirdn2d::TileUp1Down2K4, T>(p); return 0;
        default: up_generic<T>(p); return 0;
    }
}

// v: N C H W OH OW fh fw upx upy downx downy padx0 padx1 pady0 pady1 flip c_fastest
// s: sx_n sx_c sx_h sx_w sy_n sy_c sy_h sy_w
extern "C" int emu_upfirdn2d(int dtype, int impl, const void* x, const float* f, void* y, const int* v,
                             const int64_t* s, float gain) {
    upfirdn2d::Params p;
    p.x = x; p.f = f; p.y = y;
    p.N = v[0]; p.C = v[1]; p.H = v[2]; p.W = v[3]; p.OH = v[4]; p.OW = v[5]; p.fh = v[6]; p.fw = v[7];
    p.upx = v[8]; p.upy = v[9]; p.downx = v[10]; p.downy = v[11];
    p.padx0 = v[12]; p.padx1 = v[13]; p.pady0 = v[14]; p.pady1 = v[15]; p.flip_filter = v[16]; p.c_fastest = v[17];
    p.sx_n = s[0]; p.sx_c = s[1]; p.sx_h = s[2]; p.sx_w = s[3];
    p.sy_n = s[4]; p.sy_c = s[5]; p.sy_h = s[6]; p.sy_w = s[7];
    p.gain = gain;
    if (dtype == 0) return up_typed<float>(p, impl);
    if (dtype == 1) return up_typed<double>(p, impl);
    return 1;
}

// The launchers of the .cu files, emulated: linked with the real *_plugin.cpp built with -DILSGAN_HOST_EMULATION.
namespace ilsgan {
namespace bias_act {
int launch_bias_act(const Params& p, int dtype, void*) {
    if (dtype == kFloat32) return ba_act<float>(p);
    if (dtype == kFloat64) return ba_act<double>(p);
    return 1;
}
}  // namespace bias_act
namespace upfirdn2d {
int launch_upfirdn2d(const Params& p, int dtype, int impl, void*) {
    if (dtype == kFloat32) return up_typed<float>(p, impl);
    if (dtype == kFloat64) return up_typed<double>(p, impl);
    return 1;
}
}  // namespace upfirdn2d
}  // namespace ilsgan
'''


def _dense(t):
    return t.is_contiguous() or (t.ndim == 4 and t.is_contiguous(memory_format=torch.channels_last))


def _same_layout(a, b):
    return a.shape == b.shape and all(a.stride(d) == b.stride(d) for d in range(a.ndim) if a.shape[d] > 1)


class EmuOps:
    """Drop-in for the two dispatcher ops (same arguments, same host-side logic as the .cpp), running the kernel
    bodies on the CPU. Supports float32 and float64."""

    def __init__(self, lib_path):
        self.lib = ctypes.CDLL(lib_path)
        self.lib.emu_bias_act.argtypes = [ctypes.c_int] + [ctypes.c_void_p] * 6 + [ctypes.c_int64] * 3 + \
            [ctypes.c_int, ctypes.c_int, ctypes.c_float, ctypes.c_float, ctypes.c_float]
        self.lib.emu_upfirdn2d.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                           ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_float]
        self.calls = {'bias_act': 0, 'upfirdn2d': 0}

    @staticmethod
    def _code(dtype):
        return {torch.float32: 0, torch.float64: 1}[dtype]

    def bias_act(self, x, b, xref, yref, dy, mode, dim, act, alpha, gain, clamp):
        self.calls['bias_act'] += 1
        assert x.device.type == 'cpu'
        x = x.detach()
        if not _dense(x):
            x = x.contiguous()

        def operand(t):
            if t is None:
                return None
            t = t.detach()
            assert t.shape == x.shape and t.dtype == x.dtype
            if _same_layout(t, x):
                return t
            return torch.empty_like(x).copy_(t)

        xref, yref, dy = operand(xref), operand(yref), operand(dy)
        if b is not None:
            b = b.detach().contiguous()
            assert b.dtype == x.dtype and b.ndim == 1 and b.shape[0] == x.shape[dim]
        if mode != 0:
            assert xref is not None or yref is not None or (act == 0 and clamp < 0)
            assert xref is not None or act != ACT_IDS['swish']
        out = torch.empty_like(x)
        ptr = lambda t: None if t is None else t.data_ptr()  # noqa: E731
        rc = self.lib.emu_bias_act(self._code(x.dtype), ptr(x), ptr(b), ptr(xref), ptr(yref), ptr(dy), ptr(out),
                                   x.numel(), x.stride(dim) if b is not None else 1,
                                   x.shape[dim] if b is not None else 0, act, mode, alpha, gain, clamp)
        assert rc == 0
        return out

    def upfirdn2d(self, x, f, upx, upy, downx, downy, padx0, padx1, pady0, pady1, flip, gain, impl):
        self.calls['upfirdn2d'] += 1
        x = x.detach()
        f = f.detach().contiguous()
        assert f.dtype == torch.float32 and f.ndim == 2
        n, c, h, w = x.shape
        fh, fw = f.shape
        oh = (h * upy + pady0 + pady1 - fh) // downy + 1
        ow = (w * upx + padx0 + padx1 - fw) // downx + 1
        assert oh >= 1 and ow >= 1
        fmt = torch.channels_last if (x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()) \
            else torch.contiguous_format
        y = torch.empty([n, c, oh, ow], dtype=x.dtype, memory_format=fmt)
        v = (ctypes.c_int * 18)(n, c, h, w, oh, ow, fh, fw, upx, upy, downx, downy, padx0, padx1, pady0, pady1,
                                int(flip), int(c > 1 and y.stride(1) == 1))
        s = (ctypes.c_int64 * 8)(*x.stride(), *y.stride())
        rc = self.lib.emu_upfirdn2d(self._code(x.dtype), impl, x.data_ptr(), f.data_ptr(), y.data_ptr(), v, s, gain)
        assert rc == 0, f'emu_upfirdn2d returned {rc}'
        return y


@pytest.fixture(scope='session')
def emu(tmp_path_factory):
    cxx = shutil.which('g++') or shutil.which('c++')
    if cxx is None:
        pytest.skip('no host C++ compiler for the kernel emulation')
    d = tmp_path_factory.mktemp('emu')
    (d / 'harness.cpp').write_text(_HARNESS)
    lib = str(d / 'emu.so')
    cmd = [cxx, '-O2', '-std=c++17', '-shared', '-fPIC', '-Wall', '-Wextra', '-Werror', '-I', OPS_DIR,
           str(d / 'harness.cpp'), '-o', lib]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return EmuOps(lib)


@pytest.fixture(scope='session')
def emu_plugin_ops(tmp_path_factory):
    """The real *_plugin.cpp glue built by custom_ops.get_plugin with -DILSGAN_HOST_EMULATION, linked with the
    emulated launchers: torch.ops.ilsgan_<op>_emu.<op> on CPU tensors."""
    from torch.utils import cpp_extension
    if not cpp_extension.is_ninja_available():
        pytest.skip('ninja is not installed')
    d = tmp_path_factory.mktemp('emu_plugin')
    harness = d / 'emu_harness.cpp'
    harness.write_text(_HARNESS)
    # The harness includes both kernel headers.
    names = dict.fromkeys(cuda_plugins.plugin_headers('bias_act') + cuda_plugins.plugin_headers('upfirdn2d'))
    headers = [os.path.join(OPS_DIR, h) for h in names]
    old_cache = os.environ.get('ILSGAN_CUDA_OPS_CACHE')
    os.environ['ILSGAN_CUDA_OPS_CACHE'] = str(d / 'cache')
    ops = {}
    try:
        for name in ['bias_act', 'upfirdn2d']:
            with warnings.catch_warnings(record=True) as record:
                warnings.simplefilter('always')
                lib = custom_ops.get_plugin(f'ilsgan_emu_{name}_plugin',
                                            [os.path.join(OPS_DIR, f'{name}_plugin.cpp'), str(harness)], headers,
                                            is_python_module=False, with_cuda=False,
                                            extra_cflags=['-DILSGAN_HOST_EMULATION', '-O1'])
            assert lib is not None, [str(w.message) for w in record]
            ops[name] = getattr(getattr(torch.ops, f'ilsgan_{name}_emu'), name)
    finally:
        if old_cache is None:
            os.environ.pop('ILSGAN_CUDA_OPS_CACHE', None)
        else:
            os.environ['ILSGAN_CUDA_OPS_CACHE'] = old_cache
    return ops


class EmuGlue:
    """cuda_plugins' autograd glue over emulated kernels, on CPU tensors: bias_act_cuda / upfirdn2d_cuda there."""

    def __init__(self, ops):
        self.ops = ops

    def bias_act(self, *args):
        return cuda_plugins.bias_act_glue(lambda: self.ops['bias_act'], *args)

    def upfirdn2d(self, *args, **kwargs):
        return cuda_plugins.upfirdn2d_glue(lambda: self.ops['upfirdn2d'], *args, **kwargs)


@pytest.fixture(params=['mirror', pytest.param('plugin', marks=pytest.mark.slow)])
def emu_glue(request, emu):
    """The glue over the emulated kernels, either via EmuOps (a Python mirror of the host glue) or via the real
    *_plugin.cpp compiled in host-emulation mode (slow: builds against torch)."""
    if request.param == 'mirror':
        return EmuGlue({'bias_act': emu.bias_act, 'upfirdn2d': emu.upfirdn2d})
    return EmuGlue(request.getfixturevalue('emu_plugin_ops'))


# ------------------------------------------------------------------------------------------------------------
# Kernel-level checks (the raw op modes against autograd of the reference).

def _ref_derivatives(ref, x, b, dim, act, alpha, gain, clamp, dy, ddx):
    """y, dx = dL/dx for L = <y, dy>, and d<dx, ddx>/dx, all from the reference via autograd."""
    x = x.detach().requires_grad_(True)
    y = ref(x, b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp)
    dx, = torch.autograd.grad(y, x, dy, create_graph=True)
    if dx.requires_grad:
        d2, = torch.autograd.grad(dx, x, ddx, allow_unused=True)
    else:
        d2 = None
    return y.detach(), dx.detach(), (torch.zeros_like(x) if d2 is None else d2)


@pytest.mark.parametrize('clamp', [-1.0, 0.5])
@pytest.mark.parametrize('act', ACTS)
def test_emu_bias_act_kernel_modes(emu, act, clamp):
    bias_act_ref, _ = _refs()
    gen = torch.Generator().manual_seed(ACT_IDS[act] * 7 + int(clamp > 0))
    alpha, gain = activation_funcs[act].def_alpha, activation_funcs[act].def_gain
    for dtype, rtol in [(torch.float64, 1e-6), (torch.float32, 1e-4)]:
        x = torch.randn(3, 5, 4, 6, generator=gen, dtype=torch.float64).to(dtype)
        b = torch.randn(4, generator=gen, dtype=torch.float64).to(dtype)
        dim = 2
        dy = torch.randn(x.shape, generator=gen, dtype=torch.float64).to(dtype)
        ddx = torch.randn(x.shape, generator=gen, dtype=torch.float64).to(dtype)
        y_ref, dx_ref, d2_ref = _ref_derivatives(bias_act_ref, x.double(), b.double(), dim, act, alpha, gain, clamp,
                                                 dy.double(), ddx.double())
        a = dict(dim=dim, act=ACT_IDS[act], alpha=alpha, gain=gain, clamp=clamp)
        y = emu.bias_act(x, b, None, None, None, 0, **a)
        _close(y, y_ref, rtol, f'{act} {dtype} forward')
        # First derivative from x (+b), from y, and from both.
        ref_sets = [('xref', x, None), ('xref+yref', x, y)]
        if act != 'swish':
            ref_sets.append(('yref', None, y))
        for label, xr, yr in ref_sets:
            dx = emu.bias_act(dy, b, xr, yr, None, 1, **a)
            _close(dx, dx_ref, rtol, f'{act} {dtype} grad1 from {label}')
            if activation_funcs[act].has_2nd_grad:
                d2 = emu.bias_act(ddx, b, xr, yr, dy, 2, **a)
                _close(d2, d2_ref, rtol * 10, f'{act} {dtype} grad2 from {label}')
            else:
                assert d2_ref.abs().max() == 0


def test_emu_bias_act_kernel_layouts(emu):
    """Bias along every dim, 1-D and channels-last inputs, linear without saved tensors, gain 0."""
    bias_act_ref, _ = _refs()
    gen = torch.Generator().manual_seed(3)
    x4 = torch.randn(2, 3, 5, 4, generator=gen, dtype=torch.float64)
    for x in [x4, x4.contiguous(memory_format=torch.channels_last), x4.permute(3, 1, 0, 2).contiguous()]:
        for dim in range(4):
            b = torch.randn(x.shape[dim], generator=gen, dtype=torch.float64)
            y = emu.bias_act(x, b, None, None, None, 0, dim, ACT_IDS['lrelu'], 0.2, 1.5, -1.0)
            assert y.stride() == x.stride()
            _close(y, bias_act_ref(x, b, dim=dim, act='lrelu', alpha=0.2, gain=1.5), 1e-6, f'dim {dim}')
    x1 = torch.randn(7, generator=gen, dtype=torch.float64)
    b1 = torch.randn(7, generator=gen, dtype=torch.float64)
    _close(emu.bias_act(x1, b1, None, None, None, 0, 0, ACT_IDS['tanh'], 0.0, 1.0, -1.0), torch.tanh(x1 + b1), 1e-6)
    dy = torch.randn(x4.shape, generator=gen, dtype=torch.float64)
    _close(emu.bias_act(dy, None, None, None, None, 1, 1, ACT_IDS['linear'], 0.0, 3.0, -1.0), dy * 3, 1e-6)
    y = emu.bias_act(x4, None, None, None, None, 0, 1, ACT_IDS['tanh'], 0.0, 0.0, -1.0)
    assert (emu.bias_act(dy, None, None, y, None, 1, 1, ACT_IDS['tanh'], 0.0, 0.0, -1.0) == 0).all()


@pytest.mark.parametrize('cfg', UPFIRDN_CONFIGS, ids=_upfirdn_id)
def test_emu_upfirdn2d_kernels(emu, cfg):
    _, upfirdn2d_ref = _refs()
    up, down, pad, fshape, flip, gain, shape = cfg
    gen = torch.Generator().manual_seed(sum(shape) + sum(pad))
    f = _make_filter(fshape, gen)
    f2 = torch.outer(f, f) if f.ndim == 1 else f
    tileable = up[0] == up[1] and down[0] == down[1] and f2.shape == (4, 4) and (up[0], down[0]) in \
        [(1, 1), (2, 1), (1, 2)]
    for dtype, rtol in [(torch.float64, 1e-6), (torch.float32, 1e-5)]:
        x = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
        y_ref = _ref_upfirdn(upfirdn2d_ref, x.double(), f, up, down, pad, flip, gain)
        big = torch.zeros(shape[0], shape[1], shape[2] * 2, shape[3] * 3, dtype=dtype)
        big[:, :, ::2, ::3] = x
        layouts = {'contiguous': x, 'channels_last': x.contiguous(memory_format=torch.channels_last),
                   'transposed': x.transpose(2, 3).contiguous().transpose(2, 3), 'sliced': big[:, :, ::2, ::3]}
        impls = [cuda_plugins.IMPL_GENERIC, cuda_plugins.IMPL_AUTO] + ([cuda_plugins.IMPL_TILED] if tileable else [])
        for layout, xin in layouts.items():
            assert torch.equal(xin, x)
            for impl in impls:
                y = emu.upfirdn2d(xin, f2, *up, *down, *pad, flip, gain, impl)
                _close(y, y_ref, rtol, f'{dtype} impl {impl} {layout}')


def test_emu_upfirdn2d_many_images_and_tiles(emu):
    """More images than one grid z-slice would take in one go is not testable cheaply; at least exercise several
    tiles in both axes with partial edge tiles, for every tiled configuration."""
    _, upfirdn2d_ref = _refs()
    gen = torch.Generator().manual_seed(11)
    f = _make_filter((4, 4), gen)
    for up, down, pad in [((1, 1), (1, 1), (2, 1, 2, 1)), ((2, 2), (1, 1), (2, 1, 2, 1)),
                          ((1, 1), (2, 2), (1, 1, 1, 1))]:
        x = torch.randn(3, 2, 75, 97, generator=gen, dtype=torch.float64)
        y = emu.upfirdn2d(x, f, *up, *down, *pad, False, 1.0, cuda_plugins.IMPL_TILED)
        _close(y, _ref_upfirdn(upfirdn2d_ref, x, f, up, down, pad, False, 1.0), 1e-6, f'up {up} down {down}')


# ------------------------------------------------------------------------------------------------------------
# The autograd glue on the CPU (cuda_plugins.*_glue with the emulated kernels) against the references.

@pytest.mark.parametrize('clamp', [-1.0, 0.5])
@pytest.mark.parametrize('act', ACTS)
def test_glue_bias_act_derivatives(emu_glue, act, clamp):
    bias_act_ref, _ = _refs()
    gen = torch.Generator().manual_seed(100 + ACT_IDS[act])
    alpha, gain = activation_funcs[act].def_alpha, activation_funcs[act].def_gain
    for dim, shape in [(1, (2, 6, 3, 5)), (0, (4, 3)), (3, (2, 3, 4, 5))]:
        x0 = torch.randn(shape, generator=gen, dtype=torch.float64)
        b0 = torch.randn(shape[dim], generator=gen, dtype=torch.float64)
        dy0 = torch.randn(shape, generator=gen, dtype=torch.float64)
        results = []
        for fn in [emu_glue.bias_act, bias_act_ref]:
            x, b, dy = (t.clone().requires_grad_(True) for t in (x0, b0, dy0))
            y = fn(x, b, dim, act, alpha, gain, clamp)
            assert y is not None
            dx, db = torch.autograd.grad(y, [x, b], dy, create_graph=True)
            # Second order: gradient of a scalar function of the first-order gradients (like R1's penalty).
            loss2 = (dx.square() * torch.linspace(0.5, 1.5, dx.numel(), dtype=dx.dtype).reshape(dx.shape)).sum() \
                + (db * 0.3).sum()
            inputs = [x, b, dy]
            grads2 = torch.autograd.grad(loss2, inputs, allow_unused=True)
            grads2 = [torch.zeros_like(t) if g is None else g for g, t in zip(grads2, inputs)]
            results.append([y, dx, db] + grads2)
        names = ['y', 'dx', 'db', 'd2/dx', 'd2/db', 'd2/ddy']
        for name, a, e in zip(names, results[0], results[1]):
            _close(a, e, 1e-5, f'{act} clamp={clamp} dim={dim} {name}')


def test_glue_bias_act_gradcheck(emu_glue):
    gen = torch.Generator().manual_seed(5)
    for act, clamp in [('tanh', -1.0), ('swish', 0.7), ('lrelu', -1.0), ('softplus', -1.0), ('elu', 0.9)]:
        x = torch.randn(2, 3, 4, generator=gen, dtype=torch.float64, requires_grad=True)
        b = torch.randn(3, generator=gen, dtype=torch.float64, requires_grad=True)
        fn = lambda x, b: emu_glue.bias_act(x, b, 1, act, 0.2, 1.3, clamp)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x, b), eps=1e-6, atol=1e-5)
        assert torch.autograd.gradgradcheck(fn, (x, b), eps=1e-6, atol=1e-5)


def test_glue_bias_act_misc(emu_glue):
    bias_act_ref, _ = _refs()
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(2, 4, 3, 3, generator=gen, dtype=torch.float64)
    # No bias, negative dim, defaults resolved from None, non-contiguous input, dtype of b converted.
    xt = x.transpose(1, 3)
    y = emu_glue.bias_act(xt, None, -1, 'lrelu', None, None, None)
    _close(y, bias_act_ref(xt, None, dim=3, act='lrelu'), 1e-6)
    b32 = torch.randn(4, generator=gen)
    y = emu_glue.bias_act(x, b32, 1, 'relu', 0.0, 2 ** 0.5, -1.0)
    _close(y, bias_act_ref(x, b32.double(), dim=1, act='relu'), 1e-6)
    # Mixed dtypes promote like the reference's x + b.
    y = emu_glue.bias_act(x.float(), b32.double(), 1, 'relu', 0.0, 2 ** 0.5, -1.0)
    assert y.dtype == bias_act_ref(x.float(), b32.double(), dim=1, act='relu').dtype == torch.float64
    # Unsupported requests fall back (None): unknown act, int dtype, bias of the wrong size.
    assert emu_glue.bias_act(x, None, 1, 'gelu', 0.0, 1.0, -1.0) is None
    assert emu_glue.bias_act(x.long(), None, 1, 'relu', 0.0, 1.0, -1.0) is None
    assert emu_glue.bias_act(x, torch.zeros(3, dtype=x.dtype), 1, 'relu', 0.0, 1.0, -1.0) is None
    # Only b requires grad; x not.
    b = torch.randn(4, generator=gen, dtype=torch.float64, requires_grad=True)
    db, = torch.autograd.grad(emu_glue.bias_act(x, b, 1, 'tanh', 0.0, 1.0, -1.0).sum(), b)
    db_ref, = torch.autograd.grad(bias_act_ref(x, b, dim=1, act='tanh').sum(), b)
    _close(db, db_ref, 1e-6)


@pytest.mark.parametrize('cfg', UPFIRDN_CONFIGS, ids=_upfirdn_id)
def test_glue_upfirdn2d_derivatives(emu_glue, cfg):
    _, upfirdn2d_ref = _refs()
    up, down, pad, fshape, flip, gain, shape = cfg
    gen = torch.Generator().manual_seed(7 + sum(shape))
    f = _make_filter(fshape, gen)
    x0 = torch.randn(shape, generator=gen, dtype=torch.float64)
    results = []
    for fn in [lambda x: emu_glue.upfirdn2d(x, f, up, down, pad, flip, gain),
               lambda x: _ref_upfirdn(upfirdn2d_ref, x, f, up, down, pad, flip, gain)]:
        x = x0.clone().requires_grad_(True)
        y = fn(x)
        assert y is not None
        dy = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).reshape(y.shape).requires_grad_(True)
        dx, = torch.autograd.grad(y, x, dy, create_graph=True)
        d_dy, = torch.autograd.grad((dx * x0.cos()).sum(), dy)   # through the backward op (double backward)
        results.append([y, dx, d_dy])
    for name, a, e in zip(['y', 'dx', 'd2/ddy'], *results):
        _close(a, e, 1e-6, f'{_upfirdn_id(cfg)} {name}')


def test_glue_upfirdn2d_gradcheck(emu_glue):
    gen = torch.Generator().manual_seed(1)
    f = _make_filter((4, 4), gen)
    x = torch.randn(1, 2, 6, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    for up, down, pad in [((2, 2), (1, 1), (2, 1, 2, 1)), ((1, 1), (2, 2), (1, 1, 1, 1)),
                          ((1, 2), (2, 1), (0, 3, 1, -1))]:
        fn = lambda x: emu_glue.upfirdn2d(x, f, up, down, pad, False, 2.0)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-6)
        assert torch.autograd.gradgradcheck(fn, (x,), eps=1e-6, atol=1e-6)


def test_glue_upfirdn2d_misc(emu_glue):
    _, upfirdn2d_ref = _refs()
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64)
    # f None = identity; int scaling/padding accepted; filter needing grad or 3-D input -> fall back (None).
    _close(emu_glue.upfirdn2d(x, None, 1, 1, 0, False, 1.0), x, 1e-12)
    assert emu_glue.upfirdn2d(x, torch.ones(2, 2, requires_grad=True), 1, 1, 0, False, 1.0) is None
    assert emu_glue.upfirdn2d(x[0], torch.ones(2, 2), 1, 1, 0, False, 1.0) is None
    # Channels-last input gives a channels-last output with the right values.
    xcl = x.contiguous(memory_format=torch.channels_last)
    f = torch.ones(4, 4) / 16
    y = emu_glue.upfirdn2d(xcl, f, (2, 2), (1, 1), (2, 1, 2, 1), False, 4.0)
    assert y.is_contiguous(memory_format=torch.channels_last)
    _close(y, _ref_upfirdn(upfirdn2d_ref, x, f, (2, 2), (1, 1), (2, 1, 2, 1), False, 4.0), 1e-6)


# ================================================================================================================
# GPU: the real plugins against the references.

def _gpu_tol(dtype):
    return {torch.float32: 1e-3, torch.float16: 1e-2, torch.bfloat16: 5e-2, torch.float64: 1e-6}[dtype]


@needs_gpu
def test_gpu_plugins_build():
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter('always')
        ok = cuda_plugins.is_available()
    assert ok, [str(w.message) for w in _fallback_warnings(record)] or 'plugins unavailable'


@needs_gpu
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16])
@pytest.mark.parametrize('clamp', [-1.0, 0.5])
@pytest.mark.parametrize('act', ACTS)
def test_gpu_bias_act(act, clamp, dtype):
    bias_act_ref, _ = _refs()
    assert cuda_plugins.is_available()
    gen = torch.Generator().manual_seed(ACT_IDS[act])
    alpha, gain = activation_funcs[act].def_alpha, activation_funcs[act].def_gain
    tol = _gpu_tol(dtype)
    for dim, shape in [(1, (4, 16, 9, 7)), (0, (33, 5)), (3, (2, 3, 5, 8))]:
        x0 = torch.randn(shape, generator=gen).to(GPU, dtype)
        b0 = torch.randn(shape[dim], generator=gen).to(GPU, dtype)
        dy0 = torch.randn(shape, generator=gen).to(GPU, dtype)
        # Elements whose output lies within rounding distance of the clamp may be clamped in one precision and
        # not the other (and at |y| == clamp torch.clamp passes the gradient, the kernel does not): give them no
        # upstream gradient and leave them out of the elementwise comparisons.
        near = torch.zeros(shape, dtype=torch.bool, device=GPU)
        if clamp >= 0:
            pre = bias_act_ref(x0.float(), b0.float(), dim=dim, act=act, alpha=alpha, gain=gain)
            near = (pre.abs() - clamp).abs() < 0.02 * clamp
            dy0 = dy0.masked_fill(near, 0)
        results = []
        # The reference runs in float32 on the same (rounded) inputs: the ground truth for fp16 too.
        for fn, cast in [(cuda_plugins.bias_act_cuda, dtype), (bias_act_ref, torch.float32)]:
            x, b, dy = (t.to(cast).clone().requires_grad_(True) for t in (x0, b0, dy0))
            y = fn(x, b, dim, act, alpha, gain, clamp)
            assert y is not None and y.dtype == cast
            dx, db = torch.autograd.grad(y, [x, b], dy, create_graph=True)
            w = torch.linspace(0.5, 1.5, dx.numel(), device=GPU, dtype=cast).reshape(dx.shape)
            loss2 = (dx.float().square() * w.float()).sum() + (db.float() * 0.3).sum()
            inputs = [x, b, dy]
            grads2 = torch.autograd.grad(loss2, inputs, allow_unused=True)
            grads2 = [torch.zeros_like(t) if g is None else g for g, t in zip(grads2, inputs)]
            results.append([y, dx, db] + grads2)
        for name, a, e in zip(['y', 'dx', 'db', 'd2/dx', 'd2/db', 'd2/ddy'], *results):
            if a.shape == near.shape:
                a, e = a.masked_fill(near, 0), e.masked_fill(near, 0)
            _close(a, e, tol if name != 'db' else tol * 4, f'{act} clamp={clamp} {dtype} dim={dim} {name}')


@needs_gpu
def test_gpu_bias_act_layouts_and_bf16():
    bias_act_ref, _ = _refs()
    assert cuda_plugins.is_available()
    x = torch.randn(2, 8, 5, 6, device=GPU)
    b = torch.randn(8, device=GPU)
    for xin in [x.contiguous(memory_format=torch.channels_last), x.transpose(2, 3), x[:, :, ::2]]:
        y = cuda_plugins.bias_act_cuda(xin, b, 1, 'lrelu', 0.2, 2 ** 0.5, 256.0)
        _close(y, bias_act_ref(xin, b, dim=1, act='lrelu', clamp=256), 1e-3)
    y = cuda_plugins.bias_act_cuda(x.bfloat16(), b.bfloat16(), 1, 'swish', 0.0, 1.0, -1.0)
    _close(y, bias_act_ref(x.bfloat16().float(), b.bfloat16().float(), dim=1, act='swish', gain=1.0), 5e-2)
    y = cuda_plugins.bias_act_cuda(x.double(), b.double(), 1, 'selu', 0.0, 1.0, -1.0)
    _close(y, bias_act_ref(x.double(), b.double(), dim=1, act='selu', gain=1.0), 1e-6)


@needs_gpu
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16])
@pytest.mark.parametrize('cfg', UPFIRDN_CONFIGS, ids=_upfirdn_id)
def test_gpu_upfirdn2d(cfg, dtype):
    _, upfirdn2d_ref = _refs()
    assert cuda_plugins.is_available()
    up, down, pad, fshape, flip, gain, shape = cfg
    gen = torch.Generator().manual_seed(sum(shape))
    f = _make_filter(fshape, gen, GPU)
    f2 = torch.outer(f, f) if f.ndim == 1 else f
    tileable = up[0] == up[1] and down[0] == down[1] and f2.shape == (4, 4) and (up[0], down[0]) in \
        [(1, 1), (2, 1), (1, 2)]
    impls = [cuda_plugins.IMPL_AUTO, cuda_plugins.IMPL_GENERIC] + ([cuda_plugins.IMPL_TILED] if tileable else [])
    tol = _gpu_tol(dtype)
    x0 = torch.randn(shape, generator=gen).to(GPU, dtype)

    def run(fn, xin, cast):
        x = xin.to(cast).requires_grad_(True)
        y = fn(x)
        assert y is not None and y.dtype == cast
        dy = torch.linspace(-1, 1, y.numel(), device=GPU).reshape(y.shape).to(cast).requires_grad_(True)
        dx, = torch.autograd.grad(y, x, dy, create_graph=True)
        d_dy, = torch.autograd.grad((dx.float() * x0.float().cos()).sum(), dy)  # double backward
        return [y, dx, d_dy]

    # The reference runs in float32 on the same (rounded) inputs: the ground truth for fp16 too.
    expected = run(lambda x: _ref_upfirdn(upfirdn2d_ref, x, f, up, down, pad, flip, gain), x0, torch.float32)
    big = torch.zeros(shape[0], shape[1], shape[2] * 2, shape[3] * 3, device=GPU, dtype=dtype)
    big[:, :, ::2, ::3] = x0
    layouts = {'contiguous': x0, 'channels_last': x0.contiguous(memory_format=torch.channels_last),
               'transposed': x0.transpose(2, 3).contiguous().transpose(2, 3), 'sliced': big[:, :, ::2, ::3]}
    for layout, xin in layouts.items():
        for impl in impls:
            got = run(lambda x: cuda_plugins.upfirdn2d_cuda(x, f, up, down, pad, flip, gain, _impl=impl), xin, dtype)
            for name, a, e in zip(['y', 'dx', 'd2/ddy'], got, expected):
                _close(a, e, tol, f'{_upfirdn_id(cfg)} {dtype} impl={impl} {layout} {name}')


@needs_gpu
def test_gpu_upfirdn2d_large_batch():
    """More images than gridDim.z (65535) so that the tiled kernel's image loop runs more than once."""
    _, upfirdn2d_ref = _refs()
    assert cuda_plugins.is_available()
    f = torch.tensor([1., 3., 3., 1.], device=GPU)
    f = torch.outer(f, f) / 64
    x = torch.randn(2, 40000, 6, 5, device=GPU)
    for up, down, pad in [((2, 2), (1, 1), (2, 1, 2, 1)), ((1, 1), (2, 2), (1, 1, 1, 1))]:
        y = cuda_plugins.upfirdn2d_cuda(x, f, up, down, pad, False, 1.0)
        _close(y, _ref_upfirdn(upfirdn2d_ref, x, f, up, down, pad, False, 1.0), 1e-3, f'{up} {down}')


if __name__ == '__main__':
    import tempfile
    for c in compile_check_commands(tempfile.gettempdir()):
        print(' '.join(c))
    sys.exit(0)
