"""Several ObservationEncoders evaluated on the same frozen features, image heads batched.

The actor runs two observation encoders per step: the RLPD actor's and the grasp
critic's, one image head per camera each (8 heads for two arms with two cameras).
Run module by module, each head is a handful of small torch calls (spatial
embedding, Dense, LayerNorm, tanh) on one observation, and Python overhead
dominates (for two arms, most of the heads' time; docs/BENCHMARKS.md). The heads of all encoders are stacked once per
weight version, camera-major, and run as one batched product chain
(``[heads, B, C*k] x [heads, C*k, bottleneck]``); only the proprio encoders run
as modules. :meth:`FusedObservationEncoders.heads` takes any run of cameras, so
the threads of ``threaded_encoder.ThreadedEncoder`` each run the heads of the cameras
they encoded, and :meth:`~FusedObservationEncoders.finish` joins them.

Inference only: no dropout (eval semantics) and no autograd. The arithmetic is
the modules' in float32, summed in another order, so the outputs match
``ObservationEncoder.forward`` to float32 rounding (tested). Encoders whose heads
differ in shape (camera list, feature map, kernels per channel, bottleneck,
LayerNorm eps) cannot share one product chain: ``supported`` is then False with
the reason in ``why``, and callers use the modules; so they do when turned off
(``enabled=False``, or by default with ``HILSERL_FUSED_HEADS=0``: ``paths.py``).
"""

from __future__ import annotations

from typing import List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from ..formats.types import PROPRIO_KEY, feature_key
from ..rl.networks import ObservationEncoder
from .paths import FUSED_HEADS_ENV as ENV  # noqa: F401 - re-exported (benchmarks/latency.py)
from .paths import fused_heads_enabled
from .paths import fused_heads_enabled as enabled  # noqa: F401 - re-exported (benchmarks/latency.py)

__all__ = ["FusedObservationEncoders", "ENV", "enabled"]


def _head_signature(cameras: Tuple[str, ...], head) -> Tuple:
    s = head.spatial
    return (cameras, s.height, s.width, s.channels, s.num_kernels, head.out_dim, float(head.norm.eps))


class FusedObservationEncoders:
    """``encoders``' outputs for one batch of cached features, image heads in one product chain."""

    def __init__(self, encoders: Sequence[ObservationEncoder], enabled: Optional[bool] = None):
        """``enabled``: None fuses unless ``HILSERL_FUSED_HEADS=0`` (``paths.fused_heads_enabled``);
        False never (callers use the modules)."""
        self.encoders = list(encoders)
        self.supported, self.why = self._check(enabled)
        self._key: Optional[Tuple] = None

    def _check(self, enabled: Optional[bool]) -> Tuple[bool, str]:
        if enabled is False:
            return False, "disabled (enabled=False)"
        if enabled is None and not fused_heads_enabled():
            return False, f"disabled by {ENV}=0"
        if not self.encoders:
            return False, "no encoders"
        if any(not e.camera_names for e in self.encoders):
            return False, "an encoder without cameras has no image heads to batch"
        signatures = {_head_signature(e.camera_names, h) for e in self.encoders for h in e.image_heads.values()}
        if len(signatures) != 1:
            return False, ("the image heads differ in cameras, feature map, spatial kernels, bottleneck or "
                           "LayerNorm eps: they run module by module")
        if any(not h.norm.elementwise_affine for e in self.encoders for h in e.image_heads.values()):
            return False, "an image head's LayerNorm has no affine parameters"
        return True, ""

    def _params(self) -> List[torch.Tensor]:
        return [p for e in self.encoders for h in e.image_heads.values() for p in h.parameters()]

    def _pack(self) -> None:
        """Stack the heads' weights camera-major (all encoders' heads of camera 0, then of
        camera 1, ...), so a run of cameras is one contiguous slice; rebuilt when any changes."""
        key = tuple((p.data_ptr(), p._version) for p in self._params())
        if key == self._key:
            return
        heads = [e.image_heads[cam] for cam in self.cameras for e in self.encoders]
        with torch.no_grad():
            self.kernel = torch.stack([h.spatial.kernel.detach().float() for h in heads])  # [H, P, C, k]
            self.weight = torch.stack([h.dense.weight.detach().float().t() for h in heads])  # [H, C*k, D]
            self.bias = torch.stack([h.dense.bias.detach().float() for h in heads]).unsqueeze(1)  # [H, 1, D]
            self.gamma = torch.stack([h.norm.weight.detach().float() for h in heads]).unsqueeze(1)
            self.beta = torch.stack([h.norm.bias.detach().float() for h in heads]).unsqueeze(1)
        first = heads[0]
        self.eps = float(first.norm.eps)
        self.num_kernels = first.spatial.num_kernels
        self._key = key

    @property
    def cameras(self) -> Tuple[str, ...]:
        return self.encoders[0].camera_names

    @torch.no_grad()
    def heads(self, features: torch.Tensor, start: int = 0, stop: Optional[int] = None) -> torch.Tensor:
        """The image heads of cameras ``start:stop`` (camera order) of every encoder on their
        feature maps ``[stop - start, B, h, w, C]`` -> ``[stop - start, encoders, B, D]``.

        Threads may run disjoint camera ranges at once (``threaded_encoder.ThreadedEncoder``): the
        stacked weights are rebuilt by :meth:`__call__`/:meth:`prepare`, never here.
        """
        if not self.supported:
            raise RuntimeError(f"these encoders cannot be fused: {self.why}")
        stop = len(self.cameras) if stop is None else stop
        n_cam, n_enc = stop - start, len(self.encoders)
        if features.shape[0] != n_cam:
            raise ValueError(f"{features.shape[0]} feature maps for cameras {start}:{stop}")
        rows = slice(start * n_enc, stop * n_enc)
        b, c = features.shape[1], features.shape[-1]
        x = features.reshape(n_cam, b, -1, c).float()
        x = x.unsqueeze(1).expand(-1, n_enc, -1, -1, -1).reshape(n_cam * n_enc, b, -1, c)  # [H, B, P, C]
        if self.num_kernels == 1:
            s = (x * self.kernel[rows, None, :, :, 0]).sum(2)  # [H, B, C]
        else:
            s = torch.einsum("hbpc,hpck->hbck", x, self.kernel[rows]).reshape(n_cam * n_enc, b, -1)
        z = torch.baddbmm(self.bias[rows], s, self.weight[rows])  # [H, B, D]
        z = F.layer_norm(z, z.shape[-1:], eps=self.eps).mul_(self.gamma[rows]).add_(self.beta[rows]).tanh_()
        return z.view(n_cam, n_enc, b, -1)

    def prepare(self) -> None:
        """Restack the weights if any changed (before threads call :meth:`heads`)."""
        if self.supported:
            self._pack()

    @torch.no_grad()
    def finish(self, heads: torch.Tensor, proprio: Optional[torch.Tensor]) -> List[torch.Tensor]:
        """Every camera's :meth:`heads` ``[cameras, encoders, B, D]`` and the proprio ``[B, d]``
        -> each encoder's output ``[B, out_dim]`` (cameras side by side, then proprio)."""
        n_cam, n_enc, b, _ = heads.shape
        z = heads.permute(1, 2, 0, 3).reshape(n_enc, b, -1)
        return [torch.cat([z[i], enc.proprio(proprio)], dim=-1) if enc.proprio is not None else z[i]
                for i, enc in enumerate(self.encoders)]

    @torch.no_grad()
    def __call__(self, obs: Mapping[str, torch.Tensor]) -> List[torch.Tensor]:
        """``obs``: ``feature/<cam>`` ``[B, h, w, C]`` (float16 or float32) per camera and, for
        encoders with proprio, ``proprio`` ``[B, d]``. Returns each encoder's ``[B, out_dim]``."""
        if not self.supported:
            raise RuntimeError(f"these encoders cannot be fused: {self.why}")
        self._pack()
        missing = [feature_key(c) for c in self.cameras if feature_key(c) not in obs]
        if missing:
            raise KeyError(f"fused image heads need cached features {missing}; keys: {sorted(obs)}")
        z = self.heads(torch.stack([obs[feature_key(c)] for c in self.cameras]))
        return self.finish(z, obs.get(PROPRIO_KEY))
