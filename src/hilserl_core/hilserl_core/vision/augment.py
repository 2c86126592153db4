"""Image augmentation for the learner: DrQ random shift (HIL-SERL: random crop, pad 4).

Images stay uint8 ``[B, H, W, 3]`` (HWC) all the way into the frozen encoder, so
augmenting a batch costs one gather and no float copy. Replicate padding
followed by a random ``H x W`` crop is computed in one step by clamping the
source indices, which is the same thing without materialising the padded
batch.
"""

from __future__ import annotations

from typing import Optional

import torch


def shift_images(images: torch.Tensor, shifts: torch.Tensor, pad: int) -> torch.Tensor:
    """Deterministic part of :func:`random_shift`.

    ``shifts`` is int ``[B, 2]`` of crop offsets ``(dy, dx)`` in ``[0, 2 * pad]``
    into the replicate-padded image; ``(pad, pad)`` is the identity. Pixel
    ``(i, j)`` of the output is input pixel
    ``(clamp(i + dy - pad), clamp(j + dx - pad))``.
    """
    if images.ndim != 4:
        raise ValueError(f"expected images [B, H, W, C], got shape {tuple(images.shape)}")
    b, h, w = images.shape[:3]
    shifts = shifts.to(device=images.device, dtype=torch.long)
    if shifts.shape != (b, 2):
        raise ValueError(f"shifts must be [B, 2] = [{b}, 2], got {tuple(shifts.shape)}")
    rows = (torch.arange(h, device=images.device) + shifts[:, :1] - pad).clamp_(0, h - 1)  # [B, H]
    cols = (torch.arange(w, device=images.device) + shifts[:, 1:] - pad).clamp_(0, w - 1)  # [B, W]
    batch = torch.arange(b, device=images.device).view(b, 1, 1)
    return images[batch, rows.view(b, h, 1), cols.view(b, 1, w)]


def random_shift(images: torch.Tensor, pad: int = 4, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """DrQ augmentation: replicate-pad by ``pad`` pixels, crop back to ``H x W`` at a
    random offset drawn independently per sample. Keeps the dtype (uint8 stays uint8).

    The shifts are drawn on ``generator``'s device (a seeded ``torch.Generator`` makes them
    reproducible), or on the images' device from torch's default generator there: a batch on a
    GPU needs no host round trip.
    """
    if pad < 0:
        raise ValueError(f"pad must be >= 0 pixels, got {pad}")
    if images.ndim != 4:
        raise ValueError(f"expected images [B, H, W, C], got shape {tuple(images.shape)}")
    if pad == 0 or images.shape[0] == 0:
        return images
    device = images.device if generator is None else generator.device
    shifts = torch.randint(0, 2 * pad + 1, (images.shape[0], 2), generator=generator, device=device)
    return shift_images(images, shifts, pad)
