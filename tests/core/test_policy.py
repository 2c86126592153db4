"""The actor's policy runner: one encoder pass for both heads, atomic weight swaps."""

import numpy as np
import pytest

from hilserl_core.encoders import ResNet10Encoder
from hilserl_core.grasp_dqn import GraspDQNConfig
from hilserl_core.learner import Learner, LearnerConfig
from hilserl_core.policy import PolicyRunner, WeightsMismatch
from hilserl_core.replay import ReplayBuffer
from hilserl_core.rlpd import RLPDAgent, RLPDConfig

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
    from hilserl_core.grasp_dqn import GraspDQNAgent

    agents["grasp"] = GraspDQNAgent(GraspDQNConfig(hidden_dims=(16,), image_bottleneck_dim=8), ["left_wrist"], 20)
    bufs = [ReplayBuffer.for_cameras(10, ["left_wrist"], 20, 6, "feature") for _ in range(2)]
    state, v = Learner(LearnerConfig(), agents, bufs[0], bufs[1], 8).policy_weights()
    r = runner()
    r.load_weights({k: t.numpy() for k, t in state.items()}, v)
    assert r.version == 1
