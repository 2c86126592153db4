"""Property test (hypothesis): whatever the operator and the policy send, the command path stays safe.

10,000 random sequences of operator twists and buttons, policy actions (NaN, Inf, huge values,
bad gripper actions, old observation stamps), measured poses (inside and outside the box, NaN,
zero quaternions) and time gaps (stale inputs) go through the intervention mux's pure logic
(``hilserl_core.robot.intervention``) in twist and wrench mode, and what it commands goes through
the control law (``hilserl_core.robot.control``: the impedance law with reference limiting, the
feed-forward wrench watchdog with its clamps, the wrench-mode law). After every step:

- a target pose, when there is one, is finite and inside the workspace box;
- a wrench-mode command is finite and within the mux's scale (max_force_n, max_torque_nm per axis);
- the force the law commands for it is within its bounds: ``|F| <= K * reference_limit`` for the
  impedance law at rest, the watchdog's output within its norm clamps, the wrench-mode wrench
  within the holding bound plus the clamps;

and after every sequence each rejected input has been counted once, per source, and the
diagnostic status says so (WARN naming the source and the total while recent, OK later).
Raw wrenches (the policy's, unscaled, NaN/Inf included) are also offered straight to a
watchdog, as a rogue command would reach a controller: every NaN/Inf one is counted as rejected
and the output stays within the clamps.

The sequences are drawn four per hypothesis example (2,500 examples; a failure still
shrinks to the smallest failing sequence), which costs less of hypothesis's per-example
overhead than 10,000 examples of one; the test asserts that 10,000 were checked.
"""

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hilserl_core.formats import config as cfg
from hilserl_core.robot import control, frames
from hilserl_core.robot.intervention import OK, WARN, InterventionMux, MuxConfig, Source

SPECIAL = [math.nan, math.inf, -math.inf, 1e9, -1e300, 1.7e308, 5e-324, 3.0, -2.5, 2.0, 1.0, -1.0, 0.0]
component = st.one_of(st.floats(-1.2, 1.2), st.sampled_from(SPECIAL))


def _with(values, index, special):
    out = list(values)
    out[index] = special
    return out


vector6 = st.one_of(
    # what a SpaceMouse or a tanh policy sends (slightly beyond 1 too)
    st.lists(st.floats(-1.2, 1.2), min_size=6, max_size=6),
    # one component NaN, Inf, huge, tiny or at the edges
    st.builds(_with, st.lists(st.floats(-1.0, 1.0), min_size=6, max_size=6), st.integers(0, 5), st.sampled_from(SPECIAL)),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=6, max_size=6),  # any float anywhere
    st.lists(component, min_size=0, max_size=7),  # malformed lengths
)
position = st.one_of(
    st.tuples(st.floats(0.0, 1.0), st.floats(-0.6, 0.6), st.floats(-0.2, 0.8)),  # inside and outside the box
    st.tuples(component, component, component),
)
quaternion = st.one_of(
    st.tuples(*[st.floats(-1.0, 1.0)] * 4),
    st.sampled_from([(0.0, 0.0, 0.0, 0.0), (math.nan, 0.0, 0.0, 1.0), (1.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0)]),
)
event = st.one_of(
    st.tuples(st.just("policy"), vector6, st.sampled_from([-1, 0, 1, 2, 3, 7]), st.floats(0.0, 0.5)),
    st.tuples(st.just("operator"), vector6, st.sampled_from([(), (0, 0), (1, 0), (0, 1), (1, 1)])),
    st.tuples(st.just("gap"), st.floats(0.0, 3.0)),  # stale gaps
    st.tuples(st.just("step"), position, quaternion),
)
sequence = st.tuples(st.sampled_from(["twist", "wrench"]), st.lists(event, min_size=1, max_size=16))
CONFIGS = {mode: cfg.replace(MuxConfig(), mode=mode, rejection_quiet_s=2.0) for mode in ("twist", "wrench")}

IMPEDANCE = control.ImpedanceParams()  # the simulator's and the controller's defaults (2000 N/m, 0.02 m, ...)
WRENCH = control.WrenchParams()  # clamps 30 N, 5 N m
HOLDING = control.ImpedanceParams(100.0, 3.0, 0.1, 0.5)  # wrench mode's soft hold toward the anchor
TOL = 1e-9


def _input_problem(values, limit):
    a = np.asarray(values, dtype=float)
    return a.shape != (6,) or not np.all(np.isfinite(a)) or float(np.max(np.abs(a))) > limit


def _measured_ok(pos, quat):
    p, q = np.asarray(pos, float), np.asarray(quat, float)
    return bool(np.all(np.isfinite(p)) and np.all(np.isfinite(q)) and np.linalg.norm(q) >= 1e-6)


def _check_law(mux_config, decision, pos, quat, watchdog, now):
    box = mux_config.workspace.box()
    if decision.target_pos is not None:
        assert np.all(np.isfinite(decision.target_pos)) and np.all(np.isfinite(decision.target_quat))
        assert box.contains(decision.target_pos, atol=TOL), decision.target_pos
        assert abs(np.linalg.norm(decision.target_quat) - 1.0) < 1e-9
        if _measured_ok(pos, quat) and np.all(np.abs(np.asarray(pos)) < 1e3):
            F = control.impedance_wrench(decision.target_pos, decision.target_quat, pos, frames.quat_normalize(quat),
                                         np.zeros(6), IMPEDANCE)
            assert np.linalg.norm(F[:3]) <= IMPEDANCE.translational_stiffness_n_per_m.max() * IMPEDANCE.reference_limit_m + 1e-6
            assert np.linalg.norm(F[3:]) <= IMPEDANCE.rotational_stiffness_nm_per_rad.max() * IMPEDANCE.reference_limit_rad + 1e-6
    if decision.wrench_ee is not None:
        w = decision.wrench_ee
        assert np.all(np.isfinite(w))
        assert np.all(np.abs(w[:3]) <= mux_config.max_force_n + TOL) and np.all(np.abs(w[3:]) <= mux_config.max_torque_nm + TOL)
        assert watchdog.command(w, now, now)  # what the mux sends is always accepted by the controller
        ff = watchdog.output(now)
        assert np.linalg.norm(ff[:3]) <= WRENCH.max_force_n + 1e-9 and np.linalg.norm(ff[3:]) <= WRENCH.max_torque_nm + 1e-9
        if _measured_ok(pos, quat) and np.all(np.abs(np.asarray(pos)) < 1e3):
            q = frames.quat_normalize(quat)
            F = control.wrench_mode_wrench(pos, q, pos, q, np.zeros(6), ff, HOLDING)  # anchor = measured: spring 0
            assert np.linalg.norm(F[:3]) <= WRENCH.max_force_n + 1e-6 and np.linalg.norm(F[3:]) <= WRENCH.max_torque_nm + 1e-6


def _check_sequence(seq):
    mode, events = seq
    config = CONFIGS[mode]
    mux = InterventionMux(config)
    watchdog = control.WrenchWatchdog(WRENCH)  # the controller behind the mux (wrench mode)
    rogue = control.WrenchWatchdog(WRENCH)  # a controller offered raw commands directly
    now, rogue_stamp = 100.0, 0.0
    expected = {"policy": 0, "operator": 0}
    expected_rogue = 0
    steps = 0
    for ev in events:
        now += 0.01
        kind = ev[0]
        if kind == "policy":
            _, action, gripper, age = ev
            bad = _input_problem(action, config.input_limit) or gripper not in (-1, 0, 1, 2)
            assert mux.on_policy(action, gripper, now - age, now) == (not bad)
            expected["policy"] += bad
            # the same numbers as a raw wrench, straight to a controller's watchdog
            rogue_stamp += 0.001
            with np.errstate(over="ignore"):  # 1e300 * 50 is Inf: rejected like any Inf
                raw = np.asarray(action, dtype=float) * 50.0
                valid = raw.shape == (6,) and bool(np.all(np.isfinite(raw)))
                assert rogue.command(raw, rogue_stamp, rogue_stamp) == valid
                out = rogue.output(rogue_stamp)
            expected_rogue += not valid
            assert np.linalg.norm(out[:3]) <= WRENCH.max_force_n + 1e-9 and np.linalg.norm(out[3:]) <= WRENCH.max_torque_nm + 1e-9
        elif kind == "operator":
            _, twist, buttons = ev
            mux.on_operator(twist, buttons, now)
            expected["operator"] += _input_problem(twist, config.input_limit)
        elif kind == "gap":
            now += ev[1]
        else:
            _, pos, quat = ev
            d = mux.step(now, pos, quat)
            steps += 1
            assert d.source in (Source.POLICY, Source.OPERATOR, Source.HOLD)
            assert np.all(np.isfinite(d.executed_action)) and np.all(np.abs(d.executed_action) <= 1.0)
            if not _measured_ok(pos, quat):
                assert d.source == Source.HOLD
            _check_law(config, d, pos, quat, watchdog, now)
    # every rejection counted, per source, and reported
    assert mux.rejected == expected["policy"] and mux.rejected_operator == expected["operator"]
    assert rogue.rejected_count == expected_rogue
    for source, n in expected.items():
        level, text, values = mux.rejections.status(source, now)
        assert values["rejected"] == n
        if n:
            assert f"{n} in all" in text
            recent = now - mux.rejections.last_s[source] <= config.rejection_quiet_s
            assert level == (WARN if recent else OK)
            if recent:
                assert source in text
            later_level, later_text, _ = mux.rejections.status(source, now + config.rejection_quiet_s + 0.01)
            assert later_level == OK and f"{n} in all" in later_text
        else:
            assert level == OK


SEQUENCES, PER_EXAMPLE = 10_000, 4  # hypothesis examples of 4 sequences each: 2,500 examples, 10,000 sequences
checked = [0]


@settings(max_examples=SEQUENCES // PER_EXAMPLE, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(sequence, min_size=PER_EXAMPLE, max_size=PER_EXAMPLE))
def _check_batches(batch):
    for seq in batch:
        _check_sequence(seq)
        checked[0] += 1


def test_random_command_sequences_stay_safe_and_every_rejection_is_counted():
    checked[0] = 0
    _check_batches()
    assert checked[0] >= SEQUENCES, f"only {checked[0]} sequences checked"


def test_a_broken_spacemouse_stops_the_arm_and_is_reported():
    """A person pushing, then NaN from the device: the operator keeps control for the hold time with
    a zero twist (the last good push is not repeated), the rejection is WARN naming the operator and
    the count, and OK again after rejection_quiet_s."""
    mux = InterventionMux(CONFIGS["twist"])
    pos, down = np.array([0.5, 0.0, 0.3]), frames.quat_from_euler_xyz(np.pi, 0.0, 0.0)
    mux.on_operator([0.8, 0, 0, 0, 0, 0], [0, 0], 1.0)
    assert mux.step(1.0, pos, down).executed_action[0] == 0.8
    mux.on_operator_twist([math.nan, 0, 0, 0, 0, 0], 1.05)
    mux.on_operator_twist([1e9, 0, 0, 0, 0, 0], 1.08)
    d = mux.step(1.1, pos, down)
    assert d.source == Source.OPERATOR and np.allclose(d.executed_action, 0.0) and np.allclose(d.target_pos, pos)
    level, text, values = mux.rejections.status("operator", 1.1)
    assert level == WARN and "operator input" in text and "2 in all" in text and values["rejected"] == 2
    assert mux.rejections.status("operator", 1.08 + CONFIGS["twist"].rejection_quiet_s + 0.01)[0] == OK
