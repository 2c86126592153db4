"""Behaviour cloning (the BC and HG-DAgger baselines): the learner in bc mode trains the policy
and the grasp critic on the demo buffer alone, and the policy comes to reproduce the demos."""

import numpy as np
import torch

from hilserl_core.formats import config as cfg
from hilserl_core.formats.types import Transition
from hilserl_core.rl.grasp_dqn import GraspDQNAgent, GraspDQNConfig
from hilserl_core.rl.learner import Learner, LearnerConfig
from hilserl_core.rl.replay import ReplayBuffer
from hilserl_core.rl.rlpd import RLPDAgent, RLPDConfig

P, A = 4, 2
W = np.array([[0.8, -0.5], [0.3, 0.6], [-0.4, 0.2], [0.1, -0.7]], np.float32)


def demo(rng, n):
    out = []
    for i in range(n):
        o = rng.uniform(-1, 1, P).astype(np.float32)
        a = np.tanh(o @ W).astype(np.float32)  # the demonstrator's rule
        out.append(Transition({"proprio": o}, a, 0.0, False, False, {"proprio": o}, intervened=True,
                              grasp_action=int(o[0] > 0) * 2, episode_id=i // 20, step=i % 20))
    return out


def bc_error(seed):
    rng = np.random.default_rng(seed)
    conf = cfg.replace(LearnerConfig(), learning_starts=1, rl_capacity=64, demo_capacity=512, algorithm="bc")
    rlpd = RLPDAgent(RLPDConfig(batch_size=64, actor_hidden_dims=(64,), critic_hidden_dims=(16,), seed=seed), A, (), P)
    grasp = GraspDQNAgent(GraspDQNConfig(hidden_dims=(32,)), (), P)
    bufs = [ReplayBuffer.for_cameras(c, (), P, A) for c in (conf.demo_capacity, conf.rl_capacity)]
    L = Learner(conf, {"rlpd": rlpd, "grasp": grasp}, bufs[0], bufs[1], batch_size=64)
    for t in demo(rng, 400):
        L.add_demo(t)
    assert L.demo_share == 1.0 and len(L.buffers["rl"]) == 0  # batches come from the demo buffer alone
    critic_before = [p.detach().clone() for p in rlpd.critic.parameters()]
    first = L.train_step()
    for _ in range(300):
        last = L.train_step()
    test = demo(np.random.default_rng(100 + seed), 200)
    obs = torch.tensor(np.stack([t.observation["proprio"] for t in test]))
    with torch.no_grad():
        pred = rlpd.sample_actions({"proprio": obs}, deterministic=True).numpy()
        q = grasp._q(grasp.network, {"proprio": obs}, augment=False).argmax(-1).numpy()
    err = float(np.abs(pred - np.stack([t.action for t in test])).mean())
    grasp_acc = float((q == np.array([t.grasp_action for t in test])).mean())
    assert all(torch.equal(a, b) for a, b in zip(critic_before, rlpd.critic.parameters()))  # critics untouched
    return err, grasp_acc, first["rlpd/bc_loss"], last["rlpd/bc_loss"]


def test_bc_reproduces_the_demonstrator():
    results = [bc_error(s) for s in (0, 1, 2)]
    errs = sorted(r[0] for r in results)
    accs = sorted(r[1] for r in results)
    assert errs[1] < 0.1, results  # median |action error| (actions in [-1, 1]; an untrained policy is ~0.4)
    assert accs[1] > 0.9, results
    assert all(r[3] < r[2] - 1.0 for r in results), results  # the negative log-likelihood fell
