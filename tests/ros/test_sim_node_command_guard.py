"""The simulator holds the arm when its command path breaks, as the real controllers do.

- Single-publisher guard: a second node publishing on an arm's target topic makes the arm
  hold the pose it had (whatever either publisher sends), the arm's diagnostic ERROR naming
  both publishers; back to one publisher, the status recovers and targets are followed again.
- Command watchdog: when targets stop (the mux died), the arm holds the measured pose once
  ``pose_timeout_s`` has passed, and says so.
"""

import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter

from hilserl_core.formats import msgconv
from hilserl_interfaces import qos, topics
from hilserl_sim.ros_sim_node import SimNode


def _rig(ros_context):
    sim = SimNode(context=ros_context, parameter_overrides=[Parameter("task", value="pick_cube"),
                                                            Parameter("image_size", value=32)])
    mux = rclpy.create_node("intervention_mux", namespace="/left", context=ros_context)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(sim)
    ex.add_node(mux)
    got = {"pose": [], "diag": []}
    mux.create_subscription(PoseStamped, "current_pose", got["pose"].append, qos.SENSOR)
    mux.create_subscription(DiagnosticArray, topics.DIAGNOSTICS, got["diag"].append, qos.EVENTS)
    return sim, mux, ex, got


def _arm_status(got):
    """The newest published status of the left arm: (level, message, values)."""
    for msg in reversed(got["diag"]):
        for st in msg.status:
            if st.name.endswith("arm left"):
                return st.level[0], st.message, {kv.key: kv.value for kv in st.values}
    return None


def _position(got):
    return msgconv.pose_to_arrays(got["pose"][-1].pose)[0]


def _target(pos, quat):
    msg = PoseStamped()
    msgconv.fill_pose(msg.pose, pos, quat)
    return msg


def test_a_second_publisher_on_target_pose_holds_the_arm_until_it_is_gone(ros_context, spin_until):
    sim, mux, ex, got = _rig(ros_context)
    rogue = rclpy.create_node("rogue", namespace="/left", context=ros_context)
    ex.add_node(rogue)
    try:
        mux_pub = mux.create_publisher(PoseStamped, "target_pose", qos.COMMAND)
        assert spin_until(ex, lambda: bool(got["pose"]), 20)
        p0, q0 = msgconv.pose_to_arrays(got["pose"][-1].pose)
        up = _target(p0 + [0, 0, 0.02], q0)
        assert spin_until(ex, lambda: (mux_pub.publish(up), np.linalg.norm(_position(got) - (p0 + [0, 0, 0.02])) < 0.004)[1], 20)
        held = _position(got)

        # a rogue appears and drives 4 cm down while the mux keeps sending its target 2 cm lower too
        rogue_pub = rogue.create_publisher(PoseStamped, "target_pose", qos.COMMAND)
        down, mux_down = _target(held - [0, 0, 0.04], q0), _target(held - [0, 0, 0.02], q0)
        assert spin_until(ex, lambda: (rogue_pub.publish(down), mux_pub.publish(mux_down),
                                       sim.command_guards["left"]["target_pose"].conflict)[2], 10)
        t0 = time.monotonic()
        spin_until(ex, lambda: (rogue_pub.publish(down), mux_pub.publish(mux_down), time.monotonic() - t0 > 1.5)[2], 5)
        assert np.linalg.norm(_position(got) - held) < 0.004, _position(got) - held
        assert sim.command_guards["left"]["target_pose"].dropped > 0
        assert spin_until(ex, lambda: (_arm_status(got) or (0,))[0] == 2, 5)
        level, message, values = _arm_status(got)
        assert "/left/target_pose" in message and "/left/rogue" in message and "/left/intervention_mux" in message
        assert int(values["dropped_by_guard"]) > 0

        # the rogue leaves: the status recovers and the mux's target is followed again
        rogue.destroy_publisher(rogue_pub)
        assert spin_until(ex, lambda: (mux_pub.publish(mux_down), not sim.command_guards["left"]["target_pose"].conflict)[1], 10)
        assert spin_until(ex, lambda: (mux_pub.publish(mux_down),
                                       np.linalg.norm(_position(got) - (held - [0, 0, 0.02])) < 0.004)[1], 20)
        assert spin_until(ex, lambda: (mux_pub.publish(mux_down), (_arm_status(got) or (2,))[0] == 0)[1], 5)
        assert _arm_status(got)[1].startswith("tracking")
    finally:
        ex.shutdown()
        for n in (rogue, mux, sim):
            n.destroy_node()


def test_when_targets_stop_the_watchdog_holds_the_arm(ros_context, spin_until):
    sim, mux, ex, got = _rig(ros_context)
    try:
        timeout = sim.sim.arms["left"].config.pose_timeout_s
        mux_pub = mux.create_publisher(PoseStamped, "target_pose", qos.COMMAND)
        assert spin_until(ex, lambda: bool(got["pose"]), 20)
        p0, q0 = msgconv.pose_to_arrays(got["pose"][-1].pose)
        goal = p0 + [0.02, 0, 0]
        assert spin_until(ex, lambda: (mux_pub.publish(_target(goal, q0)), np.linalg.norm(_position(got) - goal) < 0.004)[1], 20)
        assert not sim.sim.arms["left"].holding
        # the mux dies: no more targets
        mux.destroy_publisher(mux_pub)
        t_stop = sim.sim.time
        assert spin_until(ex, lambda: sim.sim.arms["left"].holding, 10 * timeout + 10)
        assert sim.sim.time - t_stop >= timeout - 0.02  # not before the timeout (sim time)
        assert "stale" in sim.sim.arms["left"].diagnostics()["last_reason"]
        held = _position(got)
        spin_until(ex, lambda: False, 1.0)
        assert np.linalg.norm(_position(got) - held) < 0.003
        assert spin_until(ex, lambda: (_arm_status(got) or (0,))[0] == 1 and "stale" in _arm_status(got)[1], 5)
    finally:
        ex.shutdown()
        for n in (mux, sim):
            n.destroy_node()
