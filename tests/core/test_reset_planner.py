"""Start-pose resets planned without ROS: sampling inside the ranges and the box, a speed-limited
path, the mux action that follows it, and the procedure's decisions (arrived, stalled, timed
out, no pose, operator go) with a simulated arm driven through the mux's own integration."""

import math
from dataclasses import replace

import numpy as np
import pytest

from hilserl_core.formats.config import ConfigError
from hilserl_core.robot import control, frames
from hilserl_core.robot.reset_planner import (
    GRIPPER_OPEN,
    GRIPPER_STAY,
    ButtonEdge,
    MotionState,
    ResetConfig,
    ResetMotion,
    ResetPhase,
    ResetProcedure,
    arm_starts,
    per_arm,
    sample_start_pose,
    segment_duration,
    twist_action_towards,
)

DOWN = frames.quat_from_euler_xyz(math.pi, 0, 0)
CFG = ResetConfig(arms=("left",), start_position_m=(0.5, 0.0, 0.25), start_rpy_rad=(math.pi, 0, 0),
                  position_noise_m=(0.03, 0.02, 0.0), orientation_noise_rad=(0, 0, 0.2), seed=3,
                  max_linear_speed_mps=0.05, max_angular_speed_radps=0.3, gripper_wait_s=0.5)


def test_sampling_stays_in_the_ranges_and_the_box():
    start = arm_starts(CFG)["left"]
    rng = np.random.default_rng(0)
    for _ in range(500):
        p, q = sample_start_pose(start, rng)
        assert np.all(np.abs(p - [0.5, 0, 0.25]) <= [0.03 + 1e-12, 0.02 + 1e-12, 1e-12])
        r = frames.quat_to_rotvec(frames.quat_multiply(frames.quat_conjugate(DOWN), q))  # about the nominal TCP axes
        assert abs(r[0]) < 1e-9 and abs(r[1]) < 1e-9 and abs(r[2]) <= 0.2 + 1e-9
    # noise that reaches past the box is clipped into it
    edge = arm_starts(replace(CFG, start_position_m=(0.74, 0.0, 0.25), position_noise_m=(0.05, 0, 0)))["left"]
    xs = [sample_start_pose(edge, rng)[0][0] for _ in range(200)]
    assert max(xs) <= 0.75 and min(xs) >= 0.69 and sum(x == 0.75 for x in xs) > 20


def test_per_arm_values_and_config_errors():
    assert [a.tolist() for a in per_arm([1, 2, 3], 2, "x")] == [[1, 2, 3], [1, 2, 3]]
    assert [a.tolist() for a in per_arm([1, 2, 3, 4, 5, 6], 2, "x")] == [[1, 2, 3], [4, 5, 6]]
    with pytest.raises(ConfigError, match="3 per arm"):
        per_arm([1, 2, 3, 4], 2, "x")
    two = arm_starts(replace(CFG, arms=("left", "right"), start_position_m=(0.5, 0.1, 0.25, 0.5, -0.1, 0.3)))
    assert np.allclose(two["right"].position, [0.5, -0.1, 0.3])
    with pytest.raises(ConfigError, match="outside the workspace box"):
        arm_starts(replace(CFG, start_position_m=(0.9, 0.0, 0.25)))
    with pytest.raises(ConfigError, match="below|<="):
        arm_starts(replace(CFG, min_position_m=(0.8, 0, 0)))


def test_path_is_speed_limited_and_ends_at_the_goal():
    box = arm_starts(CFG)["left"].box
    p0, q0 = np.array([0.4, 0.1, 0.3]), DOWN
    goal_q = frames.quat_multiply(DOWN, frames.rotvec_to_quat([0, 0, 0.6]))
    m = ResetMotion(CFG, box, p0, q0, [0.5, 0.0, 0.25], goal_q, t0_s=10.0)
    d = np.linalg.norm([0.1, -0.1, -0.05])
    assert m.path_s == pytest.approx(max(d / 0.05, 0.6 / 0.3))
    assert np.allclose(m.waypoint(10.0)[0], p0)
    prev = m.waypoint(10.0)
    for k in range(1, 60):
        wp = m.waypoint(10.0 + 0.1 * k)
        assert np.linalg.norm(wp[0] - prev[0]) <= 0.05 * 0.1 + 1e-9
        assert frames.quat_angle(wp[1], prev[1]) <= 0.3 * 0.1 + 1e-9
        prev = wp
    assert np.allclose(m.waypoint(100.0)[0], [0.5, 0, 0.25]) and frames.quat_angle(m.waypoint(100.0)[1], goal_q) < 1e-9
    # rotation-bound segment
    assert segment_duration([0, 0, 0], DOWN, [0, 0, 0.01], goal_q, 0.05, 0.3) == pytest.approx(2.0)


def test_lift_goes_straight_up_first_and_stays_in_the_box():
    c = replace(CFG, lift_m=0.1)
    box = arm_starts(c)["left"].box
    m = ResetMotion(c, box, [0.5, 0.1, 0.5], DOWN, [0.5, 0.0, 0.25], DOWN, 0.0)
    assert np.allclose(m.points[1][0], [0.5, 0.1, 0.55])  # clipped to the box top (0.55)
    wp = m.waypoint(0.5)
    assert np.allclose(wp[0][:2], [0.5, 0.1]) and wp[0][2] > 0.5


def test_twist_action_inverts_the_mux_integration():
    rng = np.random.default_rng(1)
    for _ in range(50):
        q = frames.quat_normalize(rng.normal(size=4))
        p = rng.uniform(0.3, 0.6, 3)
        a = rng.uniform(-1, 1, 6)
        tp, tq = control.integrate_twist_target(p, q, a, 0.015, 0.1, None)
        assert np.allclose(twist_action_towards(p, q, tp, tq, 0.015, 0.1), a, atol=1e-9)
    # beyond one step: scaled down, direction kept
    act = twist_action_towards([0.5, 0, 0.3], [0, 0, 0, 1], [0.6, 0.05, 0.3], [0, 0, 0, 1], 0.015, 0.1)
    assert np.allclose(act[:3], [1.0, 0.5, 0]) and np.allclose(act[3:], 0)


class FakeArm:
    """The mux (integrate_twist_target, box clip) and a controller that reaches each target in one step."""

    def __init__(self, pos, quat, box, blocked_z=None):
        self.pos, self.quat, self.box, self.blocked_z = np.array(pos, float), frames.quat_normalize(quat), box, blocked_z

    def apply(self, action):
        if action is None:
            return
        self.pos, self.quat = control.integrate_twist_target(self.pos, self.quat, action, 0.015, 0.1, self.box)
        if self.blocked_z is not None:
            self.pos[2] = max(self.pos[2], self.blocked_z)  # something under the hand


def _run(proc, arm, t0, steps, go_at=None, fresh=True):
    outs = []
    for k in range(steps):
        now = t0 + 0.1 * k
        if go_at is not None and k == go_at:
            proc.operator_go()
        out = proc.step(now, {"left": (arm.pos.copy(), arm.quat.copy()) if fresh else None})
        outs.append(out)
        if out.finished:
            break
        cmd = out.commands.get("left")
        if cmd is not None:
            arm.apply(cmd.action)
    return outs


def test_procedure_opens_moves_waits_for_go_then_done():
    proc = ResetProcedure(CFG)
    box = proc.starts["left"].box
    arm = FakeArm([0.4, 0.15, 0.35], DOWN, box)
    proc.start(0.0)
    goal = proc.goals["left"]
    outs = _run(proc, arm, 0.0, 400, go_at=None)
    assert outs[0].phase is ResetPhase.GRIPPER and outs[0].commands["left"].gripper == GRIPPER_OPEN
    assert np.allclose(outs[0].commands["left"].action, 0)  # no motion while the gripper opens
    moving = [o for o in outs if o.phase is ResetPhase.MOVING]
    assert moving and all(o.commands["left"].gripper == GRIPPER_STAY for o in moving)
    assert outs[-1].phase is ResetPhase.WAITING_GO and not outs[-1].finished
    assert np.linalg.norm(arm.pos - goal[0]) < CFG.position_tolerance_m
    assert proc.operator_go()
    out = proc.step(100.0, {"left": (arm.pos, arm.quat)})
    assert out.finished and out.phase is ResetPhase.DONE and "go" in out.message


def test_go_before_arrival_does_not_count_and_steps_are_speed_limited():
    proc = ResetProcedure(CFG)
    arm = FakeArm([0.35, 0.2, 0.4], DOWN, proc.starts["left"].box)
    proc.start(0.0)
    assert not proc.operator_go()  # not waiting yet
    prev, steps = arm.pos.copy(), []
    for k in range(600):
        out = proc.step(0.1 * k, {"left": (arm.pos.copy(), arm.quat.copy())})
        if out.phase is ResetPhase.WAITING_GO:
            break
        if k == 20:
            proc.operator_go()  # while moving: ignored
        arm.apply(out.commands["left"].action)
        steps.append(np.linalg.norm(arm.pos - prev))
        prev = arm.pos.copy()
    assert out.phase is ResetPhase.WAITING_GO
    assert max(steps) <= 0.05 * 0.1 * 1.5  # the path's speed limit (one step of lag at most)
    assert not proc.step(0.1 * k + 0.1, {"left": (arm.pos, arm.quat)}).finished


def test_no_wait_for_operator_finishes_on_arrival():
    proc = ResetProcedure(replace(CFG, wait_for_operator=False, gripper="keep"))
    arm = FakeArm([0.45, 0.0, 0.3], DOWN, proc.starts["left"].box)
    proc.start(0.0)
    outs = _run(proc, arm, 0.0, 400)
    assert outs[0].commands["left"].gripper == GRIPPER_STAY  # keep: the gripper is left alone
    assert outs[-1].finished and outs[-1].phase is ResetPhase.DONE


def test_blocked_arm_is_reported_unreachable():
    c = replace(CFG, stall_s=1.0, start_position_m=(0.5, 0.0, 0.1), position_noise_m=(0, 0, 0))
    proc = ResetProcedure(c)
    arm = FakeArm([0.5, 0.0, 0.3], DOWN, proc.starts["left"].box, blocked_z=0.2)
    proc.start(0.0)
    outs = _run(proc, arm, 0.0, 500)
    last = outs[-1]
    assert last.finished and last.phase is ResetPhase.FAILED and "unreachable" in last.message
    assert all(np.allclose(cmd.action, 0) for cmd in last.commands.values())


def test_timeout_without_measured_pose_is_a_failure():
    proc = ResetProcedure(replace(CFG, motion_timeout_s=2.0))
    proc.start(0.0)
    out = None
    for k in range(40):
        out = proc.step(0.1 * k, {"left": None})
        if out.finished:
            break
    assert out.finished and out.phase is ResetPhase.FAILED and "no fresh current_pose" in out.message


def test_motion_timeout_while_moving_slowly():
    c = replace(CFG, motion_timeout_s=3.0, max_linear_speed_mps=0.01, stall_s=60.0)
    proc = ResetProcedure(c)
    arm = FakeArm([0.3, 0.3, 0.4], DOWN, proc.starts["left"].box)
    proc.start(0.0)
    outs = _run(proc, arm, 0.0, 100)
    assert outs[-1].phase is ResetPhase.FAILED and "timed out" in outs[-1].message


def test_operator_timeout_is_a_failure_and_state_machine_restarts():
    proc = ResetProcedure(replace(CFG, operator_timeout_s=1.0))
    arm = FakeArm([0.5, 0.0, 0.25], DOWN, proc.starts["left"].box)
    proc.start(0.0)
    outs = _run(proc, arm, 0.0, 400)
    assert outs[-1].phase is ResetPhase.FAILED and "no operator go" in outs[-1].message
    assert not proc.busy
    proc.start(100.0)  # a new request: new sample, gripper first again
    assert proc.busy and proc.phase is ResetPhase.GRIPPER and proc.count == 2


def test_anchor_mode_publishes_waypoints_and_zero_actions():
    proc = ResetProcedure(replace(CFG, via="anchor", gripper_wait_s=0.0))
    proc.start(0.0)
    m = {"left": (np.array([0.45, 0.0, 0.3]), DOWN)}
    proc.step(0.0, m)
    out = proc.step(0.1, m)
    cmd = out.commands["left"]
    assert out.phase is ResetPhase.MOVING and cmd.waypoint is not None and np.allclose(cmd.action, 0)


def test_motion_state_after_decision_is_sticky():
    box = arm_starts(CFG)["left"].box
    m = ResetMotion(replace(CFG, settle_s=0.0), box, [0.5, 0, 0.25], DOWN, [0.5, 0, 0.25], DOWN, 0.0)
    assert m.update(0.0, (np.array([0.5, 0, 0.25]), DOWN)) is MotionState.ARRIVED
    assert m.update(100.0, None) is MotionState.ARRIVED


def test_button_edge():
    e = ButtonEdge(2)
    assert not e.update([0, 0])
    assert e.update([0, 0, 1]) and not e.update([0, 0, 1])
    assert not e.update([0, 0, 0]) and e.update([1, 1, 1])
