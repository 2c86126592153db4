"""Which kernel runs the encoder's small convolutions on a CPU (speed only).

Convolutions with at most ``PATCH_GEMM_MAX_CELLS`` output cells (the 8x8 and 4x4 maps of the
last two stages at 128 px) may run as one patch-matrix product instead of oneDNN's direct kernel.
Which is faster depends on the host, so :class:`ConvPaths` times both on the first inference
pass of each shape (once per process) and keeps the faster, as ``cudnn.benchmark`` does on a GPU; ``forced`` True or
False takes one path always. A ``SameConv2d`` without a ``ConvPaths`` runs the direct kernel (the
plain path the product is tested against).
"""

from __future__ import annotations

import time
from typing import Callable, Dict, Optional, Tuple

import torch
from torch import nn

__all__ = ["PATCH_GEMM_MAX_CELLS", "ConvPaths", "fastest_first", "path_key", "patch_gemm"]

PATCH_GEMM_MAX_CELLS = 64
TUNE_REPEATS = 3


def fastest_first(candidates) -> Tuple[int, torch.Tensor]:
    """Index of the quickest of ``candidates`` (callables, each run once to warm up, then
    ``TUNE_REPEATS`` times interleaved; best time counts) and its output."""
    outs = [fn() for fn in candidates]
    best = [float("inf")] * len(candidates)
    for _ in range(TUNE_REPEATS):
        for i, fn in enumerate(candidates):
            t = time.perf_counter()
            outs[i] = fn()
            best[i] = min(best[i], time.perf_counter() - t)
    i = min(range(len(candidates)), key=best.__getitem__)
    return i, outs[i]


def path_key(conv: nn.Conv2d, x: torch.Tensor) -> tuple:
    """What the timed choice of conv path is kept under: input shape and dtype, this conv, threads."""
    return (tuple(x.shape), x.dtype, tuple(conv.weight.shape), conv.stride[0], torch.get_num_threads())


def patch_gemm(conv: nn.Conv2d, x: torch.Tensor, k: int, s: int, out_h: int, out_w: int) -> torch.Tensor:
    """The convolution as ``[B*h*w, k*k*C_in] x [k*k*C_in, C_out]`` over channel-last patches."""
    key = (conv.weight.data_ptr(), conv.weight._version)  # a new dtype/device or loaded weights: rebuild
    if conv._patch_key != key:
        conv._patch_weight = conv.weight.detach().permute(2, 3, 1, 0).reshape(-1, conv.out_channels).contiguous()
        conv._patch_key = key
    nhwc = x.permute(0, 2, 3, 1)  # a view when x is channels-last
    span_h, span_w = (out_h - 1) * s + 1, (out_w - 1) * s + 1
    patches = torch.cat(
        [nhwc[:, i : i + span_h : s, j : j + span_w : s, :] for i in range(k) for j in range(k)], dim=-1
    )
    out = patches.reshape(-1, patches.shape[-1]) @ conv._patch_weight.to(x.dtype)
    return out.reshape(x.shape[0], out_h, out_w, conv.out_channels).permute(0, 3, 1, 2)  # NCHW, channels-last


# What was timed, for every encoder of the process: one choice per shape, so two encoders with
# the same weights give the same features (the paths differ in the last bits).
_PROCESS_TIMINGS: Dict[tuple, bool] = {}


class ConvPaths:
    """The patch-product-or-direct choice for the convolutions of one encoder."""

    def __init__(self, forced: Optional[bool] = None, faster: Optional[Dict[tuple, bool]] = None) -> None:
        self.forced = forced  # True: always the patch product; False: always the direct kernel; None: timed
        # path_key -> the patch product was faster; by default the process's shared table
        self.faster: Dict[tuple, bool] = _PROCESS_TIMINGS if faster is None else faster

    @staticmethod
    def applies(conv: nn.Conv2d, x: torch.Tensor, out_hw: Tuple[int, int]) -> bool:
        """Inference of a small map on a CPU with a kernel larger than 1x1: a patch product is possible."""
        return (conv.kernel_size[0] > 1 and x.device.type == "cpu" and out_hw[0] * out_hw[1] <= PATCH_GEMM_MAX_CELLS
                and not torch.is_grad_enabled())

    def __call__(self, conv: nn.Conv2d, x: torch.Tensor, padded: Callable[[], torch.Tensor],
                 direct: Callable[[], torch.Tensor], out_hw: Tuple[int, int]) -> torch.Tensor:
        k, s = conv.kernel_size[0], conv.stride[0]
        patch = lambda: patch_gemm(conv, padded(), k, s, *out_hw)  # noqa: E731
        if self.forced is not None:
            return patch() if self.forced else direct()
        key = path_key(conv, x)
        if key not in self.faster:
            choice, out = fastest_first((direct, patch))
            self.faster[key] = bool(choice)
            return out
        return patch() if self.faster[key] else direct()
