"""The intervention mux state machine: who acts, what is executed, what is held."""

import numpy as np
import pytest

from hilserl_core import config as cfg
from hilserl_core import frames
from hilserl_core.intervention import GRIPPER_CLOSE, GRIPPER_OPEN, GRIPPER_STAY, InterventionMux, MuxConfig, Source

POS = np.array([0.5, 0.0, 0.3])
DOWN = frames.quat_from_euler_xyz(np.pi, 0.0, 0.0)  # gripper pointing down: EE axes differ from base axes


def make(**kw):
    return InterventionMux(cfg.replace(MuxConfig(), **kw) if kw else MuxConfig())


def test_policy_action_is_executed_once_in_the_ee_frame():
    mux = make()
    assert mux.on_policy([1, 0, 0.5, 0, 0, 0], GRIPPER_CLOSE, stamp_s=9.0, now_s=10.0)
    d = mux.step(10.01, POS, DOWN)
    assert d.source == Source.POLICY and d.policy_stamp_s == 9.0 and d.gripper_action == GRIPPER_CLOSE
    assert d.gripper_closure == 1.0
    # EE x = base x; EE z = -base z when pointing down: +0.5 EE z moves the hand DOWN in base
    assert np.allclose(d.target_pos, POS + [0.015, 0.0, -0.0075])
    # a second step without a new action does not re-execute it
    d2 = mux.step(10.05, POS, DOWN)
    assert d2.source == Source.HOLD and np.allclose(d2.target_pos, d.target_pos) and d2.gripper_closure == 1.0


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
