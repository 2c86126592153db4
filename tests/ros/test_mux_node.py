"""The intervention mux as a real node: policy -> target, operator override,
executed-action report, live parameter, no sharing of its target topics (it stops
publishing, stays up, and resumes), diagnostics that recover, a broken measured
pose, a stale observation stamp and a reset that moved the arm."""

import numpy as np
import pytest
import rclpy
from geometry_msgs.msg import PoseStamped, Twist, WrenchStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from sensor_msgs.msg import Joy
from std_msgs.msg import Float64

from hilserl_core.formats import msgconv
from hilserl_core.robot import frames
from hilserl_core.robot.intervention import Source
from hilserl_interfaces import actions, qos
from hilserl_teleop.mux_node import MuxNode

POS = np.array([0.5, 0.0, 0.3])
QUAT = frames.quat_from_euler_xyz(np.pi, 0, 0)


@pytest.fixture
def rig(ros_context):
    yield from _rig(ros_context)


def _rig(ros_context, parameters=()):
    mux = MuxNode(context=ros_context, namespace="/left", parameter_overrides=list(parameters))
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


def _publish_pose(pubs, pos=POS, quat=QUAT):
    msg = PoseStamped()
    msgconv.fill_pose(msg.pose, pos, quat)
    pubs["pose"].publish(msg)


def _action(mux, axes, gripper, age_s=0.0):
    """A policy action stamped like the actor's: the observation's time on the node clock."""
    now = mux.get_clock().now().nanoseconds * 1e-9
    return actions.to_joy(actions.ActionMsg(np.array(axes, dtype=float), gripper, stamp_s=now - age_s))


def _executed(got, source):
    return [a for a in (actions.from_joy(m) for m in got["executed"]) if a.source == source]


def test_policy_then_operator(rig, spin_until):
    mux, peer, ex, got, pubs = rig
    assert spin_until(ex, lambda: (_publish_pose(pubs), mux._pose is not None)[1], 10)

    sent = []

    def policy_executed():
        sent.append(_action(mux, [1.0, 0, 0, 0, 0, 0], 2))
        pubs["action"].publish(sent[-1])
        return bool(_executed(got, Source.POLICY))

    assert spin_until(ex, policy_executed, 10)
    ex_msg = _executed(got, Source.POLICY)[0]
    assert ex_msg.stamp_s in [actions.from_joy(m).stamp_s for m in sent]  # the observation stamp comes back
    assert ex_msg.gripper == 2 and np.allclose(ex_msg.action, [1, 0, 0, 0, 0, 0])
    assert any(np.allclose(msgconv.pose_to_arrays(t.pose)[0], POS + [0.015, 0, 0]) for t in got["target"])
    assert spin_until(ex, lambda: bool(got["gripper"]), 5) and got["gripper"][-1].data == 1.0

    # operator pushes up in base frame: next policy step is overridden and reported as operator
    twist = Twist()
    twist.linear.z = 0.6

    def operator_executed():
        pubs["twist"].publish(twist)
        pubs["action"].publish(_action(mux, [1.0, 0, 0, 0, 0, 0], 1))
        return any(actions.from_joy(m).source == Source.OPERATOR for m in got["executed"])

    assert spin_until(ex, operator_executed, 10)
    op = [actions.from_joy(m) for m in got["executed"] if actions.from_joy(m).source == Source.OPERATOR][-1]
    assert np.allclose(op.action, [0, 0, -0.6, 0, 0, 0], atol=1e-9)  # base +z = EE -z (hand down)

    # live parameter through the parameter services reaches the mux logic
    mux.set_parameters([Parameter("mux.speed_scale", value=0.5)])
    assert mux.mux.config.speed_scale == 0.5
    res = mux.set_parameters([Parameter("mux.speed_scale", value=50.0)])[0]
    assert not res.successful and "out of range" in res.reason and mux.mux.config.speed_scale == 0.5


@pytest.mark.parametrize("mode", ["twist", "wrench"])
@pytest.mark.parametrize("topic,msg_type", [("target_pose", PoseStamped), ("target_wrench", WrenchStamped)])
def test_a_second_publisher_on_either_target_topic_stops_the_mux_without_crashing(ros_context, spin_until, mode, topic, msg_type):
    """In wrench mode the simulator still follows target_pose: both topics are the mux's alone, in both modes.
    With a rogue publisher the mux stays up, says ERROR naming it, publishes nothing (no target, no
    mux/executed); when the rogue is gone it is OK again and publishes."""
    import time

    mux = MuxNode(context=ros_context, namespace="/left", parameter_overrides=[Parameter("mux.mode", value=mode)])
    peer = rclpy.create_node("robot", namespace="/left", context=ros_context)
    rogue = rclpy.create_node("rogue", namespace="/left", context=ros_context)
    ex = SingleThreadedExecutor(context=ros_context)
    for n in (mux, peer, rogue):
        ex.add_node(n)
    got = {"executed": [], "target": [], "wrench": []}
    peer.create_subscription(Joy, "mux/executed", got["executed"].append, qos.EVENTS)
    peer.create_subscription(PoseStamped, "target_pose", got["target"].append, qos.COMMAND)
    peer.create_subscription(WrenchStamped, "target_wrench", got["wrench"].append, qos.COMMAND)
    pose_pub = peer.create_publisher(PoseStamped, "current_pose", qos.COMMAND)
    out = got["target"] if mode == "twist" else got["wrench"]
    try:
        assert mux.mux.config.mode == mode
        assert spin_until(ex, lambda: (_publish_pose({"pose": pose_pub}), bool(out) and bool(got["executed"]))[1], 10)
        rogue_pub = rogue.create_publisher(msg_type, topic, qos.COMMAND)
        assert spin_until(ex, lambda: (_publish_pose({"pose": pose_pub}), mux.diag.level("targets") == 2)[1], 10)
        message = mux.diag._statuses["targets"].message
        assert f"/left/{topic}" in message and "/left/rogue" in message and "publishes nothing" in message
        spin_until(ex, lambda: _publish_pose({"pose": pose_pub}) and False, 0.3)  # what was in flight arrives
        for v in got.values():
            v.clear()
        t0 = time.monotonic()
        spin_until(ex, lambda: (_publish_pose({"pose": pose_pub}), time.monotonic() - t0 > 1.0)[1], 5)
        assert not got["executed"] and not got["target"] and not got["wrench"], {k: len(v) for k, v in got.items()}
        assert mux.diag.level("targets") == 2
        # the rogue leaves: OK again, publishing again
        rogue.destroy_publisher(rogue_pub)
        assert spin_until(ex, lambda: (_publish_pose({"pose": pose_pub}), mux.diag.level("targets") == 0)[1], 10)
        assert "again" in mux.diag._statuses["targets"].message
        assert spin_until(ex, lambda: (_publish_pose({"pose": pose_pub}), bool(out) and bool(got["executed"]))[1], 10)
        if mode == "twist":  # the hold re-anchored at the measured pose
            assert np.allclose(msgconv.pose_to_arrays(got["target"][-1].pose)[0], POS)
    finally:
        ex.shutdown()
        for n in (mux, peer, rogue):
            n.destroy_node()


def test_input_and_rejection_diagnostics_return_to_ok(ros_context, spin_until):
    """"no current_pose yet" -> OK once it comes; NaN/Inf/huge operator twists and bad policy actions are
    counted and WARN naming the source and the count, OK again after rejection_quiet_s without one."""
    mux = MuxNode(context=ros_context, namespace="/left",
                  parameter_overrides=[Parameter("mux.rejection_quiet_s", value=1.0), Parameter("pose_timeout_s", value=0.5)])
    peer = rclpy.create_node("robot_and_operator", namespace="/left", context=ros_context)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(mux)
    ex.add_node(peer)
    pubs = {
        "pose": peer.create_publisher(PoseStamped, "current_pose", qos.COMMAND),
        "action": peer.create_publisher(Joy, "policy/action", qos.COMMAND),
        "twist": peer.create_publisher(Twist, "spacenav/twist", qos.COMMAND),
    }
    status = mux.diag._statuses
    try:
        assert spin_until(ex, lambda: mux.diag.level("inputs") == 1, 5)
        assert "no current_pose yet" in status["inputs"].message
        assert spin_until(ex, lambda: (_publish_pose(pubs), mux.diag.level("inputs") == 0)[1], 10)
        assert spin_until(ex, lambda: mux.diag.level("inputs") == 1, 5)  # the pose stops: stale
        assert "old" in status["inputs"].message
        assert spin_until(ex, lambda: (_publish_pose(pubs), mux.diag.level("inputs") == 0)[1], 10)
        assert mux.diag.level("operator") == 0 and mux.diag.level("policy") == 0

        bad_twists = []
        for values in ((np.nan, 0, 0), (0, np.inf, 0), (1e9, 0, 0)):
            t = Twist()
            t.linear.x, t.linear.y, t.linear.z = values
            bad_twists.append(t)

        def send_bad():  # the next one once the last one was handled (depth 1: a burst would keep only the newest)
            n = mux.mux.rejected_operator
            if n < len(bad_twists):
                pubs["twist"].publish(bad_twists[n])
            return n >= 3

        assert spin_until(ex, send_bad, 10), mux.mux.rejections.last_reason
        n_bad = mux.mux.rejected_operator  # 3, or more when a resent copy was handled too: each one counted
        assert n_bad >= 3
        assert spin_until(ex, lambda: mux.diag.level("operator") == 1, 2)
        text = status["operator"].message
        assert "operator input" in text and f"{n_bad} in all" in text and "input_limit" in text
        assert {kv.key: kv.value for kv in status["operator"].values}["rejected"] == str(n_bad)
        pubs["action"].publish(_action(mux, [np.inf, 0, 0, 0, 0, 0], 1))
        assert spin_until(ex, lambda: mux.diag.level("policy") == 1, 5)
        assert "policy action" in status["policy"].message and "1 in all" in status["policy"].message
        # quiet for rejection_quiet_s: both back to OK, the totals still shown
        assert spin_until(ex, lambda: (_publish_pose(pubs), mux.diag.level("operator") == 0 and mux.diag.level("policy") == 0)[1], 5)
        assert f"{n_bad} in all" in status["operator"].message and "1 in all" in status["policy"].message
    finally:
        ex.shutdown()
        mux.destroy_node()
        peer.destroy_node()


def test_broken_measured_pose_keeps_the_node_up_and_publishes_no_broken_target(rig, spin_until):
    """NaN position, NaN or zero quaternion: no NaN target, no exception out of the callbacks; the
    first valid pose then anchors the hold."""
    mux, peer, ex, got, pubs = rig
    for pos, quat, words in ((np.array([np.nan, 0, 0.3]), QUAT, "NaN"),
                             (POS, np.array([np.nan, 0, 0, 1.0]), "NaN"),
                             (POS, np.zeros(4), "zero")):
        mux._pose = None
        got["executed"].clear()
        # timer steps (no policy), then steps driven by policy actions, meet the broken pose
        assert spin_until(ex, lambda: (_publish_pose(pubs, pos, quat), len(got["executed"]) >= 3)[1], 10)
        assert spin_until(ex, lambda: (_publish_pose(pubs, pos, quat), pubs["action"].publish(_action(mux, [0.5, 0, 0, 0, 0, 0], 1)),
                                       len(got["executed"]) >= 8)[2], 10)
        assert not got["target"], [msgconv.pose_to_arrays(t.pose) for t in got["target"]]
        assert all(actions.from_joy(m).source == Source.HOLD for m in got["executed"])
        message = mux.diag._statuses["source"].message
        assert words in message and "publishing none" in message
    assert spin_until(ex, lambda: (_publish_pose(pubs), bool(got["target"]))[1], 10)
    pos, quat = msgconv.pose_to_arrays(got["target"][-1].pose)
    assert np.all(np.isfinite(pos)) and np.all(np.isfinite(quat))


def test_an_action_from_an_old_observation_is_held(rig, spin_until):
    """policy_timeout_s counts from the observation stamp the action carries, not from its arrival."""
    mux, peer, ex, got, pubs = rig
    assert spin_until(ex, lambda: (_publish_pose(pubs), mux._pose is not None)[1], 10)
    old = _action(mux, [1.0, 0, 0, 0, 0, 0], 2, age_s=1.0)
    stamp = actions.from_joy(old).stamp_s
    assert spin_until(ex, lambda: (pubs["action"].publish(old), any(
        actions.from_joy(m).stamp_s == stamp for m in got["executed"]))[1], 10)
    answers = [actions.from_joy(m) for m in got["executed"] if actions.from_joy(m).stamp_s == stamp]
    assert all(a.source == Source.HOLD and np.allclose(a.action, 0) for a in answers)
    assert "observation" in mux.diag._statuses["source"].message
    spin_until(ex, lambda: False, 0.5)
    assert not got["gripper"]  # the close was not executed, and a hold commands no gripper


def test_hold_follows_a_reset_instead_of_dragging_the_arm_back(rig, spin_until):
    """The actor stops at an episode end; the reset puts the arm 20 cm away: the mux holds it there."""
    mux, peer, ex, got, pubs = rig
    assert spin_until(ex, lambda: (_publish_pose(pubs), pubs["action"].publish(_action(mux, [0, 0, 1.0, 0, 0, 0], 1)),
                                   bool(_executed(got, Source.POLICY)))[2], 10)
    import time

    t0 = time.monotonic()
    spin_until(ex, lambda: (_publish_pose(pubs), time.monotonic() - t0 > 0.5)[1], 5)  # actor stopped: hold
    held = msgconv.pose_to_arrays(got["target"][-1].pose)[0]
    assert np.allclose(held, POS + [0, 0, -0.015])  # EE +z is base -z for a hand pointing down
    start = POS + np.array([0.1, -0.1, -0.12])
    got["target"].clear()
    assert spin_until(ex, lambda: (_publish_pose(pubs, start), len(got["target"]) >= 3)[1], 10)
    for t in got["target"][-2:]:
        assert np.allclose(msgconv.pose_to_arrays(t.pose)[0], start)


def test_operator_only_control_runs_at_the_control_rate(rig, spin_until):
    """Teleoperation without a policy (demos): the timer drives a step every period, not every other."""
    import time

    mux, peer, ex, got, pubs = rig
    assert spin_until(ex, lambda: (_publish_pose(pubs), mux._pose is not None)[1], 10)
    # Count the control timer's ticks: the check is "a step on every tick", whatever the host's speed.
    control_timer = next(t for t in mux.timers if abs(t.timer_period_ns * 1e-9 - 1.0 / mux.conf.value.mux.control_rate_hz) < 1e-9)
    ticks, tick = [0], control_timer.callback
    control_timer.callback = lambda: (ticks.__setitem__(0, ticks[0] + 1), tick())
    twist = Twist()
    twist.linear.x = 0.5
    got["executed"].clear()
    ticks[0] = 0
    t0 = time.monotonic()
    spin_until(ex, lambda: (pubs["twist"].publish(twist), _publish_pose(pubs), time.monotonic() - t0 > 2.0)[2], 5)
    window_ticks = ticks[0]
    spin_until(ex, lambda: False, 0.2)  # the window's last messages arrive
    n = sum(1 for m in got["executed"] if actions.from_joy(m).source == Source.OPERATOR)
    assert window_ticks >= 5, f"the control timer ticked {window_ticks} times in 2 s"
    assert n >= window_ticks - 2, f"{n} operator steps in {window_ticks} control ticks"  # every-other-tick stepping gave half


def test_in_lockstep_the_mux_steps_once_per_policy_action_with_the_operator_sample_of_its_frame(ros_context, spin_until):
    """lockstep: the simulator's world stands still until the actions for its frame come. The mux
    steps on policy actions only (a timer step meanwhile executed the operator's twist a second
    time), and the operator's sample for the frame stays current however long the actor took
    (after 0.25 s it was zeroed, so an operator carrying a handover stalled while the actor
    waited for its learner)."""
    rig = _rig(ros_context, [Parameter("mux.lockstep", value=True)])
    mux, peer, ex, got, pubs = next(rig)
    try:
        assert spin_until(ex, lambda: (_publish_pose(pubs), pubs["action"].publish(_action(mux, [0, 0, 0.1, 0, 0, 0], 1)),
                                       bool(_executed(got, Source.POLICY)))[2], 10)  # the policy acts on a frame
        twist = Twist()
        twist.linear.x = 0.5
        pubs["twist"].publish(twist)  # the operator's sample for the next frame
        spin_until(ex, lambda: False, 0.05)
        got["executed"].clear()
        import time

        t0 = time.monotonic()
        spin_until(ex, lambda: (_publish_pose(pubs), time.monotonic() - t0 > 1.0)[1], 5)  # the actor takes 1 s
        assert got["executed"] == []  # no step while the world stands still
        action = _action(mux, [0, 0, 1.0, 0, 0, 0], 1, age_s=1.0)
        stamp = actions.from_joy(action).stamp_s
        pubs["action"].publish(action)
        assert spin_until(ex, lambda: bool(got["executed"]), 10)
        answer = actions.from_joy(got["executed"][0])
        assert answer.stamp_s == stamp and answer.source == Source.OPERATOR and answer.action[0] > 0.4, answer
    finally:
        next(rig, None)
