"""networks.py: shapes, the tanh-Gaussian log-density, the batched ensemble, weight export."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hilserl_core.accel.paths import spatial_fast_path
from hilserl_core.accel.spatial_embedding import ChunkedSpatialK1, SpatialEmbeddingK1
from hilserl_core.rl.networks import (
    CriticEnsemble,
    FastDropout,
    GraspCritic,
    ImageHead,
    ObservationEncoder,
    SpatialLearnedEmbedding,
    TanhGaussianActor,
    load_trainable_state_dict,
    tanh_gaussian_log_prob,
    trainable_state_dict,
)

CAMS = ("wrist", "side")


def feature_obs(batch=4, proprio=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    obs = {f"feature/{c}": torch.rand(batch, 4, 4, 512, generator=g).half() for c in CAMS}
    obs["proprio"] = torch.randn(batch, proprio, generator=g)
    return obs


# None: the plain einsum; the chunked torch path (k = 1) the agents take where no native kernel runs
@pytest.mark.parametrize("fast_path", [None, SpatialEmbeddingK1(native=False)])
@pytest.mark.parametrize("k", [1, 3, 8])
def test_spatial_embedding_matches_its_definition(k, fast_path):
    torch.manual_seed(0)
    emb = SpatialLearnedEmbedding(2, 3, 6, k, fast_path)  # h=2, w=3, C=6
    x = torch.randn(5, 2, 3, 6)  # channel-last features
    out = emb(x)
    assert out.shape == (5, 6 * k)
    # out[b, c*k + j] = sum over grid cells (r, q) of x[b, r, q, c] * kernel[r*w + q, c, j]
    ref = torch.zeros(5, 6, k)
    for c in range(6):
        for j in range(k):
            for r in range(2):
                for q in range(3):
                    ref[:, c, j] += x[:, r, q, c] * emb.kernel[r * 3 + q, c, j]
    torch.testing.assert_close(out, ref.reshape(5, -1))
    with pytest.raises(ValueError, match="channel-last"):
        emb(torch.randn(5, 6, 2, 3))  # channel-first input is refused, not silently misread


def test_observation_encoder_shapes_and_range():
    enc = ObservationEncoder(CAMS, 5, num_spatial_kernels=2, bottleneck_dim=32, proprio_latent_dim=16)
    out = enc(feature_obs())
    assert out.shape == (4, 2 * 32 + 16) == (4, enc.out_dim)
    assert out.dtype == torch.float32
    assert out.abs().max() < 1.0  # tanh outputs


def test_observation_encoder_runs_uint8_images_through_frozen_encoder_with_augmentation():
    from hilserl_core.vision.augment import random_shift
    from hilserl_core.vision.encoders import ResNet10Encoder

    resnet = ResNet10Encoder(seed=0)
    calls = []

    def augment(images):
        calls.append(images.shape)
        return random_shift(images, pad=4)

    enc = ObservationEncoder(("wrist",), 3, num_spatial_kernels=1, image_encoder=resnet, augment=augment)
    images = torch.randint(0, 256, (2, 128, 128, 3), dtype=torch.uint8)
    obs = {"image/wrist": images, "proprio": torch.zeros(2, 3)}
    out = enc(obs, augment=True)
    assert out.shape == (2, enc.out_dim) and calls == [(2, 128, 128, 3)]
    enc(obs, augment=False)
    assert len(calls) == 1  # no augmentation unless asked
    out.sum().backward()
    assert all(p.grad is None for p in resnet.parameters())  # frozen: no gradient reaches it
    assert enc.image_heads["wrist"].dense.weight.grad is not None
    # Cached features of the same (unaugmented) images give the same encoding.
    enc.eval()
    cached = {"feature/wrist": resnet(images).half().float(), "proprio": torch.zeros(2, 3)}
    raw = {"image/wrist": images, "proprio": torch.zeros(2, 3)}
    torch.testing.assert_close(enc(cached), enc(raw), atol=2e-2, rtol=0)


def test_observation_encoder_errors_name_the_missing_key():
    enc = ObservationEncoder(("wrist",), 0)
    with pytest.raises(KeyError, match="feature/wrist"):
        enc({"proprio": torch.zeros(1, 3)})
    with pytest.raises(ValueError, match="image_encoder"):
        enc({"image/wrist": torch.zeros(1, 128, 128, 3, dtype=torch.uint8)})


def test_tanh_log_prob_equals_change_of_variables():
    torch.manual_seed(0)
    mean, log_std = torch.randn(1000, 3), torch.randn(1000, 3) * 0.5
    u = mean + log_std.exp() * torch.randn(1000, 3)
    ours = tanh_gaussian_log_prob(u, mean, log_std)
    dist = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(mean, log_std.exp()), [torch.distributions.TanhTransform()]
    )
    ref = dist.log_prob(torch.tanh(u)).sum(-1)
    ok = torch.tanh(u).abs().amax(-1) < 0.999  # torch's reference loses precision near |a| = 1
    torch.testing.assert_close(ours[ok], ref[ok], atol=1e-3, rtol=1e-4)
    # Stable where the naive log(1 - tanh^2) is -inf.
    big = tanh_gaussian_log_prob(torch.tensor([[30.0]]), torch.tensor([[29.0]]), torch.tensor([[0.0]]))
    assert torch.isfinite(big).all()


def test_tanh_gaussian_density_matches_monte_carlo_histogram():
    torch.manual_seed(1)
    actor = TanhGaussianActor(4, 1, hidden_dims=(16,))
    feats = torch.randn(1, 4)
    with torch.no_grad():
        a, logp = actor.sample(feats.expand(200_000, 4))
        mean, log_std = actor.distribution_params(feats)
    assert a.abs().max() < 1.0
    edges = np.linspace(-0.99, 0.99, 21)
    counts, _ = np.histogram(a.numpy().ravel(), bins=edges)
    # Integrate the claimed density over each bin (trapezoid on a fine grid).
    grid = torch.linspace(-0.99, 0.99, 20 * 200 + 1, dtype=torch.float64)
    u = torch.atanh(grid).unsqueeze(-1)
    dens = tanh_gaussian_log_prob(u, mean.double(), log_std.double()).exp().numpy()
    per_bin = [np.trapezoid(dens[i * 200 : (i + 1) * 200 + 1], grid.numpy()[i * 200 : (i + 1) * 200 + 1]) for i in range(20)]
    np.testing.assert_allclose(counts / 200_000, per_bin, atol=4e-3)
    # Sampled log-probabilities are the density at the sampled action.
    torch.testing.assert_close(
        logp[:10], tanh_gaussian_log_prob(torch.atanh(a[:10].double()), mean.double(), log_std.double()).float(),
        atol=2e-3, rtol=1e-3,
    )


def test_actor_deterministic_mode_is_tanh_of_mean():
    torch.manual_seed(2)
    actor = TanhGaussianActor(8, 3, use_layer_norm=False)
    x = torch.randn(5, 8)
    mean, log_std = actor.distribution_params(x)
    torch.testing.assert_close(actor(x, deterministic=True), torch.tanh(mean))
    assert (log_std >= actor.log_std_min).all() and (log_std <= actor.log_std_max).all()
    assert not torch.equal(actor(x), actor(x))  # stochastic mode samples
    assert any(isinstance(m, torch.nn.LayerNorm) for m in TanhGaussianActor(8, 3, use_layer_norm=True).modules())
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in actor.modules())


def reference_member_q(ens, i, feats, actions):
    """Member ``i`` of the ensemble written as a plain per-critic MLP."""
    h = torch.cat([feats, actions], -1)
    layer_weights = [ens.member_first_layer(i)] + [w[i] for w in ens.weights]
    for layer in range(len(layer_weights) - 1):
        h = h @ layer_weights[layer] + ens.biases[layer][i, 0]
        h = F.layer_norm(h, h.shape[-1:]) * ens.ln_weights[layer][i, 0] + ens.ln_biases[layer][i, 0]
        h = F.relu(h)
    return (h @ layer_weights[-1] + ens.biases[-1][i, 0]).squeeze(-1)


def test_critic_ensemble_batched_equals_per_member_loop_and_subsets():
    torch.manual_seed(3)
    ens = CriticEnsemble(10, 2, num_critics=5, hidden_dims=(32, 16))
    with torch.no_grad():  # non-trivial LayerNorm affine parameters
        for p in list(ens.ln_weights) + list(ens.ln_biases):
            p.add_(torch.randn_like(p) * 0.3)
    feats, actions = torch.randn(7, 10), torch.randn(7, 2)
    q = ens(feats, actions)
    assert q.shape == (5, 7)
    for i in range(5):
        torch.testing.assert_close(q[i], reference_member_q(ens, i, feats, actions), atol=1e-5, rtol=1e-5)
    members = torch.tensor([3, 1])
    torch.testing.assert_close(ens(feats, actions, members), q[members])
    # Members are independently initialised.
    assert not torch.allclose(q[0], q[1])


def test_grasp_critic_outputs_3_pow_n_values():
    assert GraspCritic(12, n_grippers=1)(torch.randn(4, 12)).shape == (4, 3)
    assert GraspCritic(12, n_grippers=2)(torch.randn(4, 12)).shape == (4, 9)


def test_trainable_export_excludes_frozen_encoder_and_round_trips():
    from hilserl_core.vision.encoders import ResNet10Encoder

    resnet = ResNet10Encoder(seed=0)
    enc = ObservationEncoder(CAMS, 5, num_spatial_kernels=1, image_encoder=resnet)
    state = trainable_state_dict(enc)
    assert not any(k.startswith("image_encoder") for k in state)
    assert {"image_heads.wrist.spatial.kernel", "image_heads.side.dense.weight", "proprio.dense.weight"} <= set(state)
    n_trainable = sum(p.numel() for p in enc.parameters() if p.requires_grad)
    assert sum(v.numel() for v in state.values()) == n_trainable
    assert n_trainable < sum(p.numel() for p in resnet.parameters())
    # Exported tensors are copies: changing the network does not change the export.
    other = ObservationEncoder(CAMS, 5, num_spatial_kernels=1, image_encoder=ResNet10Encoder(seed=0))
    load_trainable_state_dict(other, state)
    obs = feature_obs()
    enc.eval(), other.eval()
    torch.testing.assert_close(enc(obs), other(obs))
    with pytest.raises(KeyError, match="missing"):
        load_trainable_state_dict(other, {k: v for k, v in state.items() if "side" not in k})


def test_image_head_dropout_only_in_training():
    torch.manual_seed(4)
    head = ImageHead(num_spatial_kernels=1, dropout=0.5)
    x = torch.rand(3, 4, 4, 512)
    head.eval()
    torch.testing.assert_close(head(x), head(x))
    head.train()
    assert not torch.equal(head(x), head(x))
    assert math.isclose(head.out_dim, 256)


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_fast_dropout_drops_p_and_keeps_the_mean(p):
    torch.manual_seed(0)
    drop = FastDropout(p)
    x = torch.ones(400, 1000)
    y = drop(x)
    dropped = float((y == 0).float().mean())
    assert abs(dropped - p) < 0.005  # 400k Bernoulli(p) draws: std < 0.001
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1.0 / (1.0 - p)))
    # masks differ between calls, elements independently (no lane pattern: neighbours uncorrelated)
    m = (y != 0).float()
    assert not torch.equal(m, (drop(x) != 0).float())
    corr = np.corrcoef(m[:, :-1].flatten().numpy(), m[:, 1:].flatten().numpy())[0, 1]
    assert abs(corr) < 0.01
    # gradient flows through kept elements only, scaled like the forward
    xg = torch.ones(50, 50, requires_grad=True)
    out = drop(xg)
    out.sum().backward()
    torch.testing.assert_close(xg.grad, (out != 0).float() / (1.0 - p))
    drop.eval()
    assert drop(x) is x
    with pytest.raises(ValueError):
        FastDropout(1.0)


@pytest.mark.parametrize("fast_path", [None, SpatialEmbeddingK1(native=False)])
@pytest.mark.parametrize("k", [1, 3])
def test_spatial_embedding_gradients(k, fast_path):
    g = torch.Generator().manual_seed(k)
    x = torch.randn(70, 6, 5, dtype=torch.double, generator=g, requires_grad=True)  # > one chunk of rows
    w = torch.randn(6, 5, dtype=torch.double, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(ChunkedSpatialK1.apply, (x, w))
    # float16 input (cached features) gives the float32 result of the converted input, also under autocast.
    emb = SpatialLearnedEmbedding(2, 3, 5, k, fast_path)
    x16 = torch.rand(40, 2, 3, 5).half()
    torch.testing.assert_close(emb(x16), emb(x16.float()))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert emb(x16).dtype == torch.float32
        torch.testing.assert_close(emb(x16), emb(x16.float()))
    for p in (-0.1, 1.0):  # an impossible dropout rate is refused on every path
        with pytest.raises(ValueError, match="dropout"):
            emb(x16, dropout=p)


def test_the_chunked_spatial_path_matches_the_plain_einsum_with_gradients_and_dropout():
    """SpatialEmbeddingK1 without the native kernel against the plain path on the same weights:
    outputs and both gradients, and with dropout the same masks (both draw fast_dropout's)."""
    torch.manual_seed(4)
    plain = SpatialLearnedEmbedding(4, 4, 64, 1)
    fast = SpatialLearnedEmbedding(4, 4, 64, 1, SpatialEmbeddingK1(native=False))
    fast.load_state_dict(plain.state_dict())
    x = torch.randn(70, 4, 4, 64).half()
    for p in (0.0, 0.3):
        xp, xf = x.clone().requires_grad_(), x.clone().requires_grad_()
        torch.manual_seed(5)
        out_p = plain(xp, dropout=p)
        torch.manual_seed(5)
        out_f = fast(xf, dropout=p)
        torch.testing.assert_close(out_f, out_p, rtol=1e-5, atol=1e-5)
        g = torch.randn_like(out_p)
        out_p.backward(g)
        out_f.backward(g)
        torch.testing.assert_close(fast.kernel.grad, plain.kernel.grad, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(xf.grad, xp.grad)
        plain.zero_grad()
        fast.zero_grad()
    # the factory: a fast path for every k = 1 head, the native kernel only where asked or built
    assert not spatial_fast_path(native_kernel=False).native and spatial_fast_path().native
    head = ImageHead(num_spatial_kernels=1, spatial_fast_path=spatial_fast_path())
    assert head.spatial.fast_path is not None and ImageHead().spatial.fast_path is None


def test_output_layers_stay_float32_under_bfloat16_autocast():
    torch.manual_seed(0)
    critic = CriticEnsemble(16, 4, 3, (32, 32))
    actor = TanhGaussianActor(20, 4, (32, 32))
    grasp = GraspCritic(20, 2, (32,))
    x, a = torch.randn(8, 20), torch.rand(8, 4) * 2 - 1
    xc = x[:, :16]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        q = critic(xc, a)
        mean, log_std = actor.distribution_params(x)
        gq = grasp(x)
    assert q.dtype == mean.dtype == log_std.dtype == gq.dtype == torch.float32
    # and they agree with the float32 network to bfloat16 accuracy of the hidden layers
    torch.testing.assert_close(q, critic(xc, a), rtol=0.05, atol=0.05)
