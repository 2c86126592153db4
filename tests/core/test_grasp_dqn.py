"""Grasp critic: action indexing, Double-DQN target semantics, save/load, and learning."""

import itertools

import numpy as np
import pytest
import torch

from hilserl_core.formats.types import Batch
from hilserl_core.rl.grasp_dqn import (
    GRIPPER_CLOSE,
    GRIPPER_OPEN,
    GRIPPER_STAY,
    GraspDQNAgent,
    GraspDQNConfig,
    gripper_actions_to_joint_index,
    joint_index_to_gripper_actions,
)


def test_joint_index_round_trip_and_digit_order():
    for n in (1, 2, 3):
        seen = set()
        for acts in itertools.product(range(3), repeat=n):
            idx = gripper_actions_to_joint_index(acts)
            assert 0 <= idx < 3**n
            assert tuple(joint_index_to_gripper_actions(idx, n)) == acts
            seen.add(idx)
        assert len(seen) == 3**n
    # Gripper 0 is the least significant base-3 digit (actor.py's convention).
    assert gripper_actions_to_joint_index([GRIPPER_CLOSE, GRIPPER_OPEN]) == 2
    assert gripper_actions_to_joint_index([GRIPPER_STAY, GRIPPER_CLOSE]) == 1 + 2 * 3
    with pytest.raises(ValueError, match="outside"):
        joint_index_to_gripper_actions(9, 2)
    with pytest.raises(ValueError, match="not 0"):
        gripper_actions_to_joint_index([3])


def make_batch(n=8, proprio=4, n_actions=9, seed=0, terminated=0.0, penalties=0.0):
    g = torch.Generator().manual_seed(seed)
    return Batch(
        observations={"proprio": torch.randn(n, proprio, generator=g)},
        actions=torch.zeros(n, 1),
        rewards=torch.randn(n, generator=g),
        terminated=torch.full((n,), float(terminated)),
        next_observations={"proprio": torch.randn(n, proprio, generator=g)},
        grasp_actions=torch.randint(0, n_actions, (n,), generator=g),
        grasp_penalties=torch.full((n,), float(penalties)),
        intervened=torch.zeros(n, dtype=torch.bool),
    )


def small_agent(**kw):
    cfg = dict(n_grippers=2, hidden_dims=(32, 32), proprio_latent_dim=8)
    cfg.update(kw)
    return GraspDQNAgent(GraspDQNConfig(**cfg), (), 4)


def test_double_dqn_target_penalty_and_truncation():
    agent = small_agent()
    with torch.no_grad():  # online and target networks disagree
        for p in agent.target_network.parameters():
            p.add_(torch.randn_like(p))
    b = make_batch(penalties=-0.02)
    q_online = agent.q_values(b.next_observations)
    agent.target_network.eval()
    with torch.no_grad():
        q_target = agent._q(agent.target_network, b.next_observations)
    assert not torch.equal(q_online.argmax(-1), q_target.argmax(-1))  # the test can tell the variants apart
    # Action chosen by the online network, valued by the target network.
    bootstrap = q_target.gather(-1, q_online.argmax(-1, keepdim=True)).squeeze(-1)
    y_trunc = agent.td_target(b)  # terminated = 0 (e.g. a time limit): bootstraps
    torch.testing.assert_close(y_trunc, b.rewards - 0.02 + 0.97 * bootstrap)
    b_term = make_batch(penalties=-0.02, terminated=1.0)
    torch.testing.assert_close(agent.td_target(b_term), b.rewards - 0.02)


def test_update_moves_online_network_and_polyaks_target(tmp_path):
    agent = small_agent(tau=0.5)
    b = make_batch()
    target0 = [p.detach().clone() for p in agent.target_network.parameters()]
    agent.update(b)
    for t0, t1, p in zip(target0, agent.target_network.parameters(), agent.network.parameters()):
        torch.testing.assert_close(t1, 0.5 * t0 + 0.5 * p.detach())
    agent.save(tmp_path)
    restored = GraspDQNAgent.load(tmp_path)
    torch.testing.assert_close(restored.q_values(b.observations), agent.q_values(b.observations))
    torch.manual_seed(3)
    agent.update(b)
    torch.manual_seed(3)
    restored.update(b)
    for p, q in zip(agent.network.parameters(), restored.network.parameters()):
        assert torch.equal(p, q)
    for p, q in zip(agent.target_network.parameters(), restored.target_network.parameters()):
        assert torch.equal(p, q)


class GraspTimingTask:
    """Each gripper's object passes between its fingers for ``window`` steps at a random time.

    Closing while the object is between the fingers grasps it; closing on nothing
    leaves the gripper closed and useless until it is opened again; opening drops
    a held object. Success (reward 1, terminated) when every gripper holds its
    object; otherwise the episode is truncated after ``horizon`` steps. Gripper
    state changes cost ``penalty`` each (carried as the grasp penalty).
    Observation per gripper: [object between fingers, object gone by, gripper closed, holding],
    then time (fully observed: a missed object is distinguishable from one still to come).
    """

    def __init__(self, n_grippers=2, horizon=12, window=2, penalty=-0.02, seed=0):
        self.n, self.horizon, self.window, self.penalty = n_grippers, horizon, window, penalty
        self.rng = np.random.default_rng(seed)

    def reset(self):
        self.t = 0
        self.arrive = self.rng.integers(1, self.horizon - self.window, size=self.n)
        self.closed = np.zeros(self.n, bool)
        self.holding = np.zeros(self.n, bool)
        return self.obs()

    def between(self):
        return (self.arrive <= self.t) & (self.t < self.arrive + self.window) & ~self.holding

    def obs(self):
        gone = (self.t >= self.arrive + self.window) & ~self.holding
        per = np.stack([self.between(), gone, self.closed, self.holding], 1).astype(np.float32).ravel()
        return np.concatenate([per, [self.t / self.horizon]]).astype(np.float32)

    def step(self, joint_action):
        acts = joint_index_to_gripper_actions(joint_action, self.n)
        between = self.between()
        penalty = 0.0
        for g, a in enumerate(acts):
            if a == GRIPPER_CLOSE and not self.closed[g]:
                penalty += self.penalty
                self.closed[g] = True
                self.holding[g] = between[g]
            elif a == GRIPPER_OPEN and self.closed[g]:
                penalty += self.penalty
                self.closed[g] = False
                self.holding[g] = False
        self.t += 1
        success = bool(self.holding.all())
        return self.obs(), float(success), success, (not success) and self.t >= self.horizon, penalty

    def scripted(self, obs):
        """The operator: close exactly when the object is between the fingers."""
        per = obs[:-1].reshape(self.n, 4)
        acts = [GRIPPER_CLOSE if b else (GRIPPER_OPEN if c and not h else GRIPPER_STAY) for b, _, c, h in per]
        return gripper_actions_to_joint_index(acts)


GRASP_BUDGET_STEPS = 5000


def grasp_timing_success(seed: int, compute_dtype: str, steps: int = GRASP_BUDGET_STEPS) -> float:
    """Greedy success rate over 200 episodes of a grasp critic trained ``steps`` env steps (one
    update each) from 20 operator demonstrations, with ``seed`` for the task, the network and
    the sampling."""
    from hilserl_core.formats.types import Transition
    from hilserl_core.rl.replay import MixedSampler, ReplayBuffer

    torch.manual_seed(seed)
    env = GraspTimingTask(n_grippers=2, seed=seed)
    spec = {"proprio": ((4 * env.n + 1,), np.float32)}
    demo, online = ReplayBuffer(5000, spec, 1), ReplayBuffer(5000, spec, 1)
    dummy_action = np.zeros(1, np.float32)

    def run(policy, buffers=()):
        o = env.reset()
        while True:
            a = policy(o)
            o2, r, term, trunc, pen = env.step(a)
            for buf in buffers:
                buf.add(Transition({"proprio": o}, dummy_action, r, term, trunc, {"proprio": o2},
                                   grasp_action=a, grasp_penalty=pen))
            o = o2
            if term or trunc:
                return term

    for _ in range(20):  # operator demonstrations (the paper uses 20-30)
        assert run(env.scripted, (demo,))
    # A small MLP with a faster learning rate keeps this test to seconds; the defaults are the paper's.
    config = GraspDQNConfig(n_grippers=2, hidden_dims=(64, 64), lr=1e-3, tau=0.01, seed=seed, compute_dtype=compute_dtype)
    agent = GraspDQNAgent(config, (), spec["proprio"][0][0])
    sampler = MixedSampler(demo, online, 0.5)
    rng = np.random.default_rng(seed)
    n = 0
    while n < steps:
        eps = max(0.05, 1.0 - n / 1800)
        o = env.reset()
        while True:
            a = agent.act({"proprio": o}, epsilon=eps)
            o2, r, term, trunc, pen = env.step(a)
            online.add(Transition({"proprio": o}, dummy_action, r, term, trunc, {"proprio": o2},
                                  grasp_action=a, grasp_penalty=pen))
            agent.update(sampler.sample(128, rng))
            n += 1
            o = o2
            if term or trunc:
                break
    return float(np.mean([run(lambda o: agent.act({"proprio": o})) for _ in range(200)]))



def test_random_grippers_rarely_succeed_at_the_grasp_timing_task():
    """The learning check below means something: chance gets far below its threshold."""
    env, rng = GraspTimingTask(n_grippers=2, seed=0), np.random.default_rng(0)
    successes = 0
    for _ in range(200):
        env.reset()
        while True:
            _, _, term, trunc, _ = env.step(int(rng.integers(9)))
            if term or trunc:
                successes += term
                break
    assert successes / 200 < 0.3


@pytest.mark.slow
def test_grasp_dqn_learns_to_close_when_objects_are_between_the_fingers():
    """Greedy success of the policy alone, median of 3 seeds >= 0.95 (chance: ~0.07), in float32,
    the grasp critic's default precision on every host.

    Measured on a 2-core Intel with AMX, seeds 0-10, success after 3000 / 5000 steps: float32
    0.795-1.0 / 0.965-1.0; bfloat16 0.885-1.0 / 0.715-1.0 (two seeds near 0.72 at 5000 steps).
    bfloat16 learned less reliably and its update was at most 1.24x faster, so the grasp critic
    defaults to float32 (GraspDQNConfig.compute_dtype)."""
    from learning_checks import median_at_least, run_seeds

    median_at_least("grasp DQN greedy success, float32", run_seeds(grasp_timing_success, (0, 1, 2), "float32"), 0.95)


def test_image_grasp_critic_shares_frozen_resnet_with_its_target_and_never_exports_it():
    from hilserl_core.vision.encoders import ResNet10Encoder

    resnet = ResNet10Encoder(seed=0)
    agent = GraspDQNAgent(GraspDQNConfig(n_grippers=1, hidden_dims=(16,)), ("wrist",), 3, image_encoder=resnet)
    assert agent.target_network["encoder"].image_encoder is resnet
    g = torch.Generator().manual_seed(0)
    obs = lambda: {"image/wrist": torch.randint(0, 256, (2, 128, 128, 3), generator=g, dtype=torch.uint8),  # noqa: E731
                   "proprio": torch.zeros(2, 3)}
    b = Batch(obs(), torch.zeros(2, 1), torch.ones(2), torch.zeros(2), obs(), torch.tensor([0, 2]), torch.zeros(2),
              torch.zeros(2, dtype=torch.bool))
    before = [p.clone() for p in resnet.parameters()]
    agent.update(b)
    assert all(torch.equal(p, q) for p, q in zip(before, resnet.parameters()))
    assert agent.q_values(b.observations).shape == (2, 3)
    assert not any("image_encoder" in k for k in agent.policy_state_dict())
