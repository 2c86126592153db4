"""DrQ random shift on uint8 HWC batches."""

import numpy as np
import pytest
import torch

from hilserl_core.vision.augment import random_shift, shift_images


def _images(b=4, h=16, w=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, h, w, 3), generator=g, dtype=torch.uint8)


def _reference(images, shifts, pad):
    """Literal DrQ: numpy edge padding, then slice each sample."""
    x = np.pad(images.numpy(), ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    h, w = images.shape[1:3]
    return np.stack([x[i, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(shifts.tolist())])


def test_shift_images_equals_pad_then_crop():
    imgs = _images(b=6)
    shifts = torch.tensor([[0, 0], [8, 8], [4, 4], [0, 8], [8, 0], [3, 5]])
    out = shift_images(imgs, shifts, pad=4)
    np.testing.assert_array_equal(out.numpy(), _reference(imgs, shifts, 4))
    assert torch.equal(out[2], imgs[2])  # (pad, pad) is the identity


def test_random_shift_shape_dtype_and_reproducible():
    imgs = _images()
    out = random_shift(imgs, pad=4, generator=torch.Generator().manual_seed(1))
    assert out.shape == imgs.shape and out.dtype == torch.uint8
    again = random_shift(imgs, pad=4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out, again)


def test_shift_is_bounded_by_pad_and_covers_all_offsets():
    # one bright pixel in the middle of a black image: its displacement is the shift
    b, h, w, pad = 2000, 21, 21, 3
    imgs = torch.zeros(b, h, w, 3, dtype=torch.uint8)
    imgs[:, 10, 10] = 255
    out = random_shift(imgs, pad=pad, generator=torch.Generator().manual_seed(0))
    idx = out[..., 0].reshape(b, -1).argmax(dim=1)
    dy, dx = idx // w - 10, idx % w - 10
    assert (out[..., 0].reshape(b, -1) == 255).sum(dim=1).eq(1).all()
    assert dy.abs().max() <= pad and dx.abs().max() <= pad
    counts = torch.bincount(((dy + pad) * (2 * pad + 1) + dx + pad), minlength=(2 * pad + 1) ** 2)
    assert (counts > 0).all()  # all 49 offsets occur, roughly uniformly
    assert counts.max() < 3 * counts.float().mean()


def test_different_samples_get_different_shifts():
    imgs = _images(b=1).expand(32, -1, -1, -1).contiguous()
    out = random_shift(imgs, pad=4, generator=torch.Generator().manual_seed(2))
    distinct = {bytes(o.numpy().tobytes()) for o in out}
    assert len(distinct) > 10


def test_pad_zero_is_identity_and_bad_input_rejected():
    imgs = _images()
    assert torch.equal(random_shift(imgs, pad=0), imgs)
    with pytest.raises(ValueError):
        random_shift(imgs, pad=-1)
    with pytest.raises(ValueError):
        random_shift(imgs[0], pad=4)
