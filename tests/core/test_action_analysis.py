"""The paper's training analysis: Q variance around the policy's action (Eq. 1), the policy's mean
and std, taken by the agent on a batch and by the learner every ``analysis_period_updates``."""

import numpy as np
import pytest
import torch

from hilserl_core.formats import config as cfg
from hilserl_core.formats.types import IMAGE_PREFIX, Transition, camera_key
from hilserl_core.rl.build import LearnerNodeConfig, build_learner, dims
from hilserl_core.rl.learner import Learner, LearnerConfig
from hilserl_core.rl.replay import ReplayBuffer
from hilserl_core.rl.rlpd import RLPDAgent, RLPDConfig

P, A = 5, 3


def agent(**kw):
    return RLPDAgent(RLPDConfig(batch_size=8, actor_hidden_dims=(16,), critic_hidden_dims=(16,), seed=1,
                                compute_dtype="float32", **kw), A, (), P)


def observations(n=6, seed=0):
    return {"proprio": torch.as_tensor(np.random.default_rng(seed).standard_normal((n, P)), dtype=torch.float32)}


def test_eq1_is_the_variance_of_the_ensemble_mean_q_over_uniform_perturbations_of_the_policy_action():
    ag, obs = agent(num_critics=3, num_min_critics=2), observations()
    before = ag.generator.get_state().clone()
    got = ag.action_analysis(obs, num_samples=100, noise=0.2, seed=7)
    # directly: Q over a + u, u ~ U[-0.2, 0.2]^d drawn as the method draws them, clipped to [-1, 1]
    with torch.no_grad():
        ag.eval_mode()
        feats = ag.encoder(obs)
        mean, log_std = ag.actor.distribution_params(feats)
        a = ag.actor.mode(feats)
        u = torch.rand((6, 100, A), generator=torch.Generator().manual_seed(7)) * 0.4 - 0.2
        variances = []
        for i in range(6):
            actions = (a[i] + u[i]).clamp(-1, 1)
            assert actions.min() >= -1 and actions.max() <= 1
            q = ag.critic(feats[i].expand(100, -1), actions).mean(dim=0).numpy().astype(np.float64)  # [100]
            variances.append(q.var())
        ag.train_mode(True)
    assert got["q_action_variance"] == pytest.approx(float(np.mean(variances)), rel=1e-4)
    assert got["policy_mean_abs"] == pytest.approx(float(mean.abs().mean()), rel=1e-5)
    assert got["policy_std"] == pytest.approx(float(log_std.exp().mean()), rel=1e-5)
    # no side effects: the agent's random stream and training mode are as they were
    assert torch.equal(ag.generator.get_state(), before) and ag.encoder.training and ag.critic.training


def test_a_critic_sensitive_to_its_action_has_a_larger_q_variance_than_one_that_ignores_it():
    obs = observations(8)
    blind, plain, sharp = agent(), agent(), agent()
    with torch.no_grad():
        blind.critic.act_weight.zero_()  # Q(s, a) = Q(s): no spread around any action
        sharp.critic.act_weight.mul_(20.0)
    v = {name: ag.action_analysis(obs)["q_action_variance"] for name, ag in
         (("blind", blind), ("plain", plain), ("sharp", sharp))}
    assert v["blind"] < 1e-10 < v["plain"] < v["sharp"]
    # wider noise, wider spread of Q
    assert plain.action_analysis(obs, noise=0.5)["q_action_variance"] > v["plain"]


def make_learner(**kw):
    conf = cfg.replace(LearnerConfig(), **{"learning_starts": 4, "rl_capacity": 64, "demo_capacity": 64, **kw})
    bufs = [ReplayBuffer.for_cameras(c, (), P, A) for c in (conf.demo_capacity, conf.rl_capacity)]
    return Learner(conf, {"rlpd": agent()}, bufs[0], bufs[1], batch_size=8)


def transitions(n):
    rng = np.random.default_rng(0)
    obs = [rng.standard_normal(P).astype(np.float32) for _ in range(n + 1)]
    return [Transition({"proprio": obs[i]}, rng.uniform(-1, 1, A).astype(np.float32), float(i == n - 1), i == n - 1,
                       False, {"proprio": obs[i + 1]}, intervened=i % 3 == 0, episode_id=0, step=i) for i in range(n)]


def test_the_learner_takes_the_analysis_every_period_without_changing_training():
    on, off = make_learner(analysis_period_updates=2), make_learner(analysis_period_updates=0)
    for L in (on, off):
        for t in transitions(12):
            L.add(t)
    seen = []
    for _ in range(5):
        assert on.train_step() == off.train_step()  # same batches, same updates: its randomness is its own
        seen.append((on.updates, on.analysis_updates))
    assert [u for _, u in seen] == [0, 2, 2, 4, 4]
    assert set(on.analysis) == {"rlpd/q_action_variance", "rlpd/policy_mean_abs", "rlpd/policy_std"}
    assert all(np.isfinite(v) for v in on.analysis.values()) and on.analysis["rlpd/policy_std"] > 0
    assert off.analysis == {} and off.analysis_updates == 0
    # the sample is fixed by seed and update count: the same learner state gives the same figures
    assert on.analyze() == on.analyze()


def test_image_storage_analyses_encoded_unshifted_images():
    conf = cfg.from_mapping(LearnerNodeConfig, {
        "cameras": ["left/wrist"], "device": "cpu",
        "learner": {"storage": "images", "rl_capacity": 16, "demo_capacity": 16, "learning_starts": 2},
        "agent": {"batch_size": 2, "actor_hidden_dims": [8], "critic_hidden_dims": [8], "image_bottleneck_dim": 8,
                  "proprio_latent_dim": 8},
        "grasp": {"hidden_dims": [8], "image_bottleneck_dim": 8, "proprio_latent_dim": 8},
    }, "test")
    L = build_learner(conf)
    proprio_dim, action_dim = dims(conf)
    rng = np.random.default_rng(0)
    key = IMAGE_PREFIX + camera_key("left/wrist")
    frames = [{"proprio": rng.standard_normal(proprio_dim).astype(np.float32),
               key: rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)} for _ in range(4)]
    for i in range(3):
        L.add(Transition(frames[i], rng.uniform(-1, 1, action_dim).astype(np.float32), 0.0, False, False, frames[i + 1],
                         episode_id=0, step=i))
    shifted = []
    L.augment = lambda images: shifted.append(images) or images
    out = L.analyze(observations=2)
    assert not shifted and set(out) == {"rlpd/q_action_variance", "rlpd/policy_mean_abs", "rlpd/policy_std"}
    assert all(np.isfinite(v) for v in out.values())
