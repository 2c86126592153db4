"""The training analysis over DDS: the learner node publishes its figures with its diagnostics
every ``learner.analysis_period_updates`` updates and ``hilserl train``'s monitor reads them; the
monitor takes each arm's end-effector position at every step the mux executed."""

import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray  # noqa: F401 - the monitor's message type, imported before the node
from geometry_msgs.msg import PoseStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from sensor_msgs.msg import Joy
from std_msgs.msg import UInt8MultiArray

from hilserl.train import _Monitor
from hilserl_core.formats import wire
from hilserl_core.formats.types import Transition
from hilserl_core.robot import frames
from hilserl_interfaces import payload, qos
from hilserl_learner.learner_node import LearnerNode

P = frames.proprio_size(1)
ANALYSIS = {"rlpd/q_action_variance", "rlpd/policy_mean_abs", "rlpd/policy_std", "analysis_updates"}


def transition(i):
    rng = np.random.default_rng(i)
    o = lambda: {"proprio": rng.standard_normal(P).astype(np.float32),  # noqa: E731
                 "image/left_wrist": rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)}
    return Transition(o(), rng.uniform(-1, 1, 6).astype(np.float32), 0.0, False, False, o(),
                      intervened=i % 3 == 0, episode_id=i, step=0)


def test_the_learner_publishes_its_analysis_every_n_updates_and_train_reads_it(ros_context, spin_until, tmp_path):
    overrides = {
        "arms": ["left"], "cameras": ["left/wrist"], "checkpoint_dir": str(tmp_path / "ckpt"),
        "learner.learning_starts": 6, "learner.rl_capacity": 50, "learner.demo_capacity": 50,
        "learner.checkpoint_period_updates": 0, "learner.analysis_period_updates": 3, "learner.max_updates_per_s": 50.0,
        "grasp.hidden_dims": [16], "grasp.image_bottleneck_dim": 8, "agent.batch_size": 4,
        "agent.actor_hidden_dims": [16], "agent.critic_hidden_dims": [16], "agent.image_bottleneck_dim": 8,
    }
    node = LearnerNode(context=ros_context, parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
    mon = _Monitor(ros_context, ["left"])
    actor = rclpy.create_node("fake_actor", context=ros_context)
    pub = actor.create_publisher(UInt8MultiArray, "/learner/transitions", qos.TRANSITIONS)
    pose_pub = actor.create_publisher(PoseStamped, "/left/current_pose", qos.SENSOR)
    executed_pub = actor.create_publisher(Joy, "/left/mux/executed", qos.EVENTS)
    ex = SingleThreadedExecutor(context=ros_context)
    for n in (node, mon.node, actor):
        ex.add_node(n)
    try:
        assert spin_until(ex, lambda: pub.get_subscription_count() > 0 and executed_pub.get_subscription_count() > 0
                          and pose_pub.get_subscription_count() > 0, 10)
        # no pose yet: an executed step is not sampled
        executed_pub.publish(Joy())
        spin_until(ex, lambda: False, 0.3)
        assert mon.poses == []
        for i in range(10):
            pub.publish(payload.encode(*wire.transition_to_arrays(transition(i), "actor_a", i)))
        L = node.learner
        assert spin_until(ex, lambda: L.analysis_updates >= 3, 60), f"{L.updates} updates, no analysis"
        assert set(L.analysis) == ANALYSIS - {"analysis_updates"} and L.analysis_updates % 3 == 0
        # in the learner's diagnostics, as hilserl train's monitor reads them
        assert spin_until(ex, lambda: ANALYSIS <= set(mon.learner), 10), mon.learner
        assert int(mon.learner["analysis_updates"]) % 3 == 0 and float(mon.learner["rlpd/policy_std"]) > 0

        msg = PoseStamped()
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = 0.5, -0.1, 0.25
        assert spin_until(ex, lambda: pose_pub.publish(msg) or "left" in mon._raw_poses, 5)
        for _ in range(3):
            executed_pub.publish(Joy())
            time.sleep(0.02)
        assert spin_until(ex, lambda: len(mon.poses) == 3, 5)
        assert mon.poses == [("left", (0.5, -0.1, 0.25))] * 3
    finally:
        node.close()
        ex.shutdown()
        for n in (node, mon.node, actor):
            n.destroy_node()
