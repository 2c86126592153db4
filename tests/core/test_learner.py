"""The learner loop: routing, update-to-data schedule, weights, checkpoints and resume."""

import numpy as np
import pytest
import torch

from hilserl_core import config as cfg
from hilserl_core.learner import Learner, LearnerConfig, latest_checkpoint, progress_line
from hilserl_core.replay import DEMO_BUFFER, RL_BUFFER, ReplayBuffer
from hilserl_core.rlpd import RLPDAgent, RLPDConfig
from hilserl_core.types import Transition

P, A = 5, 3


def make_learner(**kw):
    conf = cfg.replace(LearnerConfig(), **{"learning_starts": 4, "rl_capacity": 64, "demo_capacity": 64, **kw})
    agent = RLPDAgent(RLPDConfig(batch_size=8, actor_hidden_dims=(16,), critic_hidden_dims=(16,), seed=1), A, (), P)
    bufs = [ReplayBuffer.for_cameras(c, (), P, A) for c in (conf.demo_capacity, conf.rl_capacity)]
    return Learner(conf, {"rlpd": agent}, bufs[0], bufs[1], batch_size=8)


def transitions(n, intervened_every=3, episode=0):
    rng = np.random.default_rng(episode)
    obs = [rng.standard_normal(P).astype(np.float32) for _ in range(n + 1)]
    return [
        Transition({"proprio": obs[i]}, rng.uniform(-1, 1, A).astype(np.float32), float(i == n - 1), i == n - 1, False,
                   {"proprio": obs[i + 1]}, intervened=(i % intervened_every == 0), episode_id=episode, step=i)
        for i in range(n)
    ]


def test_interventions_go_to_both_buffers_policy_steps_only_to_rl():
    L = make_learner()
    routes = [L.add(t) for t in transitions(6)]
    assert routes == [(DEMO_BUFFER, RL_BUFFER), (RL_BUFFER,), (RL_BUFFER,)] * 2
    assert len(L.buffers[RL_BUFFER]) == 6 and len(L.buffers[DEMO_BUFFER]) == 2
    assert L.interventions_received == 2


def test_update_to_data_schedule_and_live_ratio():
    L = make_learner(updates_per_transition=2.0)
    ts = transitions(10)
    for t in ts[:3]:
        L.add(t)
    assert not L.ready() and L.updates_due() == 0
    L.add(ts[3])  # learning_starts = 4 reached
    assert L.updates_due() == 2
    for _ in range(2):
        m = L.train_step()
    assert L.updates_due() == 0 and "rlpd/critic_loss" in m and np.isfinite(m["rlpd/critic_loss"])
    L.add(ts[4])
    assert L.updates_due() == 2
    L.config = cfg.replace(L.config, updates_per_transition=0.5)  # a live change takes effect at once
    assert L.updates_due() == 0


def test_last_metrics_keep_the_actor_losses_through_critic_only_steps():
    L = make_learner(demo_fraction=0.0)  # critic_actor_ratio 2: steps 1 and 3 are critic-only
    for t in transitions(8):
        L.add(t)
    first = L.train_step()
    assert "rlpd/actor_loss" not in first and "rlpd/actor_loss" not in L.last_metrics
    second = L.train_step()
    third = L.train_step()
    assert "rlpd/actor_loss" in second and "rlpd/actor_loss" not in third
    assert L.last_metrics["rlpd/actor_loss"] == second["rlpd/actor_loss"]  # still shown after a critic-only step
    assert L.last_metrics["rlpd/critic_loss"] == third["rlpd/critic_loss"] != second["rlpd/critic_loss"]
    assert L.last_metrics["rlpd/actor_updated"] == 0.0


def test_progress_line_gives_totals_rates_buffers_and_latest_losses():
    before = {"updates": 100, "transitions_received": 40, "interventions_received": 10, "weights_version": 3}
    now = {"updates": 400, "transitions_received": 70, "interventions_received": 25, "weights_version": 9}
    line = progress_line(now, before, 10.0, {"demo": 25, "rl": 70},
                         {"rlpd/critic_loss": 0.01234567, "rlpd/actor_loss": -1.5, "rlpd/q_mean": 3.0, "rlpd/temperature": 0.0098})
    assert line == ("updates 400 (30.0/s), transitions 70 (3.0/s, 25 intervened), buffers demo 25 / rl 70, weights v9, "
                    "critic_loss 0.01235 actor_loss -1.5 temperature 0.0098")
    quiet = progress_line(before, before, 0.0, {"demo": 0, "rl": 0}, {})  # before training: no losses, no division by 0
    assert quiet == "updates 100 (0.0/s), transitions 40 (0.0/s, 10 intervened), buffers demo 0 / rl 0, weights v3"


def test_no_demo_data_means_not_ready_when_batches_need_demos():
    L = make_learner()
    for t in transitions(6, intervened_every=1000)[1:]:
        L.add(t)
    assert not L.ready()
    L2 = make_learner(demo_fraction=0.0)
    for t in transitions(6, intervened_every=1000)[1:]:
        L2.add(t)
    assert L2.ready()


def test_policy_weights_are_trainable_only_and_versioned():
    L = make_learner()
    state, v1 = L.policy_weights()
    _, v2 = L.policy_weights()
    assert (v1, v2) == (1, 2)
    assert all(k.startswith("rlpd/") for k in state) and any(k.startswith("rlpd/actor/") for k in state)
    assert not any("critic" in k for k in state)  # the actor never needs the critics


def test_checkpoint_resume_restores_everything_and_ignores_partial_saves(tmp_path):
    L = make_learner()
    for t in transitions(12):
        L.add(t)
    for _ in range(L.updates_due()):
        L.train_step()
    L.policy_weights()
    path = L.save_checkpoint(tmp_path)
    (tmp_path / ".tmp_ckpt_999999999_1").mkdir()  # a save that crashed midway
    assert latest_checkpoint(tmp_path) == path

    R = make_learner()
    R.load_checkpoint(latest_checkpoint(tmp_path))
    assert R.counters() == L.counters()
    obs = {"proprio": torch.zeros(1, P)}
    assert torch.equal(R.agents["rlpd"].sample_actions(obs, deterministic=True), L.agents["rlpd"].sample_actions(obs, deterministic=True))
    assert len(R.buffers[RL_BUFFER]) == len(L.buffers[RL_BUFFER]) and len(R.buffers[DEMO_BUFFER]) == len(L.buffers[DEMO_BUFFER])
    # training continues identically from the restored state
    L.rng, R.rng = np.random.default_rng(5), np.random.default_rng(5)
    torch.manual_seed(0)  # dropout draws from the global generator
    loss_l = L.train_step()["rlpd/critic_loss"]
    torch.manual_seed(0)
    assert R.train_step()["rlpd/critic_loss"] == pytest.approx(loss_l, rel=1e-6)


def test_old_checkpoints_are_pruned(tmp_path):
    L = make_learner(keep_checkpoints=2)
    for t in transitions(6):
        L.add(t)
    for _ in range(3):
        L.updates += 1
        L.save_checkpoint(tmp_path)
    assert [p.name for p in sorted(tmp_path.glob("ckpt_*"))] == ["ckpt_000000002", "ckpt_000000003"]
