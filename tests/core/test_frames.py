"""Property tests of hilserl_core.robot.frames against independent formulas.

The references here are written from scratch in this file (elementary rotation
matrices, a 4x4 Hamilton-product matrix, a truncated-series matrix exponential,
finite differences of moving points) so a shared mistake cannot hide.
"""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hilserl_core.robot import frames as F


def assert_close(actual, desired, atol=1e-12):
    """Absolute tolerance only: numpy's default rtol=1e-7 would hide small-angle series errors."""
    np.testing.assert_allclose(actual, desired, rtol=0, atol=atol)


settings.register_profile("frames", max_examples=60, deadline=None)
settings.load_profile("frames")

finite = st.floats(-1.0, 1.0, allow_nan=False)
vec3 = st.lists(finite, min_size=3, max_size=3).map(np.array)
vec6 = st.lists(st.floats(-2.0, 2.0), min_size=6, max_size=6).map(np.array)


@st.composite
def quats(draw):
    q = np.array(draw(st.lists(finite, min_size=4, max_size=4)))
    assume(np.linalg.norm(q) > 1e-2)
    return q / np.linalg.norm(q)


@st.composite
def rotvecs(draw):
    """Rotation vectors including the hard cases: angle ~0 and ~pi."""
    axis = draw(vec3)
    assume(np.linalg.norm(axis) > 1e-2)
    angle = draw(st.one_of(st.floats(0.0, np.pi), st.sampled_from([0.0, 1e-9, 1e-5, np.pi - 1e-7, np.pi])))
    return axis / np.linalg.norm(axis) * angle


@st.composite
def poses(draw):
    return F.pose_to_matrix(draw(vec3) * 2.0, draw(quats()))


# --- independent references -------------------------------------------------


def expm_series(A, terms=40):
    """Matrix exponential by scaling and squaring of a plain Taylor series."""
    s = max(0, int(np.ceil(np.log2(max(np.linalg.norm(A), 1e-300)))) + 1)
    A = A / 2**s
    E, term = np.eye(A.shape[0]), np.eye(A.shape[0])
    for k in range(1, terms):
        term = term @ A / k
        E = E + term
    for _ in range(s):
        E = E @ E
    return E


def hat3(w):
    return np.array([[0, -w[2], w[1]], [w[2], 0, -w[0]], [-w[1], w[0], 0]])


def hat6(xi):
    M = np.zeros((4, 4))
    M[:3, :3] = hat3(xi[3:])
    M[:3, 3] = xi[:3]
    return M


def left_mult_matrix(q):
    """L(q) with L(q) @ p == q * p for [x, y, z, w] quaternions (Hamilton)."""
    x, y, z, w = q
    return np.array([[w, -z, y, x], [z, w, -x, y], [-y, x, w, z], [-x, -y, -z, w]])


def sandwich(q, v):
    """Rotate v by q as q * (v, 0) * q^-1 using only left_mult_matrix."""
    qc = np.array([-q[0], -q[1], -q[2], q[3]])
    p = left_mult_matrix(q) @ np.append(v, 0.0)
    return (left_mult_matrix(p) @ qc)[:3]


def Rx(a):
    return np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])


def Ry(a):
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def Rz(a):
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])


def same_rotation(q1, q2, atol=1e-9):
    return np.allclose(q1, q2, atol=atol) or np.allclose(q1, -np.asarray(q2), atol=atol)


# --- quaternions ------------------------------------------------------------


def test_convention_is_xyzw_and_canonical():
    # 90 deg about z: [0, 0, sin 45, cos 45] in ROS order.
    q = F.rotvec_to_quat([0, 0, np.pi / 2])
    assert_close(q, [0, 0, np.sqrt(0.5), np.sqrt(0.5)], atol=1e-15)
    assert_close(F.quat_to_matrix(q) @ [1, 0, 0], [0, 1, 0], atol=1e-15)
    # -q is returned with w >= 0.
    assert_close(F.quat_normalize(-2 * q), q, atol=1e-15)
    # w == 0 tie: first non-zero of x, y, z made positive.
    assert_close(F.quat_canonical([0, -1.0, 0, 0]), [0, 1.0, 0, 0])


@given(quats(), vec3)
def test_quat_to_matrix_matches_sandwich_product(q, v):
    assert_close(F.quat_to_matrix(q) @ v, sandwich(q, v), atol=1e-12)
    assert_close(F.quat_rotate(q, v), sandwich(q, v), atol=1e-12)


@given(quats(), quats())
def test_quat_multiply_matches_matrix_product_and_hamilton(q1, q2):
    q12 = F.quat_multiply(q1, q2)
    assert_close(F.quat_to_matrix(q12), F.quat_to_matrix(q1) @ F.quat_to_matrix(q2), atol=1e-12)
    assert same_rotation(q12, left_mult_matrix(q1) @ q2, atol=1e-12)
    assert q12[3] >= 0


@given(quats())
def test_matrix_quat_round_trip_and_double_cover(q):
    R = F.quat_to_matrix(q)
    back = F.matrix_to_quat(R)
    assert same_rotation(back, q, atol=1e-12)
    assert back[3] >= 0
    assert_close(F.quat_to_matrix(-q), R, atol=1e-15)
    assert_close(F.quat_to_matrix(F.quat_conjugate(q)), R.T, atol=1e-12)


@given(rotvecs())
def test_rotvec_quat_round_trip_and_rodrigues_vs_series(v):
    q = F.rotvec_to_quat(v)
    assert_close(F.quat_to_matrix(q), expm_series(hat3(v)), atol=1e-11)
    assert_close(F.so3_exp(v), expm_series(hat3(v)), atol=1e-11)
    back = F.quat_to_rotvec(q)
    angle = np.linalg.norm(v)
    assert 0 <= np.linalg.norm(back) <= np.pi + 1e-12
    if angle < np.pi - 1e-6:
        assert_close(back, v, atol=1e-9)
    else:  # at pi, +axis and -axis are the same rotation
        assert_close(F.so3_exp(back), F.so3_exp(v), atol=1e-9)
    assert_close(F.quat_to_rotvec(-q), back, atol=1e-12)  # sign invariance


@given(rotvecs())
def test_so3_log_inverts_exp(v):
    R = expm_series(hat3(v))
    assert_close(F.so3_exp(F.so3_log(R)), R, atol=1e-9)


def test_rotvec_beyond_pi_wraps_to_shorter_rotation():
    v = np.array([0, 0, 1.5 * np.pi])
    assert_close(F.quat_to_rotvec(F.rotvec_to_quat(v)), [0, 0, -0.5 * np.pi], atol=1e-12)


@given(st.floats(-np.pi, np.pi), st.floats(-np.pi / 2 + 1e-3, np.pi / 2 - 1e-3), st.floats(-np.pi, np.pi))
def test_euler_xyz_is_extrinsic_rpy_and_round_trips(roll, pitch, yaw):
    q = F.quat_from_euler_xyz(roll, pitch, yaw)
    assert_close(F.quat_to_matrix(q), Rz(yaw) @ Ry(pitch) @ Rx(roll), atol=1e-12)
    rpy = F.quat_to_euler_xyz(q)
    assert_close(F.quat_to_matrix(F.quat_from_euler_xyz(*rpy)), F.quat_to_matrix(q), atol=1e-9)
    if abs(abs(roll) - np.pi) > 1e-6 and abs(abs(yaw) - np.pi) > 1e-6:
        assert_close(rpy, [roll, pitch, yaw], atol=1e-7)


def test_euler_gimbal_lock_keeps_rotation():
    q = F.quat_from_euler_xyz(0.3, np.pi / 2, -0.2)
    rpy = F.quat_to_euler_xyz(q)
    assert rpy[0] == 0.0
    assert_close(F.quat_to_matrix(F.quat_from_euler_xyz(*rpy)), F.quat_to_matrix(q), atol=1e-9)


@given(quats(), rotvecs())
def test_quat_angle_is_geodesic_and_sign_invariant(q, v):
    q2 = F.quat_multiply(q, F.rotvec_to_quat(v))
    expected = np.linalg.norm(F.quat_to_rotvec(F.rotvec_to_quat(v)))
    for a, b in [(q, q2), (-q, q2), (q, -q2), (q2, q)]:
        assert abs(F.quat_angle(a, b) - expected) < 1e-7
    # Independent: angle of R1^T R2 from its trace.
    R = F.quat_to_matrix(q).T @ F.quat_to_matrix(q2)
    trace_angle = np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1))
    assert abs(F.quat_angle(q, q2) - trace_angle) < 1e-6


@given(quats(), quats(), st.floats(0.0, 1.0))
def test_slerp_endpoints_and_constant_speed(q0, q1, t):
    assert same_rotation(F.quat_slerp(q0, q1, 0.0), q0, atol=1e-9)
    assert same_rotation(F.quat_slerp(q0, q1, 1.0), q1, atol=1e-9)
    total = F.quat_angle(q0, q1)
    qt = F.quat_slerp(q0, q1, t)
    assert abs(F.quat_angle(q0, qt) - t * total) < 1e-7
    assert abs(F.quat_angle(qt, q1) - (1 - t) * total) < 1e-7


def test_quat_normalize_rejects_zero_and_nan():
    with pytest.raises(ValueError):
        F.quat_normalize([0, 0, 0, 0])
    with pytest.raises(ValueError):
        F.quat_normalize([np.nan, 0, 0, 1])


# --- poses and Lie groups ---------------------------------------------------


@given(poses(), poses(), vec3)
def test_compose_and_inverse_act_on_points(T_ab, T_bc, p_c):
    p_h = np.append(p_c, 1.0)
    T_ac = F.compose(T_ab, T_bc)
    assert_close(T_ac @ p_h, T_ab @ (T_bc @ p_h), atol=1e-12)
    assert_close(F.inverse_pose(T_ab), np.linalg.inv(T_ab), atol=1e-10)
    assert_close(F.compose(F.inverse_pose(T_ab), T_ab), np.eye(4), atol=1e-12)


@given(vec3, quats())
def test_pose_matrix_round_trip(p, q):
    p2, q2 = F.matrix_to_pose(F.pose_to_matrix(p, q))
    assert_close(p2, p, atol=1e-15)
    assert same_rotation(q2, q, atol=1e-12) and q2[3] >= 0


@given(vec6)
def test_se3_exp_matches_series_and_log_inverts(xi):
    assume(np.linalg.norm(xi[3:]) < np.pi - 1e-3)  # log is unique only below pi
    T = F.se3_exp(xi)
    assert_close(T, expm_series(hat6(xi)), atol=1e-10)
    assert_close(F.se3_log(T), xi, atol=1e-9)


@given(vec3, st.sampled_from([0.0, 1e-10, 1e-6, 1e-3, 0.5e-2, 0.9e-2, 1.1e-2, 2e-2]))
def test_se3_small_angles_match_series(v, angle):
    # Around the switch between closed form and Taylor series, both must be accurate to ~eps.
    w = np.array([0.6, -0.0, 0.8]) * angle
    xi = np.concatenate([v, w])
    assert_close(F.se3_exp(xi), expm_series(hat6(xi)), atol=1e-14)
    V = sum(np.linalg.matrix_power(hat3(w), k) / np.prod(np.arange(1, k + 2)) for k in range(12))
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = expm_series(hat3(w)), V @ v
    assert_close(F.se3_log(T), np.concatenate([np.linalg.solve(V, T[:3, 3]), w]), atol=1e-14)


def test_batched_shapes():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(5, 3, 4))
    assert F.quat_to_matrix(q).shape == (5, 3, 3, 3)
    assert F.matrix_to_quat(F.quat_to_matrix(q)).shape == (5, 3, 4)
    assert F.se3_log(F.se3_exp(rng.normal(size=(7, 6)))).shape == (7, 6)
    T = F.pose_to_matrix(rng.normal(size=(7, 3)), rng.normal(size=(7, 4)))
    assert F.transform_twist(T, rng.normal(size=(7, 6))).shape == (7, 6)
    assert F.adjoint(T).shape == (7, 6, 6)
    q_single = F.quat_normalize(q[2, 1])
    assert_close(F.quat_normalize(q)[2, 1], q_single)


# --- twists and wrenches ----------------------------------------------------


@given(poses(), vec6, vec3)
def test_transform_twist_matches_moving_points(T_ab, V_b, x_a):
    """A body moving with body-frame twist V_b: finite-difference the motion of a point seen from a."""
    dt = 1e-6
    x_body = np.linalg.inv(T_ab) @ np.append(x_a, 1.0)  # point's coordinates in b at t = 0

    def point_at(t):  # T_ab @ exp(t V_b) moves the point, seen in a
        return (T_ab @ expm_series(hat6(V_b * t)) @ x_body)[:3]

    vel_fd = (point_at(dt) - point_at(-dt)) / (2 * dt)
    V_a = F.transform_twist(T_ab, V_b)
    assert_close(V_a[:3] + np.cross(V_a[3:], x_a), vel_fd, atol=1e-6)
    assert_close(V_a, F.adjoint(T_ab) @ V_b, atol=1e-12)
    # rotate_twist keeps the reference point at b's origin: it is the velocity of that point in a's axes.
    p_b_in_a = T_ab[:3, 3]
    vel_b_origin = (T_ab @ expm_series(hat6(V_b * dt)) @ [0, 0, 0, 1.0] - T_ab @ expm_series(hat6(-V_b * dt)) @ [0, 0, 0, 1.0])[:3] / (2 * dt)
    assert_close(F.rotate_twist(T_ab[:3, :3], V_b)[:3], vel_b_origin, atol=1e-6)
    assert_close(V_a[:3] + np.cross(V_a[3:], p_b_in_a), vel_b_origin, atol=1e-6)


@given(poses(), vec6)
def test_rotate_and_transform_twist_differ_by_reference_point_term(T_ab, V_b):
    R, p = T_ab[:3, :3], T_ab[:3, 3]
    diff = F.transform_twist(T_ab, V_b) - F.rotate_twist(R, V_b)
    assert_close(diff[:3], np.cross(p, R @ V_b[3:]), atol=1e-12)
    assert_close(diff[3:], 0.0, atol=1e-15)
    # Without translation the two agree exactly.
    T_rot = T_ab.copy()
    T_rot[:3, 3] = 0
    assert_close(F.transform_twist(T_rot, V_b), F.rotate_twist(R, V_b), atol=1e-14)


@given(poses(), vec6, vec6)
def test_transform_wrench_preserves_power_and_moments(T_ab, W_b, V_b):
    W_a = F.transform_wrench(T_ab, W_b)
    V_a = F.transform_twist(T_ab, V_b)
    assert abs(W_a @ V_a - W_b @ V_b) < 1e-10
    assert_close(W_a, F.adjoint(F.inverse_pose(T_ab)).T @ W_b, atol=1e-12)
    # Force applied at b's origin: moment about a's origin gains p x f.
    R, p = T_ab[:3, :3], T_ab[:3, 3]
    diff = W_a - F.rotate_wrench(R, W_b)
    assert_close(diff[:3], 0.0, atol=1e-15)
    assert_close(diff[3:], np.cross(p, R @ W_b[:3]), atol=1e-12)


def test_rotate_twist_rejects_a_pose_matrix():
    # A 4x4 here is the "wrong adjoint" mistake waiting to happen: make the caller choose.
    with pytest.raises(ValueError):
        F.rotate_twist(np.eye(4), np.zeros(6))


@given(vec3, quats(), vec3, quats())
def test_pose_error_recovers_target(p_t, q_t, p, q):
    e = F.pose_error(p_t, q_t, p, q)
    assert_close(p + e[:3], p_t, atol=1e-12)
    assert np.linalg.norm(e[3:]) <= np.pi + 1e-12
    assert_close(F.so3_exp(e[3:]) @ F.quat_to_matrix(q), F.quat_to_matrix(q_t), atol=1e-9)
    # Sign of either quaternion is irrelevant.
    assert_close(F.pose_error(p_t, -q_t, p, q), e, atol=1e-9)


def test_pose_error_hand_checked():
    e = F.pose_error([1, 2, 3], F.rotvec_to_quat([0, 0, 0.5]), [1, 1, 1], F.rotvec_to_quat([0, 0, 0.2]))
    assert_close(e, [0, 1, 2, 0, 0, 0.3], atol=1e-12)


# --- egocentric frames ------------------------------------------------------


@given(poses(), poses())
def test_relative_pose_recomposes(T_start, T_now):
    T_rel = F.relative_pose(T_start, T_now)
    assert_close(F.compose(T_start, T_rel), T_now, atol=1e-12)
    assert_close(F.relative_pose(T_start, T_start), np.eye(4), atol=1e-12)


@given(poses(), poses(), poses(), vec6, vec6, st.floats(0.0, 0.08), st.sampled_from(["quat", "rotvec"]))
def test_egocentric_proprio_is_invariant_to_base_frame(T_start, T_now, G, twist, wrench, grip, orientation):
    """Moving the whole world (base frame) must not change what the policy sees."""
    a = F.egocentric_proprio(T_start, T_now, twist, wrench, grip, orientation=orientation)
    R_g = G[:3, :3]
    b = F.egocentric_proprio(
        G @ T_start, G @ T_now, F.rotate_twist(R_g, twist), F.rotate_wrench(R_g, wrench), grip, orientation=orientation
    )
    assert a.dtype == np.float32 and a.shape == (F.proprio_size(1, orientation),)
    k = 7 if orientation == "quat" else 6
    assert_close(a[:3], b[:3], atol=1e-5)
    assert_close(a[k:], b[k:], atol=1e-5)
    # Orientation: equal as rotations (at exactly pi the double cover makes the sign/axis ambiguous).
    to_R = F.quat_to_matrix if orientation == "quat" else F.so3_exp
    assert_close(to_R(a[3:k].astype(float)), to_R(b[3:k].astype(float)), atol=1e-5)
    if F.quat_angle(F.matrix_to_quat(T_start), F.matrix_to_quat(T_now)) < np.pi - 1e-3:
        assert_close(a[3:k], b[3:k], atol=1e-5)


def test_egocentric_proprio_layout():
    T_start = F.pose_to_matrix([0.5, 0, 0.3], F.rotvec_to_quat([0, 0, np.pi / 2]))
    T_now = F.pose_to_matrix([0.5, 0.1, 0.3], F.rotvec_to_quat([0, 0, np.pi / 2]))
    twist_base = np.array([0, 0.2, 0, 0, 0, 0.3])  # moving along base +y, yawing
    wrench_base = np.array([1.0, 0, 0, 0, 0, 0])
    x = F.egocentric_proprio(T_start, T_now, twist_base, wrench_base, [0.04, 0.02])
    assert x.shape == (F.proprio_size(2),) == (21,)
    assert_close(x[0:3], [0.1, 0, 0], atol=1e-7)  # base +y is start-EE +x
    assert_close(x[3:7], [0, 0, 0, 1], atol=1e-7)
    assert_close(x[7:13], [0.2, 0, 0, 0, 0, 0.3], atol=1e-7)
    assert_close(x[13:19], [0, -1.0, 0, 0, 0, 0], atol=1e-7)  # base +x is EE -y
    assert_close(x[19:], [0.04, 0.02], atol=1e-7)


@given(poses(), vec6)
def test_ee_base_twist_round_trip_and_action_direction(T_base_ee, action):
    base = F.ee_twist_to_base(T_base_ee, action)
    assert_close(F.base_twist_to_ee(T_base_ee, base), action, atol=1e-12)
    # An EE-frame "+x" action moves along the EE's x axis as seen in the base frame.
    assert_close(F.ee_twist_to_base(T_base_ee, [1, 0, 0, 0, 0, 0])[:3], T_base_ee[:3, 0], atol=1e-15)
    # It ignores the EE position: the reference point stays at the EE origin.
    T_moved = T_base_ee.copy()
    T_moved[:3, 3] += 5.0
    assert_close(F.ee_twist_to_base(T_moved, action), base, atol=1e-15)


@given(vec3, quats(), vec3, quats(), vec6)
def test_pose_tuples_are_accepted_wherever_matrices_are(p1, q1, p2, q2, V):
    A, B = (p1, q1), (p2, q2)
    TA, TB = F.pose_to_matrix(p1, q1), F.pose_to_matrix(p2, q2)
    assert_close(F.compose(A, B), F.compose(TA, TB))
    assert_close(F.inverse_pose(A), F.inverse_pose(TA))
    assert_close(F.transform_twist(A, V), F.transform_twist(TA, V))
    assert_close(F.transform_wrench(A, V), F.transform_wrench(TA, V))
    assert_close(F.relative_pose(A, B), F.relative_pose(TA, TB))
    assert_close(F.ee_twist_to_base(A, V), F.ee_twist_to_base(TA, V))
    assert_close(F.egocentric_proprio(A, B, V, V, 0.0), F.egocentric_proprio(TA, TB, V, V, 0.0), 0)
    with pytest.raises(ValueError):
        F.compose((p1, q1, 0), TB)
    with pytest.raises(ValueError):
        F.inverse_pose(np.eye(3))
