"""The actor's policy runner: one encoder pass for both heads, atomic weight swaps."""

import numpy as np
import pytest

from hilserl_core.rl.grasp_dqn import GraspDQNConfig
from hilserl_core.rl.learner import Learner, LearnerConfig
from hilserl_core.rl.policy import PolicyRunner, WeightsMismatch
from hilserl_core.rl.replay import ReplayBuffer
from hilserl_core.rl.rlpd import RLPDAgent, RLPDConfig
from hilserl_core.vision.encoders import ResNet10Encoder

SMALL = dict(actor_hidden_dims=(16,), critic_hidden_dims=(16,), image_bottleneck_dim=8, batch_size=8)


def runner(seed=0, **kw):
    cfg = RLPDConfig(**{**SMALL, "seed": seed, **kw})
    return PolicyRunner(cfg, 6, ["left_wrist"], 20, ResNet10Encoder(seed=1), GraspDQNConfig(hidden_dims=(16,), image_bottleneck_dim=8, seed=seed))


def obs():
    rng = np.random.default_rng(0)
    return {"proprio": rng.standard_normal(20).astype(np.float32), "image/left_wrist": rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)}


def test_act_shapes_and_ranges():
    r = runner()
    a, g = r.act(obs(), deterministic=True)
    assert a.shape == (6,) and np.all(np.abs(a) <= 1.0) and g in (0, 1, 2)


def test_weights_from_a_learner_make_the_actor_act_like_it():
    src, dst = runner(seed=0), runner(seed=7)
    o = obs()
    assert not np.allclose(src.act(o, True)[0], dst.act(o, True)[0])
    # weights as the learner sends them: "<agent>/<param>" for the trainable policy parameters
    arrays = {f"{n}/{k}": v.numpy() for n, a in src.agents().items() for k, v in a.policy_state_dict().items()}
    dst.load_weights(arrays, version=3)
    assert dst.version == 3
    assert np.allclose(src.act(o, True)[0], dst.act(o, True)[0]) and src.act(o, True)[1] == dst.act(o, True)[1]


def test_a_mismatched_payload_changes_nothing():
    r, other = runner(), runner(seed=3, image_bottleneck_dim=4)
    o = obs()
    before = r.act(o, True)[0]
    arrays = {f"{n}/{k}": v.numpy() for n, a in other.agents().items() for k, v in a.policy_state_dict().items()}
    with pytest.raises(WeightsMismatch, match="shape mismatch"):
        r.load_weights(arrays, 1)
    arrays.pop(next(iter(arrays)))
    with pytest.raises(WeightsMismatch, match="missing"):
        r.load_weights(arrays, 2)
    assert np.array_equal(r.act(o, True)[0], before) and r.version == 0


def test_learner_weight_names_fit_the_runner():
    """The learner's policy_weights() and the runner's expected names are the same contract."""
    cfg = RLPDConfig(**SMALL)
    agents = {"rlpd": RLPDAgent(cfg, 6, ["left_wrist"], 20)}
    from hilserl_core.rl.grasp_dqn import GraspDQNAgent

    agents["grasp"] = GraspDQNAgent(GraspDQNConfig(hidden_dims=(16,), image_bottleneck_dim=8), ["left_wrist"], 20)
    bufs = [ReplayBuffer.for_cameras(10, ["left_wrist"], 20, 6, "feature") for _ in range(2)]
    state, v = Learner(LearnerConfig(), agents, bufs[0], bufs[1], 8).policy_weights()
    r = runner()
    r.load_weights({k: t.numpy() for k, t in state.items()}, v)
    assert r.version == 1


def dual_runner(seed=0, encoder_threads=1, encoder=None):
    """Two arms' worth of cameras: the case the fused heads and threaded encoder are for."""
    cfg = RLPDConfig(**{**SMALL, "seed": seed})
    cams = ["left_wrist", "left_front", "right_wrist", "right_front"]
    return PolicyRunner(cfg, 12, cams, 40, encoder or ResNet10Encoder(seed=1), GraspDQNConfig(n_grippers=2, hidden_dims=(16,), image_bottleneck_dim=8, seed=seed),
                        encoder_threads=encoder_threads)


def dual_obs(seed=0):
    rng = np.random.default_rng(seed)
    o = {f"image/{c}": rng.integers(0, 256, (128, 128, 3), dtype=np.uint8) for c in ["left_wrist", "left_front", "right_wrist", "right_front"]}
    o["proprio"] = rng.standard_normal(40).astype(np.float32)
    return o


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_fused_threaded_act_equals_the_module_path(threads):
    r = dual_runner(encoder_threads=threads)
    assert r.use_fused, r.fused_why
    try:
        # the first pass of each batch shape times the conv paths and may take either (bfloat16
        # features of the two differ in the last bits): fix the choices before comparing
        r.act(dual_obs(), deterministic=True)
        for seed in range(3):
            o = dual_obs(seed)
            r.use_fused = True
            a, g = r.act(o, deterministic=True)
            r.use_fused = False
            want_a, want_g = r.act(o, deterministic=True)
            np.testing.assert_allclose(a, want_a, atol=1e-5)
            assert g == want_g
    finally:
        r.close()


def test_fused_act_takes_cached_features_too():
    from hilserl_core.vision.encoders import featurize_observation, int8_available

    # `mixed` encodes 3 images, a batch shape of its own: in bfloat16 its timed conv-path choice
    # may differ from the 4-image one and the features with it in the last bits (this failed a
    # CI run); int8 features are the same in any batch, float32 ones differ by far less than atol
    r = dual_runner(encoder=ResNet10Encoder(seed=1, compute_dtype="int8" if int8_available()[0] else "float32"))
    o = dual_obs()
    feats = featurize_observation(o, r.encoder)
    mixed = {**{k: v for k, v in o.items() if k != "image/left_front"}, "feature/left_front": feats["feature/left_front"]}
    for view in (feats, mixed):
        np.testing.assert_allclose(r.act(view, deterministic=True)[0], r.act(o, deterministic=True)[0], atol=1e-5)


def test_fused_act_follows_new_weights():
    src, dst = dual_runner(seed=0), dual_runner(seed=7)
    o = dual_obs()
    arrays = {f"{n}/{k}": v.numpy() for n, a in src.agents().items() for k, v in a.policy_state_dict().items()}
    before = dst.act(o, True)[0]
    dst.load_weights(arrays, version=2)
    after = dst.act(o, True)
    assert not np.allclose(before, after[0])
    src.use_fused = False  # the reference: the agents' own module path
    np.testing.assert_allclose(after[0], src.act(o, True)[0], atol=1e-5)
    assert after[1] == src.act(o, True)[1]


def test_grasp_exploration_draws_the_same_stream_on_both_paths():
    a, b = dual_runner(), dual_runner()
    b.use_fused = False
    o = dual_obs()
    # epsilon 0.5: a mix of random and greedy gripper actions, from the same random stream
    assert [a.act(o, grasp_epsilon=0.5)[1] for _ in range(12)] == [b.act(o, grasp_epsilon=0.5)[1] for _ in range(12)]


def test_the_runner_builds_only_what_acting_needs_and_acts_as_the_agents_do():
    from hilserl_core.rl.grasp_dqn import GraspDQNAgent
    from hilserl_core.vision.encoders import featurize_observation

    r = runner(seed=5)
    for policy in r.agents().values():
        assert not any(hasattr(policy, name) for name in
                       ("critic", "target_critic", "target_network", "optimizer", "critic_optimizer", "actor_optimizer"))
    agents = {"rlpd": RLPDAgent(RLPDConfig(**SMALL), 6, ["left_wrist"], 20),
              "grasp": GraspDQNAgent(GraspDQNConfig(hidden_dims=(16,), image_bottleneck_dim=8), ["left_wrist"], 20)}
    r.load_weights({f"{n}/{k}": v.numpy() for n, a in agents.items() for k, v in a.policy_state_dict().items()}, 1)
    for seed in range(3):
        o = featurize_observation({**obs(), "proprio": np.random.default_rng(seed).standard_normal(20).astype(np.float32)},
                                  r.encoder)
        np.testing.assert_allclose(r.rlpd.act(o, deterministic=True), agents["rlpd"].act(o, deterministic=True), atol=1e-6)
        assert r.grasp.act(o) == agents["grasp"].act(o)
