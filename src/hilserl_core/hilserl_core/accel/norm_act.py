"""GroupNorm + shortcut + ReLU of the frozen ResNet-10 in one pass (speed only).

``vision.encoders.norm_relu`` is the plain path: ``relu(norm(x) + shortcut)`` in torch ops, each
rounding to the map's dtype on its own. :class:`NativeNormAct` runs the same in one pass of the
native kernel (``native.groupnorm_act``) over the bfloat16 channels-last maps of inference,
rounding once. The encoder takes it as ``ResNet10Encoder(native_kernels=...)``, resolved by
``paths.encoder_paths``.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from . import native

__all__ = ["NativeNormAct"]


class NativeNormAct:
    """``relu(norm(x) + shortcut)``, shortcut = 0, ``residual`` or ``residual_norm(residual)``, in the
    native kernel. Stateless; whether the kernel is built is asked on use (:meth:`applies`)."""

    def applies(self, x: torch.Tensor, norm: nn.GroupNorm, residual: Optional[torch.Tensor] = None) -> bool:
        """True where the kernel takes the input: a bfloat16 channels-last map without autograd
        (``native.groupnorm_available``), a shortcut of the same shape, the kernel built."""
        return native.groupnorm_available(x, norm.num_groups) and (residual is None or residual.shape == x.shape)

    def __call__(self, x: torch.Tensor, norm: nn.GroupNorm, residual: Optional[torch.Tensor] = None,
                 residual_norm: Optional[nn.GroupNorm] = None) -> torch.Tensor:
        return native.groupnorm_act(x, norm, residual, residual_norm)

    def __repr__(self) -> str:
        return "NativeNormAct()"
