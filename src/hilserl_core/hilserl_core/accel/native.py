"""Native CPU kernels, compiled on first use with the system C compiler (torch, no ROS).

Two kernels, built into one library:

- the learned spatial embedding over float16 feature maps, with the image
  head's dropout fused in (``native/spatial_embedding.c``, called by
  ``spatial_embedding.NativeSpatialEmbedding``, the fast path of
  ``rl.networks.SpatialLearnedEmbedding``);
- GroupNorm + shortcut + ReLU in one pass over the frozen ResNet-10's bfloat16
  channel-last maps (``native/groupnorm.c``, called by ``norm_act.NativeNormAct``,
  the fast path of ``vision.encoders.ResNet10Encoder`` at inference), or writing
  the uint8 input of the next int8 convolution instead or as well
  (``int8_encoder``), a per-image uint8 quantiser and a max pool of
  non-negative bfloat16 maps that can quantise its result.

Which of them a network runs is chosen in one place, ``paths.py``; the model
code holds only plain torch.

The spatial embedding: torch has no fused "convert float16,
multiply, reduce" on CPU: it converts the whole 4 MB batch to float32 first,
and its dropout draws and applies a mask in separate passes. The C kernel
converts in registers, reads the batch once and derives the dropout mask from
a hash of (seed, element index), so the backward pass regenerates it instead
of storing it. Measured per learner update in docs/BENCHMARKS.md.

Build: ``cc -O3 -mavx2 -mfma -mf16c -fopenmp -shared -fPIC`` into
``$HILSERL_CACHE_DIR`` (default ``$XDG_CACHE_HOME/hilserl`` or
``~/.cache/hilserl``), named by a hash of the source, the flags and the
compiler's version, so a rebuild happens only when one of them changes. The
instruction set is named explicitly (no ``-march=native``): a cache shared by
several machines stays valid on every CPU that passes the feature check.

Falls back to plain torch (same results to float32 rounding, slower) when:
the CPU lacks AVX2/FMA/F16C, no C compiler is found (``$CC``, ``cc``, ``gcc``),
compilation fails, or ``HILSERL_NATIVE=0``. ``status()`` says which.

Threads: the kernels run as many OpenMP threads as ``torch.get_num_threads()``,
on torch's own OpenMP runtime (the library is loaded after torch, so its
``libgomp.so.1`` resolves to the one torch already loaded).

A second library, built the same way with the C++ compiler against torch's own
headers, registers ``torch.ops.hilserl.resnet10_int8``: the int8 encoder's whole
forward pass as one operator (``native/encoder_int8.cpp`` with ``groupnorm.c``
linked in), which runs without the GIL from start to end. It is keyed by the
torch version as well, and needs ``$CXX``/``c++``/``g++``; ``encoder_op_status()``
says whether it is in use, and ``HILSERL_INT8_OPERATOR=0`` turns it off alone. ``python -m hilserl_core.accel.native`` builds both and
prints their status (``scripts/setup.sh`` runs it, so no node compiles on start).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional, Tuple

import torch

from .precision import cpu_flags

__all__ = [
    "status",
    "in_use",
    "spatial_available",
    "spatial_forward",
    "dropout_backward_",
    "spatial_kernel_grad",
    "dropout_constants",
    "groupnorm_available",
    "groupnorm_act",
    "groupnorm_act_u8",
    "groupnorm_act_both",
    "quantize_u8",
    "maxpool_nonneg",
    "maxpool_nonneg_u8",
    "cache_dir",
    "encoder_op_in_use",
    "encoder_op_status",
]

_SOURCES = tuple(Path(__file__).with_name("native") / name for name in ("spatial_embedding.c", "groupnorm.c"))
_FLAGS = ("-O3", "-mavx2", "-mfma", "-mf16c", "-fopenmp", "-shared", "-fPIC", "-std=c11")
_CPU_FLAGS = ("avx2", "fma", "f16c")


def cache_dir() -> Path:
    """Where compiled kernels are kept."""
    explicit = os.environ.get("HILSERL_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hilserl"


def _compiler(env: str = "CC", names: Tuple[str, ...] = ("cc", "gcc")) -> Optional[str]:
    for name in (os.environ.get(env), *names):
        path = shutil.which(name) if name else None
        if path:
            return path
    return None


def _compile(steps, target: Path) -> None:
    """Run the compiler commands ``steps(tmpdir, output)`` and move ``output`` to ``target`` atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as work:
        tmp = os.path.join(work, target.name)
        for cmd in steps(work, tmp):
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            if proc.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr.strip()[-4000:]}")
        os.replace(tmp, target)  # atomic: a concurrent process sees the old file or the whole new one


def _version(compiler: str) -> str:
    return subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout


def _unsupported() -> Optional[str]:
    """Why no native kernel can be used here (None: it can)."""
    if os.environ.get("HILSERL_NATIVE", "1") == "0":
        return "disabled by HILSERL_NATIVE=0"
    if not sys.platform.startswith("linux") or platform.machine() not in ("x86_64", "AMD64"):
        return f"no native kernel for {sys.platform}/{platform.machine()}"
    missing = [f for f in _CPU_FLAGS if f not in cpu_flags()]
    if missing:
        return f"CPU lacks {', '.join(missing)}"
    return None


@functools.lru_cache(maxsize=1)
def _load() -> Tuple[Optional[ctypes.CDLL], str]:
    """(library, status line); library None where the torch fallback is used."""
    why = _unsupported()
    if why is not None:
        return None, f"{why}: plain torch"
    compiler = _compiler()
    if compiler is None:
        return None, "no C compiler found ($CC, cc, gcc): plain torch"
    try:
        source = b"".join(path.read_bytes() for path in _SOURCES)
        key = hashlib.sha256(source + " ".join(_FLAGS).encode() + _version(compiler).encode()).hexdigest()[:16]
        target = cache_dir() / f"kernels-{key}.so"
        if not target.exists():
            _compile(lambda work, out: [[compiler, *_FLAGS, *map(str, _SOURCES), "-o", out]], target)
        lib = ctypes.CDLL(str(target))
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        return None, f"native kernel unavailable ({exc}): plain torch"
    i64, i32, u32, u64, f32, ptr = ctypes.c_long, ctypes.c_int, ctypes.c_uint32, ctypes.c_uint64, ctypes.c_float, ctypes.c_void_p
    lib.hilserl_spatial_forward.argtypes = [ptr, ptr, ptr, i64, i64, i64, i32, u64, u32, f32]
    lib.hilserl_dropout_backward.argtypes = [ptr, i64, i64, i32, u64, u32, f32]
    lib.hilserl_spatial_kernel_grad.argtypes = [ptr, ptr, ptr, i64, i64, i64, i32]
    lib.hilserl_groupnorm_act.argtypes = [ptr, i32, ptr, ptr, ptr, ptr, ptr, ptr, i32, ptr, ptr, i64, i64, i64, i32, f32, i32, i32]
    lib.hilserl_quantize_u8.argtypes = [ptr, i64, i64, ptr, i32]
    lib.hilserl_maxpool_u16.argtypes = [ptr, i64, i64, i64, i64, i32, i32, i32, i32, ptr, i64, i64, ptr, i32]
    for fn in (lib.hilserl_spatial_forward, lib.hilserl_dropout_backward, lib.hilserl_spatial_kernel_grad,
               lib.hilserl_groupnorm_act, lib.hilserl_quantize_u8, lib.hilserl_maxpool_u16):
        fn.restype = None
    return lib, f"native kernels: {target}"


def status() -> str:
    """One line: whether the native kernel is in use, and if not, why."""
    return _load()[1]


def in_use() -> bool:
    """True when the native kernel is built and loaded (else the plain torch path runs)."""
    return _load()[0] is not None


def spatial_available(x: torch.Tensor) -> bool:
    """True when the native kernel can take ``x`` (float16 ``[B, P, C]`` on the CPU, C % 32 == 0,
    B * C < 2**32 for the dropout hash's element index)."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float16
        and x.dim() == 3
        and x.shape[2] % 32 == 0
        and x.shape[0] * x.shape[2] < 2**32
        and in_use()
    )


def dropout_constants(p: float) -> Tuple[int, float]:
    """(threshold, scale) of dropout probability ``p``: an element is dropped when its 32-bit hash
    is below ``threshold = round(p * 2**32)``, kept ones are multiplied by ``scale = 1 / (1 - p)``."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    return min(round(p * 2**32), 2**32 - 1), 1.0 / (1.0 - p)


def _lib() -> ctypes.CDLL:
    lib = _load()[0]
    if lib is None:
        raise RuntimeError(status())
    return lib


def _ptr(t: Optional[torch.Tensor]) -> ctypes.c_void_p:
    """The tensor's data pointer; NULL for None (an optional input or output of a kernel)."""
    return ctypes.c_void_p(t.data_ptr() if t is not None else 0)


def spatial_forward(x: torch.Tensor, weight: torch.Tensor, p: float = 0.0, seed: int = 0) -> torch.Tensor:
    """``out[b, c] = m[b, c] * sum_p x[b, p, c] * weight[p, c]``: float16 ``x [B, P, C]``, ``weight [P, C]``.

    ``m`` is the dropout mask of probability ``p`` drawn from ``seed`` (all ones for ``p = 0``).
    """
    lib = _lib()
    b, n, c = x.shape
    if tuple(weight.shape) != (n, c):
        raise ValueError(f"weight shape {tuple(weight.shape)} != {(n, c)}")
    threshold, scale = dropout_constants(p)
    x = x.contiguous()
    weight = weight.detach().to(torch.float32).contiguous()
    out = torch.empty(b, c, dtype=torch.float32)
    lib.hilserl_spatial_forward(
        _ptr(x), _ptr(weight), _ptr(out), b, n, c, torch.get_num_threads(), seed & (2**64 - 1), threshold, scale
    )
    return out


def dropout_backward_(grad: torch.Tensor, p: float, seed: int) -> torch.Tensor:
    """Multiply ``grad [B, C]`` (float32, contiguous) in place by the mask ``spatial_forward(..., p, seed)`` used."""
    if grad.dtype != torch.float32 or not grad.is_contiguous() or grad.dim() != 2:
        raise ValueError("dropout_backward_ needs a contiguous float32 [B, C] tensor")
    threshold, scale = dropout_constants(p)
    b, c = grad.shape
    _lib().hilserl_dropout_backward(_ptr(grad), b, c, torch.get_num_threads(), seed & (2**64 - 1), threshold, scale)
    return grad


def spatial_kernel_grad(x: torch.Tensor, grad_out: torch.Tensor) -> torch.Tensor:
    """``grad_w[p, c] = sum_b x[b, p, c] * grad_out[b, c]``: float16 ``x [B, P, C]``, ``grad_out [B, C]``."""
    lib = _lib()
    b, n, c = x.shape
    if tuple(grad_out.shape) != (b, c):
        raise ValueError(f"grad_out shape {tuple(grad_out.shape)} != {(b, c)}")
    x = x.contiguous()
    grad_out = grad_out.to(torch.float32).contiguous()
    grad_w = torch.empty(n, c, dtype=torch.float32)
    lib.hilserl_spatial_kernel_grad(_ptr(x), _ptr(grad_out), _ptr(grad_w), b, n, c, torch.get_num_threads())
    return grad_w


def groupnorm_available(x: torch.Tensor, groups: int, allow_float32: bool = False) -> bool:
    """True when :func:`groupnorm_act` can take ``x``: a bfloat16 (or, with ``allow_float32``,
    float32) NCHW map in channels-last memory on the CPU, channels and channels per group
    multiples of 8, no autograd."""
    return (
        x.device.type == "cpu"
        and (x.dtype == torch.bfloat16 or (allow_float32 and x.dtype == torch.float32))
        and x.dim() == 4
        and x.shape[1] % groups == 0
        and (x.shape[1] // groups) % 8 == 0
        and x.is_contiguous(memory_format=torch.channels_last)
        and not (torch.is_grad_enabled() and x.requires_grad)
        and in_use()
    )


def _groupnorm_act(x: torch.Tensor, norm: torch.nn.GroupNorm, residual: Optional[torch.Tensor],
                   residual_norm: Optional[torch.nn.GroupNorm], relu: bool, pre: Optional[torch.Tensor],
                   write_bf16: bool, write_u8: bool) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """The one kernel call behind :func:`groupnorm_act`, :func:`groupnorm_act_u8` and
    :func:`groupnorm_act_both`: (bfloat16 result or None, uint8 result or None)."""
    if write_u8 and not relu:
        raise ValueError("uint8 output needs relu (a non-negative map)")
    lib = _lib()
    n, c, h, w = x.shape
    mode = 0 if residual is None else (2 if residual_norm is not None else 1)
    if residual is not None:
        if tuple(residual.shape) != (n, c, h, w):
            raise ValueError(f"residual shape {tuple(residual.shape)} != {(n, c, h, w)}")
        residual = residual.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    if pre is not None:
        if tuple(pre.shape) != (1, c, h, w):
            raise ValueError(f"pre shape {tuple(pre.shape)} != {(1, c, h, w)}")
        pre = pre.float().contiguous(memory_format=torch.channels_last)
    if mode == 2 and (residual_norm.num_groups, residual_norm.eps) != (norm.num_groups, norm.eps):
        raise ValueError("the two GroupNorms must have the same groups and eps")

    def affine(gn: torch.nn.GroupNorm):
        if gn.affine:
            return gn.weight.detach().float().contiguous(), gn.bias.detach().float().contiguous()
        return torch.ones(c), torch.zeros(c)

    ga, ba = affine(norm)
    gr, br = affine(residual_norm) if mode == 2 else (ga, ba)
    y = torch.empty(x.shape, dtype=torch.bfloat16, memory_format=torch.channels_last) if write_bf16 else None
    q = torch.empty(x.shape, dtype=torch.uint8, memory_format=torch.channels_last) if write_u8 else None
    lib.hilserl_groupnorm_act(
        _ptr(x), int(x.dtype == torch.float32), _ptr(pre), _ptr(ga), _ptr(ba), _ptr(residual), _ptr(gr), _ptr(br), mode,
        _ptr(y), _ptr(q), n, h * w, c, norm.num_groups, float(norm.eps), int(relu), torch.get_num_threads(),
    )
    return y, q


def groupnorm_act(x: torch.Tensor, norm: torch.nn.GroupNorm, residual: Optional[torch.Tensor] = None,
                  residual_norm: Optional[torch.nn.GroupNorm] = None, relu: bool = True,
                  pre: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``act(norm(x + pre) + shortcut)`` in one pass, as bfloat16; shortcut = 0, ``residual``, or
    ``residual_norm(residual)``.

    ``x``: bfloat16 or float32 ``[N, C, H, W]`` in channels-last memory (see
    :func:`groupnorm_available`); ``pre``: optional float32 ``[1, C, H, W]`` (channels-last)
    added to every image before the norm; ``residual``: bfloat16, same shape as ``x``. The
    result is bfloat16 in the same layout. Inference only (no autograd).
    """
    return _groupnorm_act(x, norm, residual, residual_norm, relu, pre, write_bf16=True, write_u8=False)[0]


def groupnorm_act_u8(x: torch.Tensor, norm: torch.nn.GroupNorm, residual: Optional[torch.Tensor] = None,
                     residual_norm: Optional[torch.nn.GroupNorm] = None,
                     pre: Optional[torch.Tensor] = None) -> torch.Tensor:
    """:func:`groupnorm_act` with a ReLU, quantised per image to uint8 (``round(y * 255 / max y)``,
    same layout): the input of the next int8 convolution, without the bfloat16 map."""
    return _groupnorm_act(x, norm, residual, residual_norm, True, pre, write_bf16=False, write_u8=True)[1]


def groupnorm_act_both(x: torch.Tensor, norm: torch.nn.GroupNorm, residual: Optional[torch.Tensor] = None,
                       residual_norm: Optional[torch.nn.GroupNorm] = None,
                       pre: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """(:func:`groupnorm_act`, :func:`groupnorm_act_u8`) of the same input from one pass."""
    y, q = _groupnorm_act(x, norm, residual, residual_norm, True, pre, write_bf16=True, write_u8=True)
    return y, q


def quantize_u8(x: torch.Tensor) -> torch.Tensor:
    """Per-image uint8 quantisation of a non-negative bfloat16 channels-last map ``[N, C, H, W]``:
    ``round(x * 255 / max x)`` over each image (0 where the max is 0), same layout. Negative
    values become 0."""
    if x.dtype != torch.bfloat16 or x.dim() != 4 or not x.is_contiguous(memory_format=torch.channels_last):
        raise ValueError("quantize_u8 takes a bfloat16 [N, C, H, W] map in channels-last memory")
    m = x.shape[1] * x.shape[2] * x.shape[3]
    if m % 8:
        raise ValueError(f"quantize_u8 needs C * H * W % 8 == 0, got {m}")
    q = torch.empty(x.shape, dtype=torch.uint8, memory_format=torch.channels_last)
    _lib().hilserl_quantize_u8(_ptr(x), x.shape[0], m, _ptr(q), torch.get_num_threads())
    return q


def _maxpool_nonneg(x: torch.Tensor, kernel: int, stride: int, pads: Tuple[int, int, int, int],
                    quantize: bool) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    if x.dtype != torch.bfloat16 or x.dim() != 4 or not x.is_contiguous(memory_format=torch.channels_last) or x.shape[1] % 16:
        raise ValueError("maxpool_nonneg takes a bfloat16 [N, C, H, W] map in channels-last memory with C % 16 == 0")
    n, c, h, w = x.shape
    top, bottom, left, right = pads
    oh, ow = (h + top + bottom - kernel) // stride + 1, (w + left + right - kernel) // stride + 1
    y = torch.empty((n, c, oh, ow), dtype=torch.bfloat16, memory_format=torch.channels_last)
    q = torch.empty((n, c, oh, ow), dtype=torch.uint8, memory_format=torch.channels_last) if quantize else None
    _lib().hilserl_maxpool_u16(_ptr(x), n, h, w, c, kernel, stride, top, left, _ptr(y), oh, ow, _ptr(q), torch.get_num_threads())
    return y, q


def maxpool_nonneg(x: torch.Tensor, kernel: int, stride: int, pads: Tuple[int, int, int, int]) -> torch.Tensor:
    """Max pool of a non-negative bfloat16 channels-last map ``[N, C, H, W]`` (e.g. after a ReLU).

    ``pads`` = (top, bottom, left, right): windows start ``top``/``left`` pixels before the map
    and are clipped to it (padding never wins). Exact (a max of bfloat16 values); a negative
    value (-0.0 included) counts as +0.
    """
    return _maxpool_nonneg(x, kernel, stride, pads, quantize=False)[0]


def maxpool_nonneg_u8(x: torch.Tensor, kernel: int, stride: int,
                      pads: Tuple[int, int, int, int]) -> Tuple[torch.Tensor, torch.Tensor]:
    """(:func:`maxpool_nonneg`, its :func:`quantize_u8`) from the same pass."""
    y, q = _maxpool_nonneg(x, kernel, stride, pads, quantize=True)
    return y, q


# ------------------------------------------------------------------ the int8 encoder as one torch operator
_OP_SOURCE = Path(__file__).with_name("native") / "encoder_int8.cpp"
_OP_C_SOURCE = Path(__file__).with_name("native") / "groupnorm.c"
_OP_CXXFLAGS = ("-O2", "-std=c++20", "-fPIC", "-shared", "-fopenmp")


@functools.lru_cache(maxsize=1)
def _load_encoder_op() -> Tuple[bool, str]:
    """(loaded, status line) of ``torch.ops.hilserl.resnet10_int8``."""
    why = "disabled by HILSERL_INT8_OPERATOR=0" if os.environ.get("HILSERL_INT8_OPERATOR", "1") == "0" else _unsupported()
    if why is not None:
        return False, f"{why}: the Python int8 forward"
    cc, cxx = _compiler(), _compiler("CXX", ("c++", "g++"))
    if cc is None or cxx is None:
        return False, "no C and C++ compilers found ($CC, cc, gcc; $CXX, c++, g++): the Python int8 forward"
    from torch.utils import cpp_extension

    includes = [f"-I{d}" for d in cpp_extension.include_paths()]
    libdirs = cpp_extension.library_paths()
    abi = f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}"
    try:
        source = _OP_SOURCE.read_bytes() + _OP_C_SOURCE.read_bytes()
        key = hashlib.sha256(
            source + " ".join(_FLAGS + _OP_CXXFLAGS).encode() + _version(cc).encode() + _version(cxx).encode()
            + torch.__version__.encode() + abi.encode()
        ).hexdigest()[:16]
        target = cache_dir() / f"encoder-op-{key}.so"
        if not target.exists():
            c_flags = [f for f in _FLAGS if f != "-shared"]

            def steps(work: str, out: str):
                obj = os.path.join(work, "groupnorm.o")
                return [
                    [cc, *c_flags, "-c", str(_OP_C_SOURCE), "-o", obj],
                    [cxx, *_OP_CXXFLAGS, abi, *includes, str(_OP_SOURCE), obj,
                     *[f"-L{d}" for d in libdirs], "-ltorch", "-ltorch_cpu", "-lc10",
                     *[f"-Wl,-rpath,{d}" for d in libdirs], "-o", out],
                ]

            _compile(steps, target)
        torch.ops.load_library(str(target))
        torch.ops.hilserl.resnet10_int8  # noqa: B018 - raises if the library did not register it
    except (OSError, RuntimeError, AttributeError, subprocess.SubprocessError) as exc:
        return False, f"int8 encoder operator unavailable ({exc}): the Python int8 forward"
    return True, f"int8 encoder operator: {target}"


def encoder_op_in_use() -> bool:
    """True when ``torch.ops.hilserl.resnet10_int8`` is built and loaded (else the int8 encoder
    runs its Python forward: the same features, a GIL hand-off per call)."""
    return _load_encoder_op()[0]


def encoder_op_status() -> str:
    """One line: whether the int8 encoder operator is in use, and if not, why."""
    return _load_encoder_op()[1]


def main() -> int:
    """Build (or find in the cache) both libraries and print their status; exit 1 if either is missing."""
    print(f"hilserl native kernels: {status()}")
    print(f"hilserl int8 encoder operator: {encoder_op_status()}")
    return 0 if in_use() and encoder_op_in_use() else 1


if __name__ == "__main__":
    sys.exit(main())
