"""Frozen ResNet-10 encoder: shapes, freezing, weight files, flax conversion, feature cache."""

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hilserl_core.formats import tensorio
from hilserl_core.accel import int8_encoder, native
from hilserl_core.accel.conv_paths import ConvPaths
from hilserl_core.vision import encoders
from hilserl_core.vision.encoders import ResNet10Encoder, SameConv2d, encode_features, same_max_pool


@pytest.fixture(scope="module")
def encoder():
    return ResNet10Encoder(seed=0, compute_dtype="float32")  # exact float32: hand-computed references below


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(3, 128, 128, 3), dtype=np.uint8)


def test_forward_shape_dtype_for_128px_uint8(encoder, images):
    out = encoder(torch.from_numpy(images))
    assert out.shape == (3, 4, 4, 512)  # channel-last [B, h, w, C]
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    # per-sample: each image's features depend only on that image
    single = encoder(torch.from_numpy(images[1:2]))
    torch.testing.assert_close(single[0], out[1], rtol=1e-4, atol=1e-4)


def test_imagenet_normalisation_is_inside(encoder, images):
    # Re-run the layers by hand on ImageNet-normalised floats: same output as uint8 forward.
    x = torch.from_numpy(images[:1]).permute(0, 3, 1, 2).double() / 255.0
    mean = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64).view(1, 3, 1, 1)
    x = ((x - mean) / std).float()
    with torch.no_grad():
        y = torch.relu(encoder.stem_norm(encoder.stem_conv(x)))
        y = same_max_pool(y)
        for block in encoder.blocks:
            y = block(y)
    torch.testing.assert_close(encoder(torch.from_numpy(images[:1])), y.permute(0, 2, 3, 1), rtol=1e-4, atol=1e-4)


def test_bfloat16_compute_stays_close_to_float32(encoder, images):
    fast = ResNet10Encoder(seed=0, compute_dtype="bfloat16")
    ref = encoder(torch.from_numpy(images))
    out = fast(torch.from_numpy(images))
    assert out.dtype == torch.float32 and out.shape == ref.shape and out.is_contiguous()
    rel = float((out - ref).norm() / ref.norm())
    assert rel < 0.03, f"bfloat16 features deviate {rel:.3%} from float32"
    assert rel > 0.0  # it really ran in bfloat16
    # weights are held in the compute dtype (cast once), normalisation constants in float32;
    # weight files stay float32 and load into either
    assert fast.stem_conv.weight.dtype == torch.bfloat16 and fast.mean.dtype == torch.float32
    assert encoder.stem_conv.weight.dtype == torch.float32
    fast.to("cpu")
    assert fast.stem_conv.weight.dtype == torch.bfloat16 and fast.mean.dtype == torch.float32
    with pytest.raises(ValueError, match="compute_dtype"):
        ResNet10Encoder(compute_dtype="float16")


def test_rejects_float_images(encoder):
    with pytest.raises(TypeError, match="uint8"):
        encoder(torch.zeros(1, 128, 128, 3))
    with pytest.raises(ValueError, match=r"\[B, H, W, 3\]"):
        encoder(torch.zeros(1, 3, 128, 128, dtype=torch.uint8))


def test_frozen_even_inside_a_trained_parent(images):
    enc = ResNet10Encoder(seed=1)
    assert not any(p.requires_grad for p in enc.parameters())
    parent = nn.Sequential()
    parent.add_module("enc", enc)
    head = nn.Linear(512 * 16, 1)
    parent.train()
    assert not enc.training
    enc.train(True)
    assert not enc.training
    # even if someone re-enables grads on the whole parent, no gradient reaches the encoder
    parent.requires_grad_(True)
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    opt = torch.optim.SGD(list(enc.parameters()) + list(head.parameters()), lr=1.0)
    loss = head(enc(torch.from_numpy(images[:2])).flatten(1)).sum()
    loss.backward()
    opt.step()
    assert all(p.grad is None for p in enc.parameters())
    for k, v in enc.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_save_and_load_round_trip_gives_identical_outputs(tmp_path, encoder, images):
    path = encoder.save_weights(tmp_path / "enc.safetensors")
    other = ResNet10Encoder(seed=123, compute_dtype="float32")
    x = torch.from_numpy(images)
    assert not torch.equal(other(x), encoder(x))
    other.load_pretrained(path)
    assert torch.equal(other(x), encoder(x))


def test_load_names_missing_and_misshaped_keys_and_file(tmp_path, encoder):
    state = {k: v.float().numpy() for k, v in encoder.state_dict().items()}
    missing = dict(state)
    del missing["blocks.2.proj_conv.weight"]
    tensorio.save_file(tmp_path / "missing.safetensors", missing, {})
    with pytest.raises(tensorio.TensorIOError, match=r"missing.safetensors.*blocks\.2\.proj_conv\.weight"):
        ResNet10Encoder().load_pretrained(tmp_path / "missing.safetensors")
    bad = dict(state)
    bad["blocks.1.norm1.weight"] = np.zeros(64, np.float32)
    tensorio.save_file(tmp_path / "bad.safetensors", bad, {})
    with pytest.raises(tensorio.TensorIOError, match=r"bad.safetensors.*blocks\.1\.norm1\.weight.*shape"):
        ResNet10Encoder().load_pretrained(tmp_path / "bad.safetensors")
    extra = dict(state, head=np.zeros(3, np.float32))
    tensorio.save_file(tmp_path / "extra.safetensors", extra, {})
    with pytest.raises(tensorio.TensorIOError, match="unexpected.*head"):
        ResNet10Encoder().load_pretrained(tmp_path / "extra.safetensors")
    tensorio.save_file(tmp_path / "other.safetensors", state, {"kind": "reward_classifier"})
    with pytest.raises(tensorio.TensorIOError, match="not ResNet-10"):
        ResNet10Encoder().load_pretrained(tmp_path / "other.safetensors")


def _to_flax_tree(encoder):
    """Inverse of the converter: the flat flax tree a SERL checkpoint would hold."""
    state = {k: v.float().numpy() for k, v in encoder.state_dict().items()}
    flat = {}
    for torch_name, (flax_name, kind) in encoders._flax_to_torch_names().items():
        value = state[torch_name]
        flat["params/" + flax_name] = value.transpose(2, 3, 1, 0) if kind == "conv" else value
    flat["params/Dense_0/kernel"] = np.zeros((512, 1000), np.float32)  # an ImageNet head to ignore
    return flat


def test_flax_npz_conversion_cli_reproduces_the_network(tmp_path, images, capsys):
    src = ResNet10Encoder(seed=7)
    np.savez(tmp_path / "resnet10_params.npz", **_to_flax_tree(src))
    out = tmp_path / "resnet10.safetensors"
    rc = encoders.main(["convert", str(tmp_path / "resnet10_params.npz"), str(out)])
    assert rc == 0
    assert "Dense_0/kernel" in capsys.readouterr().out
    loaded = ResNet10Encoder(seed=99).load_pretrained(out)
    x = torch.from_numpy(images)
    assert torch.equal(loaded(x), src(x))


def test_flax_conversion_errors_name_the_flax_key(tmp_path):
    flat = _to_flax_tree(ResNet10Encoder(seed=7))
    del flat["params/ResNetBlock_3/norm_proj/scale"]
    with pytest.raises(tensorio.TensorIOError, match="ResNetBlock_3/norm_proj/scale"):
        encoders.convert_flax_resnet10(flat, "x.npz")
    flat = _to_flax_tree(ResNet10Encoder(seed=7))
    flat["params/conv_init/kernel"] = np.zeros((7, 7, 1, 64), np.float32)
    with pytest.raises(tensorio.TensorIOError, match="conv_init/kernel.*shape"):
        encoders.convert_flax_resnet10(flat, "x.npz")
    np.savez(tmp_path / "broken.npz", a=np.zeros(1))
    assert encoders.main(["convert", str(tmp_path / "broken.npz"), str(tmp_path / "o.safetensors")]) == 1


def _reference_same_conv(x, w, stride):
    """Direct numpy correlation with TF "SAME" padding (extra pad at bottom/right)."""
    n, c, h, wd = x.shape
    o, _, k, _ = w.shape
    oh, ow = -(-h // stride), -(-wd // stride)
    pad_h = max((oh - 1) * stride + k - h, 0)
    pad_w = max((ow - 1) * stride + k - wd, 0)
    xp = np.pad(x, ((0, 0), (0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2)))
    out = np.zeros((n, o, oh, ow), np.float64)
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, :, i * stride : i * stride + k, j * stride : j * stride + k]
            out[:, :, i, j] = np.einsum("nchw,ochw->no", patch, w)
    return out


# without grad, small maps may take the patch-matrix product: forced either way, or timed (None)
@pytest.mark.parametrize("grad,path", [(True, None), (False, True), (False, False), (False, None)])
@pytest.mark.parametrize("size,kernel,stride", [(8, 3, 2), (7, 3, 2), (8, 3, 1), (8, 1, 2), (10, 7, 2), (12, 3, 1)])
def test_same_conv_matches_tf_same_padding(size, kernel, stride, grad, path):
    torch.manual_seed(0)
    conv = SameConv2d(2, 3, kernel, stride)
    conv.paths = ConvPaths(path)  # as ResNet10Encoder(patch_gemm=path) sets it
    x = torch.randn(2, 2, size, size).contiguous(memory_format=torch.channels_last)
    ref = _reference_same_conv(x.numpy().astype(np.float64), conv.weight.detach().numpy(), stride)
    with torch.set_grad_enabled(grad):
        out = conv(x)
        again = conv(x)  # with path None: the choice timed on the first call
    np.testing.assert_allclose(out.detach().numpy(), ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(again.detach().numpy(), ref, rtol=1e-4, atol=1e-5)


def test_the_faster_conv_path_is_timed_once_per_shape_and_then_kept(monkeypatch):
    from hilserl_core.accel import conv_paths

    timed = []
    real = conv_paths.fastest_first

    def spy(candidates):
        choice, out = real(candidates)
        timed.append(choice)
        return choice, out

    monkeypatch.setattr(conv_paths, "fastest_first", spy)
    real_patch = conv_paths.patch_gemm
    conv = SameConv2d(8, 16, 3, 1)
    paths = conv.paths = ConvPaths(faster={})  # a table of its own, not the process's
    small, other = (torch.randn(n, 8, 6, 6).contiguous(memory_format=torch.channels_last) for n in (2, 3))
    with torch.no_grad():
        for _ in range(3):
            conv(small)
        assert len(timed) == 1 and len(paths.faster) == 1
        conv(other)  # a new batch size is a new shape
        assert len(timed) == 2
        conv(torch.randn(1, 8, 16, 16))  # 256 output cells: always the direct kernel, nothing timed
    conv(small)  # with grad: the direct kernel, nothing timed
    assert len(timed) == 2
    # the kept choice is what runs: force the other answer and the other path is taken
    calls = []
    monkeypatch.setattr(conv_paths, "patch_gemm", lambda *a: calls.append(1) or real_patch(*a))
    key = conv_paths.path_key(conv, small)
    assert key in paths.faster
    for forced in (True, False):
        paths.faster[key] = forced
        calls.clear()
        with torch.no_grad():
            conv(small)
        assert calls == ([1] if forced else [])


def test_patch_product_follows_new_weights():
    torch.manual_seed(1)
    conv = SameConv2d(4, 5, 3, 1)
    conv.paths = ConvPaths(True)
    x = torch.randn(2, 4, 4, 4).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        before = conv(x)
        conv.load_state_dict({"weight": torch.randn(5, 4, 3, 3)})  # as load_pretrained does
        after = conv(x)
        torch.testing.assert_close(after, F.conv2d(F.pad(x, (1, 1, 1, 1)), conv.weight))
    assert not torch.allclose(before, after)


def test_same_max_pool_puts_extra_padding_bottom_right_and_ignores_it():
    x = -torch.arange(16.0).view(1, 1, 4, 4) - 1.0  # all negative: zero padding would win
    out = same_max_pool(x, 3, 2)
    # windows start at rows/cols 0 and 2 (pad 0 before, 1 after)
    expected = torch.tensor([[-1.0, -3.0], [-9.0, -11.0]])
    assert torch.equal(out[0, 0], expected)


@pytest.mark.parametrize("kernel,stride", [(1, 1), (1, 2), (2, 2), (3, 1), (3, 2), (3, 3)])
def test_same_max_pool_matches_minus_infinity_padding_at_every_size(kernel, stride):
    # the ceil-mode shortcut (all padding after) and the padded path against the plain definition
    torch.manual_seed(0)
    for size in range(1, 10):
        x = torch.randn(2, 3, size, size + 1)
        pads = [encoders._same_pads(n, kernel, stride) for n in x.shape[-2:]]
        ref = F.max_pool2d(F.pad(x, (*pads[1], *pads[0]), value=float("-inf")), kernel, stride)
        out = same_max_pool(x, kernel, stride)
        assert out.shape[-2:] == (-(-size // stride), -(-(size + 1) // stride))
        assert torch.equal(out, ref), (size, kernel, stride)


def test_encode_features_chunks_to_float16(encoder, images):
    feats = encode_features(encoder, images, batch_size=2)
    assert isinstance(feats, np.ndarray) and feats.dtype == np.float16
    assert feats.shape == (3, 4, 4, 512)
    ref = encoder(torch.from_numpy(images)).numpy()
    np.testing.assert_allclose(feats.astype(np.float32), ref, rtol=1e-2, atol=1e-2)
    t = encode_features(encoder, torch.from_numpy(images), batch_size=3)
    assert t.dtype == torch.float16
    # chunking changes float32 summation order, so compare at float16 resolution
    np.testing.assert_allclose(t.numpy().astype(np.float32), feats.astype(np.float32), rtol=1e-2, atol=1e-2)


def test_featurize_observation_swaps_images_for_features(encoder, images):
    obs = {"proprio": np.ones(5, np.float32), "image/wrist": images[0], "image/side": images[1]}
    out = encoders.featurize_observation(obs, encoder, cameras=["wrist"])
    assert sorted(out) == ["feature/wrist", "image/side", "proprio"]
    assert out["feature/wrist"].shape == (4, 4, 512) and out["feature/wrist"].dtype == np.float16


def test_cached_featurizer_reuses_the_previous_next_observation(encoder, images):
    feat = encoders.CachedFeaturizer(encoder)
    first = feat({"image/wrist": images[0], "proprio": np.zeros(2, np.float32)})
    again = feat({"image/wrist": images[0].copy()})
    other = feat({"image/wrist": images[1]})
    assert (feat.hits, feat.misses) == (1, 2)
    assert again["feature/wrist"].tobytes() == first["feature/wrist"].tobytes()
    assert not np.array_equal(other["feature/wrist"], first["feature/wrist"])
    np.testing.assert_allclose(
        other["feature/wrist"].astype(np.float32), encoder(torch.from_numpy(images[1:2]))[0].numpy(), rtol=1e-2, atol=1e-2
    )
    assert "proprio" in first and "image/wrist" not in first


def test_cached_featurizer_encodes_the_new_images_of_all_cameras_as_one_batch(encoder, images):
    batches = []

    class Counting(torch.nn.Module):  # the real encoder, recording each batch it is given
        out_channels = encoder.out_channels

        def __init__(self):
            super().__init__()
            self.inner = encoder

        def forward(self, x):
            batches.append(x.shape[0])
            return self.inner(x)

    feat = encoders.CachedFeaturizer(Counting())
    first = feat({"image/wrist": images[0], "proprio": np.zeros(2, np.float32), "image/side": images[1]})
    assert batches == [2] and list(first) == ["feature/wrist", "proprio", "feature/side"]
    # next step: the wrist image is the same (a hit), only the side camera is encoded
    second = feat({"image/wrist": images[0], "proprio": np.zeros(2, np.float32), "image/side": images[2]})
    assert batches == [2, 1] and (feat.hits, feat.misses) == (1, 3)
    assert second["feature/wrist"].tobytes() == first["feature/wrist"].tobytes()
    for out, key, i in ((first, "feature/wrist", 0), (first, "feature/side", 1), (second, "feature/side", 2)):
        np.testing.assert_allclose(out[key].astype(np.float32), encoder(torch.from_numpy(images[i : i + 1]))[0].numpy(),
                                   rtol=1e-2, atol=1e-2)


def _tf_same(x, kernel, stride, value=0.0):
    """Pad an NCHW tensor as TensorFlow/flax "SAME" does (extra row/column at the bottom/right)."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad takes the last dim first
        out = -(-size // stride)
        total = max((out - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value)


def test_encoder_matches_an_independent_float64_reference_of_the_published_network(encoder, images):
    """The published flax ResNet-10: stem 7x7/2 with 3 pixels of padding on every side
    (padding=[(3, 3), (3, 3)]), GroupNorm(4), ReLU, 3x3/2 max pool SAME, then four
    BasicBlocks whose convs use SAME padding. Written here from plain float64 ops."""
    w = {k: v.double() for k, v in encoder.state_dict().items()}
    x = torch.from_numpy(images).permute(0, 3, 1, 2).double() / 255.0
    x = (x - torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225], dtype=torch.float64).view(1, 3, 1, 1)  # ImageNet mean/std

    def gn(y, name):
        return F.group_norm(y, 4, w[name + ".weight"], w[name + ".bias"], eps=1e-5)

    def conv(y, name, stride):
        k = w[name].shape[-1]
        return F.conv2d(_tf_same(y, k, stride), w[name], stride=stride)

    y = F.relu(gn(F.conv2d(x, w["stem_conv.weight"], stride=2, padding=3), "stem_norm"))
    y = F.max_pool2d(_tf_same(y, 3, 2, value=float("-inf")), 3, 2)
    for i in range(4):
        b, stride = f"blocks.{i}.", 1 if i == 0 else 2
        h = F.relu(gn(conv(y, b + "conv1.weight", stride), b + "norm1"))
        h = gn(conv(h, b + "conv2.weight", 1), b + "norm2")
        shortcut = gn(conv(y, b + "proj_conv.weight", stride), b + "proj_norm") if i > 0 else y
        y = F.relu(h + shortcut)
    ref = y.permute(0, 2, 3, 1)
    out = encoder(torch.from_numpy(images)).double()
    assert float((out - ref).norm() / ref.norm()) < 1e-5
    # the SAME-padded stem the encoder had before is one pixel off: clearly different features
    shifted = F.conv2d(_tf_same(x, 7, 2), w["stem_conv.weight"], stride=2)
    stem = F.conv2d(x, w["stem_conv.weight"], stride=2, padding=3)
    assert float((shifted - stem).norm() / stem.norm()) > 0.05


# ------------------------------------------------------------------ int8 encoder
int8_ok, int8_why = encoders.int8_available()
needs_int8 = pytest.mark.skipif(not int8_ok, reason=f"int8 encoder unavailable: {int8_why}")


def _photo_like(n, seed):
    """Smooth random images (neighbouring pixels correlate, as in photographs; pure noise is the
    worst case for the stem's int8 weights and unlike any camera image)."""
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.integers(0, 256, (n, 128, 128, 3), dtype=np.uint8)).permute(0, 3, 1, 2).float()
    return F.avg_pool2d(x, 5, 1, 2).permute(0, 2, 3, 1).round().to(torch.uint8).contiguous()


@needs_int8
@pytest.mark.parametrize("kind", ["photo_like", "noise"])
def test_int8_features_stay_close_to_float32(encoder, images, kind):
    imgs = _photo_like(4, 1) if kind == "photo_like" else torch.from_numpy(images)
    ref = encoder(imgs)
    q8 = ResNet10Encoder(seed=0, compute_dtype="int8")
    out = q8(imgs)
    assert out.dtype == torch.float32 and out.shape == ref.shape and out.is_contiguous()
    rel = float((out - ref).norm() / ref.norm())
    bf16 = ResNet10Encoder(seed=0, compute_dtype="bfloat16")(imgs)
    rel_bf16 = float((bf16 - ref).norm() / ref.norm())
    # measured 2.1% (photo-like) and 2.5% (noise) against bfloat16's 0.7%: int8 weights per
    # output channel, uint8 activations scaled per image
    assert 0.0 < rel < 0.035, f"int8 features deviate {rel:.3%} from float32 (bfloat16: {rel_bf16:.3%})"
    # and no image is much worse than the others
    per_image = (out - ref).flatten(1).norm(dim=1) / ref.flatten(1).norm(dim=1)
    assert float(per_image.max()) < 0.04
    # the weights stay float32 (quantised from them); the weights file is the same
    assert q8.stem_conv.weight.dtype == torch.float32


@needs_int8
@pytest.mark.parametrize("size", [(96, 80), (33, 47)])
def test_int8_handles_other_image_sizes(size):
    imgs = F.interpolate(_photo_like(2, 5).permute(0, 3, 1, 2).float(), size=size, mode="bilinear")
    imgs = imgs.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
    ref = ResNet10Encoder(seed=0, compute_dtype="float32")(imgs)
    out = ResNet10Encoder(seed=0, compute_dtype="int8")(imgs)
    assert out.shape == ref.shape == (2, -(-size[0] // 32), -(-size[1] // 32), 512)
    assert float((out - ref).norm() / ref.norm()) < 0.035


@needs_int8
def test_int8_features_do_not_depend_on_the_batch():
    """Integer sums are exact and every activation scale is per image: an image gets bit-identical
    features alone, in any batch, in any position (actor, learner and reward classifier batch
    differently and must agree)."""
    q8 = ResNet10Encoder(seed=0, compute_dtype="int8")
    imgs = _photo_like(5, 2)
    imgs[3] = 255 - imgs[3]  # a very different image in the batch
    batch = q8(imgs)
    for i in range(5):
        assert torch.equal(q8(imgs[i : i + 1])[0], batch[i])
    assert torch.equal(q8(imgs.flip(0)), batch.flip(0))


@needs_int8
@pytest.mark.skipif(not native.in_use(), reason=f"native kernels not in use: {native.status()}")
def test_int8_without_the_native_kernels_gives_the_same_features(encoder):
    q8 = ResNet10Encoder(seed=0, compute_dtype="int8")
    imgs = _photo_like(3, 3)
    ref, fused = encoder(imgs), q8(imgs)
    # torch ops for the norms, quantisations and max pool; and no operator, which links the kernels in
    plain = ResNet10Encoder(seed=0, compute_dtype="int8", native_kernels=False)
    assert plain.paths.int8_operator is False and plain.forward_path() == "int8, Python forward (native_kernels=False)"
    with pytest.raises(ValueError, match="needs the native kernels"):
        ResNet10Encoder(seed=0, compute_dtype="int8", native_kernels=False, int8_operator=True)
    torch_ops = plain(imgs)
    # The same arithmetic, but torch's GroupNorm statistics differ from the kernel's in the last
    # bits, so a value near a rounding boundary is quantised one unit the other way now and then
    # (measured 0.8% between the two) and it is as close to float32 as the kernel path.
    rel = float((fused - torch_ops).norm() / torch_ops.norm())
    assert 0.0 < rel < 0.015, rel
    assert float((torch_ops - ref).norm() / ref.norm()) < 0.035


@needs_int8
def test_int8_follows_new_weights(tmp_path):
    a, b = ResNet10Encoder(seed=0, compute_dtype="int8"), ResNet10Encoder(seed=1, compute_dtype="int8")
    imgs = _photo_like(2, 4)
    fa, fb = a(imgs), b(imgs)  # packs a's int8 weights
    a.load_pretrained(b.save_weights(tmp_path / "b.safetensors"))
    assert torch.equal(a(imgs), fb) and not torch.equal(fa, fb)


needs_int8_op = pytest.mark.skipif(
    not (int8_ok and native.encoder_op_in_use()),
    reason=f"int8 encoder operator not in use: {int8_why or native.encoder_op_status()}",
)


@needs_int8_op
@pytest.mark.parametrize("size,n", [((128, 128), 1), ((128, 128), 2), ((128, 128), 4), ((100, 90), 3), ((33, 47), 1)])
@pytest.mark.parametrize("threads", [1, 2])
def test_int8_operator_gives_the_python_forwards_features_bit_for_bit(monkeypatch, size, n, threads):
    """torch.ops.hilserl.resnet10_int8 calls the same convolutions and kernels as the Python forward:
    odd sizes take the asymmetric "SAME" paddings (a padded copy), 128 px the symmetric ones."""
    q8 = ResNet10Encoder(seed=0, compute_dtype="int8", int8_operator=True)
    imgs = torch.from_numpy(np.random.default_rng(n).integers(0, 256, (n, *size, 3), dtype=np.uint8))
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        python = ResNet10Encoder(seed=0, compute_dtype="int8", int8_operator=False)(imgs)
        fused = q8(imgs)
    finally:
        torch.set_num_threads(previous)
    assert fused.dtype == torch.float32 and fused.is_contiguous() and fused.shape == python.shape
    assert torch.equal(fused, python)


@needs_int8_op
def test_int8_operator_is_the_default_and_follows_new_weights(tmp_path):
    a, b = ResNet10Encoder(seed=0, compute_dtype="int8"), ResNet10Encoder(seed=1, compute_dtype="int8")
    imgs = _photo_like(2, 4)
    fa = a(imgs)
    assert "_int8_plan_cache" in a.__dict__  # the operator ran
    assert a.forward_path() == "int8, one torch operator (no GIL hand-offs)"
    a.load_pretrained(b.save_weights(tmp_path / "b.safetensors"))
    fb = a(imgs)
    assert torch.equal(fb, b(imgs)) and not torch.equal(fa, fb)
    plan = int8_encoder.operator_plan(a, 128, 128)
    with pytest.raises(RuntimeError, match="images must be uint8"):
        int8_encoder.run_operator(plan, imgs.float())
    with pytest.raises(RuntimeError, match="left over"):
        torch.ops.hilserl.resnet10_int8(imgs, plan.tensors() + plan.tensors()[:1], plan.ints(), plan.eps)


@needs_int8
def test_int8_operator_plan_names_what_the_operator_reads():
    """The plan is a named structure, flattened to the operator's tensor and integer lists only at
    the call, in the order native/encoder_int8.cpp reads them."""
    enc = ResNet10Encoder(seed=0, compute_dtype="int8")
    plan = int8_encoder.operator_plan(enc, 128, 128)
    assert int8_encoder.operator_plan(enc, 128, 128) is plan  # kept until the weights change
    assert (plan.groups, plan.stem_zero_point, plan.stem_stride, plan.stem_pad) == (4, 128, 2, 3)
    assert (plan.pool_kernel, plan.pool_stride, plan.pool_pads) == (3, 2, (0, 1, 0, 1))  # 64 -> 32: "SAME", after
    assert [b.proj is not None for b in plan.blocks] == [False, True, True, True]
    assert plan.blocks[1].conv1.stride == 2 and plan.blocks[1].conv1.pads == (0, 1, 0, 1)
    assert plan.blocks[0].conv2.pads == (1, 1, 1, 1)
    ints = plan.ints()
    assert ints[:11] == [4, 4, 128, 2, 3, 3, 2, 0, 1, 0, 1]
    assert len(ints) == 11 + 4 * 16 and ints[11:27] == [0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
    # 6 stem tensors, 10 per block, 5 more with a projection
    assert len(plan.tensors()) == 6 + 4 * 10 + 3 * 5
    assert plan.tensors()[3] is plan.stem_map and plan.stem_map.shape == (1, 64, 64, 64)


def test_auto_encoder_dtype_is_int8_where_the_cpu_has_int8_dot_products(monkeypatch):
    from hilserl_core.accel import precision

    monkeypatch.delenv(encoders.FORCE_ENCODER_DTYPE, raising=False)  # this host decides
    monkeypatch.delenv(precision.FORCE_COMPUTE_DTYPE, raising=False)
    resolve = encoders.resolve_encoder_dtype
    for setting in ("float32", "bfloat16", "int8"):
        assert resolve(setting) == setting
    with pytest.raises(ValueError, match="float16"):
        resolve("float16")
    monkeypatch.setattr(encoders, "int8_available", lambda: (True, ""))
    monkeypatch.setattr(encoders, "cpu_has_int8_dot", lambda: True)
    assert resolve("auto") == "int8"
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert resolve("auto", "meta") == "float32"  # int8 is for CPUs only
    monkeypatch.setattr(encoders, "int8_available", lambda: (False, "no oneDNN"))
    assert resolve("auto") == "bfloat16"
    monkeypatch.setattr(encoders, "int8_available", lambda: (True, ""))
    monkeypatch.setattr(encoders, "cpu_has_int8_dot", lambda: False)  # oneDNN, but no VNNI: not measured, not chosen
    assert resolve("auto") == "bfloat16"
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert resolve("auto") == "float32"


def test_the_environment_forces_what_an_auto_encoder_runs(monkeypatch):
    from hilserl_core.accel import precision

    monkeypatch.setenv(precision.FORCE_COMPUTE_DTYPE, "bfloat16")  # the encoder has its own variable
    for forced in ("float32", "bfloat16", "int8"):
        monkeypatch.setenv(encoders.FORCE_ENCODER_DTYPE, forced)
        if forced == "int8" and not encoders.int8_available()[0]:
            with pytest.raises(RuntimeError, match="HILSERL_ENCODER_DTYPE=int8, but this torch has no int8 encoder"):
                encoders.resolve_encoder_dtype("auto")
            continue
        assert encoders.resolve_encoder_dtype("auto") == forced
        assert encoders.resolve_encoder_dtype("float32") == "float32"  # an explicit setting stays
        assert ResNet10Encoder(seed=0).forward_path().startswith(forced)
    monkeypatch.setenv(encoders.FORCE_ENCODER_DTYPE, "int4")
    with pytest.raises(ValueError, match="HILSERL_ENCODER_DTYPE='int4' is not a precision"):
        encoders.resolve_encoder_dtype("auto")


def test_an_auto_encoder_says_what_it_resolved_to():
    auto = ResNet10Encoder(seed=0)
    assert auto.dtype_setting == "auto" and auto.compute_dtype == encoders.resolve_encoder_dtype("auto")
    assert auto.compute_dtype in ("int8", "bfloat16", "float32")
    auto.to("cpu")  # a move re-resolves the setting for the device: the same here
    assert auto.compute_dtype == encoders.resolve_encoder_dtype("auto")
    assert auto.forward_path().startswith(auto.compute_dtype)


def test_encoder_dtype_choices():
    assert encoders.ENCODER_DTYPES == ("auto", "float32", "bfloat16", "int8")
    with pytest.raises(ValueError, match="compute_dtype must be one of"):
        ResNet10Encoder(compute_dtype="int4")
    assert encoders.load_frozen_encoder(compute_dtype="float32").compute_dtype == "float32"


# ---------------------------------------------------------------- ThreadedEncoder
def _threaded_images(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 128, 128, 3), dtype=np.uint8)


@pytest.mark.parametrize("threads,n", [(2, 4), (2, 3), (3, 2), (2, 1), (1, 3)])
def test_threaded_encoder_gives_the_batch_features(threads, n):
    from hilserl_core.accel.threaded_encoder import ThreadedEncoder
    from hilserl_core.vision.encoders import int8_available

    ok, why = int8_available()
    if not ok:
        pytest.skip(f"int8 encoder unavailable ({why}): only its features are split-independent bit for bit")
    enc = ResNet10Encoder(seed=3, compute_dtype="int8")
    te = ThreadedEncoder(enc, threads)
    try:
        images = _threaded_images(n)
        want = encode_features(enc, images)
        got = te(images)
        assert got.dtype == np.float16 and got.shape == want.shape
        assert np.array_equal(got, want)
        spans = te(images, then=lambda a, b, f: (a, b, f.shape[0]))
        assert [s[:2] for s in spans][0][0] == 0 and spans[-1][1] == n
        assert all(b - a == m for a, b, m in spans) and len(spans) == min(threads, n)
    finally:
        te.close()


def test_threaded_encoder_holds_the_caller_and_keeps_helpers_off_its_cpu():
    from hilserl_core.accel.threaded_encoder import ThreadedEncoder, _current_cpu

    allowed = os.sched_getaffinity(0)
    if len(allowed) < 2 or _current_cpu() is None:
        pytest.skip(f"needs 2+ CPUs and sched_getcpu (have {sorted(allowed)})")
    te = ThreadedEncoder(ResNet10Encoder(seed=3), 2)
    try:
        seen = []
        te(_threaded_images(2), then=lambda a, b, f: seen.append((a, _current_cpu(), os.sched_getaffinity(0))))
        caller = next(s for s in seen if s[0] == 0)
        helper = next(s for s in seen if s[0] == 1)
        assert caller[2] == {caller[1]}  # held on its CPU during the call
        assert caller[1] not in helper[2] and helper[1] != caller[1]
        assert os.sched_getaffinity(0) == allowed  # restored after
    finally:
        te.close()


def test_encoder_threads_auto_takes_a_second_thread_only_with_cores_to_spare():
    from hilserl_core.accel.threaded_encoder import resolve_encoder_threads

    assert resolve_encoder_threads(3, 4, cpus=2) == 3  # as set
    assert resolve_encoder_threads(0, 4, cpus=2) == 1 and resolve_encoder_threads(0, 4, cpus=3) == 1
    assert resolve_encoder_threads(0, 4, cpus=4) == 2 and resolve_encoder_threads(0, 4, cpus=64) == 2
    assert resolve_encoder_threads(0, 1, cpus=8) == 1  # one camera: nothing to share out
    assert resolve_encoder_threads(0, 2) >= 1  # this machine's affinity


# ---------------------------------------------------------------- identity of stored features
def test_encoder_identity_names_the_weights_whatever_the_precision(tmp_path):
    from hilserl_core.vision.encoders import EncoderMismatch, compare_encoder_identity

    seeded = ResNet10Encoder(seed=3)  # auto: int8 or bfloat16 where the CPU has it
    path = seeded.save_weights(tmp_path / "w.safetensors")
    auto = ResNet10Encoder(seed=5).load_pretrained(path)
    f32 = ResNet10Encoder(seed=7, compute_dtype="float32").load_pretrained(path)
    ia, i32 = auto.identity(), f32.identity()
    assert ia["architecture"] == "resnet10" and ia["weights"].startswith("bf16-sha256:")
    # one set of weights, one name: from a seed or a file, held in any precision
    assert ia["weights"] == i32["weights"] == seeded.identity()["weights"]
    assert ResNet10Encoder(seed=3, compute_dtype="float32").identity()["weights"] == ia["weights"]
    assert i32["compute_dtype"] == "float32" and ia["compute_dtype"] == encoders.resolve_encoder_dtype("auto")
    assert ResNet10Encoder(seed=4).identity()["weights"] != ia["weights"]  # other weights
    assert ResNet10Encoder().identity()["weights"] != ResNet10Encoder().identity()["weights"]  # unseeded

    assert compare_encoder_identity(None, i32, "file") == ""  # older files recorded none
    assert compare_encoder_identity(dict(i32), i32, "file") == ""
    with pytest.raises(EncoderMismatch, match="weights"):
        compare_encoder_identity(ResNet10Encoder(seed=0).identity(), i32, "checkpoint x")
    note = compare_encoder_identity({**i32, "compute_dtype": "int8"}, i32, "checkpoint x")
    assert "checkpoint x" in note and "int8" in note and "float32" in note
    with pytest.raises(EncoderMismatch, match="mapping"):
        compare_encoder_identity("resnet10", i32, "file")


def test_the_patch_product_path_can_be_turned_off_and_gives_the_plain_features():
    """ResNet10Encoder(patch_gemm=...): the speed path chosen by an argument, checked against the direct kernel."""
    imgs = _photo_like(2, 4)
    plain = ResNet10Encoder(seed=0, compute_dtype="float32", patch_gemm=False)
    fast = ResNet10Encoder(seed=0, compute_dtype="float32", patch_gemm=True)
    timed = ResNet10Encoder(seed=0, compute_dtype="float32")
    want = plain(imgs)
    torch.testing.assert_close(fast(imgs), want, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(timed(imgs), want, rtol=1e-4, atol=1e-4)
    assert len(timed.paths.conv.faster) > 0 and timed.paths.conv.faster is plain.paths.conv.faster  # one table per process
