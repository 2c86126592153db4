"""The learned spatial embedding with one kernel per channel, and its dropout, made fast (speed only).

``rl.networks.SpatialLearnedEmbedding`` computes ``out[b, c, k] = sum_p x[b, p, c] W[p, c, k]``
with one ``einsum`` and then applies dropout: the plain path, which the paths here are tested
against. For ``k = 1`` (the agents' default) the embedding is memory-bound, not FLOP-bound, and
:class:`SpatialEmbeddingK1` computes it

- in the native kernel (``native.spatial_forward``) where it is built and takes the input
  (float16 ``[B, P, C]`` features, ``C % 32 == 0``): the float16 features are converted in
  registers and read once per pass, and the dropout mask comes from a hash of (seed, element),
  so the backward pass regenerates it instead of saving it;
- else in torch, a chunk of batch rows at a time (:class:`ChunkedSpatialK1`: the float32
  temporaries of a chunk stay in cache), followed by the model's own dropout.

The network takes it as ``SpatialLearnedEmbedding(..., fast_path=...)``; ``paths.spatial_fast_path``
chooses it for the agents and the reward classifier.
"""

from __future__ import annotations

import torch

from ..rl.networks import fast_dropout  # the model's own dropout, as on its plain path
from . import native

__all__ = ["ChunkedSpatialK1", "NativeSpatialK1", "SpatialEmbeddingK1"]

CHUNK_ROWS = 32  # batch rows per chunk: the float32 temporaries of a chunk stay in cache


class ChunkedSpatialK1(torch.autograd.Function):
    """``out[b, c] = sum_p x[b, p, c] W[p, c]`` for channel-last features ``x [B, P, C]`` (torch).

    The float16 input is converted a chunk of rows at a time, and with channels innermost the
    sum over positions runs over an outer axis, vectorised along channels.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:  # x [B, P, C], kernel [P, C]
        ctx.save_for_backward(x, kernel)
        outs = []
        for xc in x.split(CHUNK_ROWS):  # float32 copy of one chunk at a time: it stays in cache
            prod = xc.to(kernel.dtype, copy=True)
            prod.mul_(kernel)
            outs.append(prod.sum(1))
        return torch.cat(outs)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # grad_out [B, C]
        x, kernel = ctx.saved_tensors
        grad_out = grad_out.to(kernel.dtype)
        grad_x = grad_kernel = None
        if ctx.needs_input_grad[1]:  # dL/dW[p, c] = sum_b g[b, c] x[b, p, c], over batch chunks that stay in cache
            grad_kernel = torch.zeros_like(kernel)
            for xc, gc in zip(x.split(CHUNK_ROWS), grad_out.split(CHUNK_ROWS)):
                prod = xc.to(kernel.dtype, copy=True)  # never the saved input itself
                prod.mul_(gc.unsqueeze(1))
                grad_kernel += prod.sum(0)
        if ctx.needs_input_grad[0]:
            grad_x = (grad_out.unsqueeze(1) * kernel).to(x.dtype)
        return grad_x, grad_kernel


class NativeSpatialK1(torch.autograd.Function):
    """:class:`ChunkedSpatialK1` followed by dropout of probability ``p``, in the native kernel.

    The seed of the dropout mask is drawn from torch's global generator (like ``nn.Dropout``),
    so ``torch.manual_seed`` makes it repeatable.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, kernel: torch.Tensor, p: float) -> torch.Tensor:
        seed = int(torch.randint(0, 2**62, (1,)).item()) if p > 0 else 0
        ctx.save_for_backward(x, kernel)
        ctx.p, ctx.seed = p, seed
        return native.spatial_forward(x, kernel, p, seed)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, kernel = ctx.saved_tensors
        # masked in place below: a copy, never the incoming gradient itself (without dropout, no copy)
        grad = grad_out.to(torch.float32, copy=ctx.p > 0).contiguous()
        native.dropout_backward_(grad, ctx.p, ctx.seed)
        grad_kernel = native.spatial_kernel_grad(x, grad) if ctx.needs_input_grad[1] else None
        grad_x = (grad.unsqueeze(1) * kernel).to(x.dtype) if ctx.needs_input_grad[0] else None
        return grad_x, grad_kernel, None


class SpatialEmbeddingK1:
    """The fast path of ``SpatialLearnedEmbedding`` for one kernel per channel.

    ``native``: use the native kernel where it is built and takes the input (else, and with
    False, :class:`ChunkedSpatialK1` and the model's dropout). Stateless: a network holding it
    can be copied and saved as usual.
    """

    def __init__(self, native: bool = True) -> None:
        self.native = bool(native)

    @staticmethod
    def applies(x: torch.Tensor, num_kernels: int) -> bool:
        """True for one kernel per channel (the only case it computes)."""
        return num_kernels == 1

    def __call__(self, x: torch.Tensor, kernel: torch.Tensor, dropout: float) -> torch.Tensor:
        """Embedding ``[B, C]`` of features ``x [B, P, C]`` with weights ``kernel [P, C, 1]``, with
        inverted dropout of probability ``dropout`` applied."""
        if kernel.shape[-1] != 1:
            raise ValueError(f"SpatialEmbeddingK1 computes one kernel per channel, got {kernel.shape[-1]}")
        if self.native and native.spatial_available(x):
            return NativeSpatialK1.apply(x, kernel[..., 0], dropout)
        return fast_dropout(ChunkedSpatialK1.apply(x, kernel[..., 0]), dropout)

    def __repr__(self) -> str:
        return f"SpatialEmbeddingK1(native={self.native})"
