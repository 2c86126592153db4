"""Tests of hilserl_core.robot.control: golden vectors, safety bounds, hand-checked cases."""

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hilserl_core.robot import control as C
from hilserl_core.robot import frames as F

settings.register_profile("control", max_examples=60, deadline=None)
settings.load_profile("control")

GOLDEN = C.load_golden()
I = np.array([0.0, 0, 0, 1])
DOWN = F.rotvec_to_quat([math.pi, 0, 0])

finite = st.floats(-1.0, 1.0, allow_nan=False)
vec3 = st.lists(finite, min_size=3, max_size=3).map(np.array)


@st.composite
def quats(draw):
    q = np.array(draw(st.lists(finite, min_size=4, max_size=4)))
    assume(np.linalg.norm(q) > 1e-2)
    return q / np.linalg.norm(q)


def rot(axis, angle):
    axis = np.asarray(axis, float)
    return F.rotvec_to_quat(axis / np.linalg.norm(axis) * angle)


def assert_close(actual, desired, atol=1e-12):
    np.testing.assert_allclose(actual, desired, rtol=0, atol=atol)


def assert_same_quat(actual, desired, atol):
    actual, desired = np.asarray(actual), np.asarray(desired)
    err = min(np.abs(actual - desired).max(), np.abs(actual + desired).max())
    assert err <= atol, f"quaternions differ (up to sign) by {err}: {actual} vs {desired}"


# --- golden vectors ---------------------------------------------------------


def _imp_params(p):
    return C.ImpedanceParams(
        p["translational_stiffness_n_per_m"],
        p["rotational_stiffness_nm_per_rad"],
        p["reference_limit_m"],
        p["reference_limit_rad"],
        p["translational_damping_ns_per_m"],
        p["rotational_damping_nms_per_rad"],
    )


def _wrench_params(p):
    return C.WrenchParams(p["max_force_n"], p["max_torque_nm"], p["watchdog_timeout_s"], p["max_future_stamp_s"])


def _box(b):
    if b is None:
        return None
    return C.WorkspaceBox(b["min_position_m"], b["max_position_m"], b["orientation_reference_quat"], b["orientation_limit_rad"])


def test_golden_file_is_documented_and_big_enough():
    assert {"schema", "atol", "cases"} <= set(GOLDEN)
    functions = {c["function"] for c in GOLDEN["cases"]}
    assert functions == set(GOLDEN["schema"]["functions"])
    assert len(GOLDEN["cases"]) >= 40
    names = [c["name"] for c in GOLDEN["cases"]]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("case", GOLDEN["cases"], ids=lambda c: c["name"])
def test_golden_case_reproduces(case):
    atol = GOLDEN["atol"]
    x, exp = case["inputs"], case["expected"]
    fn = case["function"]
    if fn == "limit_reference":
        pos, quat = C.limit_reference(
            x["target_pos"], x["target_quat"], x["measured_pos"], x["measured_quat"], x["limit_m"], x["limit_rad"]
        )
        assert_close(pos, exp["pos"], atol)
        assert_same_quat(quat, exp["quat"], atol)
    elif fn == "impedance_wrench":
        w = C.impedance_wrench(
            x["target_pos"], x["target_quat"], x["measured_pos"], x["measured_quat"], x["measured_twist_base"], _imp_params(x["params"])
        )
        assert_close(w, exp["wrench"], atol)
    elif fn == "clamp_wrench":
        assert_close(C.clamp_wrench(x["wrench"], _wrench_params(x["params"])), exp["wrench"], atol)
    elif fn == "wrench_watchdog":
        dog = C.WrenchWatchdog(_wrench_params(x["params"]))
        assert len(x["events"]) == len(exp["results"])
        for ev, res in zip(x["events"], exp["results"]):
            if ev["op"] == "command":
                ok = dog.command(ev["wrench"], ev["stamp_s"], ev.get("now_s"))
                assert ok == res["accepted"]
                assert ("" if ok else dog.last_rejection_code) == res["reason"]
            else:
                assert_close(dog.output(ev["now_s"]), res["wrench"], atol)
    elif fn == "wrench_mode_wrench":
        args = (x["anchor_pos"], x["anchor_quat"], x["measured_pos"], x["measured_quat"], x["measured_twist_base"], x["wrench_ee"],
                _imp_params(x["params"]))
        if "error" in exp:
            with pytest.raises(C.NonFiniteCommandError):
                C.wrench_mode_wrench(*args)
        else:
            assert_close(C.wrench_mode_wrench(*args), exp["wrench"], atol)
    elif fn == "integrate_twist_target":
        args = (x["measured_pos"], x["measured_quat"], x["action"], x["linear_step_m"], x["angular_step_rad"], _box(x["box"]))
        if "error" in exp:
            with pytest.raises(C.NonFiniteCommandError):
                C.integrate_twist_target(*args)
        else:
            pos, quat = C.integrate_twist_target(*args)
            assert_close(pos, exp["pos"], atol)
            assert_same_quat(quat, exp["quat"], atol)
    else:
        pytest.fail(f"unknown function {fn!r} in golden file")


# --- reference limiting and impedance ---------------------------------------


def test_limit_reference_hand_checked():
    pos, quat = C.limit_reference([0.8, 0, 0.7], I, [0.5, 0, 0.3], I, 0.02, 0.1)
    assert_close(pos, [0.512, 0, 0.316], 1e-15)  # (0.3, 0, 0.4) * 0.02 / 0.5
    pos, quat = C.limit_reference([0, 0, 0], rot([0, 0, 1], math.pi / 2), [0, 0, 0], I, 0.02, 0.1)
    assert_close(quat, [0, 0, math.sin(0.05), math.cos(0.05)], 1e-15)
    # Inside both limits: returned unchanged.
    pos, quat = C.limit_reference([0.51, 0, 0.3], rot([1, 1, 0], 0.05), [0.5, 0, 0.3], I, 0.02, 0.1)
    assert_close(pos, [0.51, 0, 0.3], 0)
    assert_close(quat, rot([1, 1, 0], 0.05), 1e-15)


@given(vec3.map(lambda v: v * 100), quats(), vec3, quats(), st.floats(1e-3, 0.2), st.floats(1e-2, 3.0))
def test_limit_reference_stays_within_limits_on_the_geodesic(tp, tq, mp, mq, lim_m, lim_rad):
    pos, quat = C.limit_reference(tp, tq, mp, mq, lim_m, lim_rad)
    e_lim = F.pose_error(pos, quat, mp, mq)
    e_full = F.pose_error(tp, tq, mp, mq)
    assert np.linalg.norm(e_lim[:3]) <= lim_m + 1e-12
    assert np.linalg.norm(e_lim[3:]) <= lim_rad + 1e-9
    # Same direction as the full error (no per-axis distortion), shortened only.
    assert np.linalg.norm(np.cross(e_lim[:3], e_full[:3])) <= 1e-9 * max(1.0, np.linalg.norm(e_full[:3]))
    assume(np.linalg.norm(e_full[3:]) < math.pi - 1e-6)  # at pi the rotation axis is ambiguous
    assert np.linalg.norm(np.cross(e_lim[3:], e_full[3:])) <= 1e-9
    assert e_lim[3:] @ e_full[3:] >= -1e-12
    # Limiting twice changes nothing more.
    pos2, quat2 = C.limit_reference(pos, quat, mp, mq, lim_m, lim_rad)
    assert_close(pos2, pos, 1e-12)
    assert_same_quat(quat2, quat, 1e-12)


@given(
    st.floats(1e-3, 1e3).flatmap(lambda r: vec3.filter(lambda v: np.linalg.norm(v) > 1e-3).map(lambda v: v / np.linalg.norm(v) * r)),
    quats(),
    quats(),
    st.lists(st.floats(0.0, 5000.0), min_size=3, max_size=3),
    st.lists(st.floats(0.0, 500.0), min_size=3, max_size=3),
    st.floats(1e-3, 0.1),
    st.floats(1e-2, 1.0),
)
def test_force_bounded_by_stiffness_times_limit(offset, tq, mq, k_t, k_r, lim_m, lim_rad):
    """The paper's safety argument: at rest, contact force <= K * reference limit however far the target is."""
    mp = np.array([0.5, 0.0, 0.3])
    params = C.ImpedanceParams(k_t, k_r, lim_m, lim_rad)
    w = C.impedance_wrench(mp + offset, tq, mp, mq, np.zeros(6), params)
    assert np.linalg.norm(w[:3]) <= max(k_t) * lim_m * (1 + 1e-12)
    assert np.linalg.norm(w[3:]) <= max(k_r) * lim_rad * (1 + 1e-9)
    if len(set(k_t)) == 1 and np.linalg.norm(offset) > lim_m:  # isotropic and clipped: the bound is attained
        assert abs(np.linalg.norm(w[:3]) - k_t[0] * lim_m) <= 1e-9 * max(1.0, k_t[0])


@given(vec3, quats(), vec3, quats(), st.lists(st.floats(-1, 1), min_size=6, max_size=6).map(np.array))
def test_impedance_equals_spring_on_the_limited_reference(tp, tq, mp, mq, twist):
    """impedance_wrench clips the error vector directly; it must equal the law on limit_reference's pose."""
    p = C.ImpedanceParams([1000.0, 1500.0, 800.0], [80.0, 90.0, 100.0], 0.03, 0.4)
    assume(F.quat_angle(tq, mq) < math.pi - 1e-6)  # at pi the rotation axis is ambiguous
    ref_pos, ref_quat = C.limit_reference(tp, tq, mp, mq, p)
    expected = p.stiffness * F.pose_error(ref_pos, ref_quat, mp, mq) - p.damping * twist
    assert_close(C.impedance_wrench(tp, tq, mp, mq, twist, p), expected, 1e-9)


def test_impedance_hand_checked_and_default_critical_damping():
    p = C.ImpedanceParams(2000.0, 100.0, 0.02, 0.1)
    assert_close(C.impedance_wrench([0.5, 0, 1.3], I, [0.5, 0, 0.3], I, np.zeros(6), p), [0, 0, 40, 0, 0, 0], 1e-12)
    assert_close(C.impedance_wrench([0, 0, 0], rot([0, 0, 1], 1.5), [0, 0, 0], I, np.zeros(6), p), [0, 0, 0, 0, 0, 10], 1e-12)
    p = C.ImpedanceParams(400.0, 25.0, 0.02, 0.1)
    assert_close(p.damping, [40, 40, 40, 10, 10, 10], 0)  # 2 sqrt(K)
    w = C.impedance_wrench([0.5, 0, 0.3], DOWN, [0.5, 0, 0.3], DOWN, [0.1, 0, 0, 0, 0, 0.2], p)
    assert_close(w, [-4, 0, 0, 0, 0, -2], 1e-12)
    # Explicit damping overrides the default.
    p = C.ImpedanceParams(400.0, 25.0, 0.02, 0.1, translational_damping_ns_per_m=[1, 2, 3], rotational_damping_nms_per_rad=0.5)
    assert_close(p.damping, [1, 2, 3, 0.5, 0.5, 0.5], 0)


def test_limit_reference_accepts_params_object():
    p = C.ImpedanceParams(1000.0, 100.0, 0.01, 0.2)
    assert_close(C.limit_reference([1, 0, 0], I, [0, 0, 0], I, p)[0], [0.01, 0, 0], 1e-15)
    with pytest.raises(TypeError):
        C.limit_reference([1, 0, 0], I, [0, 0, 0], I, p, 0.1)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(translational_stiffness_n_per_m=-1.0), "translational_stiffness_n_per_m"),
        (dict(rotational_stiffness_nm_per_rad=[1.0, 2.0]), "rotational_stiffness_nm_per_rad"),
        (dict(reference_limit_m=0.0), "reference_limit_m"),
        (dict(reference_limit_m=float("inf")), "reference_limit_m"),
        (dict(reference_limit_rad=3.2), "reference_limit_rad"),
        (dict(translational_damping_ns_per_m=float("nan")), "translational_damping_ns_per_m"),
    ],
)
def test_impedance_params_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        C.ImpedanceParams(**kwargs)


def test_impedance_rejects_non_finite_target_and_twist():
    p = C.ImpedanceParams()
    with pytest.raises(C.NonFiniteCommandError):
        C.impedance_wrench([np.nan, 0, 0], I, [0, 0, 0], I, np.zeros(6), p)
    with pytest.raises(C.NonFiniteCommandError):
        C.impedance_wrench([0, 0, 0], I, [0, 0, 0], I, [0, 0, np.inf, 0, 0, 0], p)


# --- wrench clamps and watchdog ---------------------------------------------


limits = st.one_of(st.just(0.0), st.floats(1e-6, 100.0))  # not subnormal: |f|^2 would underflow


@given(st.lists(st.floats(-1e4, 1e4), min_size=6, max_size=6).map(np.array), limits, limits)
def test_clamp_preserves_direction_and_bounds_norms(w, max_f, max_t):
    out = C.clamp_wrench(w, C.WrenchParams(max_f, max_t, 0.1))
    for part, lim in ((slice(0, 3), max_f), (slice(3, 6), max_t)):
        a, b = w[part], out[part]
        assert np.linalg.norm(b) <= lim * (1 + 1e-12)
        if np.linalg.norm(a) <= lim:
            assert_close(b, a, 0)
        else:  # same direction: b is a non-negative multiple of a
            assert np.linalg.norm(np.cross(a, b)) <= 1e-9 * np.linalg.norm(a) * max(np.linalg.norm(b), 1e-300)
            assert a @ b >= 0


def test_clamp_hand_checked_and_rejects_nan():
    p = C.WrenchParams(30.0, 5.0, 0.25)
    assert_close(C.clamp_wrench([30, 0, 40, 0, 6, 8], p), [18, 0, 24, 0, 3, 4], 1e-12)
    with pytest.raises(C.NonFiniteCommandError):
        C.clamp_wrench([np.nan, 0, 0, 0, 0, 0], p)
    with pytest.raises(ValueError, match="6 numbers"):
        C.clamp_wrench([1, 2, 3], p)
    with pytest.raises(ValueError, match="watchdog_timeout_s"):
        C.WrenchParams(30.0, 5.0, 0.0)


@given(st.floats(1e-3, 2.0), st.floats(-100.0, 100.0), st.floats(0.0, 5.0))
def test_watchdog_zeroes_after_timeout(timeout, t0, dt):
    dog = C.WrenchWatchdog(C.WrenchParams(30.0, 5.0, timeout))
    w = np.array([1.0, -2.0, 3.0, 0.1, 0.0, -0.2])
    assert_close(dog.output(t0), np.zeros(6), 0)  # nothing commanded yet
    assert dog.command(w, t0)
    out = dog.output(t0 + dt)
    if dt <= timeout * (1 - 1e-9):
        assert_close(out, w, 0)
        assert not dog.is_stale(t0 + dt)
    elif dt > timeout * (1 + 1e-9):
        assert_close(out, np.zeros(6), 0)
        assert dog.is_stale(t0 + dt)


def test_watchdog_rejects_and_counts_with_reasons():
    dog = C.WrenchWatchdog(C.WrenchParams(30.0, 5.0, 0.25))
    assert dog.command([1, 0, 0, 0, 0, 0], 1.0)
    assert not dog.command([np.nan, 0, 0, 0, 0, 0], 1.01)
    assert dog.last_rejection_code == C.REJECT_NON_FINITE_WRENCH
    assert "NaN" in dog.last_rejection and "zeroed" in dog.last_rejection
    assert_close(dog.output(1.02), np.zeros(6), 0)  # fail-safe: a broken source stops pushing at once
    assert not dog.command([1, 0, 0, 0, 0, 0], float("inf"))
    assert not dog.command([1, 0, 0], 1.03)
    assert not dog.command("not a wrench", 1.03)
    assert dog.command([0, 2, 0, 0, 0, 0], 1.04)
    assert not dog.command([0, 3, 0, 0, 0, 0], 1.035)
    assert dog.rejected_count == 5
    assert dog.rejection_counts == {
        C.REJECT_NON_FINITE_WRENCH: 1,
        C.REJECT_NON_FINITE_STAMP: 1,
        C.REJECT_MALFORMED: 2,
        C.REJECT_OUT_OF_ORDER: 1,
    }


def test_watchdog_rejects_a_command_stamped_in_the_future():
    """A 30 N command stamped 60 s ahead (clock skew) is never applied and does not block correct follow-ups."""
    dog = C.WrenchWatchdog(C.WrenchParams(watchdog_timeout_s=0.25))
    assert dog.params.max_future_stamp_s == 0.05
    assert not dog.command([30, 0, 0, 0, 0, 0], stamp_s=160.0, now_s=100.0)
    assert dog.last_rejection_code == C.REJECT_FUTURE_STAMP == "future_stamp"
    assert "60.000000 s ahead" in dog.last_rejection and "synchronised" in dog.last_rejection
    for now in (100.0, 130.0, 159.0, 160.1):
        assert_close(dog.output(now), np.zeros(6), 0)
    assert dog.command([0, 0, 5, 0, 0, 0], stamp_s=100.5, now_s=100.5), dog.last_rejection  # not out_of_order
    assert_close(dog.output(100.6), [0, 0, 5, 0, 0, 0], 0)
    # Within the tolerance (clock offset below max_future_stamp_s) a stamp ahead of now is accepted and applied.
    assert dog.command([0, 0, 6, 0, 0, 0], stamp_s=100.74, now_s=100.7)
    assert_close(dog.output(100.7), [0, 0, 6, 0, 0, 0], 0)
    assert dog.rejection_counts == {C.REJECT_FUTURE_STAMP: 1}
    # A broken clock vouches for no stamp.
    for bad_now in (float("nan"), float("inf"), float("-inf")):
        assert not dog.command([0, 0, 1, 0, 0, 0], 101.0, bad_now)
        assert dog.last_rejection_code == C.REJECT_FUTURE_STAMP
    with pytest.raises(ValueError, match="max_future_stamp_s"):
        C.WrenchParams(max_future_stamp_s=-0.01)


@given(st.floats(0.0, 0.5), st.floats(-100.0, 100.0), st.floats(-2.0, 2.0))
def test_watchdog_future_bound_is_the_tolerance(tolerance, now, ahead):
    dog = C.WrenchWatchdog(C.WrenchParams(30.0, 5.0, 0.25, tolerance))
    ok = dog.command([1, 0, 0, 0, 0, 0], now + ahead, now)
    stamp = now + ahead
    assert ok == (stamp - now <= tolerance)
    if not ok:
        assert dog.last_rejection_code == C.REJECT_FUTURE_STAMP
    # Whatever was accepted is never applied while its stamp is more than the tolerance ahead of now.
    for t in (now - 1.0, now, now + 0.1):
        if stamp - t > tolerance:
            assert_close(dog.output(t), np.zeros(6), 0)


def test_watchdog_without_a_clock_still_never_applies_a_future_stamp():
    dog = C.WrenchWatchdog(C.WrenchParams())
    assert dog.command([1, 0, 0, 0, 0, 0], 10.0)  # no now_s: no future_stamp check on arrival
    assert dog.is_stale(5.0)
    assert_close(dog.output(9.96), [1, 0, 0, 0, 0, 0], 0)


def test_wrench_mode_wrench_holds_the_anchor_and_adds_the_feedforward():
    # The simulator's wrench-mode gains: K 100 N/m, 3 N m/rad, damping ratio 0.3, limits 0.1 m / 0.5 rad.
    p = C.ImpedanceParams(100.0, 3.0, 0.1, 0.5, 2 * 0.3 * math.sqrt(100.0), 2 * 0.3 * math.sqrt(3.0))
    # No feed-forward: a soft spring toward the anchor, bounded by K * limit however far it is.
    assert_close(C.wrench_mode_wrench([0.55, 0, 0.3], DOWN, [0.5, 0, 0.3], DOWN, np.zeros(6), np.zeros(6), p), [5, 0, 0, 0, 0, 0], 1e-12)
    assert_close(C.wrench_mode_wrench([0.5, 5.0, 0.3], DOWN, [0.5, 0, 0.3], DOWN, np.zeros(6), np.zeros(6), p), [0, 10, 0, 0, 0, 0], 1e-12)
    # Feed-forward in EE axes, gripper down: EE +z is base -z.
    w = C.wrench_mode_wrench([0.5, 0, 0.3], DOWN, [0.5, 0, 0.3], DOWN, np.zeros(6), [0, 0, 10, 0, 0, 1], p)
    assert_close(w, [0, 0, -10, 0, 0, -1], 1e-12)
    # Damping opposes motion: 0.1 m/s along y with D = 6 N s/m.
    w = C.wrench_mode_wrench([0.5, 0, 0.3], I, [0.5, 0, 0.3], I, [0, 0.1, 0, 0, 0, 0], np.zeros(6), p)
    assert_close(w, [0, -0.6, 0, 0, 0, 0], 1e-12)
    with pytest.raises(C.NonFiniteCommandError):
        C.wrench_mode_wrench([0.5, 0, 0.3], I, [0.5, 0, 0.3], I, np.zeros(6), [np.nan, 0, 0, 0, 0, 0], p)
    with pytest.raises(ValueError, match="6 numbers"):
        C.wrench_mode_wrench([0.5, 0, 0.3], I, [0.5, 0, 0.3], I, np.zeros(6), [1, 2, 3], p)


def test_watchdog_output_is_clamped():
    dog = C.WrenchWatchdog(C.WrenchParams(30.0, 5.0, 0.25))
    dog.command([300, 0, 400, 0, 0, 50], 0.0)
    assert_close(dog.output(0.1), [18, 0, 24, 0, 0, 5], 1e-12)


# --- twist actions -> target ------------------------------------------------


def test_is_finite_command():
    assert C.is_finite_command([0.0, 1.0, -1.0])
    assert not C.is_finite_command([0.0, np.nan])
    assert not C.is_finite_command([np.inf])
    assert not C.is_finite_command([])
    assert not C.is_finite_command(["a", 1])
    assert not C.is_finite_command(None)


def test_integrate_hand_checked():
    box = C.WorkspaceBox([0.3, -0.3, 0.05], [0.7, 0.3, 0.5])
    # EE yawed 90 deg: its +x is base +y.
    pos, quat = C.integrate_twist_target([0.5, 0, 0.3], rot([0, 0, 1], math.pi / 2), [1, 0, 0, 0, 0, 0], 0.01, 0.05, box)
    assert_close(pos, [0.5, 0.01, 0.3], 1e-15)
    # Gripper down: EE +z (approach) is base -z.
    pos, quat = C.integrate_twist_target([0.5, 0, 0.3], DOWN, [0, 0, 0.5, 0, 0, 0], 0.01, 0.05, box)
    assert_close(pos, [0.5, 0, 0.295], 1e-15)
    # Gripper down, EE yaw +0.1 rad is a base yaw of -0.1 rad.
    pos, quat = C.integrate_twist_target([0.5, 0, 0.3], DOWN, [0, 0, 0, 0, 0, 1], 0.01, 0.1, box)
    assert_same_quat(quat, F.quat_multiply(rot([0, 0, 1], -0.1), DOWN), 1e-12)
    # Pushing out of the box holds the face.
    pos, _ = C.integrate_twist_target([0.7, 0, 0.3], I, [1, 0, 0, 0, 0, 0], 0.02, 0.05, box)
    assert_close(pos, [0.7, 0, 0.3], 0)


@given(vec3.map(lambda v: v * 0.5), quats(), st.lists(finite, min_size=6, max_size=6).map(np.array), st.floats(1e-3, 0.05), st.floats(1e-3, 0.3))
def test_integrate_without_box_is_an_ee_frame_step(mp, mq, a, lin, ang):
    """Seen from the measured EE frame the target moved by exactly (v * lin, w * ang): the egocentric action."""
    pos, quat = C.integrate_twist_target(mp, mq, a, lin, ang, None)
    rel = F.relative_pose(F.pose_to_matrix(mp, mq), F.pose_to_matrix(pos, quat))
    assert_close(rel[:3, 3], a[:3] * lin, 1e-12)
    assert_close(F.so3_log(rel[:3, :3]), a[3:] * ang, 1e-9)
    assert quat[3] >= 0


@given(vec3, st.lists(st.floats(-5, 5), min_size=6, max_size=6).map(np.array), st.floats(0, 0.3, exclude_min=True))
def test_integrate_result_stays_in_box(offset, a, tilt):
    box = C.WorkspaceBox([0.3, -0.3, 0.05], [0.7, 0.3, 0.5], DOWN, [0.2, 0.2, 0.5])
    mp = np.array([0.5, 0.0, 0.3]) + offset * 0.3  # measured may already be outside
    mq = F.quat_multiply(DOWN, rot([1, 1, 0], tilt))
    pos, quat = C.integrate_twist_target(mp, mq, a, 0.05, 0.2, box)
    assert box.contains(pos, quat, atol=1e-9)


@pytest.mark.parametrize("bad", [[np.nan, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, np.inf], [0, 0, 0, -np.inf, 0, 0]])
def test_integrate_rejects_non_finite(bad):
    box = C.WorkspaceBox([0.3, -0.3, 0.05], [0.7, 0.3, 0.5])
    with pytest.raises(C.NonFiniteCommandError):
        C.integrate_twist_target([0.5, 0, 0.3], I, bad, 0.01, 0.05, box)
    with pytest.raises(C.NonFiniteCommandError):
        C.integrate_twist_target([0.5, np.nan, 0.3], I, [0] * 6, 0.01, 0.05, box)
    assert issubclass(C.NonFiniteCommandError, ValueError)


def test_integrate_and_box_validation():
    with pytest.raises(ValueError, match="6 numbers"):
        C.integrate_twist_target([0.5, 0, 0.3], I, [0, 0, 0], 0.01, 0.05, None)
    with pytest.raises(ValueError, match="linear_step_m"):
        C.integrate_twist_target([0.5, 0, 0.3], I, [0] * 6, 0.0, 0.05, None)
    with pytest.raises(ValueError, match="min_position_m"):
        C.WorkspaceBox([0.7, 0, 0], [0.3, 1, 1])
    with pytest.raises(ValueError, match="together"):
        C.WorkspaceBox([0, 0, 0], [1, 1, 1], orientation_reference_quat=I)
    with pytest.raises(ValueError, match="orientation_limit_rad"):
        C.WorkspaceBox([0, 0, 0], [1, 1, 1], I, [0.1, 0.1, 4.0])
