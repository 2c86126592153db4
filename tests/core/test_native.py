"""The native kernels (hilserl_core/accel/native.py) against plain torch: spatial embedding, GroupNorm + ReLU."""

import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from hilserl_core.accel import native, paths
from hilserl_core.accel.spatial_embedding import SpatialEmbeddingK1
from hilserl_core.rl.networks import ImageHead, SpatialLearnedEmbedding
from hilserl_core.vision import encoders

NATIVE = SpatialEmbeddingK1(native=True)  # as paths.spatial_fast_path() gives it where the kernel is built


def why_native_cannot_run() -> "str | None":
    """Why this host runs no native kernel by design (turned off, another platform, no C compiler);
    None where it must be built and in use: a failed build then fails these tests, not skips them."""
    return native._unsupported() or (None if native._compiler() else "no C compiler ($CC, cc, gcc)")


def why_int8_operator_cannot_run() -> "str | None":
    if os.environ.get("HILSERL_INT8_OPERATOR", "1") == "0":
        return "disabled by HILSERL_INT8_OPERATOR=0"
    if not encoders.int8_available()[0]:
        return f"no int8 encoder in this torch: {encoders.int8_available()[1]}"
    return why_native_cannot_run() or (None if native._compiler("CXX", ("c++", "g++")) else "no C++ compiler ($CXX, c++, g++)")


pytestmark = pytest.mark.skipif(why_native_cannot_run() is not None, reason=f"no native kernel here: {why_native_cannot_run()}")


def test_the_native_kernels_are_in_use_wherever_they_can_be():
    assert native.in_use(), native.status()
    if why_int8_operator_cannot_run() is None:
        assert native.encoder_op_in_use(), native.encoder_op_status()


def features(b=256, p=16, c=512, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, p, c, generator=g).half(), torch.randn(p, c, generator=g)


def test_forward_and_kernel_gradient_match_torch():
    for b in (256, 3):  # also a batch that is not a multiple of the thread count
        x, w = features(b)
        ref = (x.float() * w).sum(1)
        torch.testing.assert_close(native.spatial_forward(x, w), ref, rtol=1e-5, atol=1e-4)
        g = torch.randn(b, 512)
        torch.testing.assert_close(
            native.spatial_kernel_grad(x, g), (x.float() * g.unsqueeze(1)).sum(0), rtol=1e-5, atol=1e-3
        )


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_fused_dropout_rate_scale_and_independence(p):
    x = torch.ones(400, 1, 1024, dtype=torch.float16)
    w = torch.ones(1, 1024)
    y = native.spatial_forward(x, w, p, seed=123)
    dropped = float((y == 0).float().mean())
    assert abs(dropped - p) < 0.005  # 410k Bernoulli(p) draws: std < 0.001
    torch.testing.assert_close(y[y != 0], torch.full_like(y[y != 0], 1.0 / (1.0 - p)))
    m = (y != 0).float()
    assert torch.equal(m, (native.spatial_forward(x, w, p, seed=123) != 0).float())  # same seed, same mask
    other = (native.spatial_forward(x, w, p, seed=124) != 0).float()  # neighbouring seed: unrelated mask
    assert abs(np.corrcoef(m.flatten().numpy(), other.flatten().numpy())[0, 1]) < 0.01
    for a, b in ((m[:, :-1], m[:, 1:]), (m[:-1], m[1:])):  # neighbours along channels and along the batch
        assert abs(np.corrcoef(a.flatten().numpy(), b.flatten().numpy())[0, 1]) < 0.01
    assert torch.equal(native.spatial_forward(x, w, 0.0, seed=123), torch.ones(400, 1024))
    with pytest.raises(ValueError, match="dropout"):
        native.spatial_forward(x, w, 1.0, seed=123)


def test_fused_dropout_backward_uses_the_forward_mask():
    torch.manual_seed(0)
    emb = SpatialLearnedEmbedding(4, 4, 512, 1, fast_path=NATIVE)
    x = torch.randn(64, 4, 4, 512).half()
    out = emb(x, dropout=0.3)
    g = torch.randn_like(out)
    out.backward(g)
    kept = out != 0  # the forward's mask, read off its output
    assert 0.25 < 1 - kept.float().mean() < 0.35
    xf = x.reshape(64, 16, 512).float()
    ref = (xf * (g * kept / 0.7).unsqueeze(1)).sum(0)
    torch.testing.assert_close(emb.kernel.grad[..., 0], ref, rtol=1e-4, atol=1e-3)
    # the kept outputs are the undropped embedding, scaled
    full = (xf * emb.kernel[..., 0].detach()).sum(1)
    torch.testing.assert_close(out[kept], (full / 0.7)[kept], rtol=1e-4, atol=1e-4)


def test_input_gradient_when_features_require_it():
    torch.manual_seed(1)
    emb = SpatialLearnedEmbedding(4, 4, 64, 1, fast_path=NATIVE)
    x = torch.randn(8, 4, 4, 64).half().requires_grad_()
    emb(x).sum().backward()
    torch.testing.assert_close(x.grad.float(), emb.kernel[..., 0].detach().expand(8, 16, 64).reshape(8, 4, 4, 64),
                               rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("k", [8, 1])  # the paper's 8 kernels (plain einsum) and 1 (the native kernel)
def test_image_head_dropout_follows_mode_and_override(k):
    torch.manual_seed(2)
    head = ImageHead(num_spatial_kernels=k, dropout=0.1, spatial_fast_path=NATIVE)
    x = torch.rand(16, 4, 4, 512).half()
    head.eval()
    # no dropout in eval: equal up to the summation order a loaded machine's thread split may change
    torch.testing.assert_close(head(x), head(x), rtol=1e-4, atol=1e-4)
    assert not torch.equal(head(x, dropout=True), head(x, dropout=True))
    head.train()
    torch.testing.assert_close(head(x, dropout=False), head.eval()(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("b", [64, 3])
def test_native_spatial_path_matches_the_plain_einsum(b):
    """SpatialLearnedEmbedding(fast_path=...) against the same weights without one (the plain
    einsum): outputs and both gradients, without dropout (whose masks differ by design)."""
    torch.manual_seed(3)
    plain = SpatialLearnedEmbedding(4, 4, 512, 1)
    fast = SpatialLearnedEmbedding(4, 4, 512, 1, fast_path=paths.spatial_fast_path(native_kernel=True))
    fast.load_state_dict(plain.state_dict())
    x = torch.randn(b, 4, 4, 512).half()
    xp, xf = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_p, out_f = plain(xp), fast(xf)
    torch.testing.assert_close(out_f, out_p, rtol=1e-5, atol=1e-4)
    g = torch.randn_like(out_p)
    out_p.backward(g)
    out_f.backward(g)
    torch.testing.assert_close(fast.kernel.grad, plain.kernel.grad, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(xf.grad.float(), xp.grad.float(), rtol=1e-3, atol=1e-3)


def _run(code, **env):
    full_env = {**os.environ, **env}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=full_env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_fallback_and_native_agree_and_the_build_is_cached(tmp_path):
    code = """
        import torch
        from hilserl_core.vision import encoders
        from hilserl_core.accel import native, paths
        from hilserl_core.rl.networks import SpatialLearnedEmbedding
        torch.manual_seed(0)
        emb = SpatialLearnedEmbedding(4, 4, 512, 1, fast_path=paths.spatial_fast_path())  # as the agents build it
        x = torch.randn(32, 4, 4, 512).half()
        print(native.status())
        from safetensors.torch import save_file
        save_file({{"y": emb(x).detach().contiguous()}}, {out!r})
    """
    off = _run(code.format(out=str(tmp_path / "off.safetensors")), HILSERL_NATIVE="0")
    assert "disabled by HILSERL_NATIVE=0" in off
    cache = tmp_path / "cache"
    on = _run(code.format(out=str(tmp_path / "on.safetensors")), HILSERL_CACHE_DIR=str(cache))
    assert str(cache) in on
    from safetensors.torch import load_file

    torch.testing.assert_close(load_file(tmp_path / "on.safetensors")["y"], load_file(tmp_path / "off.safetensors")["y"], rtol=1e-5, atol=1e-4)
    built = list(cache.glob("kernels-*.so"))
    assert len(built) == 1
    stamp = built[0].stat().st_mtime_ns
    _run(code.format(out=str(tmp_path / "again.safetensors")), HILSERL_CACHE_DIR=str(cache))
    assert [p.stat().st_mtime_ns for p in cache.glob("kernels-*.so")] == [stamp]  # reused, not rebuilt


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux /proc/self/maps")
def test_one_openmp_runtime_in_the_process():
    if not native.in_use():
        pytest.skip(f"the native kernel is not in use here: {native.status()}")
    native.spatial_forward(*features(8))
    with open("/proc/self/maps") as f:
        libs = set(re.findall(r"\S*lib(?:gomp|iomp5|omp)[^\s/]*\.so[^\s]*", f.read()))
    # exactly one: torch's own runtime is loaded, and the kernel shares its threads instead of a second one
    assert len(libs) == 1, libs


def _bf16_map(n, c, h, w, seed, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g) * 3.0 + shift
    return x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)


def _norm(c, seed):
    gn = torch.nn.GroupNorm(4, c, eps=1e-5)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        gn.weight.copy_(torch.rand(c, generator=g) + 0.5)
        gn.bias.copy_(torch.randn(c, generator=g))
    return gn


def _gn64(x, gn):
    """GroupNorm in float64 (the exact result the kernel rounds)."""
    n, c, h, w = x.shape
    xd = x.double().reshape(n, gn.num_groups, -1)
    y = (xd - xd.mean(-1, keepdim=True)) / torch.sqrt(xd.var(-1, unbiased=False, keepdim=True) + gn.eps)
    return y.reshape(n, c, h, w) * gn.weight.double().view(1, c, 1, 1) + gn.bias.double().view(1, c, 1, 1)


@pytest.mark.parametrize("mode", ["plain", "identity", "projected"])
@pytest.mark.parametrize("n,c,hw", [(4, 64, 64), (3, 128, 16), (2, 512, 4), (1, 256, 8)])
def test_groupnorm_relu_matches_float32_reference(mode, n, c, hw):
    # a large mean (shift) checks the variance is not lost to cancellation
    x, r = _bf16_map(n, c, hw, hw, 0, shift=20.0), _bf16_map(n, c, hw, hw, 1)
    gn, gr = _norm(c, 2), _norm(c, 3)
    residual = None if mode == "plain" else r
    rnorm = gr if mode == "projected" else None
    assert native.groupnorm_available(x, 4)
    with torch.no_grad():
        out = native.groupnorm_act(x, gn, residual, rnorm)
        ref = _gn64(x, gn)
        if mode == "identity":
            ref = ref + r.double()
        elif mode == "projected":
            ref = ref + _gn64(r, gr)
        ref = torch.relu(ref)
    assert out.dtype == torch.bfloat16 and out.shape == x.shape
    assert out.is_contiguous(memory_format=torch.channels_last)
    # rounded once to bfloat16 (8 significant bits): within half a unit (<= 2^-8 relative) of the exact result
    err = (out.double() - ref).abs()
    assert bool((err <= 2**-8 * ref.abs() + 1e-5).all()), float((err - 2**-8 * ref.abs()).max())
    assert (out == 0).float().mean() > 0.1  # the ReLU acted


def test_groupnorm_relu_only_takes_what_it_can():
    x = _bf16_map(2, 64, 8, 8, 0)
    assert not native.groupnorm_available(x.float(), 4)  # float32: torch ops
    assert not native.groupnorm_available(x.contiguous(), 4)  # NCHW memory
    assert not native.groupnorm_available(_bf16_map(2, 36, 8, 8, 0), 4)  # 9 channels per group
    with pytest.raises(ValueError, match="residual shape"):
        native.groupnorm_act(x, _norm(64, 0), _bf16_map(2, 64, 4, 4, 1))


def test_encoder_blocks_with_and_without_the_kernel_agree():
    enc = encoders.ResNet10Encoder(seed=0, compute_dtype="bfloat16")
    assert enc.paths.norm_act is not None  # the default where the kernels are built
    imgs = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, 128, 128, 3), dtype=np.uint8))
    fused = enc(imgs)
    # the same network through torch's ops (each rounds to bfloat16 on its own)
    plain = encoders.ResNet10Encoder(seed=0, compute_dtype="bfloat16", native_kernels=False)
    assert plain.paths.norm_act is None
    torch_ops = plain(imgs)
    rel = float((fused - torch_ops).norm() / torch_ops.norm())
    assert 0.0 < rel < 0.02, rel


def _quantized_reference(y):
    """uint8 round(y * 255 / max y) per image, from float64 y >= 0."""
    m = y.flatten(1).max(dim=1).values.view(-1, 1, 1, 1)
    return torch.round(y * torch.where(m > 0, 255.0 / m, torch.zeros_like(m))).clamp(0, 255)


@pytest.mark.parametrize("mode", ["plain", "identity", "projected"])
def test_groupnorm_relu_writes_the_next_int8_convs_uint8_input(mode):
    x, r = _bf16_map(3, 128, 16, 16, 0, shift=5.0), _bf16_map(3, 128, 16, 16, 1)
    gn, gr = _norm(128, 2), _norm(128, 3)
    residual = None if mode == "plain" else r
    rnorm = gr if mode == "projected" else None
    with torch.no_grad():
        y, q = native.groupnorm_act_both(x, gn, residual, rnorm)
        q_only = native.groupnorm_act_u8(x, gn, residual, rnorm)
        ref = _gn64(x, gn) + (0 if mode == "plain" else (r.double() if mode == "identity" else _gn64(r, gr)))
        ref = torch.relu(ref)
    assert q.dtype == torch.uint8 and q.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(q, q_only) and torch.equal(y, native.groupnorm_act(x, gn, residual, rnorm))
    # quantised from the unrounded float32 value: within one unit of the exact quantisation
    assert int((q.double() - _quantized_reference(ref)).abs().max()) <= 1
    assert int(q.flatten(1).max(dim=1).values.min()) == 255  # every image uses the full range


def test_groupnorm_takes_float32_with_a_map_added_before_the_norm():
    g = torch.Generator().manual_seed(5)
    x = (torch.randn(2, 64, 8, 8, generator=g) * 40.0).contiguous(memory_format=torch.channels_last)
    pre = (torch.randn(1, 64, 8, 8, generator=g) * 40.0).contiguous(memory_format=torch.channels_last)
    gn = _norm(64, 4)
    assert native.groupnorm_available(x, 4, allow_float32=True) and not native.groupnorm_available(x, 4)
    with torch.no_grad():
        out = native.groupnorm_act(x, gn, pre=pre)
        ref = torch.relu(_gn64(x.double() + pre.double(), gn))
    err = (out.double() - ref).abs()
    assert bool((err <= 2**-8 * ref.abs() + 1e-4).all())
    with pytest.raises(ValueError, match="pre shape"):
        native.groupnorm_act(x, gn, pre=pre[:, :, :4])
    with pytest.raises(ValueError, match="pre shape"):
        native.groupnorm_act_u8(x, gn, pre=pre[:, :, :4])
    # without the ReLU (bfloat16 out only: a quantised map must be non-negative)
    with torch.no_grad():
        linear = native.groupnorm_act(x, gn, pre=pre, relu=False)
    assert bool((linear < 0).any())
    err = (linear.double() - _gn64(x.double() + pre.double(), gn)).abs()
    assert bool((err <= 2**-8 * _gn64(x.double() + pre.double(), gn).abs() + 1e-4).all())


def test_quantize_u8_per_image():
    x = torch.relu(_bf16_map(3, 64, 8, 8, 6))
    x[1] = 0  # an all-zero image quantises to zeros
    x[2] *= 100  # scales are per image
    q = native.quantize_u8(x)
    ref = _quantized_reference(x.double())
    assert int((q.double() - ref).abs().max()) <= 1 and int(q[1].max()) == 0
    assert int(q[0].max()) == 255 and int(q[2].max()) == 255


@pytest.mark.parametrize("size", [(64, 64), (9, 7), (4, 4)])
def test_maxpool_nonneg_is_the_same_max_pool_exactly(size):
    from hilserl_core.vision import encoders

    x = torch.relu(_bf16_map(2, 64, *size, 7))
    pads = encoders._same_pads(size[0], 3, 2) + encoders._same_pads(size[1], 3, 2)
    y, q = native.maxpool_nonneg_u8(x, 3, 2, pads)
    ref = encoders.same_max_pool(x, 3, 2)
    assert torch.equal(y, ref) and y.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(native.maxpool_nonneg(x, 3, 2, pads), ref)
    assert int((q.double() - _quantized_reference(ref.double())).abs().max()) <= 1
    with pytest.raises(ValueError, match="C % 16"):
        native.maxpool_nonneg(torch.relu(_bf16_map(1, 8, 4, 4, 0)), 3, 2, (0, 1, 0, 1))
    # a negative value or -0.0 never wins over 0, nor spoils the image's quantisation scale
    neg = -torch.relu(_bf16_map(1, 16, 4, 4, 8))
    y, q = native.maxpool_nonneg_u8(neg.contiguous(memory_format=torch.channels_last), 3, 2, (0, 1, 0, 1))
    assert torch.equal(y.view(torch.int16), torch.zeros_like(y).view(torch.int16)) and int(q.max()) == 0


def _run_module(env_extra, tmp_path):
    env = {**os.environ, "HILSERL_CACHE_DIR": str(tmp_path / "cache"), **env_extra}
    return subprocess.run([sys.executable, "-m", "hilserl_core.accel.native"], capture_output=True, text=True, env=env, timeout=600)


def test_the_native_module_builds_both_libraries_and_says_so(tmp_path):
    """``python -m hilserl_core.accel.native`` (scripts/setup.sh runs it) builds the C kernels and the
    int8 encoder operator into the cache, and prints where; a second run finds them there."""
    if why_int8_operator_cannot_run():
        pytest.skip(f"no int8 encoder operator here: {why_int8_operator_cannot_run()}")
    first = _run_module({}, tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert re.search(r"native kernels: .*kernels-[0-9a-f]{16}\.so", first.stdout)
    assert re.search(r"int8 encoder operator: .*encoder-op-[0-9a-f]{16}\.so", first.stdout)
    built = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(built) == 2 and not any(name.startswith(".build-") for name in built)  # no scratch left behind
    again = _run_module({}, tmp_path)
    assert again.returncode == 0 and again.stdout == first.stdout


def test_a_failing_cxx_compiler_leaves_the_python_int8_forward_with_the_same_features(tmp_path):
    """No int8 operator (here: a C++ compiler that fails): the status says why, the module exits 1,
    and the int8 encoder runs its Python forward, with the same features."""
    ok, why = encoders.int8_available()
    if not ok:
        pytest.skip(f"int8 encoder unavailable: {why}")
    probe = textwrap.dedent(
        """
        import hashlib, torch
        from hilserl_core.vision import encoders
        from hilserl_core.accel import native
        enc = encoders.ResNet10Encoder(seed=0, compute_dtype="int8")
        g = torch.Generator().manual_seed(7)
        feats = enc(torch.randint(0, 256, (2, 128, 128, 3), dtype=torch.uint8, generator=g))
        print("op", native.encoder_op_in_use(), native.encoder_op_status())
        print("features", hashlib.sha256(feats.numpy().tobytes()).hexdigest())
        """
    )
    env = {**os.environ, "HILSERL_CACHE_DIR": str(tmp_path / "cache"), "CXX": "false"}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "op False int8 encoder operator unavailable (" in out.stdout and "failed" in out.stdout
    g = torch.Generator().manual_seed(7)
    here = encoders.ResNet10Encoder(seed=0, compute_dtype="int8")(torch.randint(0, 256, (2, 128, 128, 3), dtype=torch.uint8, generator=g))
    import hashlib

    assert f"features {hashlib.sha256(here.numpy().tobytes()).hexdigest()}" in out.stdout
    status = _run_module({"CXX": "false"}, tmp_path)
    assert status.returncode == 1 and "int8 encoder operator unavailable" in status.stdout
    off = _run_module({"HILSERL_INT8_OPERATOR": "0"}, tmp_path)
    assert off.returncode == 1 and "disabled by HILSERL_INT8_OPERATOR=0: the Python int8 forward" in off.stdout
    assert re.search(r"native kernels: .*kernels-[0-9a-f]{16}\.so", off.stdout)  # the C kernels stay
