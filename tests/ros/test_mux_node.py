"""The intervention mux as a real node: policy -> target, operator override,
executed-action report, live parameter, and refusal to share its target topic."""

import numpy as np
import pytest
import rclpy
from geometry_msgs.msg import PoseStamped, Twist
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from sensor_msgs.msg import Joy
from std_msgs.msg import Float64

from hilserl_core import frames, msgconv
from hilserl_core.intervention import Source
from hilserl_interfaces import actions, qos
from hilserl_teleop.mux_node import MuxNode

POS = np.array([0.5, 0.0, 0.3])
QUAT = frames.quat_from_euler_xyz(np.pi, 0, 0)


@pytest.fixture
def rig(ros_context):
    mux = MuxNode(context=ros_context, namespace="/left")
    peer = rclpy.create_node("robot_and_actor", namespace="/left", context=ros_context)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(mux)
    ex.add_node(peer)
    got = {"target": [], "executed": [], "gripper": []}
    peer.create_subscription(PoseStamped, "target_pose", got["target"].append, qos.COMMAND)
    peer.create_subscription(Joy, "mux/executed", got["executed"].append, qos.EVENTS)
    peer.create_subscription(Float64, "gripper/command", got["gripper"].append, qos.COMMAND)
    pubs = {
        "pose": peer.create_publisher(PoseStamped, "current_pose", qos.COMMAND),
        "action": peer.create_publisher(Joy, "policy/action", qos.COMMAND),
        "twist": peer.create_publisher(Twist, "spacenav/twist", qos.COMMAND),
        "joy": peer.create_publisher(Joy, "spacenav/joy", qos.COMMAND),
    }
    yield mux, peer, ex, got, pubs
    ex.shutdown()
    mux.destroy_node()
    peer.destroy_node()


def _publish_pose(pubs):
    msg = PoseStamped()
    msgconv.fill_pose(msg.pose, POS, QUAT)
    pubs["pose"].publish(msg)


def test_policy_then_operator(rig, spin_until):
    mux, peer, ex, got, pubs = rig
    assert spin_until(ex, lambda: (_publish_pose(pubs), mux._pose is not None)[1], 10)

    action = actions.to_joy(actions.ActionMsg(np.array([1.0, 0, 0, 0, 0, 0]), 2, stamp_s=123.5))
    assert spin_until(ex, lambda: (pubs["action"].publish(action), any(
        actions.from_joy(m).stamp_s == 123.5 for m in got["executed"]))[1], 10)
    ex_msg = [actions.from_joy(m) for m in got["executed"] if actions.from_joy(m).stamp_s == 123.5][0]
    assert ex_msg.source == Source.POLICY and ex_msg.gripper == 2 and np.allclose(ex_msg.action, [1, 0, 0, 0, 0, 0])
    assert any(np.allclose(msgconv.pose_to_arrays(t.pose)[0], POS + [0.015, 0, 0]) for t in got["target"])
    assert spin_until(ex, lambda: bool(got["gripper"]), 5) and got["gripper"][-1].data == 1.0

    # operator pushes up in base frame: next policy step is overridden and reported as operator
    twist = Twist()
    twist.linear.z = 0.6
    action2 = actions.to_joy(actions.ActionMsg(np.array([1.0, 0, 0, 0, 0, 0]), 1, stamp_s=124.0))

    def operator_executed():
        pubs["twist"].publish(twist)
        pubs["action"].publish(action2)
        return any(actions.from_joy(m).source == Source.OPERATOR for m in got["executed"])

    assert spin_until(ex, operator_executed, 10)
    op = [actions.from_joy(m) for m in got["executed"] if actions.from_joy(m).source == Source.OPERATOR][-1]
    assert np.allclose(op.action, [0, 0, -0.6, 0, 0, 0], atol=1e-9)  # base +z = EE -z (hand down)

    # live parameter through the parameter services reaches the mux logic
    mux.set_parameters([Parameter("mux.speed_scale", value=0.5)])
    assert mux.mux.config.speed_scale == 0.5
    res = mux.set_parameters([Parameter("mux.speed_scale", value=50.0)])[0]
    assert not res.successful and "out of range" in res.reason and mux.mux.config.speed_scale == 0.5


def test_mux_refuses_a_second_target_publisher(rig, spin_until):
    mux, peer, ex, got, pubs = rig
    rogue = peer.create_publisher(PoseStamped, "target_pose", qos.COMMAND)
    with pytest.raises(SystemExit) as e:
        spin_until(ex, lambda: False, 5)
    assert e.value.code == 3
    assert "refusing to run" in mux.diag._statuses["targets"].message
    peer.destroy_publisher(rogue)


def test_operator_only_control_runs_at_the_control_rate(rig, spin_until):
    """Teleoperation without a policy (demos): the timer drives a step every period, not every other."""
    import time

    mux, peer, ex, got, pubs = rig
    assert spin_until(ex, lambda: (_publish_pose(pubs), mux._pose is not None)[1], 10)
    twist = Twist()
    twist.linear.x = 0.5
    got["executed"].clear()
    t0 = time.monotonic()
    spin_until(ex, lambda: (pubs["twist"].publish(twist), _publish_pose(pubs), time.monotonic() - t0 > 2.0)[2], 5)
    n = sum(1 for m in got["executed"] if actions.from_joy(m).source == Source.OPERATOR)
    assert n >= 16, f"{n} operator steps in 2 s at 10 Hz"  # 20 expected; every-other-tick stepping gave 10
