"""The intervention mux state machine: who acts, what is executed, what is held."""

import numpy as np
import pytest

from hilserl_core.formats import config as cfg
from hilserl_core.robot import frames
from hilserl_core.robot.intervention import GRIPPER_CLOSE, GRIPPER_OPEN, GRIPPER_STAY, InterventionMux, MuxConfig, Source

POS = np.array([0.5, 0.0, 0.3])
DOWN = frames.quat_from_euler_xyz(np.pi, 0.0, 0.0)  # gripper pointing down: EE axes differ from base axes


def make(**kw):
    return InterventionMux(cfg.replace(MuxConfig(), **kw) if kw else MuxConfig())


def test_policy_action_is_executed_once_in_the_ee_frame():
    mux = make()
    assert mux.on_policy([1, 0, 0.5, 0, 0, 0], GRIPPER_CLOSE, stamp_s=9.95, now_s=10.0)
    d = mux.step(10.01, POS, DOWN)
    assert d.source == Source.POLICY and d.policy_stamp_s == 9.95 and d.gripper_action == GRIPPER_CLOSE
    assert d.gripper_closure == 1.0
    # EE x = base x; EE z = -base z when pointing down: +0.5 EE z moves the hand DOWN in base
    assert np.allclose(d.target_pos, POS + [0.015, 0.0, -0.0075])
    # a second step without a new action does not re-execute it
    d2 = mux.step(10.05, POS, DOWN)
    assert d2.source == Source.HOLD and np.allclose(d2.target_pos, d.target_pos)
    assert d2.gripper_closure is None  # a command per open/close event; in between the gripper keeps it


def test_stale_and_non_finite_policy_actions_are_held_with_a_reason():
    mux = make(policy_timeout_s=0.2)
    assert not mux.on_policy([np.nan, 0, 0, 0, 0, 0], GRIPPER_STAY, 0.0, 0.0)
    d = mux.step(0.01, POS, DOWN)
    assert d.source == Source.HOLD and "needs 6 finite numbers" in d.reason
    assert np.allclose(d.target_pos, POS) and np.allclose(d.executed_action, 0)
    mux.on_policy([1, 0, 0, 0, 0, 0], GRIPPER_STAY, 1.0, now_s=1.0)
    d = mux.step(1.5, POS + 0.01, DOWN)
    assert d.source == Source.HOLD and "stale" in d.reason and np.allclose(d.target_pos, POS)
    assert not mux.on_policy([0, 0, 0, 0, 0, 0], 7, 2.0, 2.0)


def test_operator_overrides_in_base_frame_with_dead_zone_gain_and_hold():
    mux = make(speed_scale=2.0, dead_zone=0.1, intervention_hold_s=0.3)
    mux.on_operator([0.0, 0.0, 0.4, 0.05, 0.0, 0.0], [0, 0], now_s=5.0)  # push up (base +z); tiny roll inside dead zone
    mux.on_policy([1, 1, 1, 0, 0, 0], GRIPPER_STAY, 4.99, 5.0)
    d = mux.step(5.0, POS, DOWN)
    assert d.source == Source.OPERATOR and d.policy_stamp_s == 4.99  # answers the policy step it replaced
    # base +z is EE -z for a downward hand; gain 2, dead-zoned roll removed
    assert np.allclose(d.executed_action, [0, 0, -0.8, 0, 0, 0], atol=1e-12)
    assert np.allclose(d.target_pos, POS + [0, 0, 0.8 * 0.015])
    # released (inside dead zone): operator keeps control for the hold time, then the policy is back
    mux.on_operator([0.02, 0, 0, 0, 0, 0], [0, 0], now_s=5.1)
    mux.on_policy([1, 0, 0, 0, 0, 0], GRIPPER_STAY, 5.1, 5.1)
    assert mux.step(5.15, POS, DOWN).source == Source.OPERATOR
    mux.on_policy([1, 0, 0, 0, 0, 0], GRIPPER_STAY, 5.4, 5.4)
    assert mux.step(5.41, POS, DOWN).source == Source.POLICY


def test_operator_buttons_are_edge_triggered_gripper_commands():
    mux = make()
    mux.on_operator(np.zeros(6), [1, 0], now_s=0.0)
    d = mux.step(0.01, POS, DOWN)
    assert d.source == Source.OPERATOR and d.gripper_action == GRIPPER_CLOSE and d.gripper_closure == 1.0
    mux.on_operator(np.zeros(6), [1, 0], now_s=0.05)  # still held: no new event
    assert mux.step(0.06, POS, DOWN).gripper_action == GRIPPER_STAY
    mux.on_operator(np.zeros(6), [0, 1], now_s=0.1)
    d = mux.step(0.11, POS, DOWN)
    assert d.gripper_action == GRIPPER_OPEN and d.gripper_closure == 0.0


def test_targets_are_clipped_to_the_workspace_box():
    mux = make()
    edge = np.array([0.749, 0.0, 0.3])
    mux.on_policy([0, 0, 0, 0, 0, 0], GRIPPER_STAY, 0, 0)
    mux.on_policy([1, 0, 0, 0, 0, 0], GRIPPER_STAY, 0, 0)
    d = mux.step(0.0, edge, frames.quat_from_euler_xyz(0, 0, 0))
    assert d.target_pos[0] == pytest.approx(0.75)


def test_wrench_mode_scales_and_holds_zero():
    mux = make(mode="wrench", max_force_n=10.0, max_torque_nm=1.0)
    mux.on_policy([0.5, 0, -1, 0, 0.2, 0], GRIPPER_STAY, 0, 0)
    d = mux.step(0.01, POS, DOWN)
    assert np.allclose(d.wrench_ee, [5, 0, -10, 0, 0.2, 0]) and d.target_pos is None
    assert np.allclose(mux.step(0.02, POS, DOWN).wrench_ee, 0)


def test_live_config_change_and_no_gripper_arm():
    mux = InterventionMux(MuxConfig(), has_gripper=False)
    mux.set_config(cfg.replace(MuxConfig(), speed_scale=0.5))
    mux.on_operator([0, 0, 0, 0, 0, 1.0], [1, 0], now_s=0.0)
    d = mux.step(0.0, POS, frames.quat_from_euler_xyz(0, 0, 0))
    assert np.allclose(d.executed_action, [0, 0, 0, 0, 0, 0.5])
    assert d.gripper_action == -1 and d.gripper_closure is None


def test_broken_measured_pose_holds_the_last_target():
    mux = make()
    mux.on_policy([0.2, 0, 0, 0, 0, 0], GRIPPER_STAY, 0, 0)
    first = mux.step(0.0, POS, DOWN)
    mux.on_policy([0.2, 0, 0, 0, 0, 0], GRIPPER_STAY, 0.1, 0.1)
    d = mux.step(0.1, np.array([np.nan, 0, 0]), DOWN)
    assert d.source == Source.HOLD and "NaN" in d.reason and np.allclose(d.target_pos, first.target_pos)


def test_nan_measured_position_without_a_target_publishes_nothing():
    """Nothing held yet and a NaN position: no target at all (np.clip would pass the NaN on)."""
    mux = make()
    d = mux.step(0.0, np.array([np.nan, 0.0, 0.3]), DOWN)
    assert d.source == Source.HOLD and d.target_pos is None and d.target_quat is None
    assert "NaN" in d.reason and "publishing none" in d.reason
    # the first usable pose anchors the hold there
    d = mux.step(0.1, POS, DOWN)
    assert d.source == Source.HOLD and np.allclose(d.target_pos, POS) and np.all(np.isfinite(d.target_quat))


@pytest.mark.parametrize("quat", [np.zeros(4), np.array([np.nan, 0.0, 0.0, 1.0])], ids=["zero", "nan"])
def test_broken_measured_quaternion_holds_on_every_path_and_never_raises(quat):
    # no target yet: hold, policy and operator (base frame) steps publish nothing, with the reason
    for feed in (lambda m: None,
                 lambda m: m.on_policy([0.1, 0, 0, 0, 0, 0], GRIPPER_CLOSE, 0.0, 0.0),
                 lambda m: m.on_operator([0.5, 0, 0, 0, 0, 0], [1, 0], 0.0)):
        mux = make()
        feed(mux)
        d = mux.step(0.01, POS, quat)
        assert d.source == Source.HOLD and d.target_pos is None and "quat" in d.reason
        assert np.allclose(d.executed_action, 0) and d.gripper_action == GRIPPER_STAY and d.gripper_closure is None
    # with a target: the last valid target is held
    mux = make()
    mux.on_policy([0.2, 0, 0, 0, 0, 0], GRIPPER_STAY, 0.0, 0.0)
    first = mux.step(0.0, POS, DOWN)
    mux.on_policy([0.2, 0, 0, 0, 0, 0], GRIPPER_STAY, 0.1, 0.1)
    d = mux.step(0.1, POS, quat)
    assert d.source == Source.HOLD and d.policy_stamp_s == 0.1 and "holding the last target" in d.reason
    assert np.allclose(d.target_pos, first.target_pos) and np.allclose(d.target_quat, first.target_quat)
    # wrench mode with the operator in base frame: zero wrench
    mux = make(mode="wrench")
    mux.on_operator([0.5, 0, 0, 0, 0, 0], [0, 0], 0.0)
    d = mux.step(0.01, POS, quat)
    assert d.source == Source.HOLD and np.allclose(d.wrench_ee, 0)


def test_hold_re_anchors_when_the_arm_is_moved_far_from_the_held_target():
    """A reset (or a person) moved the arm: holding the old target would drag it back."""
    mux = make(hold_reanchor_distance_m=0.05, hold_reanchor_angle_rad=0.25)
    mux.on_policy([0, 0, 1, 0, 0, 0], GRIPPER_STAY, 0.0, 0.0)
    held = mux.step(0.0, POS, DOWN).target_pos
    # stale input, arm near the target (tracking error): the target stays where it is
    d = mux.step(0.1, POS + [0.01, 0.0, 0.02], DOWN)
    assert d.source == Source.HOLD and np.allclose(d.target_pos, held) and "re-anchored" not in d.reason
    # reset: the arm is now 20 cm away -> the hold moves to where the arm is
    start = np.array([0.6, -0.1, 0.2])
    d = mux.step(0.2, start, DOWN)
    assert np.allclose(d.target_pos, start) and "re-anchored" in d.reason and "reset" in d.reason
    # and stays there (no creep after the arm, no drag back)
    d = mux.step(0.3, start + [0.0, 0.0, -0.01], DOWN)
    assert np.allclose(d.target_pos, start) and "re-anchored" not in d.reason
    # an orientation-only jump (the reset drew another start yaw) re-anchors too
    yawed = frames.quat_multiply(frames.quat_from_euler_xyz(0, 0, 0.4), DOWN)
    d = mux.step(0.4, start, yawed)
    assert np.allclose(d.target_pos, start) and abs(abs(np.dot(d.target_quat, yawed)) - 1) < 1e-9
    # an arm outside the box re-anchors once to the nearest pose in the box, then holds it
    outside = np.array([0.9, 0.0, 0.3])
    assert np.allclose(mux.step(0.5, outside, DOWN).target_pos, [0.75, 0.0, 0.3])
    assert "re-anchored" not in mux.step(0.6, outside + [0.1, 0, 0], DOWN).reason


def test_hold_re_anchors_once_after_no_command_for_the_timeout():
    mux = make(hold_reanchor_after_s=1.0)
    mux.on_policy([0, 0, 1, 0, 0, 0], GRIPPER_STAY, 0.0, 0.0)
    held = mux.step(0.0, POS, DOWN).target_pos
    sag = np.array([0.0, 0.0, -0.004])  # steady tracking error, well inside the distance threshold
    assert np.allclose(mux.step(0.9, POS + sag, DOWN).target_pos, held)  # a pause: hold in place
    d = mux.step(1.1, POS + sag, DOWN)
    assert np.allclose(d.target_pos, POS + sag) and "no command for" in d.reason
    # once only: a target that followed the measured pose would let the arm creep
    for t in (2.5, 5.0, 30.0):
        assert np.allclose(mux.step(t, POS + 2 * sag, DOWN).target_pos, POS + sag)
    # a new command, then a pause: its target is held again for the timeout
    mux.on_operator([0.5, 0, 0, 0, 0, 0], [0, 0], 40.0)
    commanded = mux.step(40.0, POS, DOWN).target_pos
    mux.on_operator(np.zeros(6), [0, 0], 40.5)
    assert np.allclose(mux.step(40.6, POS + sag, DOWN).target_pos, commanded)
    assert np.allclose(mux.step(41.1, POS + sag, DOWN).target_pos, POS + sag)


def test_zero_hold_time_still_lets_fresh_operator_input_take_over():
    """intervention_hold_s = 0: operator input at 50 Hz, mux steps at 10 Hz between samples."""
    mux = make(intervention_hold_s=0.0, operator_timeout_s=0.25)
    sources = []
    for k in range(50):
        mux.on_operator([0.8, 0, 0, 0, 0, 0], [0, 0], k * 0.02)
        if k % 5 == 2:
            sources.append(mux.step(k * 0.02 + 0.005, POS, DOWN).source)
    assert sources == [Source.OPERATOR] * 10
    # released (inside the dead zone): no hold time, the policy is back at once
    mux.on_operator([0.01, 0, 0, 0, 0, 0], [0, 0], 1.0)
    mux.on_policy([1, 0, 0, 0, 0, 0], GRIPPER_STAY, 1.0, 1.0)
    assert mux.step(1.005, POS, DOWN).source == Source.POLICY
    # input above the dead zone that stopped coming counts as released after operator_timeout_s
    mux.on_operator([0.8, 0, 0, 0, 0, 0], [0, 0], 2.0)
    assert mux.operator_active(2.2) and not mux.operator_active(2.3)


def test_policy_action_from_an_old_observation_is_stale():
    """Received just now, but computed from an observation 0.4 s old: not executed."""
    mux = make(policy_timeout_s=0.25)
    assert mux.on_policy([1, 0, 0, 0, 0, 0], GRIPPER_CLOSE, stamp_s=9.6, now_s=10.0)
    assert not mux.has_fresh_policy_action(10.0)
    d = mux.step(10.0, POS, DOWN)
    assert d.source == Source.HOLD and d.policy_stamp_s == 9.6 and "observation" in d.reason and "stale" in d.reason
    assert d.gripper_action == GRIPPER_STAY and d.gripper_closure is None
    mux.on_policy([1, 0, 0, 0, 0, 0], GRIPPER_STAY, stamp_s=10.9, now_s=11.0)
    assert mux.has_fresh_policy_action(11.0) and mux.step(11.0, POS, DOWN).source == Source.POLICY


def test_in_lockstep_an_action_from_a_held_frame_is_executed_however_old():
    """The simulator waits for the action on its frame (lockstep): an action computed from a
    frame 2 s old by the wall clock is still current and executed; past LOCKSTEP_INPUT_AGE_S
    (the simulator has gone on without it) it is stale."""
    from hilserl_core.robot.intervention import LOCKSTEP_INPUT_AGE_S

    mux = make(policy_timeout_s=0.25, lockstep=True)
    assert mux.on_policy([1, 0, 0, 0, 0, 0], GRIPPER_CLOSE, stamp_s=8.0, now_s=10.0)
    d = mux.step(10.0, POS, DOWN)
    assert d.source == Source.POLICY and d.policy_stamp_s == 8.0 and d.gripper_action == GRIPPER_CLOSE
    mux.on_policy([1, 0, 0, 0, 0, 0], GRIPPER_STAY, stamp_s=20.0 - LOCKSTEP_INPUT_AGE_S - 0.1, now_s=20.0)
    d = mux.step(20.0, POS, DOWN)
    assert d.source == Source.HOLD and "stale" in d.reason
    # the operator's sample for the held frame is current too
    mux.on_operator([0.8, 0, 0, 0, 0, 0], [0, 0], 30.0)
    mux.on_policy([0, 0, 1, 0, 0, 0], GRIPPER_STAY, stamp_s=30.0, now_s=32.0)
    d = mux.step(32.0, POS, DOWN)
    assert d.source == Source.OPERATOR and d.executed_action[0] > 0.7
    plain = make()
    plain.on_operator([0.8, 0, 0, 0, 0, 0], [0, 0], 30.0)
    assert not plain.operator_active(32.0)


@pytest.mark.parametrize("lo, hi, words", [
    ((0.2, 0.0), (0.7, 0.3, 0.5), "need 3 values"),
    ((0.2, 0.0, 0.6), (0.7, 0.3, 0.5), "must be below"),
])
def test_a_malformed_workspace_box_is_refused_with_the_reason(lo, hi, words):
    from hilserl_core.formats.config import ConfigError
    from hilserl_core.robot.intervention import WorkspaceConfig

    with pytest.raises(ConfigError, match=words):
        WorkspaceConfig(min_position_m=lo, max_position_m=hi)


def test_a_fresh_mux_never_commands_the_gripper_until_someone_opens_or_closes_it():
    """Starting the graph (or evaluating without an operator) must not open a gripper that holds
    something: steps that stay publish no gripper command."""
    mux = make()
    for t in range(5):
        mux.on_policy([0.1, 0, 0, 0, 0, 0], GRIPPER_STAY, stamp_s=10.0 + t, now_s=10.0 + t)
        d = mux.step(10.01 + t, POS, DOWN)
        assert d.source == Source.POLICY and d.gripper_closure is None
    mux.on_policy([0, 0, 0, 0, 0, 0], GRIPPER_OPEN, stamp_s=20.0, now_s=20.0)
    assert mux.step(20.01, POS, DOWN).gripper_closure == 0.0
