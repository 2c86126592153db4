"""The gripper bridge's logic: closure -> move/grasp goal, debouncing (one goal per change, none
while one is active, the newest pending wins), failures (rejected, failed result, timeout) with
retries and diagnostics, and the joint-state forwarding."""

import math

import pytest

from hilserl_core.robot.gripper_bridge import (
    ERROR,
    GRASP,
    MOVE,
    OK,
    WARN,
    GripperBridge,
    GripperBridgeConfig,
    forward_joint_state,
)

CFG = GripperBridgeConfig(max_width_m=0.08, speed_mps=0.1, force_n=40.0, grasp_width_m=0.0, epsilon_inner_m=0.005,
                          epsilon_outer_m=0.08, max_retries=1, retry_delay_s=0.5, goal_timeout_s=5.0)


def test_command_to_goal():
    b = GripperBridge(CFG)
    g = b.goal_for(1.0)
    assert (g.kind, g.width_m, g.speed_mps, g.force_n, g.epsilon_inner_m, g.epsilon_outer_m) == (GRASP, 0.0, 0.1, 40.0, 0.005, 0.08)
    g = b.goal_for(0.0)
    assert (g.kind, g.width_m, g.speed_mps) == (MOVE, 0.08, 0.1)
    assert b.goal_for(0.25).kind == MOVE and math.isclose(b.goal_for(0.25).width_m, 0.06)
    assert b.goal_for(0.5).kind == GRASP  # close_threshold inclusive
    assert GripperBridge(GripperBridgeConfig(close_threshold=0.9)).goal_for(0.6).kind == MOVE


def test_repeated_command_sends_one_goal():
    b = GripperBridge(CFG)
    sent = []
    for k in range(20):  # the mux sends the closure every step
        b.on_command(1.0, k * 0.1)
        g = b.poll(k * 0.1, server_ready=True)
        if g:
            sent.append(g)
        if k == 3:
            b.on_result(sent[0].seq, True, "", k * 0.1)
    assert len(sent) == 1 and sent[0].kind == GRASP and sent[0].seq == 1
    assert b.status()[0] == OK and b.succeeded == 1


def test_no_goal_while_active_newest_pending_wins():
    b = GripperBridge(CFG)
    b.on_command(1.0, 0.0)
    grasp = b.poll(0.0, True)
    for x in (0.0, 0.3, 0.0):  # changes while the grasp runs: nothing goes out
        b.on_command(x, 0.1)
        assert b.poll(0.1, True) is None
    assert b.pending.kind == MOVE and math.isclose(b.pending.width_m, 0.08)
    b.on_result(grasp.seq, True, "", 0.5)
    move = b.poll(0.5, True)
    assert move.kind == MOVE and math.isclose(move.width_m, 0.08) and move.seq == 2
    assert b.poll(0.6, True) is None
    # back to the active goal's own command while it runs: nothing pending afterwards
    b.on_command(1.0, 0.7)
    b.on_command(0.0, 0.8)
    assert b.pending is None
    b.on_result(move.seq, True, "", 1.0)
    assert b.poll(1.0, True) is None and b.sent == 2


def test_small_width_changes_are_debounced():
    b = GripperBridge(GripperBridgeConfig(width_tolerance_m=0.002))
    b.on_command(0.0, 0)
    g = b.poll(0, True)
    b.on_result(g.seq, True, "", 0.1)
    b.on_command(0.01, 0.2)  # 0.8 mm narrower: the same goal
    assert b.poll(0.2, True) is None
    b.on_command(0.1, 0.3)  # 8 mm: a new goal
    assert b.poll(0.3, True).width_m == pytest.approx(0.072)


def test_failed_result_is_retried_then_given_up_and_reported():
    b = GripperBridge(CFG)
    b.on_command(1.0, 0.0)
    g1 = b.poll(0.0, True)
    b.on_result(g1.seq, False, "libfranka: grasp failed", 1.0)
    level, text, values = b.status()
    assert level == ERROR and "grasp failed" in text and "trying again" in text and values["failed"] == 1
    assert b.poll(1.2, True) is None  # retry_delay_s
    g2 = b.poll(1.6, True)
    assert g2 is not None and g2.kind == GRASP and g2.seq == 2
    b.on_result(g2.seq, False, "libfranka: grasp failed", 2.0)
    assert b.poll(10.0, True) is None  # max_retries 1: given up
    level, text, _ = b.status()
    assert level == ERROR and "gave up" in text
    b.on_command(1.0, 11.0)  # the same command again: still given up
    assert b.poll(11.0, True) is None
    b.on_command(0.0, 12.0)  # a changed command: a new goal, and a success clears the error
    g3 = b.poll(12.0, True)
    assert g3.kind == MOVE
    b.on_result(g3.seq, True, "", 12.5)
    assert b.status()[0] == OK and b.failed == 2


def test_rejected_goal_and_timeout_are_failures():
    b = GripperBridge(GripperBridgeConfig(max_retries=0, goal_timeout_s=2.0))
    b.on_command(0.0, 0.0)
    g = b.poll(0.0, True)
    b.on_rejected(g.seq, "server busy", 0.1)
    assert b.status()[0] == ERROR and "rejected: server busy" in b.status()[1]
    b.on_command(1.0, 1.0)
    g = b.poll(1.0, True)
    assert b.check_timeout(2.5) is None
    timed_out = b.check_timeout(3.1)
    assert timed_out == g and b.active is None and "no result after" in b.status()[1]
    b.on_result(g.seq, True, "", 3.5)  # a late result of the cancelled goal: ignored
    assert b.status()[0] == ERROR and b.succeeded == 0


def test_server_not_ready_waits_and_warns():
    b = GripperBridge(CFG)
    b.on_command(1.0, 0.0)
    assert b.poll(0.0, server_ready=False) is None
    level, text, _ = b.status()
    assert level == WARN and "not available" in text
    g = b.poll(0.5, server_ready=True)
    assert g.kind == GRASP and b.status()[0] == OK


def test_bad_commands_are_rejected_and_counted():
    b = GripperBridge(CFG)
    for bad in (float("nan"), float("inf"), -0.5, 1.5, "x"):
        assert not b.on_command(bad, 0.0)
    assert b.rejected_commands == 5 and b.poll(0.0, True) is None
    assert b.status()[0] == WARN and "rejected gripper/command" in b.status()[1]


def test_forward_joint_state():
    names, pos, vel, eff = forward_joint_state("left", ["fr3_finger_joint2", "fr3_finger_joint1"], [0.03, 0.02], [0.0, 0.1], [])
    assert names == ["left_finger_joint1", "left_finger_joint2"]
    assert pos == [0.02, 0.03] and vel == [0.1, 0.0] and eff == [0.0, 0.0]
    with pytest.raises(ValueError):
        forward_joint_state("left", ["fr3_finger_joint1"], [0.01], [], [])
    with pytest.raises(ValueError):
        forward_joint_state("left", ["a_finger_joint1", "a_finger_joint2"], [float("nan"), 0.0], [], [])
    with pytest.raises(ValueError):
        forward_joint_state("left", ["a_finger_joint1", "a_finger_joint2"], [0.2, 0.0], [], [])
