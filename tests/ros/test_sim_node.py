"""The simulator node is indistinguishable from the real stack at the topic level:
same names and types per arm, targets move the arm, bad commands hold with a reason,
/sim/reset randomizes, and the scripted operator drives spacenav topics."""

import numpy as np
import pytest
import rclpy
from geometry_msgs.msg import PoseStamped, Twist, TwistStamped, WrenchStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image, JointState, Joy
from std_msgs.msg import Bool, Float64
from std_srvs.srv import Trigger

from hilserl_core.formats import msgconv
from hilserl_core.formats.config import ConfigError
from hilserl_interfaces import qos
from hilserl_sim.ros_sim_node import SimNode, gripper_closure_to_width


def test_gripper_command_mapping():
    assert gripper_closure_to_width(0.0) == pytest.approx(0.08)
    assert gripper_closure_to_width(1.0) == 0.0 and gripper_closure_to_width(7.0) == 0.0


def test_bad_task_is_a_clear_error(ros_context):
    with pytest.raises(ConfigError, match="task 'stack_cups' is not a simulated task; choose one of .*pick_cube"):
        SimNode(context=ros_context, parameter_overrides=[Parameter("task", value="stack_cups")])


def test_sim_node_topics_commands_and_reset(ros_context, spin_until):
    sim = SimNode(context=ros_context, parameter_overrides=[Parameter("task", value="pick_cube")])
    peer = rclpy.create_node("stack_user", context=ros_context)
    got = {k: [] for k in ("pose", "twist", "wrench", "gripper", "wrist", "front", "success")}
    peer.create_subscription(PoseStamped, "/left/current_pose", got["pose"].append, qos.SENSOR)
    peer.create_subscription(TwistStamped, "/left/current_twist", got["twist"].append, qos.SENSOR)
    peer.create_subscription(WrenchStamped, "/left/external_wrench", got["wrench"].append, qos.SENSOR)
    peer.create_subscription(JointState, "/left/gripper/joint_states", got["gripper"].append, qos.SENSOR)
    peer.create_subscription(Image, "/left/cameras/wrist/image_raw", got["wrist"].append, qos.SENSOR)
    peer.create_subscription(Image, "/left/cameras/front/image_raw", got["front"].append, qos.SENSOR)
    peer.create_subscription(Bool, "/sim/success", got["success"].append, qos.EVENTS)
    target_pub = peer.create_publisher(PoseStamped, "/left/target_pose", qos.COMMAND)
    grip_pub = peer.create_publisher(Float64, "/left/gripper/command", qos.COMMAND)
    reset = peer.create_client(Trigger, "/sim/reset")
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(sim)
    ex.add_node(peer)
    assert spin_until(ex, lambda: all(got.values()), 20), {k: len(v) for k, v in got.items()}
    img = got["wrist"][-1]
    assert (img.encoding, img.height, img.width) == ("rgb8", 128, 128)
    assert msgconv.image_to_rgb(img).std() > 1.0  # a real rendering, not a blank frame
    assert got["pose"][-1].header.frame_id == "left_base" and len(got["gripper"][-1].position) == 2

    # a target 2 cm above: the arm goes there (impedance + reference limiting)
    p0, q0 = msgconv.pose_to_arrays(got["pose"][-1].pose)
    goal = p0 + [0.0, 0.0, 0.02]
    tgt = PoseStamped()
    msgconv.fill_pose(tgt.pose, goal, q0)

    def near_goal():
        target_pub.publish(tgt)
        return np.linalg.norm(msgconv.pose_to_arrays(got["pose"][-1].pose)[0] - goal) < 0.004

    assert spin_until(ex, near_goal, 20), msgconv.pose_to_arrays(got["pose"][-1].pose)[0] - goal
    # close the gripper
    assert spin_until(ex, lambda: (grip_pub.publish(Float64(data=1.0)), sum(got["gripper"][-1].position) < 0.01)[1], 20)

    # NaN target: the arm holds where it is and says why
    bad = PoseStamped()
    msgconv.fill_pose(bad.pose, [np.nan, 0, 0], q0)
    target_pub.publish(bad)
    assert spin_until(ex, lambda: "NaN" in sim.sim.arms["left"].diagnostics()["last_reason"], 10)
    held = msgconv.pose_to_arrays(got["pose"][-1].pose)[0]
    spin_until(ex, lambda: False, 0.5)
    assert np.linalg.norm(msgconv.pose_to_arrays(got["pose"][-1].pose)[0] - held) < 0.003

    # reset: a new randomized start
    assert reset.wait_for_service(timeout_sec=5)
    fut = reset.call_async(Trigger.Request())
    assert spin_until(ex, fut.done, 10) and fut.result().success
    n = len(got["pose"])
    assert spin_until(ex, lambda: len(got["pose"]) > n + 5, 10)
    assert np.linalg.norm(msgconv.pose_to_arrays(got["pose"][-1].pose)[0] - held) > 1e-3
    ex.shutdown()
    sim.destroy_node()
    peer.destroy_node()


def test_scripted_operator_drives_the_spacenav_topics(ros_context, spin_until):
    sim = SimNode(context=ros_context, parameter_overrides=[Parameter("operator.mode", value="demo")])
    peer = rclpy.create_node("mux_stand_in", context=ros_context)
    twists, joys = [], []
    peer.create_subscription(Twist, "/left/spacenav/twist", twists.append, qos.COMMAND)
    peer.create_subscription(Joy, "/left/spacenav/joy", joys.append, qos.COMMAND)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(sim)
    for companion in sim.companion_nodes:
        ex.add_node(companion)
    ex.add_node(peer)
    assert spin_until(ex, lambda: len(twists) >= 5, 20)
    # the operator is a node of its own in the graph, as a SpaceMouse driver would be
    assert "scripted_operator" in peer.get_node_names()
    assert peer.count_publishers("/left/spacenav/twist") == 1 and sim.operator_node.interventions > 0
    assert any(np.abs(msgconv.vector6_from_twist(t)).max() > 0.05 for t in twists)  # it moves the mouse
    assert spin_until(ex, lambda: len(joys) >= 2, 10)  # the buttons are published too
    assert all(len(j.buttons) == 2 and len(j.axes) == 6 for j in joys)
    ex.shutdown()
    sim.destroy_node()
    peer.destroy_node()


def test_scripted_operator_keeps_its_name_under_the_process_node_remap():
    """`ros2 run hilserl_sim sim_node --ros-args -r __node:=sim` (what launch and the runner
    pass) renames every node of the process that reads the global arguments; the operator
    composed into the sim process must stay /scripted_operator, not become a second /sim."""
    ctx = rclpy.context.Context()
    rclpy.init(context=ctx, args=["sim_node", "--ros-args", "-r", "__node:=sim", "-r", "__ns:=/"])
    try:
        sim = SimNode(context=ctx, parameter_overrides=[Parameter("operator.mode", value="assist")])
        assert sim.get_fully_qualified_name() == "/sim"
        assert sim.operator_node.get_fully_qualified_name() == "/scripted_operator"
        sim.operator_node.destroy_node()
        sim.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)


def test_lockstep_waits_for_each_frames_action_and_lets_go_when_none_comes(ros_context, spin_until):
    """A slow 'actor' (the mux's report 0.3 s after each frame) slows simulated time to its pace;
    when it stops answering, lockstep lets go and simulated time follows the wall clock again."""
    import time

    sim = SimNode(context=ros_context, parameter_overrides=[
        Parameter("task", value="pick_cube"), Parameter("lockstep", value=True), Parameter("lockstep_timeout_s", value=1.0)])
    peer = rclpy.create_node("slow_actor", context=ros_context)
    frames, answering = [], [True]
    executed = peer.create_publisher(Joy, "/left/mux/executed", qos.EVENTS)

    def on_frame(msg):
        frames.append((time.monotonic(), sim._sim_elapsed_s))
        if answering[0]:
            stamp = msg.header.stamp
            timer = []

            def answer():
                timer[0].cancel()
                out = Joy()
                out.header.stamp = stamp
                executed.publish(out)
            timer.append(peer.create_timer(0.3, answer))

    peer.create_subscription(Image, "/left/cameras/wrist/image_raw", on_frame, qos.SENSOR)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(sim)
    ex.add_node(peer)
    try:
        assert spin_until(ex, lambda: sim.pacer.engaged and len(frames) >= 3, 20)
        start = len(frames)
        assert spin_until(ex, lambda: len(frames) >= start + 8, 20)
        locked = frames[start:]
        wall = locked[-1][0] - locked[0][0]
        simulated = locked[-1][1] - locked[0][1]
        assert simulated == pytest.approx(0.1 * (len(locked) - 1), abs=0.011)  # a frame every 0.1 s of sim time
        assert wall >= 0.25 * (len(locked) - 1)  # ... at the actor's pace, not the wall clock's
        assert sim.pacer.waits >= 8
        answering[0] = False
        assert spin_until(ex, lambda: sim.pacer.timeouts == 1, 5)
        start = len(frames)
        spin_until(ex, lambda: False, 2.0)
        free = frames[start:]
        assert len(free) >= 10  # about 10 Hz again
        assert sim.pacer.state == "idle"
    finally:
        ex.shutdown()
        sim.close()
        sim.destroy_node()
        peer.destroy_node()
