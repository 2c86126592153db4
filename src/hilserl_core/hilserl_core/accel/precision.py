"""Which dtype the matrix products of the networks run in (torch, no ROS).

``compute_dtype`` settings (``RLPDConfig.compute_dtype``, ``ResNet10Encoder``):

- ``"float32"``: everything in float32.
- ``"bfloat16"``: mixed precision. Matrix products and convolutions run in
  bfloat16 under ``torch.autocast``; parameters, optimizer state, reductions,
  normalisation statistics, the Q-value and policy output layers and every loss
  stay float32.
- ``"auto"`` (default): ``bfloat16`` where the hardware has native bfloat16 dot
  products (x86 CPUs with AVX512-BF16 or AMX, CUDA GPUs that support it),
  ``float32`` elsewhere, where emulated bfloat16 would be slower than float32.

What ``"auto"`` means can be forced for a whole process tree with the environment
variable ``HILSERL_COMPUTE_DTYPE`` (``float32`` or ``bfloat16``), and the encoder's
``"auto"`` with ``HILSERL_ENCODER_DTYPE`` (``encoders.resolve_encoder_dtype``), so a
test run or a graph behaves as it would on another kind of CPU (README, "Testing").
Explicit settings are never overridden.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from typing import ContextManager, Dict, Optional, Sequence

import torch

__all__ = ["COMPUTE_DTYPES", "FORCE_COMPUTE_DTYPE", "forced_auto", "cpu_info", "cpu_flags", "cpu_has_native_bf16", "cpu_has_int8_dot", "resolve_compute_dtype", "autocast", "full_precision"]

COMPUTE_DTYPES = ("auto", "float32", "bfloat16")
FORCE_COMPUTE_DTYPE = "HILSERL_COMPUTE_DTYPE"  # environment: what "auto" means for matrix products


def forced_auto(env: str, choices: Sequence[str]) -> Optional[str]:
    """What the environment variable ``env`` forces an ``"auto"`` precision to mean, or None when
    it is unset, empty or ``auto`` (the host decides). A value outside ``choices`` is an error
    naming the variable, not silently the host's choice."""
    value = os.environ.get(env, "").strip().lower()
    if value in ("", "auto"):
        return None
    if value not in choices:
        raise ValueError(f"{env}={value!r} is not a precision: use one of {', '.join(choices)} (or unset it)")
    return value


@functools.lru_cache(maxsize=1)
def cpu_info() -> Dict[str, str]:
    """The first CPU's fields in Linux ``/proc/cpuinfo`` (``model name``, ``cpu family``,
    ``flags``, ...); empty elsewhere."""
    if not sys.platform.startswith("linux"):
        return {}
    info: Dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    break  # end of the first processor's block
                name, _, value = line.partition(":")
                info.setdefault(name.strip(), value.strip())
    except OSError:
        pass
    return info


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset:
    """The instruction-set flags of this CPU (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    return frozenset(cpu_info().get("flags", "").split())


def cpu_has_native_bf16() -> bool:
    """True when this CPU has bfloat16 dot-product instructions (AVX512-BF16 or AMX-BF16)."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def cpu_has_int8_dot() -> bool:
    """True when this CPU has int8 dot-product instructions (AVX512-VNNI, AVX-VNNI or AMX-INT8),
    which oneDNN's int8 convolutions are built on."""
    return bool(cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})


def resolve_compute_dtype(name: str, device: "str | torch.device" = "cpu") -> torch.dtype:
    """``"auto" | "float32" | "bfloat16"`` -> the torch dtype used on ``device``."""
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"compute_dtype must be one of {COMPUTE_DTYPES}, got {name!r}")
    if name == "float32":
        return torch.float32
    if name == "bfloat16":
        return torch.bfloat16
    forced = forced_auto(FORCE_COMPUTE_DTYPE, COMPUTE_DTYPES[1:])
    if forced is not None:
        return resolve_compute_dtype(forced)
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device.type == "cpu":
        return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    return torch.float32


def autocast(device: "str | torch.device", dtype: torch.dtype) -> ContextManager:
    """``torch.autocast`` to ``dtype`` on ``device``; a no-op for float32."""
    device = torch.device(device)
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def full_precision(t: torch.Tensor) -> ContextManager:
    """Suspend autocast around a small computation that must stay float32 (output layers, losses)."""
    return torch.autocast(t.device.type, enabled=False)
