"""The learner node over DDS: routing of intervention vs policy transitions, feature
caching, gap detection, weights to a late joiner (trainable only), live UTD, resume."""

import time

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from std_msgs.msg import UInt8MultiArray

from hilserl_core import frames, wire
from hilserl_core.types import Transition
from hilserl_interfaces import payload, qos
from hilserl_learner.learner_node import LearnerNode

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
    assert node.sequences.lost == 1
    # features, not images, are stored (CPU learner): the frozen ResNet ran once per observation
    assert set(L.buffers["rl"].observation_spec) == {"proprio", "feature/left_wrist"}
    assert spin_until(ex, lambda: L.updates >= 1, 30), "no updates after learning_starts"
    # a progress line on the console once training runs (every log_period_s, from the 1 Hz report)
    capfd.readouterr()
    log = []
    assert spin_until(ex, lambda: log.append(capfd.readouterr().err) or "critic_loss" in "".join(log), 5), "".join(log)
    line = next(x for x in "".join(log).splitlines() if "critic_loss" in x)
    assert "[learner]: updates " in line and f"transitions {len(sent)} " in line and "buffers demo 4 / rl 10" in line, line

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
