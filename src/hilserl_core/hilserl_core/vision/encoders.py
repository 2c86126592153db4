"""Frozen ImageNet ResNet-10 image encoder (HIL-SERL Sec. "Policy architecture").

The actor, learner and reward classifier share one pretrained ResNet-10 that is
never trained: images pass through it once and only the small heads on top of
its ``[4, 4, 512]`` pre-pooling feature map (channel-last) learn. Because it is frozen, the
learner can cache its output in the replay buffer (``feature/<cam>`` keys, see
``types.py``) instead of re-running it on every update.

Architecture (same as the flax ``resnetv1-10`` of SERL/hil-serl, so its published
weights load unchanged): 7x7/2 conv stem -> GroupNorm(4) -> ReLU -> 3x3/2 max
pool -> four BasicBlock stages (one block each, widths 64-128-256-512, stride 2
from stage 2 on, 1x1 projection on the shortcut when the shape changes). All
convs are bias-free; every norm is ``GroupNorm(4 groups, eps 1e-5)``. The stem
pads 3 pixels on every side (flax ``padding=[(3, 3), (3, 3)]``, as the published
network does); the 3x3 convs and the max pool use TensorFlow/flax "SAME" padding
(asymmetric for strided ones: the extra row/column goes at the bottom/right).
Any other padding would make converted weights see shifted inputs (a one-pixel
shift of the stem changed the features by 9-36%).

Weights file (safetensors, written by :meth:`ResNet10Encoder.save_weights`)
holds exactly these float32 tensors (PyTorch layout, conv ``[out, in, kh, kw]``)::

    stem_conv.weight                  [64, 3, 7, 7]
    stem_norm.weight, stem_norm.bias  [64]
    blocks.{i}.conv1.weight           [w_i, w_{i-1}, 3, 3]    (w = 64, 128, 256, 512; w_{-1} = 64)
    blocks.{i}.norm1.weight/.bias     [w_i]
    blocks.{i}.conv2.weight           [w_i, w_i, 3, 3]
    blocks.{i}.norm2.weight/.bias     [w_i]
    blocks.{i}.proj_conv.weight       [w_i, w_{i-1}, 1, 1]    (i = 1, 2, 3 only)
    blocks.{i}.proj_norm.weight/.bias [w_i]                   (i = 1, 2, 3 only)

Converting the published weights (``resnet10_params.pkl`` from the SERL /
hil-serl releases, a pickled flax parameter dict). This package never unpickles;
flatten it once, in an environment where you trust the file, to an ``.npz`` of
'/'-joined flax paths, e.g. with flax installed::

    import pickle, numpy as np
    from flax.traverse_util import flatten_dict
    with open("resnet10_params.pkl", "rb") as f:
        tree = pickle.load(f)
    np.savez("resnet10_params.npz",
             **{k: np.asarray(v) for k, v in flatten_dict(tree, sep="/").items()})

then ``python -m hilserl_core.vision.encoders convert resnet10_params.npz resnet10.safetensors``.
Expected npz names (a common leading prefix such as ``params/`` or
``pretrained_encoder/`` is stripped; other entries, e.g. a classifier head, are
ignored and listed)::

    conv_init/kernel                              [7, 7, 3, 64]   (flax HWIO)
    norm_init/scale, norm_init/bias               [64]
    ResNetBlock_{i}/Conv_0/kernel                 [3, 3, in, w_i]
    ResNetBlock_{i}/MyGroupNorm_0/scale|bias      [w_i]
    ResNetBlock_{i}/Conv_1/kernel                 [3, 3, w_i, w_i]
    ResNetBlock_{i}/MyGroupNorm_1/scale|bias      [w_i]
    ResNetBlock_{i}/conv_proj/kernel              [1, 1, in, w_i]  (i = 1, 2, 3)
    ResNetBlock_{i}/norm_proj/scale|bias          [w_i]            (i = 1, 2, 3)
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..accel import native
from ..accel.precision import COMPUTE_DTYPES, cpu_has_int8_dot, forced_auto, resolve_compute_dtype
from ..formats import tensorio
from ..formats.types import FEATURE_PREFIX, IMAGE_PREFIX, Observation

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
STAGE_WIDTHS = (64, 128, 256, 512)
NUM_GROUPS = 4
GN_EPS = 1e-5
WEIGHTS_KIND = "hilserl.resnet10_encoder"
# the encoder's compute_dtype: precision.COMPUTE_DTYPES, or int8 convolutions (see ResNet10Encoder)
ENCODER_DTYPES = COMPUTE_DTYPES + ("int8",)
FORCE_ENCODER_DTYPE = "HILSERL_ENCODER_DTYPE"  # environment: what an "auto" encoder precision means
ENCODER_DTYPE_HELP = (
    "frozen ResNet-10 precision: auto (int8 on x86 CPUs with int8 dot products (VNNI), else bfloat16 where the "
    "CPU/GPU has it, else float32), float32, bfloat16, or int8 (int8 convolutions, x86 CPUs only: 1.6-2x faster than "
    "bfloat16, features within about 2% of float32 and the same for an image in any batch); actor, learner and reward "
    "classifier must use the same, and features cached at one setting must not be mixed with another's"
)
STEM_ZERO_POINT = 128  # the int8 stem reads raw pixels centred at 128 (ResNet10Encoder._int8_stem)


def resolve_encoder_dtype(setting: str, device: "str | torch.device" = "cpu") -> str:
    """The precision an ``encoder_dtype`` setting means on ``device``: ``"auto"`` is ``"int8"`` on
    x86 CPUs with int8 dot products (``precision.cpu_has_int8_dot``) where torch has oneDNN int8
    convolutions (:func:`int8_available`): 1.6-1.9x faster than bfloat16 on the Zen 4 host and
    1.8-2.5x on the Zen 5 one, features within about 2% of float32 and the same for an image in
    any batch (bfloat16's vary in the last bits with the batch's timed conv path). Elsewhere the
    ``precision.resolve_compute_dtype`` rule: bfloat16 where the hardware has it, else float32.
    ``HILSERL_ENCODER_DTYPE`` (:data:`FORCE_ENCODER_DTYPE`) forces what ``"auto"`` means, as on
    another kind of CPU. Other settings are returned as they are."""
    if setting not in ENCODER_DTYPES:
        raise ValueError(f"encoder compute_dtype must be one of {ENCODER_DTYPES}, got {setting!r}")
    if setting != "auto":
        return setting
    forced = forced_auto(FORCE_ENCODER_DTYPE, ENCODER_DTYPES[1:])
    if forced == "int8" and not int8_available()[0]:
        raise RuntimeError(f"{FORCE_ENCODER_DTYPE}=int8, but this torch has no int8 encoder: {int8_available()[1]}")
    if forced is not None:
        return forced
    device = torch.device(device)
    if device.type == "cpu" and cpu_has_int8_dot() and int8_available()[0]:
        return "int8"
    return str(resolve_compute_dtype("auto", device)).replace("torch.", "")


def _weights_dtype(compute_dtype: str, device) -> torch.dtype:
    """The dtype the encoder keeps its weights in: the compute dtype, float32 for int8 (quantised from it)."""
    return torch.float32 if compute_dtype == "int8" else resolve_compute_dtype(compute_dtype, device)


def _same_pads(size: int, kernel: int, stride: int) -> Tuple[int, int]:
    """TF/flax "SAME" padding (before, after) for one spatial dimension."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


# On a CPU, convolutions with at most this many output cells (the 8x8 and 4x4 maps of the
# last two stages at 128 px) may run as one patch-matrix product instead of oneDNN's direct
# kernel. Which is faster depends on the host: 4 images per ResNet pass, bfloat16, one thread,
# 10.4 -> 9.1 ms with the product on one EPYC host, 18.5 -> 20.0 ms on another (AMD family
# 25 / Zen 4). So the first pass of each shape times both and keeps the faster, as
# cudnn.benchmark does on a GPU; ``PATCH_GEMM`` True/False forces one (tests).
_PATCH_GEMM_MAX_CELLS = 64
PATCH_GEMM: Optional[bool] = None
_patch_gemm_faster: Dict[tuple, bool] = {}  # SameConv2d.path_key -> the patch product was faster
_TUNE_REPEATS = 3
# The int8 forward as one torch operator (native.encoder_op_in_use(): the same features, no GIL
# hand-offs between its ~30 calls); True/False forces it or the Python forward (tests).
FUSED_INT8: Optional[bool] = None


def _fastest_first(candidates) -> Tuple[int, torch.Tensor]:
    """Index of the quickest of ``candidates`` (callables, each run once to warm up, then
    ``_TUNE_REPEATS`` times interleaved; best time counts) and its output."""
    outs = [fn() for fn in candidates]
    best = [float("inf")] * len(candidates)
    for _ in range(_TUNE_REPEATS):
        for i, fn in enumerate(candidates):
            t = time.perf_counter()
            outs[i] = fn()
            best[i] = min(best[i], time.perf_counter() - t)
    i = min(range(len(candidates)), key=best.__getitem__)
    return i, outs[i]


class SameConv2d(nn.Conv2d):
    """Bias-free conv with flax "SAME" padding computed per input size, or with an explicit
    symmetric ``pad`` (flax ``padding=[(pad, pad), (pad, pad)]``)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, pad: Optional[int] = None):
        super().__init__(in_ch, out_ch, kernel, stride=stride, padding=0, bias=False)
        self.explicit_pad = pad
        self._patch_weight: Optional[torch.Tensor] = None
        self._patch_key: Optional[Tuple[int, int]] = None

    def same_padding(self, h: int, w: int) -> Tuple[Tuple[int, int, int, int], Tuple[int, int]]:
        """For an ``h x w`` input: the paddings ``(top, bottom, left, right)`` and the output size."""
        k, s = self.kernel_size[0], self.stride[0]
        if self.explicit_pad is not None:
            pads = (self.explicit_pad,) * 4
        else:
            pads = _same_pads(h, k, s) + _same_pads(w, k, s)
        top, bottom, left, right = pads
        return pads, ((h + top + bottom - k) // s + 1, (w + left + right - k) // s + 1)

    @staticmethod
    def int8_sym_pad(pads: Tuple[int, int, int, int]) -> Optional[Tuple[int, int]]:
        """The (height, width) padding oneDNN applies itself (with the zero point) when ``pads``
        is symmetric; None when it is not, and the int8 input needs a zero-padded copy instead."""
        top, bottom, left, right = pads
        return (top, left) if top == bottom and left == right else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.kernel_size[0], self.stride[0]
        pads, (out_h, out_w) = self.same_padding(x.shape[-2], x.shape[-1])
        if k > 1 and x.device.type == "cpu" and out_h * out_w <= _PATCH_GEMM_MAX_CELLS and not torch.is_grad_enabled():
            patch = lambda: self._patch_gemm(self._pad(x, pads), k, s, out_h, out_w)  # noqa: E731
            direct = lambda: self._direct(x, pads)  # noqa: E731
            if PATCH_GEMM is not None:
                return patch() if PATCH_GEMM else direct()
            key = self.path_key(x)
            if key not in _patch_gemm_faster:
                choice, out = _fastest_first((direct, patch))
                _patch_gemm_faster[key] = bool(choice)
                return out
            return patch() if _patch_gemm_faster[key] else direct()
        return self._direct(x, pads)

    def forward_int8(self, xq: torch.Tensor, out_dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
        """This convolution on a uint8 map (zero point 0, any per-image scale) with int8 weights.

        ``xq``: uint8 ``[N, C, H, W]`` in channels-last memory, e.g. from
        :func:`quantize_activations`. The result is ``conv(weight, xq)`` up to the int8 weights'
        rounding, in ``out_dtype``: the integer sums are exact, so it is the same for an image
        whatever else is in the batch. It keeps each image's input scale, which the GroupNorm
        after every convolution of the encoder cancels.
        """
        pads, _ = self.same_padding(xq.shape[-2], xq.shape[-1])
        sym = self.int8_sym_pad(pads)
        if sym is None:
            top, bottom, left, right = pads
            xq, sym = F.pad(xq, (left, right, top, bottom)), (0, 0)
        packed, w_scale, w_zp = self._int8_weights(sym, 0)
        return _qconv(xq, 0, packed, w_scale, w_zp, self.stride[0], sym, out_dtype)

    def _int8_weights(self, sym_pad: Tuple[int, int], x_zero_point: int):
        """oneDNN-packed int8 weights (symmetric, per output channel) for this padding, rebuilt
        when the float weights change (loaded, moved)."""
        key = (self.weight.data_ptr(), self.weight._version, sym_pad, x_zero_point)
        cache = self.__dict__.setdefault("_int8_cache", {})
        packed = cache.get(key)
        if packed is None:
            if len(cache) >= 4:  # a padding or two per conv; more means old weights: drop them
                cache.clear()
            packed = cache[key] = _pack_int8(self.weight.detach().float(), self.stride[0], sym_pad, x_zero_point)
        return packed

    def path_key(self, x: torch.Tensor) -> tuple:
        """What the timed choice of conv path is kept under: input shape and dtype, this conv, threads."""
        return (tuple(x.shape), x.dtype, tuple(self.weight.shape), self.stride[0], torch.get_num_threads())

    @staticmethod
    def _pad(x: torch.Tensor, pads: Tuple[int, int, int, int]) -> torch.Tensor:
        top, bottom, left, right = pads
        return F.pad(x, (left, right, top, bottom)) if any(pads) else x

    def _direct(self, x: torch.Tensor, pads: Tuple[int, int, int, int]) -> torch.Tensor:
        top, bottom, left, right = pads
        if top == bottom and left == right:  # symmetric: the conv pads, no padded copy
            return F.conv2d(x, self.weight, None, self.stride, (top, left))
        return F.conv2d(self._pad(x, pads), self.weight, None, self.stride)

    def _patch_gemm(self, x: torch.Tensor, k: int, s: int, out_h: int, out_w: int) -> torch.Tensor:
        """The convolution as ``[B*h*w, k*k*C_in] x [k*k*C_in, C_out]`` over channel-last patches."""
        key = (self.weight.data_ptr(), self.weight._version)  # a new dtype/device or loaded weights: rebuild
        if self._patch_key != key:
            self._patch_weight = self.weight.detach().permute(2, 3, 1, 0).reshape(-1, self.out_channels).contiguous()
            self._patch_key = key
        nhwc = x.permute(0, 2, 3, 1)  # a view when x is channels-last
        span_h, span_w = (out_h - 1) * s + 1, (out_w - 1) * s + 1
        patches = torch.cat(
            [nhwc[:, i : i + span_h : s, j : j + span_w : s, :] for i in range(k) for j in range(k)], dim=-1
        )
        out = patches.reshape(-1, patches.shape[-1]) @ self._patch_weight.to(x.dtype)
        return out.reshape(x.shape[0], out_h, out_w, self.out_channels).permute(0, 3, 1, 2)  # NCHW, channels-last


def same_max_pool(x: torch.Tensor, kernel: int = 3, stride: int = 2) -> torch.Tensor:
    """Max pool with flax "SAME" padding (padding never wins the max).

    When all the padding goes after (bottom/right, as for the stem's 64 -> 32 map),
    PyTorch's ``ceil_mode`` windows, clipped at the edge, are exactly these windows:
    no padded copy of the map is made.
    """
    top, bottom = _same_pads(x.shape[-2], kernel, stride)
    left, right = _same_pads(x.shape[-1], kernel, stride)
    if top == 0 and left == 0 and bottom < kernel and right < kernel:
        return F.max_pool2d(x, kernel, stride, ceil_mode=True)
    x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
    return F.max_pool2d(x, kernel, stride)


def int8_available() -> Tuple[bool, str]:
    """(available, why not): the int8 encoder needs torch's oneDNN int8 convolutions on an x86 CPU
    (the only place its speed and accuracy were measured)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False, f"int8 convolutions are used on x86-64 CPUs only, this is {platform.machine()}"
    ops = getattr(torch.ops, "onednn", None)
    try:
        ok = ops is not None and hasattr(ops, "qconv2d_pointwise") and hasattr(ops, "qconv_prepack") and torch.backends.mkldnn.is_available()
    except (AttributeError, RuntimeError):
        ok = False
    return (True, "") if ok else (False, f"this torch ({torch.__version__}) has no oneDNN int8 convolutions (torch.ops.onednn.qconv2d_pointwise)")


def _pack_int8(weight: torch.Tensor, stride: int, sym_pad: Tuple[int, int], x_zero_point: int):
    """Symmetric per-output-channel int8 weights, packed for oneDNN: (packed, scales, zero points)."""
    w_scale = (weight.abs().amax(dim=(1, 2, 3)).clamp_min(1e-30) / 127.0).float()
    qw = torch.round(weight / w_scale.view(-1, 1, 1, 1)).clamp(-127, 127).to(torch.int8)
    packed = torch.ops.onednn.qconv_prepack(
        qw.contiguous(memory_format=torch.channels_last), w_scale, 1.0, int(x_zero_point), [stride, stride], list(sym_pad), [1, 1], 1, None
    )
    return packed, w_scale, torch.zeros(weight.shape[0], dtype=torch.int32)


def _qconv(xq, x_zero_point, packed, w_scale, w_zp, stride, sym_pad, out_dtype):
    # input scale 1: the output is the exact integer sum times the weight scale
    return torch.ops.onednn.qconv2d_pointwise(
        xq, 1.0, int(x_zero_point), packed, w_scale, w_zp, None, [stride, stride], list(sym_pad), [1, 1], 1, 1.0, 0, out_dtype, "none", [], ""
    )


def quantize_activations(x: torch.Tensor) -> torch.Tensor:
    """Non-negative map ``[N, C, H, W]`` -> uint8 ``round(x * 255 / max x)`` per image (channels-last).

    One scale per image, not per batch, so an image's features never depend on the other
    images it was batched with. The scale is not kept: the next convolution's GroupNorm cancels it.
    """
    if x.dtype == torch.bfloat16 and native.in_use() and x.is_contiguous(memory_format=torch.channels_last):
        return native.quantize_u8(x)
    return _quantize_torch(x.float().clamp_min(0.0))


def _max_pool_quantize(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The stem's 3x3/2 "SAME" max pool of a non-negative bfloat16 map, and its uint8 quantisation."""
    if native.in_use() and x.shape[1] % 16 == 0 and x.is_contiguous(memory_format=torch.channels_last):
        pads = _same_pads(x.shape[-2], 3, 2) + _same_pads(x.shape[-1], 3, 2)
        return native.maxpool_nonneg(x, 3, 2, pads, quantize=True)
    x = same_max_pool(x, 3, 2)
    return x, quantize_activations(x)


def _quantize_torch(v: torch.Tensor) -> torch.Tensor:
    m = v.amax(dim=(1, 2, 3), keepdim=True)
    # a true division, as the native kernel does (a scalar over a tensor becomes a reciprocal
    # times 255, one unit in the last place off, which rounds some values the other way)
    k = torch.where(m > 0, torch.full_like(m, 255.0) / m.clamp_min(1e-30), torch.zeros_like(m))
    return torch.round(v * k).clamp(0, 255).to(torch.uint8).contiguous(memory_format=torch.channels_last)


def norm_act_int8(
    x: torch.Tensor, norm: nn.GroupNorm, residual: Optional[torch.Tensor] = None, residual_norm: Optional[nn.GroupNorm] = None,
    pre: Optional[torch.Tensor] = None, out: str = "uint8",
):
    """``relu(norm(x + pre) + shortcut)`` for the int8 encoder, as bfloat16, the next int8
    convolution's uint8 input (:func:`quantize_activations`), or both: the native one-pass kernel
    (``native.groupnorm_act``) where it is built, the same arithmetic in torch ops elsewhere."""
    if native.groupnorm_available(x, norm.num_groups, allow_float32=True) and (residual is None or residual.shape == x.shape):
        return native.groupnorm_act(x, norm, residual, residual_norm, pre=pre, out=out)
    # NCHW memory: torch's channels-last GroupNorm reduces in an order that depends on the batch,
    # and an image's features must not
    v = (x.float() + pre.float() if pre is not None else x.float()).contiguous()
    v = F.group_norm(v, norm.num_groups, norm.weight.float(), norm.bias.float(), norm.eps)
    if residual is not None:
        r = residual.float().contiguous()
        v = v + (F.group_norm(r, residual_norm.num_groups, residual_norm.weight.float(), residual_norm.bias.float(), residual_norm.eps)
                 if residual_norm is not None else r)
    v = F.relu(v)
    y = v.to(torch.bfloat16).contiguous(memory_format=torch.channels_last) if out != "uint8" else None
    q = _quantize_torch(v) if out != "bfloat16" else None
    return y if q is None else (q if y is None else (y, q))


def norm_relu(
    x: torch.Tensor, norm: nn.GroupNorm, residual: Optional[torch.Tensor] = None, residual_norm: Optional[nn.GroupNorm] = None
) -> torch.Tensor:
    """``relu(norm(x) + shortcut)``, shortcut = 0, ``residual`` or ``residual_norm(residual)``.

    bfloat16 channels-last maps without autograd (the frozen encoder's inference) take the
    native one-pass kernel (``native.groupnorm_act``); anything else runs the torch ops.
    """
    if native.groupnorm_available(x, norm.num_groups) and (residual is None or residual.shape == x.shape):
        return native.groupnorm_act(x, norm, residual, residual_norm)
    y = norm(x)
    if residual is not None:
        y = y + (residual_norm(residual) if residual_norm is not None else residual)
    return F.relu(y)


class BasicBlock(nn.Module):
    """Two 3x3 convs + GroupNorm with a (projected when needed) identity shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.conv1 = SameConv2d(in_ch, out_ch, 3, stride)
        self.norm1 = nn.GroupNorm(NUM_GROUPS, out_ch, eps=GN_EPS)
        self.conv2 = SameConv2d(out_ch, out_ch, 3, 1)
        self.norm2 = nn.GroupNorm(NUM_GROUPS, out_ch, eps=GN_EPS)
        self.has_proj = in_ch != out_ch or stride != 1
        if self.has_proj:
            self.proj_conv = SameConv2d(in_ch, out_ch, 1, stride)
            self.proj_norm = nn.GroupNorm(NUM_GROUPS, out_ch, eps=GN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = norm_relu(self.conv1(x), self.norm1)
        if self.has_proj:
            return norm_relu(self.conv2(y), self.norm2, self.proj_conv(x), self.proj_norm)
        return norm_relu(self.conv2(y), self.norm2, x)

    def forward_int8(self, xq: torch.Tensor, x: Optional[torch.Tensor], out: str) -> torch.Tensor:
        """The block on uint8 input ``xq`` (``x``: the same map in bfloat16, needed only for an
        identity shortcut); ``out`` as in :func:`norm_act_int8`."""
        yq = norm_act_int8(self.conv1.forward_int8(xq), self.norm1)
        if self.has_proj:
            return norm_act_int8(self.conv2.forward_int8(yq), self.norm2, self.proj_conv.forward_int8(xq), self.proj_norm, out=out)
        return norm_act_int8(self.conv2.forward_int8(yq), self.norm2, x, out=out)


class ResNet10Encoder(nn.Module):
    """Frozen ResNet-10: uint8 ``[B, H, W, 3]`` RGB -> float32 ``[B, H/32, W/32, 512]`` (channel-last).

    It computes in channels-last memory order, so the channel-last output (the
    feature-cache layout, ``types.FEATURE_SHAPE_128``) costs no copy.
    ``compute_dtype``: ``"bfloat16"`` holds the weights and runs the convolutions in
    bfloat16 (where the CPU/GPU has native bfloat16, measured on the Zen 4 host, one thread,
    same run: 4 images 17.1 -> 9.9 ms, 2 images 10.7 -> 6.0 ms; features within 1% of
    float32), ``"float32"`` for exact float32, ``"auto"`` the fastest of these the device
    runs well (:func:`resolve_encoder_dtype`: int8 on x86 CPUs with VNNI; ``compute_dtype``
    then holds what it resolved to, ``dtype_setting`` the setting). ``"int8"`` (x86 CPUs with
    torch's oneDNN, :func:`int8_available`) runs every convolution in int8: weights
    quantised per output channel from the float32 ones, each activation map quantised to
    uint8 with its own per-image scale, which the GroupNorm after every convolution
    cancels, and the stem on the raw pixels with the normalisation folded in
    (:meth:`_int8_stem`). 1.6-1.9x faster than bfloat16 on the Zen 4 host, features
    within about 2% of float32, and bit-identical for an image in any batch (DESIGN.md,
    "The int8 frozen encoder"). Weight files are float32 either way.

    Frozen means: parameters have ``requires_grad=False``, the module is always in
    eval mode (``train()`` is a no-op), and ``forward`` runs under ``no_grad`` so
    no gradient reaches these weights even if a parent module re-enables
    ``requires_grad``. Load real weights with :meth:`load_pretrained`; a fresh
    instance has random (Kaiming) weights, which tests use.
    """

    def __init__(self, seed: Optional[int] = None, compute_dtype: str = "auto"):
        super().__init__()
        if compute_dtype not in ENCODER_DTYPES:
            raise ValueError(f"encoder compute_dtype must be one of {ENCODER_DTYPES}, got {compute_dtype!r}")
        if compute_dtype == "int8" and not int8_available()[0]:
            raise ValueError(f"compute_dtype 'int8': {int8_available()[1]}; use 'auto'")
        self.dtype_setting = compute_dtype  # as asked; compute_dtype: what it means on this device
        self.compute_dtype = resolve_encoder_dtype(compute_dtype, "cpu")
        self._dtype = _weights_dtype(self.compute_dtype, "cpu")
        with torch.random.fork_rng(enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            self.stem_conv = SameConv2d(3, STAGE_WIDTHS[0], 7, 2, pad=3)  # flax padding=[(3, 3), (3, 3)], not SAME
            self.stem_norm = nn.GroupNorm(NUM_GROUPS, STAGE_WIDTHS[0], eps=GN_EPS)
            blocks: List[BasicBlock] = []
            in_ch = STAGE_WIDTHS[0]
            for i, width in enumerate(STAGE_WIDTHS):
                blocks.append(BasicBlock(in_ch, width, stride=1 if i == 0 else 2))
                in_ch = width
            self.blocks = nn.ModuleList(blocks)
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        # Normalisation constants are buffers that are not part of the weights file.
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        super().train(False)
        self.to(memory_format=torch.channels_last)

    def _apply(self, fn, *args, **kwargs):
        """After ``.to(device)`` and friends: re-resolve ``"auto"`` for the device and keep the
        weights in the compute dtype (a frozen encoder's weights are cast once, not per call as
        autocast would: ~1 ms per forward here) and the normalisation constants in float32."""
        out = super()._apply(fn, *args, **kwargs)
        if hasattr(self, "_dtype"):
            self.compute_dtype = resolve_encoder_dtype(self.dtype_setting, self.mean.device)
            self._dtype = _weights_dtype(self.compute_dtype, self.mean.device)
            with torch.no_grad():
                for p in self.parameters(recurse=True):
                    if p.dtype != self._dtype:
                        p.data = p.data.to(self._dtype)
                for name in ("mean", "std"):
                    setattr(self, name, getattr(self, name).float())
        return out

    out_channels = STAGE_WIDTHS[-1]

    def train(self, mode: bool = True) -> "ResNet10Encoder":
        """Always eval: a frozen encoder has no training mode (GroupNorm has no stats anyway)."""
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8:
            raise TypeError(
                f"ResNet10Encoder expects uint8 HWC images, got {images.dtype}; "
                "keep images uint8 end to end (normalisation happens inside)"
            )
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected images of shape [B, H, W, 3], got {tuple(images.shape)}")
        if self.compute_dtype == "int8":
            return self._forward_int8(images)
        with torch.no_grad():
            # [B, H, W, 3] viewed as NCHW is already channels-last in memory
            # (x / 255 - mean) / std as one multiply-add over the contiguous channel-last pixels
            scale, shift = 1.0 / (255.0 * self.std.view(3)), -(self.mean / self.std).view(3)
            x = torch.addcmul(shift, images.float(), scale).to(self.stem_conv.weight.dtype).permute(0, 3, 1, 2)
            x = norm_relu(self.stem_conv(x), self.stem_norm)
            x = same_max_pool(x, 3, 2)
            for block in self.blocks:
                x = block(x)
            return x.permute(0, 2, 3, 1).float().contiguous()

    def _forward_int8(self, images: torch.Tensor) -> torch.Tensor:
        """int8 convolutions with bfloat16 outputs; GroupNorms, shortcuts and ReLUs in float32 (see the class docstring)."""
        if images.device.type != "cpu":
            raise ValueError(f"compute_dtype 'int8' runs on the CPU only, got images on {images.device}")
        if native.encoder_op_in_use() if FUSED_INT8 is None else FUSED_INT8:
            if not native.encoder_op_in_use():
                raise RuntimeError(f"FUSED_INT8 is set, but {native.encoder_op_status()}")
            tensors, plan = self._int8_plan(images.shape[1], images.shape[2])
            with torch.no_grad():
                return torch.ops.hilserl.resnet10_int8(images, tensors, plan, self.stem_norm.eps)
        with torch.no_grad():
            x = images.contiguous().permute(0, 3, 1, 2)  # uint8 pixels, channels-last: the stem's int8 input as they are
            packed, w_scale, w_zp, pre = self._int8_stem(images.shape[1], images.shape[2])
            # bfloat16 out: the stem's GroupNorm reads half the bytes of float32 (its map is the
            # largest), 0.3-0.9 ms less per 2 images, features as far from float32 as before (2.1%)
            y = _qconv(x, STEM_ZERO_POINT, packed, w_scale, w_zp, 2, (3, 3), torch.bfloat16)
            x, xq = _max_pool_quantize(norm_act_int8(y, self.stem_norm, pre=pre, out="bfloat16"))
            for i, block in enumerate(self.blocks):
                last = i == len(self.blocks) - 1
                # the bfloat16 map is needed only as an identity shortcut or as the features
                keep = "bfloat16" if last else ("both" if not self.blocks[i + 1].has_proj else "uint8")
                out = block.forward_int8(xq, x, keep)
                x, xq = (out, None) if keep == "bfloat16" else (out if keep == "both" else (None, out))
            return x.permute(0, 2, 3, 1).float().contiguous()

    def forward_path(self) -> str:
        """How a forward pass runs here, for logs: the precision and, for int8, whether as one
        torch operator (without the GIL) or as the Python forward, and why."""
        if self.compute_dtype != "int8":
            return f"{self._dtype}".replace("torch.", "")
        if FUSED_INT8 is False:
            return "int8, Python forward (FUSED_INT8 = False)"
        if native.encoder_op_in_use():
            return "int8, one torch operator (no GIL hand-offs)"
        return f"int8, Python forward ({native.encoder_op_status()})"

    def _int8_plan(self, h: int, w: int) -> Tuple[List[torch.Tensor], List[int]]:
        """What ``torch.ops.hilserl.resnet10_int8`` needs besides the images, for ``h x w`` images
        (layout in ``native/encoder_int8.cpp``): packed int8 weights and paddings per convolution,
        float32 norm parameters, the stem's constant map. Kept until the weights change."""
        key = (h, w, tuple((p.data_ptr(), p._version) for p in self.parameters()))
        cached = self.__dict__.get("_int8_plan_cache")
        if cached is not None and cached[0] == key:
            return cached[1]

        def norm(gn: nn.GroupNorm) -> List[torch.Tensor]:
            if gn.num_groups != NUM_GROUPS or gn.eps != self.stem_norm.eps:
                raise ValueError("the int8 operator takes one GroupNorm setting for the whole encoder")
            return [gn.weight.detach().float().contiguous(), gn.bias.detach().float().contiguous()]

        def conv(c: SameConv2d, size: Tuple[int, int]) -> Tuple[List[torch.Tensor], List[int], Tuple[int, int]]:
            pads, out = c.same_padding(*size)
            # as in SameConv2d.forward_int8: the operator pads asymmetric paddings with a copy
            packed = c._int8_weights(c.int8_sym_pad(pads) or (0, 0), 0)
            return list(packed), [c.stride[0], *pads], out

        packed, w_scale, w_zp, pre = self._int8_stem(h, w)
        tensors = [packed, w_scale, w_zp, pre, *norm(self.stem_norm)]
        _, size = self.stem_conv.same_padding(h, w)
        pool = _same_pads(size[0], 3, 2) + _same_pads(size[1], 3, 2)  # the stem's 3x3/2 max pool
        plan = [NUM_GROUPS, len(self.blocks), STEM_ZERO_POINT, self.stem_conv.stride[0], self.stem_conv.explicit_pad, 3, 2, *pool]
        size = ((size[0] + pool[0] + pool[1] - 3) // 2 + 1, (size[1] + pool[2] + pool[3] - 3) // 2 + 1)
        for block in self.blocks:
            t1, p1, out = conv(block.conv1, size)
            t2, p2, _ = conv(block.conv2, out)
            plan += [int(block.has_proj), *p1, *p2]
            tensors += t1 + norm(block.norm1) + t2 + norm(block.norm2)
            if block.has_proj:
                t3, p3, _ = conv(block.proj_conv, size)
                tensors += t3 + norm(block.proj_norm)
                plan += p3
            else:
                plan += [0] * 5
            size = out
        self.__dict__["_int8_plan_cache"] = (key, (tensors, plan))
        return tensors, plan

    def _int8_stem(self, h: int, w: int):
        """The stem with the pixel normalisation folded in, for raw uint8 pixels with zero point 128.

        ``conv(W, pad0((x / 255 - mean) / std)) = conv(W a, pad0(x - 128)) + conv(W, pad0(a 128 - mean / std))``
        with ``a = 1 / (255 std)`` per input channel; oneDNN pads with the zero point, so the first
        term is exact integer arithmetic on the pixels and the second a constant map per image size
        (computed here in float64), added before the stem's GroupNorm. Centering at 128 keeps the
        two terms from cancelling, which would magnify the weights' int8 rounding.
        """
        wt = self.stem_conv.weight
        key = (wt.data_ptr(), wt._version, h, w)
        cached = self.__dict__.get("_int8_stem_cache")
        if cached is None or cached[0] != key:
            W = wt.detach().double()
            a = 1.0 / (255.0 * self.std.double().view(3))
            b = -(self.mean.double() / self.std.double()).view(3)
            packed, w_scale, w_zp = _pack_int8((W * a.view(1, 3, 1, 1)).float(), 2, (3, 3), STEM_ZERO_POINT)
            field = (b + a * STEM_ZERO_POINT).view(1, 3, 1, 1).expand(1, 3, h, w)
            pre = F.conv2d(field, W, None, 2, 3).float().contiguous(memory_format=torch.channels_last)
            cached = (key, (packed, w_scale, w_zp, pre))
            self.__dict__["_int8_stem_cache"] = cached
        return cached[1]

    # ---------------------------------------------------------------- weights
    def expected_tensors(self) -> Dict[str, Tuple[Tuple[int, ...], np.dtype]]:
        return {k: (tuple(v.shape), np.dtype(np.float32)) for k, v in self.state_dict().items()}

    def save_weights(self, path: Union[str, Path]) -> Path:
        """Write the weights (names in the module docstring) as a safetensors file."""
        arrays = {k: v.detach().cpu().float().numpy() for k, v in self.state_dict().items()}  # float32 on disk
        return tensorio.save_file(path, arrays, {"kind": WEIGHTS_KIND, "architecture": "resnet10"})

    def load_pretrained(self, path: Union[str, Path]) -> "ResNet10Encoder":
        """Load weights strictly: every tensor present, right shape, nothing extra.

        Raises ``tensorio.TensorIOError`` naming the file and the offending key.
        """
        arrays, meta = tensorio.load_file(path)
        kind = meta.get("kind")
        if kind is not None and kind != WEIGHTS_KIND:
            raise tensorio.TensorIOError(
                f"{path}: holds {kind!r}, not ResNet-10 encoder weights ({WEIGHTS_KIND!r})"
            )
        expected = {k: (shape, None) for k, (shape, _) in self.expected_tensors().items()}
        tensorio.check_arrays(arrays, expected, str(path))
        state = {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in arrays.items()}
        self.load_state_dict(state, strict=True)
        return self

    def identity(self) -> Dict[str, str]:
        """What made this encoder's features, for files that store them (learner checkpoints'
        replay buffers, reward classifiers): the architecture, the weights and the precision
        it computes in. The weights are named by a digest of their values rounded to
        bfloat16, the coarsest precision they are held in, so one set of weights has one name
        whether it came from a file or a seed and whichever precision holds it (about 20 ms).
        Same weights in another precision give features within about 2% (int8) or 1%
        (bfloat16) of each other; other weights give unrelated features."""
        digest = hashlib.sha256()
        with torch.no_grad():
            for k, v in sorted(self.state_dict().items()):
                raw = v.detach().cpu().to(torch.bfloat16).contiguous().view(torch.int16).numpy()
                digest.update(k.encode() + b"\0" + raw.tobytes())
        return {"architecture": "resnet10", "weights": "bf16-sha256:" + digest.hexdigest()[:16],
                "compute_dtype": "int8" if self.compute_dtype == "int8" else str(self._dtype).replace("torch.", "")}


class EncoderMismatch(ValueError):
    """Stored features come from an encoder with other weights (or architecture) than the one
    running: mixing them would train (or judge) on unrelated features."""


def compare_encoder_identity(recorded: Optional[Mapping[str, Any]], current: Mapping[str, str], what: str,
                             remedy: str = "start from a fresh file") -> str:
    """Check the encoder identity a file recorded against the running encoder's.

    Raises :class:`EncoderMismatch` when the architecture or the weights differ. Returns a
    warning text when only the precision differs (features within a few percent: usable, but
    the user should know), "" when they match or the file recorded none (older files)."""
    if not recorded:
        return ""
    if not isinstance(recorded, Mapping):
        raise EncoderMismatch(f"{what}: its encoder identity is not a mapping ({type(recorded).__name__})")
    for key in ("architecture", "weights"):
        if recorded.get(key) != current.get(key):
            raise EncoderMismatch(
                f"{what} holds features of a frozen encoder with {key} {recorded.get(key)!r}; this node runs "
                f"{current.get(key)!r} (encoder_weights). Use the encoder it was made with, or {remedy}")
    if recorded.get("compute_dtype") != current.get("compute_dtype"):
        return (f"{what} holds features computed in {recorded.get('compute_dtype')}; this node computes in "
                f"{current.get('compute_dtype')} (encoder_dtype): same weights, features within a few percent")
    return ""


# -------------------------------------------------------------- feature cache
def _device_of(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def encode_features(
    encoder: ResNet10Encoder,
    images_uint8: Union[np.ndarray, torch.Tensor],
    batch_size: int = 256,
) -> Union[np.ndarray, torch.Tensor]:
    """Run the frozen encoder over ``[N, H, W, 3]`` uint8 images in chunks.

    Returns float16 channel-last ``[N, h, w, 512]`` features (the buffer's feature-mode dtype):
    a numpy array for numpy input, a CPU torch tensor for torch input.
    """
    as_numpy = isinstance(images_uint8, np.ndarray)
    images = torch.from_numpy(images_uint8) if as_numpy else images_uint8
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    device = _device_of(encoder)
    chunks = []
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            chunk = images[start : start + batch_size].to(device)
            chunks.append(encoder(chunk).to(torch.float16).cpu())
    if chunks:
        out = torch.cat(chunks)
    else:
        h, w = images.shape[1:3] if images.ndim == 4 else (128, 128)
        out = torch.zeros((0, math.ceil(h / 32), math.ceil(w / 32), encoder.out_channels), dtype=torch.float16)
    return out.numpy() if as_numpy else out


class ThreadedEncoder:
    """:func:`encode_features` with the images of a call shared out over ``threads`` threads.

    The calling thread encodes the first share and ``threads - 1`` helper threads the
    others, at the same time (torch ops and the native kernels release the GIL). Each
    thread runs torch single-threaded: this is for an actor that encodes a few camera
    frames per step (one caller at a time), not for batches. int8 features are the same
    whatever the split (each image's integer sums are exact); bfloat16 and float32 ones
    may differ from one batch in the last bits.

    For the length of a call the caller is held on the CPU it is on and the helpers are
    kept off it (thread affinities; the caller's is restored after). Otherwise Linux wakes
    a helper on its waker's CPU, and a thread that slept waiting for the GIL on the CPU of
    the thread that released it, and the threads share one core while another sits idle:
    on the 2-core Zen 4 host two threads then took longer than one (4 images after 85 ms
    idle: 14.7-16.5 ms against 13.3-14.2 ms); held apart they take 8.5-9.3 ms against
    12.0-12.3 ms.
    """

    def __init__(self, encoder: "ResNet10Encoder", threads: int = 2):
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.encoder = encoder
        self.threads = int(threads)
        self._pool = None
        self._helper_tids: List[int] = []
        self._helpers_off: Optional[int] = None  # the CPU the helpers were last kept off
        if self.threads > 1:
            import threading
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.threads - 1, thread_name_prefix="frozen-encoder")
            ready = threading.Barrier(self.threads)  # every helper started and has said who it is
            lock = threading.Lock()

            def register() -> None:
                with lock:
                    self._helper_tids.append(threading.get_native_id())
                ready.wait(timeout=30)

            for _ in range(self.threads - 1):
                self._pool.submit(register)
            ready.wait(timeout=30)

    def _pin(self) -> Optional[set]:
        """Hold the caller on its CPU and the helpers off it for one call; returns the caller's
        affinity to restore (None: nothing changed). The caller must be held too: waiting for
        the GIL, it sleeps, and Linux wakes it on the CPU of the helper that released it."""
        cpu = _current_cpu()
        try:
            allowed = os.sched_getaffinity(0)
            others = allowed - {cpu}
            if cpu is None or not others or cpu not in allowed:
                return None
            if cpu != self._helpers_off:
                for tid in self._helper_tids:
                    os.sched_setaffinity(tid, others)
                self._helpers_off = cpu
            os.sched_setaffinity(0, {cpu})  # this thread only
            return allowed
        except OSError:  # a helper gone, or affinity not permitted: leave placement to the OS
            return None

    def __call__(self, images: np.ndarray, then: Optional[Callable[[int, int, np.ndarray], Any]] = None):
        """``[N, H, W, 3]`` uint8 -> float16 ``[N, h, w, C]``, as :func:`encode_features`.

        With ``then``, each thread goes on with ``then(start, stop, features)`` on its share
        ``images[start:stop]`` (e.g. the policy's image heads of those cameras) and the call
        returns the list of those results, in image order.
        """
        n = images.shape[0]
        bounds = np.linspace(0, n, max(1, min(self.threads, n)) + 1).round().astype(int)
        spans = list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))

        def work(a: int, b: int):
            feats = encode_features(self.encoder, images[a:b])
            return feats if then is None else then(a, b, feats)

        if self._pool is None or len(spans) < 2:
            out = [work(a, b) for a, b in spans]
        else:
            restore = self._pin()
            try:
                futures = [self._pool.submit(work, a, b) for a, b in spans[1:]]
                out = [work(*spans[0])] + [f.result() for f in futures]
            finally:
                if restore is not None:
                    os.sched_setaffinity(0, restore)
        return np.concatenate(out) if then is None else out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def resolve_encoder_threads(setting: int, cameras: int, cpus: Optional[int] = None) -> int:
    """A node's ``encoder_threads`` setting resolved: as set when positive; for 0 (auto) 2 (at most
    one per camera) where the process may use 4 or more CPUs (``cpus``, default: its affinity),
    else 1: on 2 CPUs the other one is usually busy with a learner or a driver."""
    if setting > 0:
        return int(setting)
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(2, cameras)) if cpus >= 4 else 1


_SCHED_GETCPU = None  # libc's sched_getcpu, loaded on first use (False: not available)


def _current_cpu() -> Optional[int]:
    """The CPU the calling thread runs on (Linux/glibc ``sched_getcpu``), or None."""
    global _SCHED_GETCPU
    if _SCHED_GETCPU is None:
        try:
            import ctypes

            fn = ctypes.CDLL(None, use_errno=True).sched_getcpu
            fn.restype = ctypes.c_int
            _SCHED_GETCPU = fn
        except (OSError, AttributeError):
            _SCHED_GETCPU = False
    if _SCHED_GETCPU is False:
        return None
    cpu = _SCHED_GETCPU()
    return cpu if cpu >= 0 else None


def featurize_observation(
    observation: Observation, encoder: ResNet10Encoder, cameras: Optional[Iterable[str]] = None,
    encode: Optional[Callable[[np.ndarray], np.ndarray]] = None,
) -> Observation:
    """Replace ``image/<cam>`` entries of one observation by cached ``feature/<cam>``.

    ``cameras`` limits which cameras are converted (default: all images present).
    Other keys are passed through unchanged. All cameras go through the encoder as
    one batch (on one CPU thread, 2 images take 11.5 ms together, 8.2 ms each alone),
    or through ``encode`` (e.g. a :class:`ThreadedEncoder` of ``encoder``) when given.
    """
    wanted = None if cameras is None else set(cameras)
    keys = [k for k in observation if k.startswith(IMAGE_PREFIX) and (wanted is None or k[len(IMAGE_PREFIX):] in wanted)]
    out: Observation = {k: v for k, v in observation.items() if k not in keys}
    if keys:
        stacked = np.stack([np.asarray(observation[k]) for k in keys])
        feats = encode(stacked) if encode is not None else encode_features(encoder, stacked)
        for i, key in enumerate(keys):
            out[FEATURE_PREFIX + key[len(IMAGE_PREFIX):]] = feats[i]
    return out


def load_frozen_encoder(weights_path: str = "", compute_dtype: str = "auto") -> ResNet10Encoder:
    """The frozen ResNet-10 from a safetensors file; an empty path gives seeded random weights
    (tests and smoke runs only: callers should say so in their diagnostics)."""
    encoder = ResNet10Encoder(seed=0, compute_dtype=compute_dtype)
    if weights_path:
        encoder.load_pretrained(weights_path)
    return encoder


class CachedFeaturizer:
    """:func:`featurize_observation` that remembers the last image per camera.

    A learner in feature mode featurizes ``observation`` and ``next_observation``
    of every transition; the next transition's observation is the same image.
    Reusing the remembered features halves the encoder work and guarantees the
    byte-identical features the replay buffer needs to store that observation
    only once (a GPU or a different batch size can change the last bits). The
    images it has not seen go through the encoder together, one batch per call:
    a learner step with 2 (4) new camera images took 14.1 (27.7) ms one by one and
    takes 10.2 (17.0) ms batched (one thread, Zen 4 host).
    """

    def __init__(self, encoder: ResNet10Encoder, cameras: Optional[Iterable[str]] = None):
        self.encoder = encoder
        self.cameras = None if cameras is None else set(cameras)
        self._last: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}
        self.hits = 0
        self.misses = 0

    def __call__(self, observation: Observation) -> Observation:
        out: Observation = {}
        misses: Dict[tuple, List[Tuple[str, np.ndarray]]] = {}  # image shape -> (camera, image)
        for key, value in observation.items():
            cam = key[len(IMAGE_PREFIX):] if key.startswith(IMAGE_PREFIX) else None
            if cam is None or (self.cameras is not None and cam not in self.cameras):
                out[key] = value
                continue
            image = np.asarray(value)
            last = self._last.get(cam)
            if last is not None and np.array_equal(last[0], image):
                self.hits += 1
                out[FEATURE_PREFIX + cam] = last[1]
            else:
                out[FEATURE_PREFIX + cam] = None  # keeps the observation's key order
                misses.setdefault(image.shape, []).append((cam, image))
        # The new images of all cameras go through the encoder as one batch: on one CPU thread 2
        # images cost 11.5 ms together against 2 x 8.2 ms one by one (docs/BENCHMARKS.md).
        for group in misses.values():
            self.misses += len(group)
            feats = encode_features(self.encoder, np.stack([image for _, image in group]))
            for (cam, image), f in zip(group, feats):
                self._last[cam] = (image.copy(), f)
                out[FEATURE_PREFIX + cam] = f
        return out


# ------------------------------------------------------- flax weight converter
def _flax_to_torch_names() -> Dict[str, Tuple[str, str]]:
    """torch name -> (flax '/' path, kind) with kind 'conv' or 'vec'."""
    table: Dict[str, Tuple[str, str]] = {
        "stem_conv.weight": ("conv_init/kernel", "conv"),
        "stem_norm.weight": ("norm_init/scale", "vec"),
        "stem_norm.bias": ("norm_init/bias", "vec"),
    }
    for i in range(len(STAGE_WIDTHS)):
        fb, tb = f"ResNetBlock_{i}", f"blocks.{i}"
        table[f"{tb}.conv1.weight"] = (f"{fb}/Conv_0/kernel", "conv")
        table[f"{tb}.norm1.weight"] = (f"{fb}/MyGroupNorm_0/scale", "vec")
        table[f"{tb}.norm1.bias"] = (f"{fb}/MyGroupNorm_0/bias", "vec")
        table[f"{tb}.conv2.weight"] = (f"{fb}/Conv_1/kernel", "conv")
        table[f"{tb}.norm2.weight"] = (f"{fb}/MyGroupNorm_1/scale", "vec")
        table[f"{tb}.norm2.bias"] = (f"{fb}/MyGroupNorm_1/bias", "vec")
        if i > 0:
            table[f"{tb}.proj_conv.weight"] = (f"{fb}/conv_proj/kernel", "conv")
            table[f"{tb}.proj_norm.weight"] = (f"{fb}/norm_proj/scale", "vec")
            table[f"{tb}.proj_norm.bias"] = (f"{fb}/norm_proj/bias", "vec")
    return table


def _strip_prefix(flat: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Drop a leading path prefix so that 'conv_init/kernel' is at the root."""
    for key in flat:
        if key.endswith("conv_init/kernel"):
            prefix = key[: -len("conv_init/kernel")]
            return {k[len(prefix):]: v for k, v in flat.items() if k.startswith(prefix)}
    return dict(flat)


def convert_flax_resnet10(flat_params: Mapping[str, np.ndarray], where: str = "<params>") -> Tuple[Dict[str, np.ndarray], List[str]]:
    """Map a flattened flax ResNet-10 tree to this module's tensor names.

    Returns (torch-named float32 arrays, ignored flax keys). Conv kernels go from
    flax HWIO to torch OIHW. Raises ``TensorIOError`` naming the missing or
    mis-shaped flax key.
    """
    flat = _strip_prefix(flat_params)
    expected = ResNet10Encoder().expected_tensors()
    out: Dict[str, np.ndarray] = {}
    used = set()
    for torch_name, (flax_name, kind) in _flax_to_torch_names().items():
        if flax_name not in flat:
            raise tensorio.TensorIOError(
                f"{where}: missing flax parameter {flax_name!r} (needed for {torch_name}); "
                "is this the SERL/hil-serl resnetv1-10 tree flattened with sep='/'?"
            )
        value = np.asarray(flat[flax_name], dtype=np.float32)
        if kind == "conv":
            value = value.transpose(3, 2, 0, 1)
        shape = expected[torch_name][0]
        if value.shape != shape:
            raise tensorio.TensorIOError(
                f"{where}: flax parameter {flax_name!r} has shape {tuple(np.shape(flat[flax_name]))}, "
                f"which does not give {torch_name} {shape}"
            )
        out[torch_name] = np.ascontiguousarray(value)
        used.add(flax_name)
    return out, sorted(set(flat) - used)


def convert_npz(npz_path: Union[str, Path], out_path: Union[str, Path]) -> List[str]:
    """Convert a flattened flax ``.npz`` (see module docstring) into a weights file.

    Returns the ignored flax keys. The result loads with :meth:`ResNet10Encoder.load_pretrained`.
    """
    with np.load(npz_path, allow_pickle=False) as data:
        flat = {k: data[k] for k in data.files}
    arrays, ignored = convert_flax_resnet10(flat, str(npz_path))
    tensorio.save_file(
        out_path,
        arrays,
        {"kind": WEIGHTS_KIND, "architecture": "resnet10", "converted_from": Path(npz_path).name},
    )
    return ignored


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hilserl_core.vision.encoders", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    conv = sub.add_parser("convert", help="flattened flax ResNet-10 .npz -> hilserl safetensors weights")
    conv.add_argument("npz", help="npz of '/'-joined flax paths (see the module docstring)")
    conv.add_argument("out", help="output .safetensors file")
    args = parser.parse_args(argv)
    try:
        ignored = convert_npz(args.npz, args.out)
    except (tensorio.TensorIOError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if ignored:
        print(f"ignored {len(ignored)} flax entries not in the encoder: {', '.join(ignored[:8])}"
              + (" ..." if len(ignored) > 8 else ""))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
