"""The learner node over DDS: routing of intervention vs policy transitions, feature
caching, gap detection, weights to a late joiner (trainable only), live UTD, resume;
misfit transitions rejected by name, a dead training thread stopping the node, the
final checkpoint of data that trained nothing, damaged checkpoints skipped on resume (none
loading refuses to start unless start_fresh), weight versions that never repeat across restarts."""

import dataclasses
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from std_msgs.msg import UInt8MultiArray

from hilserl_core.formats import wire
from hilserl_core.formats.types import Transition
from hilserl_core.robot import frames
from hilserl_interfaces import payload, qos
from hilserl_learner.learner_node import EXIT_TRAINING_FAILED, LearnerNode

P = frames.proprio_size(1)


def params(tmp_path, **extra):
    base = {
        "arms": ["left"], "cameras": ["left/wrist"], "checkpoint_dir": str(tmp_path / "ckpt"),
        "learner.learning_starts": 6, "learner.rl_capacity": 200, "learner.demo_capacity": 200,
        "learner.checkpoint_period_updates": 0, "learner.weights_period_s": 0.2, "grasp.hidden_dims": [16], "grasp.image_bottleneck_dim": 8,
        "agent.batch_size": 8, "agent.actor_hidden_dims": [32], "agent.critic_hidden_dims": [32],
        "agent.image_bottleneck_dim": 16,
    }
    base.update(extra)
    return [Parameter(k, value=v) for k, v in base.items()]


def transition(i, intervened):
    rng = np.random.default_rng(i)
    o = lambda: {"proprio": rng.standard_normal(P).astype(np.float32),  # noqa: E731
                 "image/left_wrist": rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)}
    return Transition(o(), rng.uniform(-1, 1, 6).astype(np.float32), 0.0, False, False, o(),
                      intervened=intervened, episode_id=i, step=0)


def test_learner_node_end_to_end(ros_context, spin_until, tmp_path, capfd):
    node = LearnerNode(context=ros_context, parameter_overrides=params(tmp_path, log_period_s=0.5))
    actor = rclpy.create_node("fake_actor", context=ros_context)
    pub = actor.create_publisher(UInt8MultiArray, "/learner/transitions", qos.TRANSITIONS)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(node)
    ex.add_node(actor)
    time.sleep(0.3)
    spin_until(ex, lambda: pub.get_subscription_count() > 0, 5)
    # sequence 0..9 with #5 missing; every third transition is an intervention
    sent = [i for i in range(11) if i != 5]
    for i in sent:
        pub.publish(payload.encode(*wire.transition_to_arrays(transition(i, i % 3 == 0), "actor_a", i)))
    L = node.learner
    assert spin_until(ex, lambda: L.transitions_received == len(sent), 30)
    assert len(L.buffers["rl"]) == len(sent)
    assert len(L.buffers["demo"]) == sum(1 for i in sent if i % 3 == 0)
    assert node.inbox.received.missing() == 1  # #5: not received (yet) below the newest one
    for i in (5, 3):  # the gap filled by a resend; a resend of one already stored is dropped
        pub.publish(payload.encode(*wire.transition_to_arrays(transition(i, i % 3 == 0), "actor_a", i)))
    assert spin_until(ex, lambda: node.inbox.received.duplicates == 1 and L.transitions_received == len(sent) + 1, 30)
    sent = sorted(sent + [5])
    assert node.inbox.received.missing() == 0 and len(L.buffers["rl"]) == len(sent)
    # features, not images, are stored (CPU learner): the frozen ResNet ran once per observation
    assert set(L.buffers["rl"].observation_spec) == {"proprio", "feature/left_wrist"}
    assert spin_until(ex, lambda: L.updates >= 1, 30), "no updates after learning_starts"
    # a progress line on the console once training runs (every log_period_s, from the 1 Hz report)
    capfd.readouterr()
    log = []
    assert spin_until(ex, lambda: log.append(capfd.readouterr().err) or "critic_loss" in "".join(log), 5), "".join(log)
    line = next(x for x in "".join(log).splitlines() if "critic_loss" in x)
    assert "[learner]: updates " in line and f"transitions {len(sent)} " in line and f"buffers demo 4 / rl {len(sent)}" in line, line

    # a late-joining actor gets the newest weights: policy parameters only, no frozen ResNet
    got = []
    late = rclpy.create_node("late_actor", context=ros_context)
    late.create_subscription(UInt8MultiArray, "/learner/policy_weights", got.append, qos.LATCHED)
    ex.add_node(late)
    assert spin_until(ex, lambda: got, 10)
    state, version = wire.arrays_to_weights(*payload.decode(got[-1]))
    assert version >= 1 and {k.split("/")[0] for k in state} == {"rlpd", "grasp"}
    assert not any("image_encoder" in k or "stem_conv" in k for k in state)  # never the frozen ResNet
    assert not any(k.startswith("rlpd/") and "critic" in k for k in state)  # the actor needs no Q-ensemble
    assert any(k.startswith("grasp/critic") for k in state)  # but it does need the grasp critic to act
    assert sum(v.nbytes for v in state.values()) < 4 * 2**20
    assert all(v.dtype == np.float16 for v in state.values() if np.issubdtype(v.dtype, np.floating))  # weights_dtype default

    # live update-to-data ratio: 0 stops training
    node.set_parameters([Parameter("learner.updates_per_transition", value=0.0)])
    time.sleep(0.3)
    frozen_at = L.updates
    pub.publish(payload.encode(*wire.transition_to_arrays(transition(20, False), "actor_a", 11)))
    assert spin_until(ex, lambda: L.transitions_received == len(sent) + 1, 10)
    time.sleep(0.5)
    assert L.updates == frozen_at
    res = node.set_parameters([Parameter("learner.updates_per_transition", value=-1.0)])[0]
    assert not res.successful and "out of range" in res.reason

    # clean shutdown writes a checkpoint; a new learner resumes from it
    counters = L.counters()
    node.close()
    ex.remove_node(node)
    node.destroy_node()
    again = LearnerNode(context=ros_context, parameter_overrides=params(tmp_path))
    assert again.learner.counters()["transitions_received"] == counters["transitions_received"]
    assert len(again.learner.buffers["demo"]) == len(L.buffers["demo"])
    again.close()
    again.destroy_node()
    ex.shutdown()
    actor.destroy_node()
    late.destroy_node()


def _node_rig(ros_context, spin_until, tmp_path, **extra):
    node = LearnerNode(context=ros_context, parameter_overrides=params(tmp_path, **extra))
    actor = rclpy.create_node("fake_actor", context=ros_context)
    pub = actor.create_publisher(UInt8MultiArray, "/learner/transitions", qos.TRANSITIONS)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(node)
    ex.add_node(actor)
    assert spin_until(ex, lambda: pub.get_subscription_count() > 0, 5)
    return node, actor, pub, ex


def _teardown(node, actor, ex):
    node.close()
    ex.shutdown()
    node.destroy_node()
    actor.destroy_node()


def test_a_misconfigured_actor_is_rejected_by_name_and_training_goes_on(ros_context, spin_until, tmp_path, capfd):
    node, actor, pub, ex = _node_rig(ros_context, spin_until, tmp_path, **{"learner.learning_starts": 3})
    good = transition(1, True)
    two_arms = dataclasses.replace(good, observation={**good.observation, "proprio": np.zeros(2 * P, np.float32)},
                                   action=np.zeros(12, np.float32))
    no_camera = dataclasses.replace(good, next_observation={"proprio": good.next_observation["proprio"]})
    pub.publish(payload.encode(*wire.transition_to_arrays(two_arms, "dual_arm_actor", 0)))
    pub.publish(payload.encode(*wire.transition_to_arrays(no_camera, "one_camera_actor", 0)))
    assert spin_until(ex, lambda: node.rejected_transitions == 2, 10)
    status = node.diag._statuses["transitions"]
    assert node.diag.level("transitions") == 2  # ERROR
    assert "'one_camera_actor'" in status.message and "lacks 'image/left_wrist'" in status.message
    err = capfd.readouterr().err
    assert "'dual_arm_actor'" in err and "observation['proprio'] has shape (40,), this learner expects (20,)" in err
    # a misfit that reaches the training thread some other way is refused there, not fatal
    node.trainer.queue.append((two_arms, "queued_directly", None))
    assert spin_until(ex, lambda: node.rejected_transitions == 3, 10)
    for i in range(4):
        pub.publish(payload.encode(*wire.transition_to_arrays(transition(i, i == 0), "actor_a", i)))
    L = node.learner
    assert spin_until(ex, lambda: L.transitions_received == 4 and L.updates >= 1, 30), "training stopped"
    assert node.trainer.thread.is_alive() and len(L.buffers["rl"]) == 4
    assert spin_until(ex, lambda: "rejected_transitions" in _values(node, "learner"), 3)
    assert _values(node, "learner")["rejected_transitions"] == "3"
    assert "queued_directly" in node.diag._statuses["transitions"].message
    _teardown(node, actor, ex)


def _raw_msg(blob: bytes) -> UInt8MultiArray:
    import array

    msg = payload.encode({}, {})
    msg.data = array.array("B", blob)
    return msg


def test_malformed_transition_payloads_never_kill_the_learner(ros_context, spin_until, tmp_path, monkeypatch):
    import json
    import struct

    from hilserl_core.formats import tensorio

    node, actor, pub, ex = _node_rig(ros_context, spin_until, tmp_path, **{"learner.learning_starts": 100})
    arrays, meta = wire.transition_to_arrays(transition(0, False), "actor_a", 0)

    def raw(header):
        h = json.dumps(header).encode()
        h += b" " * ((-len(h)) % 8)
        return struct.pack("<Q", len(h)) + h

    bad = [
        raw([]), raw(5), raw({"__metadata__": {"hilserl.format_version": "1", "hilserl.sha256": "x", "hilserl.metadata": 5}}),
        struct.pack("<Q", 200008) + b"[" * 100004 + b"]" * 100004,
        tensorio.to_bytes(arrays, {k: v for k, v in meta.items() if k != "sequence"}),
        tensorio.to_bytes(arrays, {**meta, "sequence": None}),
        tensorio.to_bytes(arrays, {**meta, "reward": [1]}),
        tensorio.to_bytes(arrays, {**meta, "info": [1, 2]}),
    ]
    for blob in bad:
        node._on_transition(_raw_msg(blob))  # must not raise
        status = node.diag._statuses["transitions"]
        assert status.level == bytes([2]) and status.message.startswith("rejected a transition payload: "), status.message

    # last line of defence: any exception from decoding is reported, never raised
    def broken(arrays, meta):
        raise TypeError("decoder bug")

    monkeypatch.setattr(wire, "arrays_to_transition", broken)
    node._on_transition(payload.encode(arrays, meta))
    assert "unexpected TypeError decoding it: decoder bug" in node.diag._statuses["transitions"].message
    monkeypatch.undo()
    for i in range(3):  # and the learner goes on taking transitions
        pub.publish(payload.encode(*wire.transition_to_arrays(transition(i, False), "actor_a", i)))
    assert spin_until(ex, lambda: node.learner.transitions_received == 3, 10)
    assert node.trainer.thread.is_alive()
    _teardown(node, actor, ex)


def _values(node, name):
    status = node.diag._statuses.get(name)
    return {} if status is None else {kv.key: kv.value for kv in status.values}


def test_an_error_in_the_training_thread_stops_the_node(ros_context, spin_until, tmp_path, capfd):
    node, actor, pub, ex = _node_rig(ros_context, spin_until, tmp_path, **{"learner.learning_starts": 2})

    def broken_update():
        raise RuntimeError("critic loss is NaN")

    node.learner.train_step = broken_update
    for i in range(3):
        pub.publish(payload.encode(*wire.transition_to_arrays(transition(i, i == 0), "actor_a", i)))
    with pytest.raises(SystemExit) as e:  # what run_node lets through: the process exits with it
        spin_until(ex, lambda: False, 20)
    assert e.value.code == EXIT_TRAINING_FAILED != 0
    assert node.diag.level("learner") == 2 and "RuntimeError: critic loss is NaN" in node.diag._statuses["learner"].message
    err = capfd.readouterr().err
    assert "Traceback" in err and "broken_update" in err
    _teardown(node, actor, ex)
    assert not list((tmp_path / "ckpt").glob("ckpt_*"))  # no final checkpoint of a state that died mid-update


def test_a_dead_training_thread_makes_the_node_process_exit_non_zero(tmp_path):
    script = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from pathlib import Path
from test_learner_node import params, transition
from hilserl_learner import learner_node as ln

def factory():
    node = ln.LearnerNode(parameter_overrides=params(Path({str(tmp_path)!r}), **{{"learner.learning_starts": 2}}))
    def broken_update():
        raise RuntimeError("critic loss is NaN")
    node.learner.train_step = broken_update
    for i in range(3):
        node.trainer.queue.append((transition(i, i == 0), "actor_a", None))
    return node

sys.exit(ln.run_node(factory))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == EXIT_TRAINING_FAILED, proc.stderr[-3000:]
    assert "training thread died: RuntimeError: critic loss is NaN" in proc.stderr


def test_clean_shutdown_keeps_data_that_trained_nothing(ros_context, spin_until, tmp_path):
    # before learning_starts (and likewise with updates_per_transition 0), interventions included
    node, actor, pub, ex = _node_rig(ros_context, spin_until, tmp_path, **{"learner.learning_starts": 1000})
    for i in range(5):
        pub.publish(payload.encode(*wire.transition_to_arrays(transition(i, True), "actor_a", i)))
    assert spin_until(ex, lambda: node.learner.transitions_received == 5, 20)
    assert node.learner.updates == 0
    _teardown(node, actor, ex)
    written = list((tmp_path / "ckpt").glob("ckpt_*"))
    assert len(written) == 1
    again = LearnerNode(context=ros_context, parameter_overrides=params(tmp_path, **{"learner.learning_starts": 1000}))
    L = again.learner
    assert (L.transitions_received, L.interventions_received, len(L.buffers["demo"]), len(L.buffers["rl"])) == (5, 5, 5, 5)
    again.close()  # nothing new: no new checkpoint
    again.destroy_node()
    assert list((tmp_path / "ckpt").glob("ckpt_*")) == written


def test_resume_skips_a_damaged_newest_checkpoint_and_refuses_to_start_when_none_loads(ros_context, tmp_path, capfd):
    from hilserl_core.formats.config import ConfigError

    first = LearnerNode(context=ros_context, parameter_overrides=params(tmp_path))
    for i in range(3):
        first.learner.add(transition(i, i == 0))
    with first.trainer.lock:
        good = first.learner.save_checkpoint(tmp_path / "ckpt")
    first.learner.add(transition(3, False))
    first.close()  # the final checkpoint: one transition more
    first.destroy_node()
    (newest,) = [p for p in (tmp_path / "ckpt").glob("ckpt_*") if p != good]
    (newest / "learner.json").write_text("")  # the power went before the data reached the disk
    capfd.readouterr()

    resumed = LearnerNode(context=ros_context, parameter_overrides=params(tmp_path))
    assert resumed.learner.transitions_received == 3 and len(resumed.learner.buffers["demo"]) == 1
    err = capfd.readouterr().err
    assert "WARN" in err and f"skipping checkpoint {newest}" in err and f"{newest / 'learner.json'}: JSONDecodeError" in err
    assert resumed.diag.level("checkpoint") == 1 and str(good) in resumed.diag._statuses["checkpoint"].message
    resumed.close()
    resumed.destroy_node()

    # none loads: refused, each checkpoint named with its file and why, nothing started from zero
    agent = good / "rlpd" / "agent.safetensors"
    agent.write_bytes(agent.read_bytes()[:-64])  # cut short: safetensors says "incomplete metadata"
    on_disk = sorted(p for p in (tmp_path / "ckpt").rglob("*"))
    with pytest.raises(ConfigError) as refused:
        LearnerNode(context=ros_context, parameter_overrides=params(tmp_path))
    text = str(refused.value)
    assert f"none of the 2 checkpoint(s) in {tmp_path / 'ckpt'} loads" in text and "start_fresh" in text
    assert f"{newest / 'learner.json'}: JSONDecodeError" in text
    assert f"{agent}: SafetensorError" in text and "incomplete metadata" in text
    assert "\n" not in text
    assert sorted(p for p in (tmp_path / "ckpt").rglob("*")) == on_disk  # nothing written, nothing deleted

    # told to start fresh: training from zero, a WARN naming them, the files left where they are
    capfd.readouterr()
    fresh = LearnerNode(context=ros_context, parameter_overrides=params(tmp_path, start_fresh=True))
    assert fresh.learner.transitions_received == 0
    err = capfd.readouterr().err
    assert "WARN" in err and "start_fresh: training starts from zero" in err and good.name in err and newest.name in err
    assert fresh.diag.level("checkpoint") == 1
    fresh.close()
    fresh.destroy_node()
    assert good.is_dir() and newest.is_dir() and agent.is_file()  # nothing deleted


def test_no_loadable_checkpoint_is_a_one_line_configuration_error_with_exit_status_2(tmp_path):
    damaged = tmp_path / "ckpt" / "ckpt_000000000_000000003_000000000"
    damaged.mkdir(parents=True)
    (damaged / "learner.json").write_text("{")
    script = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from pathlib import Path
from test_learner_node import params
from hilserl_learner import learner_node as ln

sys.exit(ln.run_node(lambda: ln.LearnerNode(parameter_overrides=params(Path({str(tmp_path)!r})))))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    (line,) = [x for x in proc.stderr.splitlines() if "configuration error" in x]
    assert f"none of the 1 checkpoint(s) in {tmp_path / 'ckpt'} loads: {damaged / 'learner.json'}: JSONDecodeError" in line
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == [damaged.name]  # left as it was
    assert (damaged / "learner.json").read_text() == "{"


def test_weight_versions_go_on_above_the_highest_published_after_a_restart_from_an_older_checkpoint(
        ros_context, spin_until, tmp_path):
    first = LearnerNode(context=ros_context, parameter_overrides=params(tmp_path))  # publishes v1 at start
    for i in range(3):
        first.learner.add(transition(i, i == 0))
    first.trainer.checkpoint()  # a checkpoint holding v1
    for _ in range(4):
        first.publish_weights()  # v2..v5 reach the actors, then the learner dies
    assert first.learner.weights_version == 5
    first.close()  # nothing new since the checkpoint: none written, as if killed
    first.destroy_node()
    assert len(list((tmp_path / "ckpt").glob("ckpt_*"))) == 1

    again = LearnerNode(context=ros_context, parameter_overrides=params(tmp_path))
    assert again.learner.transitions_received == 3  # resumed from the checkpoint of v1 ...
    got = []
    actor = rclpy.create_node("version_actor", context=ros_context)
    actor.create_subscription(UInt8MultiArray, "/learner/policy_weights", got.append, qos.LATCHED)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(again)
    ex.add_node(actor)
    assert spin_until(ex, lambda: got, 10)
    _, version = wire.arrays_to_weights(*payload.decode(got[0]))
    assert version == 6  # ... and publishes a version no actor has seen
    ex.shutdown()
    again.close()
    again.destroy_node()
    actor.destroy_node()


def test_a_checkpoint_of_other_encoder_weights_stops_the_learner_another_precision_warns(ros_context, tmp_path, capfd):
    from hilserl_core.vision.encoders import EncoderMismatch, ResNet10Encoder

    first = LearnerNode(context=ros_context, parameter_overrides=params(tmp_path))  # seeded random encoder weights
    for i in range(3):
        first.learner.add(transition(i, i == 0))
    first.close()
    first.destroy_node()
    weights = ResNet10Encoder(seed=3, compute_dtype="float32").save_weights(tmp_path / "resnet10.safetensors")
    with pytest.raises(EncoderMismatch, match="encoder_weights"):  # run_node: a configuration error, exit status 2
        LearnerNode(context=ros_context, parameter_overrides=params(tmp_path, encoder_weights=str(weights)))

    dtype = first.learner.encoder.identity()["compute_dtype"]
    second = "bfloat16" if dtype == "float32" else "float32"  # whatever auto was here, resume in another
    capfd.readouterr()
    other = LearnerNode(context=ros_context, parameter_overrides=params(tmp_path, encoder_dtype=second))
    assert other.learner.transitions_received == 3
    err = capfd.readouterr().err
    assert "WARN" in err and f"computed in {dtype}" in err
    assert other.diag.level("checkpoint") == 1
    other.close()
    other.destroy_node()


def test_demo_paths_fill_the_demo_buffer_once_and_a_bad_file_is_a_configuration_error(ros_context, tmp_path):
    from hilserl_core.formats.demos import save_demos

    ts = [transition(i, True) for i in range(4)]
    ts[-1] = dataclasses.replace(ts[-1], terminated=True, reward=1.0)
    demos = save_demos(tmp_path / "demos.safetensors", ts)
    node = LearnerNode(context=ros_context, parameter_overrides=params(tmp_path, demo_paths=[str(demos)]))
    try:
        assert len(node.learner.buffers["demo"]) == 4 and len(node.learner.buffers["rl"]) == 0
        assert node.learner.transitions_received == 0  # demos are not online data
        node.trainer.checkpoint()
    finally:
        node.close()
        node.destroy_node()
    # resumed from a checkpoint: the demos come back with it, not a second time from the file
    again = LearnerNode(context=ros_context, parameter_overrides=params(tmp_path, demo_paths=[str(demos)]))
    try:
        assert len(again.learner.buffers["demo"]) == 4
    finally:
        again.destroy_node()
    with pytest.raises(ValueError, match="missing.safetensors: no such demo file"):
        LearnerNode(context=ros_context, parameter_overrides=params(tmp_path / "fresh", demo_paths=[str(tmp_path / "missing.safetensors")]))
