"""The reset node on loopback DDS with the real intervention mux and a fake arm that follows
target_pose: the service moves the arm to a sampled start pose through the mux (which stays the
only target_pose publisher), opens the gripper, waits for the operator's go, and answers;
an arm that cannot get there is a failure in the answer and on diagnostics."""

import math

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from std_msgs.msg import Empty, Float64
from std_srvs.srv import Trigger

from hilserl_core.formats import msgconv
from hilserl_core.robot import frames
from hilserl_core.robot.reset_planner import ResetPhase
from hilserl_interfaces import qos
from hilserl_robot.reset_node import ResetNode
from hilserl_teleop.mux_node import MuxNode

DOWN = frames.quat_from_euler_xyz(math.pi, 0, 0)


def _params(**kw):
    base = dict(arms=["left"], service="/robot/reset", start_position_m=[0.5, 0.0, 0.25], start_rpy_rad=[math.pi, 0.0, 0.0],
                position_noise_m=[0.02, 0.02, 0.0], orientation_noise_rad=[0.0, 0.0, 0.1], seed=7,
                max_linear_speed_mps=0.1, max_angular_speed_radps=0.5, settle_s=0.2, gripper_wait_s=0.2,
                motion_timeout_s=8.0, stall_s=1.0)
    base.update(kw)
    return [Parameter(k, value=v) for k, v in base.items()]


class FakeArm:
    """current_pose at 50 Hz; follows each target_pose at once (unless frozen); records the gripper command."""

    def __init__(self, node, pos, quat):
        self.node, self.pos, self.quat, self.frozen = node, np.array(pos, float), np.array(quat, float), False
        self.targets, self.gripper = 0, []
        self.pub = node.create_publisher(PoseStamped, "/left/current_pose", qos.SENSOR)
        node.create_subscription(PoseStamped, "/left/target_pose", self._on_target, qos.COMMAND)
        node.create_subscription(Float64, "/left/gripper/command", lambda m: self.gripper.append(m.data), qos.COMMAND)
        node.create_timer(0.02, self._publish)

    def _on_target(self, msg):
        self.targets += 1
        if not self.frozen:
            self.pos, self.quat = msgconv.pose_to_arrays(msg.pose)

    def _publish(self):
        msg = PoseStamped()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.header.frame_id = "left_base"
        msgconv.fill_pose(msg.pose, self.pos, self.quat)
        self.pub.publish(msg)


def _rig(ros_context, start_pos, **params):
    reset = ResetNode(context=ros_context, parameter_overrides=_params(**params))
    mux = MuxNode(context=ros_context, namespace="/left")
    peer = rclpy.create_node("arm_and_actor", context=ros_context)
    arm = FakeArm(peer, start_pos, DOWN)
    diags = []
    peer.create_subscription(DiagnosticArray, "/diagnostics", diags.append, qos.EVENTS)
    go = peer.create_publisher(Empty, "/episode/reset", qos.EVENTS)
    client = peer.create_client(Trigger, "/robot/reset")
    ex = SingleThreadedExecutor(context=ros_context)
    for n in (reset, mux, peer):
        ex.add_node(n)
    return reset, mux, peer, arm, diags, go, client, ex


def _statuses(diags, name_part):
    return [s for d in diags for s in d.status if name_part in s.name]


@pytest.fixture
def nodes():
    made = []
    yield made
    for ex, ns in made:
        ex.shutdown()
        for n in ns:
            n.destroy_node()


def test_reset_moves_through_the_mux_waits_for_go_and_succeeds(ros_context, spin_until, nodes):
    reset, mux, peer, arm, diags, go, client, ex = _rig(ros_context, [0.42, 0.08, 0.3])
    nodes.append((ex, [reset, mux, peer]))
    assert spin_until(ex, lambda: client.service_is_ready() and mux._pose is not None, 10)
    go.publish(Empty())  # a go before the reset is ignored
    fut = client.call_async(Trigger.Request())
    assert spin_until(ex, lambda: reset.procedure.phase is ResetPhase.MOVING, 10), (reset.procedure.phase, reset.procedure.message, reset._poses)
    again = client.call_async(Trigger.Request())  # the actor's timeout ran out: joins this reset
    assert spin_until(ex, lambda: reset.procedure.phase is ResetPhase.WAITING_GO, 20), reset.procedure.message
    goal_pos, goal_quat = reset.procedure.goals["left"]
    assert np.linalg.norm(arm.pos - goal_pos) < 0.01 and frames.quat_angle(arm.quat, goal_quat) < 0.05
    assert np.all(np.abs(goal_pos - [0.5, 0.0, 0.25]) <= [0.02 + 1e-9, 0.02 + 1e-9, 1e-9])
    spin_until(ex, lambda: False, 0.5)
    assert not fut.done()  # waiting for the operator
    assert arm.gripper and arm.gripper[-1] == 0.0  # opened through the mux
    assert arm.targets > 5
    go.publish(Empty())
    assert spin_until(ex, lambda: fut.done() and again.done(), 10)
    assert fut.result().success and again.result().success, fut.result().message
    assert "go" in fut.result().message
    # the mux never saw another publisher on its targets
    assert mux.count_publishers("/left/target_pose") == 1
    assert all(s.level[0] == 0 for s in _statuses(diags, "intervention_mux: targets"))
    # a second reset samples again and needs a new go
    fut2 = client.call_async(Trigger.Request())
    assert spin_until(ex, lambda: reset.procedure.phase is ResetPhase.WAITING_GO, 20)
    assert reset.procedure.count == 2
    go.publish(Empty())
    assert spin_until(ex, fut2.done, 10) and fut2.result().success


def test_unreachable_start_is_a_failed_call_and_an_error_on_diagnostics(ros_context, spin_until, nodes):
    reset, mux, peer, arm, diags, go, client, ex = _rig(ros_context, [0.4, 0.1, 0.35])
    nodes.append((ex, [reset, mux, peer]))
    arm.frozen = True  # the arm does not move (blocked, or no controller)
    assert spin_until(ex, lambda: client.service_is_ready() and mux._pose is not None, 10)
    fut = client.call_async(Trigger.Request())
    assert spin_until(ex, fut.done, 20)
    res = fut.result()
    assert not res.success and ("unreachable" in res.message or "timed out" in res.message), res.message
    assert spin_until(ex, lambda: any(s.level[0] == 2 and "failed" in s.message for s in _statuses(diags, "reset: reset")), 5)
    assert reset.outcomes[-1][0] is False


def test_no_robot_state_is_a_failed_call(ros_context, spin_until, nodes):
    reset = ResetNode(context=ros_context, parameter_overrides=_params(motion_timeout_s=1.5))
    peer = rclpy.create_node("actor", context=ros_context)
    client = peer.create_client(Trigger, "/robot/reset")
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(reset)
    ex.add_node(peer)
    nodes.append((ex, [reset, peer]))
    assert spin_until(ex, client.service_is_ready, 10)
    fut = client.call_async(Trigger.Request())
    assert spin_until(ex, fut.done, 10)
    assert not fut.result().success and "no fresh current_pose" in fut.result().message
