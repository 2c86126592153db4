"""The frozen ResNet-10 with int8 convolutions (speed only; ``ResNet10Encoder(compute_dtype="int8")``).

Weights are quantised per output channel from the float32 ones, each activation map to uint8
with its own per-image scale (which the GroupNorm after every convolution cancels), and the stem
runs on the raw pixels with the normalisation folded in (:func:`stem`). The integer sums are
exact, so an image's features are the same in any batch. The whole forward also runs as one
torch operator (``torch.ops.hilserl.resnet10_int8``, ``native/encoder_int8.cpp``; the same
convolutions and kernels in the same order, without a GIL hand-off between them), chosen by the
encoder's ``int8_operator`` argument. The plain float forward in ``vision/encoders.py`` is the
reference these are tested against.
"""

from __future__ import annotations

import platform
from typing import TYPE_CHECKING, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from . import native

if TYPE_CHECKING:
    from ..vision.encoders import BasicBlock, ResNet10Encoder, SameConv2d

__all__ = ["STEM_ZERO_POINT", "int8_available", "quantize_activations", "norm_act_int8", "sym_pad", "conv_int8",
           "conv_weights", "block_int8", "forward", "operator_plan", "stem"]

STEM_ZERO_POINT = 128  # the int8 stem reads raw pixels centred at 128 (stem)


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
    from ..vision import encoders as enc
    if native.in_use() and x.shape[1] % 16 == 0 and x.is_contiguous(memory_format=torch.channels_last):
        pads = enc._same_pads(x.shape[-2], 3, 2) + enc._same_pads(x.shape[-1], 3, 2)
        return native.maxpool_nonneg(x, 3, 2, pads, quantize=True)
    x = enc.same_max_pool(x, 3, 2)
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


def sym_pad(pads: Tuple[int, int, int, int]) -> Optional[Tuple[int, int]]:
    """The (height, width) padding oneDNN applies itself (with the zero point) when ``pads``
    is symmetric; None when it is not, and the int8 input needs a zero-padded copy instead."""
    top, bottom, left, right = pads
    return (top, left) if top == bottom and left == right else None


def conv_int8(conv: "SameConv2d", xq: torch.Tensor, out_dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """This convolution on a uint8 map (zero point 0, any per-image scale) with int8 weights.

    ``xq``: uint8 ``[N, C, H, W]`` in channels-last memory, e.g. from
    :func:`quantize_activations`. The result is ``conv(weight, xq)`` up to the int8 weights'
    rounding, in ``out_dtype``: the integer sums are exact, so it is the same for an image
    whatever else is in the batch. It keeps each image's input scale, which the GroupNorm
    after every convolution of the encoder cancels.
    """
    pads, _ = conv.same_padding(xq.shape[-2], xq.shape[-1])
    sym = sym_pad(pads)
    if sym is None:
        top, bottom, left, right = pads
        xq, sym = F.pad(xq, (left, right, top, bottom)), (0, 0)
    packed, w_scale, w_zp = conv_weights(conv, sym, 0)
    return _qconv(xq, 0, packed, w_scale, w_zp, conv.stride[0], sym, out_dtype)


def conv_weights(conv: "SameConv2d", sym_pad: Tuple[int, int], x_zero_point: int):
    """oneDNN-packed int8 weights (symmetric, per output channel) for this padding, rebuilt
    when the float weights change (loaded, moved)."""
    key = (conv.weight.data_ptr(), conv.weight._version, sym_pad, x_zero_point)
    cache = conv.__dict__.setdefault("_int8_cache", {})
    packed = cache.get(key)
    if packed is None:
        if len(cache) >= 4:  # a padding or two per conv; more means old weights: drop them
            cache.clear()
        packed = cache[key] = _pack_int8(conv.weight.detach().float(), conv.stride[0], sym_pad, x_zero_point)
    return packed


def block_int8(block: "BasicBlock", xq: torch.Tensor, x: Optional[torch.Tensor], out: str) -> torch.Tensor:
    """The block on uint8 input ``xq`` (``x``: the same map in bfloat16, needed only for an
    identity shortcut); ``out`` as in :func:`norm_act_int8`."""
    yq = norm_act_int8(conv_int8(block.conv1, xq), block.norm1)
    if block.has_proj:
        return norm_act_int8(conv_int8(block.conv2, yq), block.norm2, conv_int8(block.proj_conv, xq), block.proj_norm, out=out)
    return norm_act_int8(conv_int8(block.conv2, yq), block.norm2, x, out=out)


def forward(encoder: "ResNet10Encoder", images: torch.Tensor, operator: Optional[bool] = None) -> torch.Tensor:
    """The encoder's forward with int8 convolutions (bfloat16 outputs; GroupNorms, shortcuts and ReLUs in
    float32). ``operator``: None runs the one-operator forward where it is built, else the Python
    forward; False the Python forward; True the operator (an error where it is not built)."""
    if images.device.type != "cpu":
        raise ValueError(f"compute_dtype 'int8' runs on the CPU only, got images on {images.device}")
    if native.encoder_op_in_use() if operator is None else operator:
        if not native.encoder_op_in_use():
            raise RuntimeError(f"int8_operator=True, but {native.encoder_op_status()}")
        tensors, plan = operator_plan(encoder, images.shape[1], images.shape[2])
        with torch.no_grad():
            return torch.ops.hilserl.resnet10_int8(images, tensors, plan, encoder.stem_norm.eps)
    with torch.no_grad():
        x = images.contiguous().permute(0, 3, 1, 2)  # uint8 pixels, channels-last: the stem's int8 input as they are
        packed, w_scale, w_zp, pre = stem(encoder, images.shape[1], images.shape[2])
        # bfloat16 out: the stem's GroupNorm reads half the bytes of float32 (its map is the largest)
        y = _qconv(x, STEM_ZERO_POINT, packed, w_scale, w_zp, 2, (3, 3), torch.bfloat16)
        x, xq = _max_pool_quantize(norm_act_int8(y, encoder.stem_norm, pre=pre, out="bfloat16"))
        for i, block in enumerate(encoder.blocks):
            last = i == len(encoder.blocks) - 1
            # the bfloat16 map is needed only as an identity shortcut or as the features
            keep = "bfloat16" if last else ("both" if not encoder.blocks[i + 1].has_proj else "uint8")
            out = block_int8(block, xq, x, keep)
            x, xq = (out, None) if keep == "bfloat16" else (out if keep == "both" else (None, out))
        return x.permute(0, 2, 3, 1).float().contiguous()


def operator_plan(encoder: "ResNet10Encoder", h: int, w: int) -> Tuple[List[torch.Tensor], List[int]]:
    """What ``torch.ops.hilserl.resnet10_int8`` needs besides the images, for ``h x w`` images
    (layout in ``native/encoder_int8.cpp``): packed int8 weights and paddings per convolution,
    float32 norm parameters, the stem's constant map. Kept until the weights change."""
    from ..vision import encoders as enc
    key = (h, w, tuple((p.data_ptr(), p._version) for p in encoder.parameters()))
    cached = encoder.__dict__.get("_int8_plan_cache")
    if cached is not None and cached[0] == key:
        return cached[1]

    def norm(gn: nn.GroupNorm) -> List[torch.Tensor]:
        if gn.num_groups != enc.NUM_GROUPS or gn.eps != encoder.stem_norm.eps:
            raise ValueError("the int8 operator takes one GroupNorm setting for the whole encoder")
        return [gn.weight.detach().float().contiguous(), gn.bias.detach().float().contiguous()]

    def conv(c: SameConv2d, size: Tuple[int, int]) -> Tuple[List[torch.Tensor], List[int], Tuple[int, int]]:
        pads, out = c.same_padding(*size)
        # as in conv_int8: the operator pads asymmetric paddings with a copy
        packed = conv_weights(c, sym_pad(pads) or (0, 0), 0)
        return list(packed), [c.stride[0], *pads], out

    packed, w_scale, w_zp, pre = stem(encoder, h, w)
    tensors = [packed, w_scale, w_zp, pre, *norm(encoder.stem_norm)]
    _, size = encoder.stem_conv.same_padding(h, w)
    pool = enc._same_pads(size[0], 3, 2) + enc._same_pads(size[1], 3, 2)  # the stem's 3x3/2 max pool
    plan = [enc.NUM_GROUPS, len(encoder.blocks), STEM_ZERO_POINT, encoder.stem_conv.stride[0], encoder.stem_conv.explicit_pad, 3, 2, *pool]
    size = ((size[0] + pool[0] + pool[1] - 3) // 2 + 1, (size[1] + pool[2] + pool[3] - 3) // 2 + 1)
    for block in encoder.blocks:
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
    encoder.__dict__["_int8_plan_cache"] = (key, (tensors, plan))
    return tensors, plan


def stem(encoder: "ResNet10Encoder", h: int, w: int):
    """The stem with the pixel normalisation folded in, for raw uint8 pixels with zero point 128.

    ``conv(W, pad0((x / 255 - mean) / std)) = conv(W a, pad0(x - 128)) + conv(W, pad0(a 128 - mean / std))``
    with ``a = 1 / (255 std)`` per input channel; oneDNN pads with the zero point, so the first
    term is exact integer arithmetic on the pixels and the second a constant map per image size
    (computed here in float64), added before the stem's GroupNorm. Centering at 128 keeps the
    two terms from cancelling, which would magnify the weights' int8 rounding.
    """
    wt = encoder.stem_conv.weight
    key = (wt.data_ptr(), wt._version, h, w)
    cached = encoder.__dict__.get("_int8_stem_cache")
    if cached is None or cached[0] != key:
        W = wt.detach().double()
        a = 1.0 / (255.0 * encoder.std.double().view(3))
        b = -(encoder.mean.double() / encoder.std.double()).view(3)
        packed, w_scale, w_zp = _pack_int8((W * a.view(1, 3, 1, 1)).float(), 2, (3, 3), STEM_ZERO_POINT)
        field = (b + a * STEM_ZERO_POINT).view(1, 3, 1, 1).expand(1, 3, h, w)
        pre = F.conv2d(field, W, None, 2, 3).float().contiguous(memory_format=torch.channels_last)
        cached = (key, (packed, w_scale, w_zp, pre))
        encoder.__dict__["_int8_stem_cache"] = cached
    return cached[1]
