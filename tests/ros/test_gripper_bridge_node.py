"""hilserl_robot's per-arm adapters as real nodes on loopback DDS: the gripper bridge (one goal
per change of gripper/command, failures on /diagnostics, franka_gripper's joint states forwarded
as gripper/joint_states) and the robot-state adapter (current_pose / current_twist /
external_wrench from franka's robot state). franka_msgs exists only on a full ROS install: the
action transport and the FrankaRobotState subscription are tested there (skipped here with the
reason); the nodes are driven here through the same callbacks with stand-ins."""

import importlib.util
import math
from types import SimpleNamespace as NS

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped, TwistStamped, WrenchStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState
from std_msgs.msg import Empty, Float64

from hilserl_core.formats import msgconv
from hilserl_core.robot.actor_loop import gripper_opening
from hilserl_core.robot.gripper_bridge import GRASP, MOVE
from hilserl_interfaces import qos
from hilserl_robot.franka_state_node import FrankaStateNode
from hilserl_robot.gripper_bridge_node import GripperBridgeNode

HAVE_FRANKA_MSGS = importlib.util.find_spec("franka_msgs") is not None
NO_FRANKA = "franka_msgs (franka_ros2) is not installed here: the action clients and the FrankaRobotState subscription run only on the robot's full ROS 2 install"


class FakeActions:
    """Stands in for franka_gripper's action servers: records goals; the test answers them."""

    def __init__(self):
        self.server_ready = True
        self.goals, self.cancelled = [], []
        self._cbs = {}

    def ready(self, kind):
        return self.server_ready

    def send(self, goal, on_rejected, on_result):
        self.goals.append(goal)
        self._cbs[goal.seq] = (on_rejected, on_result)

    def cancel(self, seq):
        self.cancelled.append(seq)

    def finish(self, seq, success=True, error=""):
        self._cbs[seq][1](seq, success, error)

    def reject(self, seq, reason):
        self._cbs[seq][0](seq, reason)


@pytest.fixture
def gripper_rig(ros_context):
    actions = FakeActions()
    node = GripperBridgeNode(actions=actions, context=ros_context, namespace="/left",
                             parameter_overrides=[Parameter("max_retries", value=0), Parameter("goal_timeout_s", value=1.0)])
    peer = rclpy.create_node("mux_and_gripper", context=ros_context)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(node)
    ex.add_node(peer)
    got = {"joints": [], "diag": []}
    peer.create_subscription(JointState, "/left/gripper/joint_states", got["joints"].append, qos.SENSOR)
    peer.create_subscription(DiagnosticArray, "/diagnostics", got["diag"].append, qos.EVENTS)
    pubs = {"cmd": peer.create_publisher(Float64, "/left/gripper/command", qos.COMMAND),
            "fj": peer.create_publisher(JointState, "/left/franka_gripper/joint_states", qos.SENSOR)}
    yield node, actions, peer, ex, got, pubs
    ex.shutdown()
    node.destroy_node()
    peer.destroy_node()


def _gripper_status(got, level=None):
    out = [s for d in got["diag"] for s in d.status if s.name.endswith(": gripper")]
    return [s for s in out if level is None or s.level[0] == level]


def test_repeated_commands_make_one_goal_each_change(gripper_rig, spin_until):
    node, actions, peer, ex, got, pubs = gripper_rig
    # the mux publishes the closure every step
    assert spin_until(ex, lambda: (pubs["cmd"].publish(Float64(data=1.0)), len(actions.goals) >= 1)[1], 10)
    spin_until(ex, lambda: (pubs["cmd"].publish(Float64(data=1.0)), False)[1], 0.5)
    assert len(actions.goals) == 1
    g = actions.goals[0]
    assert (g.kind, g.width_m, g.force_n, g.speed_mps) == (GRASP, 0.0, 40.0, 0.1)
    # a change while the grasp runs waits for it
    spin_until(ex, lambda: (pubs["cmd"].publish(Float64(data=0.0)), False)[1], 0.3)
    assert len(actions.goals) == 1
    actions.finish(g.seq, True)
    assert spin_until(ex, lambda: (pubs["cmd"].publish(Float64(data=0.0)), len(actions.goals) == 2)[1], 5)
    assert actions.goals[1].kind == MOVE and math.isclose(actions.goals[1].width_m, 0.08)


def test_failed_goal_is_reported_on_diagnostics(gripper_rig, spin_until):
    node, actions, peer, ex, got, pubs = gripper_rig
    assert spin_until(ex, lambda: (pubs["cmd"].publish(Float64(data=1.0)), len(actions.goals) == 1)[1], 10)
    actions.finish(actions.goals[0].seq, False, "libfranka: Move command aborted: motion aborted by reflex!")
    assert spin_until(ex, lambda: any("aborted by reflex" in s.message for s in _gripper_status(got, 2)), 5)
    # the next change succeeds: OK again
    assert spin_until(ex, lambda: (pubs["cmd"].publish(Float64(data=0.0)), len(actions.goals) == 2)[1], 5)
    actions.finish(actions.goals[1].seq, True)
    assert spin_until(ex, lambda: bool(_gripper_status(got)) and _gripper_status(got)[-1].level[0] == 0, 5)


def test_timeout_cancels_and_rejection_is_a_failure(gripper_rig, spin_until):
    node, actions, peer, ex, got, pubs = gripper_rig
    assert spin_until(ex, lambda: (pubs["cmd"].publish(Float64(data=1.0)), len(actions.goals) == 1)[1], 10)
    assert spin_until(ex, lambda: actions.cancelled == [actions.goals[0].seq], 5)  # goal_timeout_s 1 s
    assert spin_until(ex, lambda: any("no result after" in s.message for s in _gripper_status(got, 2)), 5)
    assert spin_until(ex, lambda: (pubs["cmd"].publish(Float64(data=0.0)), len(actions.goals) == 2)[1], 5)
    actions.reject(actions.goals[1].seq, "not accepted by franka_gripper")
    assert spin_until(ex, lambda: any("goal rejected" in s.message for s in _gripper_status(got, 2)), 5)


def test_server_missing_warns_and_sends_when_it_appears(gripper_rig, spin_until):
    node, actions, peer, ex, got, pubs = gripper_rig
    actions.server_ready = False
    assert spin_until(ex, lambda: (pubs["cmd"].publish(Float64(data=1.0)), any("not available" in s.message for s in _gripper_status(got, 1)))[1], 10)
    assert not actions.goals
    actions.server_ready = True
    assert spin_until(ex, lambda: len(actions.goals) == 1, 5)


def test_joint_states_forwarded(gripper_rig, spin_until):
    node, actions, peer, ex, got, pubs = gripper_rig

    def publish():
        m = JointState()
        m.header.stamp = peer.get_clock().now().to_msg()
        m.name = ["fr3_finger_joint1", "fr3_finger_joint2"]
        m.position = [0.02, 0.02]
        m.velocity = [0.0, 0.0]
        m.effort = [0.0, 0.0]
        pubs["fj"].publish(m)
        return bool(got["joints"])

    assert spin_until(ex, publish, 10)
    j = got["joints"][-1]
    assert list(j.name) == ["left_finger_joint1", "left_finger_joint2"]
    assert math.isclose(gripper_opening(j), 0.5)  # what the actor reads: 4 cm of 8 cm
    bad = JointState()
    bad.name, bad.position = ["fr3_finger_joint1"], [0.01]
    pubs["fj"].publish(bad)
    assert spin_until(ex, lambda: node.bad_joint_states == 1, 5)


@pytest.mark.skipif(not HAVE_FRANKA_MSGS, reason=NO_FRANKA)
def test_real_franka_gripper_action_clients(ros_context):
    node = GripperBridgeNode(context=ros_context, namespace="/left")
    try:
        assert {c._action_name for c in node.actions.clients.values()} == {"franka_gripper/move", "franka_gripper/grasp"}
    finally:
        node.destroy_node()


def test_without_franka_msgs_the_nodes_refuse_with_one_line(ros_context):
    if HAVE_FRANKA_MSGS:
        pytest.skip("franka_msgs is installed: the nodes start")
    from hilserl_core.formats.config import ConfigError

    with pytest.raises(ConfigError, match="franka_msgs"):
        GripperBridgeNode(context=ros_context, namespace="/left")
    with pytest.raises(ConfigError, match="franka_msgs"):
        FrankaStateNode(context=ros_context, namespace="/left")


# -- robot-state adapter --------------------------------------------------------------------------


def _robot_state(pos, quat, wrench, time_s, stamp_ns):
    vec = lambda x, y, z: NS(x=x, y=y, z=z)  # noqa: E731
    sec, nsec = divmod(stamp_ns, 1_000_000_000)
    header = NS(stamp=NS(sec=sec, nanosec=nsec), frame_id="fr3_link0")
    return NS(header=header,
              o_t_ee=NS(header=header, pose=NS(position=vec(*pos), orientation=NS(x=quat[0], y=quat[1], z=quat[2], w=quat[3]))),
              ee_t_k=NS(header=header, pose=NS(position=vec(0, 0, 0), orientation=NS(x=0, y=0, z=0, w=1))),
              o_f_ext_hat_k=NS(header=header, wrench=NS(force=vec(*wrench[:3]), torque=vec(*wrench[3:]))),
              time=time_s, robot_mode=2)


def test_state_adapter_publishes_pose_twist_wrench(ros_context, spin_until):
    # std_msgs/Empty stands in for the subscribed FrankaRobotState type; samples go in through the callback
    node = FrankaStateNode(state_type=Empty, context=ros_context, namespace="/left",
                           parameter_overrides=[Parameter("base_frame_id", value="left_base"),
                                                Parameter("twist_filter_time_constant_s", value=0.0)])
    peer = rclpy.create_node("actor", context=ros_context)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(node)
    ex.add_node(peer)
    got = {"pose": [], "twist": [], "wrench": []}
    peer.create_subscription(PoseStamped, "/left/current_pose", got["pose"].append, qos.SENSOR)
    peer.create_subscription(TwistStamped, "/left/current_twist", got["twist"].append, qos.SENSOR)
    peer.create_subscription(WrenchStamped, "/left/external_wrench", got["wrench"].append, qos.SENSOR)
    try:
        t = [0]

        def feed():
            t[0] += 1
            now_ns = node.get_clock().now().nanoseconds
            node.on_state(_robot_state([0.4 + 0.001 * t[0], 0.0, 0.3], [1, 0, 0, 0], [0, 0, -3.0, 0, 0, 0.1],
                                       100.0 + 0.01 * t[0], now_ns))
            return len(got["twist"]) > 3

        assert spin_until(ex, feed, 10)
        p, tw, w = got["pose"][-1], got["twist"][-1], got["wrench"][-1]
        assert p.header.frame_id == tw.header.frame_id == w.header.frame_id == "left_base"
        pos, quat = msgconv.pose_to_arrays(p.pose)
        assert math.isclose(pos[1], 0.0) and np.allclose(quat, [1, 0, 0, 0])
        assert np.allclose(msgconv.vector6_from_twist(tw.twist), [0.1, 0, 0, 0, 0, 0], atol=1e-6)  # 1 mm per 10 ms
        assert np.allclose(msgconv.vector6_from_wrench(w.wrench), [0, 0, -3, 0, 0, 0.1])
        # stale robot state: nothing more is published
        spin_until(ex, lambda: False, 0.5)
        n = len(got["pose"])
        spin_until(ex, lambda: False, 0.5)
        assert len(got["pose"]) == n
        # a refused sample is counted, not published
        node.on_state(_robot_state([float("nan"), 0, 0], [1, 0, 0, 0], [0] * 6, 200.0, node.get_clock().now().nanoseconds))
        assert node.converter.rejected == 1
    finally:
        ex.shutdown()
        node.destroy_node()
        peer.destroy_node()
