"""The learner loop: routing, transition checks, update-to-data schedule, weights,
checkpoints (durable, named by progress) and resume (damaged checkpoints skipped)."""

import dataclasses
import json
import os

import numpy as np
import pytest
import torch

from hilserl_core.formats import config as cfg
from hilserl_core.formats.types import Transition
from hilserl_core.rl.grasp_dqn import GraspDQNAgent, GraspDQNConfig
from hilserl_core.rl.learner import CheckpointError, Learner, LearnerConfig, latest_checkpoint, progress_line
from hilserl_core.rl.replay import DEMO_BUFFER, RL_BUFFER, ReplayBuffer
from hilserl_core.rl.rlpd import RLPDAgent, RLPDConfig

P, A = 5, 3


def make_learner(grasp=False, encoder=None, **kw):
    conf = cfg.replace(LearnerConfig(), **{"learning_starts": 4, "rl_capacity": 64, "demo_capacity": 64, **kw})
    agents = {"rlpd": RLPDAgent(RLPDConfig(batch_size=8, actor_hidden_dims=(16,), critic_hidden_dims=(16,), seed=1), A, (), P)}
    if grasp:
        agents["grasp"] = GraspDQNAgent(GraspDQNConfig(hidden_dims=(16,)), (), P)
    bufs = [ReplayBuffer.for_cameras(c, (), P, A) for c in (conf.demo_capacity, conf.rl_capacity)]
    return Learner(conf, agents, bufs[0], bufs[1], batch_size=8, encoder=encoder)


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


def test_a_transition_that_does_not_fit_is_named_and_refused_whole():
    L = make_learner(grasp=True)
    good = transitions(3)[0]  # an intervention: both buffers
    assert L.check_transition(good) is None
    bad = {  # what an actor configured for two arms, or a broken one, sends
        "observation['proprio'] has shape (10,), this learner expects (5,)":
            dataclasses.replace(good, observation={"proprio": np.zeros(2 * P, np.float32)}),
        "next_observation lacks 'proprio'": dataclasses.replace(good, next_observation={}),
        "action has 6 values": dataclasses.replace(good, action=np.zeros(2 * A, np.float32)),
        "action is not finite": dataclasses.replace(good, action=np.array([0, np.nan, 0], np.float32)),
        "observation['proprio'] is not finite": dataclasses.replace(good, observation={"proprio": np.full(P, np.inf, np.float32)}),
        "reward nan is not finite": dataclasses.replace(good, reward=float("nan")),
        "grasp_action 8 is outside [0, 3) of agent 'grasp'": dataclasses.replace(good, grasp_action=8),
    }
    for why, t in bad.items():
        assert why in L.check_transition(t)
        with pytest.raises(ValueError, match=r"\(10,\)|lacks|values|finite|outside"):
            L.add(t)
        with pytest.raises(ValueError):
            L.add_demo(t)
    # nothing was stored or counted, in either buffer
    assert len(L.buffers[DEMO_BUFFER]) == len(L.buffers[RL_BUFFER]) == 0
    assert L.counters() == make_learner().counters() and L.progress() == (0, 0, 0)
    assert L.add(good) == (DEMO_BUFFER, RL_BUFFER)
    L.add_demo(transitions(3)[1])
    assert L.progress() == (0, 1, 1) and len(L.buffers[DEMO_BUFFER]) == 2


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
    assert [p.name for p in sorted(tmp_path.glob("ckpt_*"))] == ["ckpt_000000002_000000006_000000000", "ckpt_000000003_000000006_000000000"]


def test_a_save_with_new_data_but_no_new_update_is_a_new_checkpoint_and_pruning_spares_newer_ones(tmp_path):
    L = make_learner(keep_checkpoints=1)
    ts = transitions(8)
    for t in ts[:4]:
        L.add(t)
    first = L.save_checkpoint(tmp_path)
    L.add(ts[4])  # no update in between: still a distinct, newer checkpoint
    second = L.save_checkpoint(tmp_path)
    assert first != second and not first.exists() and latest_checkpoint(tmp_path) == second
    assert L.save_checkpoint(tmp_path) == second  # the same progress again: replaced in place
    # a checkpoint that sorts newer than the one being written (a damaged one resume skipped)
    # stays for a person to look at, and the one just written is never pruned
    future = tmp_path / "ckpt_000009999_000009999_000000000"
    future.mkdir()
    L.add(ts[5])
    third = L.save_checkpoint(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [third.name, future.name]


def test_checkpoint_files_are_fsynced_before_the_rename_publishes_them(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.path.realpath(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.path.realpath(src), os.path.realpath(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    L = make_learner()
    for t in transitions(6):
        L.add(t)
    final = L.save_checkpoint(tmp_path)
    root, final_s = os.path.realpath(tmp_path), os.path.realpath(final)
    publish = next(i for i, e in enumerate(events) if e[0] == "replace" and e[2] == final_s)
    staged = events[publish][1]
    synced = {e[1] for e in events[:publish] if e[0] == "fsync"}
    written = [os.path.relpath(p, final_s) for p in map(str, final.rglob("*"))]
    assert "learner.json" in written and "rlpd/agent.json" in written
    missing = [w for w in written if os.path.join(staged, w) not in synced]
    assert not missing, f"not on disk before the rename: {missing}"
    assert staged in synced  # the directory entries too
    assert ("fsync", root) in events[publish + 1:]  # and the rename itself


def _save_series(L, root, ts, cuts):
    """Checkpoints after adding ts[:cut] for each cut; returns (path, counters, rl size) per save."""
    saves, done = [], 0
    for cut in cuts:
        for t in ts[done:cut]:
            L.add(t)
        done = cut
        saves.append((L.save_checkpoint(root), L.counters(), len(L.buffers[RL_BUFFER])))
    return saves


def test_resume_skips_damaged_checkpoints_newest_first_and_deletes_nothing(tmp_path):
    L = make_learner(keep_checkpoints=10)
    saves = _save_series(L, tmp_path, transitions(12), (6, 8, 10, 12))
    (good, good_counters, good_rl), (garbled, _, _), (empty, _, _), (missing, _, _) = saves
    (garbled / "learner.json").write_text('{"format": "hilserl.learner_che')  # torn write
    (empty / "learner.json").write_text("")  # power cut before the data reached the disk
    (missing / "learner.json").unlink()
    on_disk = sorted(tmp_path.iterdir())

    R = make_learner()
    path, skipped = R.resume(tmp_path)
    assert path == good
    assert [p for p, _ in skipped] == [missing, empty, garbled]
    assert "FileNotFoundError" in skipped[0][1] and "JSONDecodeError" in skipped[1][1] and "JSONDecodeError" in skipped[2][1]
    assert R.counters() == good_counters and len(R.buffers[RL_BUFFER]) == good_rl == 6

    (good / "rl_buffer.safetensors").write_bytes(b"\0" * 5)  # now none loads: start fresh
    F = make_learner()
    path, skipped = F.resume(tmp_path)
    assert path is None and len(skipped) == 4 and "rl_buffer" in skipped[-1][1]
    assert F.counters() == make_learner().counters() and len(F.buffers[RL_BUFFER]) == 0
    assert sorted(tmp_path.iterdir()) == on_disk  # nothing deleted
    assert make_learner().resume(tmp_path / "nowhere") == (None, [])


def test_a_checkpoint_that_fails_midway_leaves_the_learner_unchanged(tmp_path):
    from safetensors.torch import load_file, save_file

    L = make_learner(demo_fraction=0.0)
    for t in transitions(12):
        L.add(t)
    for _ in range(4):
        L.train_step()
    path = L.save_checkpoint(tmp_path)
    # the actor's and critics' tensors are fine, the temperature is gone: load_state
    # has overwritten the networks by the time it fails
    agent_file = path / "rlpd" / "agent.safetensors"
    tensors = load_file(str(agent_file))
    del tensors["log_alpha"]
    save_file(tensors, str(agent_file))

    R = make_learner(demo_fraction=0.0)
    for t in transitions(6, episode=7):
        R.add(t)
    for _ in range(2):
        R.train_step()
    obs = {"proprio": torch.ones(1, P)}
    before = R.agents["rlpd"].sample_actions(obs, deterministic=True)
    assert not torch.equal(before, L.agents["rlpd"].sample_actions(obs, deterministic=True))
    counters, sizes = R.counters(), {k: len(b) for k, b in R.buffers.items()}
    with pytest.raises(CheckpointError, match="log_alpha"):
        R.load_checkpoint(path)
    assert torch.equal(R.agents["rlpd"].sample_actions(obs, deterministic=True), before)
    assert R.counters() == counters and {k: len(b) for k, b in R.buffers.items()} == sizes
    assert np.isfinite(R.train_step()["rlpd/critic_loss"])  # and it still trains


def test_a_checkpoint_of_another_configuration_is_refused(tmp_path):
    L = make_learner()
    for t in transitions(6):
        L.add(t)
    path = L.save_checkpoint(tmp_path)
    conf = cfg.replace(LearnerConfig(), learning_starts=4, rl_capacity=64, demo_capacity=64)
    agent = RLPDAgent(RLPDConfig(batch_size=8, actor_hidden_dims=(16,), critic_hidden_dims=(16,), seed=1), A, (), 2 * P)
    bufs = [ReplayBuffer.for_cameras(64, (), 2 * P, A) for _ in range(2)]
    two_arms = Learner(conf, {"rlpd": agent}, bufs[0], bufs[1], batch_size=8)
    with pytest.raises(CheckpointError, match="proprio"):
        two_arms.load_checkpoint(path)
    assert two_arms.progress() == (0, 0, 0)


def test_a_checkpoint_records_its_encoder_other_weights_stop_the_resume_another_precision_warns(tmp_path):
    import json

    from hilserl_core.vision.encoders import EncoderMismatch, ResNet10Encoder

    enc = ResNet10Encoder(seed=0)
    L = make_learner(encoder=enc)
    for t in transitions(6):
        L.add(t)
    path = L.save_checkpoint(tmp_path)
    meta = json.loads((path / "learner.json").read_text())
    assert meta["encoder"] == enc.identity()

    other = make_learner(encoder=ResNet10Encoder(seed=1))  # other encoder_weights
    with pytest.raises(EncoderMismatch, match="weights"):
        other.resume(tmp_path)  # refused, not skipped in favour of starting fresh
    assert other.progress() == (0, 0, 0)

    same = make_learner(encoder=ResNet10Encoder(seed=0))
    assert same.resume(tmp_path) == (path, []) and same.checkpoint_warnings == []
    assert same.counters() == L.counters()

    dtype = enc.identity()["compute_dtype"]
    alt = "float32" if dtype != "float32" else "bfloat16"  # explicit bfloat16 runs on any CPU
    prec = make_learner(encoder=ResNet10Encoder(seed=0, compute_dtype=alt))
    assert prec.resume(tmp_path) == (path, [])
    assert len(prec.checkpoint_warnings) == 1 and dtype in prec.checkpoint_warnings[0] and alt in prec.checkpoint_warnings[0]

    meta.pop("encoder")  # a checkpoint from before identities were recorded
    (path / "learner.json").write_text(json.dumps(meta))
    assert other.resume(tmp_path) == (path, []) and other.checkpoint_warnings == []
    # a learner without an encoder (image storage: no features kept) checks nothing
    assert make_learner(encoder=None).resume(tmp_path) == (path, [])


def test_update_pacer_caps_the_rate_and_says_when_weights_and_checkpoints_are_due():
    from hilserl_core.rl.learner import LearnerConfig, UpdatePacer

    config = LearnerConfig(max_updates_per_s=10.0, weights_period_s=2.0, checkpoint_period_updates=100, checkpoint_period_s=60.0)
    pacer = UpdatePacer((0, 0, 0), now_s=0.0)
    assert pacer.pause_s(config, 5.0, 5.03) == pytest.approx(0.07)  # a 30 ms update, 100 ms per update
    assert pacer.pause_s(config, 5.0, 5.2) == 0.0  # slower than the cap: no pause
    assert pacer.weights_due(config, 0.0)  # never published
    pacer.weights_published(10.0)
    assert not pacer.weights_due(config, 11.9) and pacer.weights_due(config, 12.0)
    # every checkpoint_period_updates updates ...
    assert not pacer.checkpoint_due(config, (99, 250, 3), 10.0) and pacer.checkpoint_due(config, (100, 250, 3), 10.0)
    # ... or every checkpoint_period_s seconds, with no update at all (data collection) ...
    assert not pacer.checkpoint_due(config, (0, 250, 0), 59.9) and pacer.checkpoint_due(config, (0, 250, 0), 60.0)
    assert pacer.checkpoint_due(config, (0, 0, 3), 60.0)  # demos count as a change too
    # ... but only when something changed since the last checkpoint
    assert not pacer.checkpoint_due(config, (0, 0, 0), 10_000.0)
    pacer.checkpointed((100, 250, 3), now_s=100.0)
    assert not pacer.checkpoint_due(config, (199, 250, 3), 150.0) and pacer.checkpoint_due(config, (200, 250, 3), 150.0)
    assert not pacer.checkpoint_due(config, (100, 251, 3), 159.9) and pacer.checkpoint_due(config, (100, 251, 3), 160.0)
    assert not pacer.checkpoint_due(config, (100, 250, 3), 10_000.0)
    assert not pacer.changed_since_checkpoint((100, 250, 3)) and pacer.changed_since_checkpoint((100, 251, 3))
    never = LearnerConfig(checkpoint_period_updates=0, checkpoint_period_s=0.0)
    assert not pacer.checkpoint_due(never, (10**6, 10**6, 3), 10**6)
    assert LearnerConfig().checkpoint_period_s == 600.0  # the default: the transition log holds the data in between


def test_every_skip_reason_names_the_file_that_does_not_load_and_why(tmp_path):
    L = make_learner(grasp=True, keep_checkpoints=10)
    saves = [s for s, _, _ in _save_series(L, tmp_path, transitions(14), (4, 6, 8, 10, 12, 14))]
    good, no_key, torn_json, short_buffer, short_header, short_data = saves
    agent = short_data / "rlpd" / "agent.safetensors"
    agent.write_bytes(agent.read_bytes()[:-64])  # header whole, data cut short: safetensors' "incomplete metadata"
    agent = short_header / "rlpd" / "agent.safetensors"
    agent.write_bytes(agent.read_bytes()[:200])
    buf = short_buffer / "rl_buffer.safetensors"
    buf.write_bytes(buf.read_bytes()[:300])
    (torn_json / "grasp" / "grasp_dqn.json").write_text("")
    meta = json.loads((no_key / "learner.json").read_text())
    del meta["agents"]
    (no_key / "learner.json").write_text(json.dumps(meta))

    R = make_learner(grasp=True)
    path, skipped = R.resume(tmp_path)
    assert path == good
    expected = [
        (short_data, short_data / "rlpd" / "agent.safetensors", "incomplete metadata"),
        (short_header, short_header / "rlpd" / "agent.safetensors", "SafetensorError"),
        (short_buffer, short_buffer / "rl_buffer.safetensors", "truncated"),
        (torn_json, torn_json / "grasp" / "grasp_dqn.json", "JSONDecodeError"),
        (no_key, no_key / "learner.json", "KeyError: 'agents'"),
    ]
    assert [p for p, _ in skipped] == [p for p, _, _ in expected]
    for (_, why), (_, file, cause) in zip(skipped, expected):
        assert why.startswith(f"{file}: ") and cause in why and "\n" not in why, why


def test_pruning_never_deletes_the_newest_checkpoint_that_loads_for_a_damaged_newer_one(tmp_path):
    ts = transitions(16)
    L = make_learner(keep_checkpoints=2)
    (good, _, _), (damaged, _, _) = _save_series(L, tmp_path, ts, (6, 10))
    (damaged / "rl_buffer.safetensors").write_bytes(b"\0" * 5)

    R = make_learner(keep_checkpoints=2)
    assert R.resume(tmp_path)[0] == good
    for t in ts[6:12]:  # past the damaged one's progress: it sorts older than the next save now
        R.add(t)
    first = R.save_checkpoint(tmp_path)
    # the damaged one neither counts toward keep_checkpoints nor goes: the good older one stays
    assert sorted(tmp_path.glob("ckpt_*")) == sorted([good, damaged, first])
    R.add(ts[12])
    second = R.save_checkpoint(tmp_path)
    assert sorted(tmp_path.glob("ckpt_*")) == sorted([damaged, first, second])  # two that load, as configured
    assert make_learner().resume(tmp_path)[0] == second

    # keep_checkpoints 1 with the damaged one still newer than anything written: the good one written stays
    root = tmp_path / "one"
    L = make_learner(keep_checkpoints=2)
    (good, _, _), (damaged, _, _) = _save_series(L, root, ts, (6, 10))
    (damaged / "learner.json").write_text("")
    R = make_learner(keep_checkpoints=1)
    assert R.resume(root)[0] == good
    R.add(ts[6])
    written = R.save_checkpoint(root)
    assert sorted(root.glob("ckpt_*")) == sorted([written, damaged])
    assert make_learner().resume(root) == (written, [(damaged, f"{damaged / 'learner.json'}: JSONDecodeError: "
                                                                 "Expecting value: line 1 column 1 (char 0)")])


def test_a_save_of_the_same_progress_as_a_damaged_checkpoint_keeps_the_damaged_one_aside(tmp_path):
    ts = transitions(8)
    L = make_learner(keep_checkpoints=5)
    (good, _, _), (damaged, _, _) = _save_series(L, tmp_path, ts, (4, 6))
    (damaged / "learner.json").write_text("{")
    R = make_learner(keep_checkpoints=5)
    assert R.resume(tmp_path)[0] == good
    for t in ts[4:6]:
        R.add(t)
    assert R.save_checkpoint(tmp_path) == damaged  # the same name: the new one takes it ...
    aside = tmp_path / f"{damaged.name}.damaged"
    assert (aside / "learner.json").read_text() == "{"  # ... and the damaged one is kept for a person to look at
    assert make_learner().resume(tmp_path) == (damaged, [])


def test_weight_versions_never_repeat_across_a_restart_from_an_older_checkpoint(tmp_path):
    from hilserl_core.rl.learner import WEIGHTS_VERSION_FILE, read_weights_version

    L = make_learner()
    assert L.resume(tmp_path) == (None, [])  # a new run: takes up the (absent) record of its root
    for t in transitions(6):
        L.add(t)
    assert [L.policy_weights()[1] for _ in range(3)] == [1, 2, 3]
    ckpt = L.save_checkpoint(tmp_path)  # weights v3 in the checkpoint
    assert [L.policy_weights()[1] for _ in range(5)] == [4, 5, 6, 7, 8]  # the actor saw v8; then a crash
    record = tmp_path / WEIGHTS_VERSION_FILE
    assert read_weights_version(record) == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == [ckpt.name, WEIGHTS_VERSION_FILE]  # no temporary file left

    R = make_learner()
    assert R.resume(tmp_path) == (ckpt, [])
    assert R.transitions_received == 6  # the checkpoint's data ...
    assert R.policy_weights()[1] == 9 and read_weights_version(record) == 9  # ... and a version nobody saw yet
    # within a process too: loading an older checkpoint never lowers the version
    R.load_checkpoint(ckpt)
    assert R.weights_version == 9 and R.policy_weights()[1] == 10

    # the record is written before the version is handed out: when it cannot be, none is
    blocked = tmp_path / "blocked"
    B = make_learner()
    B.record_versions_in(blocked)
    blocked.write_text("a file where the record's directory should be")
    with pytest.raises(OSError):
        B.policy_weights()
    assert B.weights_version == 0

    # an unreadable record stops the resume, naming the file, instead of guessing a version
    record.write_text('{"format": "hilserl.weights_version/1", "version": "nine"}')
    with pytest.raises(ValueError, match=f"{record}: unreadable weights-version record"):
        make_learner().resume(tmp_path)
