"""SE(3) helpers and the egocentric frames of HIL-SERL, numpy only.

Conventions (one for the whole workspace; the C++ controllers use the same):

- **Quaternions** are numpy arrays ``[x, y, z, w]`` (ROS / geometry_msgs order),
  unit norm, Hamilton product, active rotation: ``quat_to_matrix(q) @ p``
  rotates a point. Every function that *returns* a quaternion returns the
  canonical sign: ``w > 0``; when ``w == 0`` exactly, the first non-zero of
  ``x, y, z`` is positive. ``q`` and ``-q`` are the same rotation (double cover);
  functions that *take* quaternions accept either sign.
- **Twists** are 6-vectors ``[v(3), w(3)]`` (linear then angular, like
  geometry_msgs/Twist); **wrenches** are ``[f(3), tau(3)]`` (like
  geometry_msgs/Wrench). A twist or wrench has a *reference point* (the point
  whose linear velocity ``v`` is, or about which the torque ``tau`` is taken)
  and *coordinates* (the axes its components are written in). The functions
  below say which of the two they change.
- **Poses** are 4x4 homogeneous matrices ``T_ab`` (frame ``b`` expressed in
  frame ``a``: ``p_a = T_ab @ p_b``), or ``(position[3], quat_xyzw[4])``
  tuples; every function taking a pose accepts both (:func:`as_pose_matrix`),
  and :func:`pose_to_matrix` / :func:`matrix_to_pose` convert explicitly.
- **Batches**: every function accepts leading batch dimensions (``[..., 4]``
  quaternions, ``[..., 4, 4]`` poses, ``[..., 6]`` twists) and broadcasts them.

Which twist conversion to use (the "wrong adjoint" defect of earlier HIL-SERL
ports came from mixing these up):

- :func:`rotate_twist` / :func:`rotate_wrench`: the SAME reference point, only
  the coordinates change. Use this for the end-effector twist measured by the
  robot (velocity of the EE origin written in base axes) when you want it in EE
  axes, for policy actions commanded in the current EE frame, and for the
  external wrench estimated at the EE. This is what almost every HIL-SERL
  conversion needs.
- :func:`transform_twist` / :func:`transform_wrench`: the full adjoint. The
  reference point moves from the origin of ``b`` to the origin of ``a`` as well,
  which adds ``p x w`` (twist) or ``p x f`` (wrench). Use it when the velocity of
  a *different point* is wanted, e.g. a tool tip offset from the flange, or a
  body twist turned into a spatial twist for Lie-group integration.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

__all__ = [
    "quat_multiply",
    "quat_conjugate",
    "quat_inverse",
    "quat_normalize",
    "quat_canonical",
    "quat_to_matrix",
    "matrix_to_quat",
    "rotvec_to_quat",
    "quat_to_rotvec",
    "quat_from_euler_xyz",
    "quat_to_euler_xyz",
    "quat_angle",
    "quat_slerp",
    "quat_rotate",
    "skew",
    "pose_to_matrix",
    "as_pose_matrix",
    "matrix_to_pose",
    "inverse_pose",
    "compose",
    "so3_exp",
    "so3_log",
    "se3_exp",
    "se3_log",
    "adjoint",
    "transform_twist",
    "rotate_twist",
    "transform_wrench",
    "rotate_wrench",
    "pose_error",
    "relative_pose",
    "egocentric_proprio",
    "proprio_size",
    "ee_twist_to_base",
    "base_twist_to_ee",
]

# Below this angle (rad) the closed-form coefficients lose digits to cancellation; use Taylor series.
_SMALL_ANGLE = 1e-2


def _f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


# --------------------------------------------------------------------------- quaternions


def quat_canonical(q) -> np.ndarray:
    """Return ``q`` with the canonical sign (``w > 0``; ties broken by x, then y, then z)."""
    q = _f64(q)
    w = q[..., 3]
    if np.all(w != 0):  # fast path: the sign of w decides (the controllers call this at 1 kHz)
        return q * np.where(w < 0, -1.0, 1.0)[..., None]
    sign = np.zeros(q.shape[:-1])
    # Lexicographic on (w, x, y, z): the first non-zero component decides the sign.
    for i in (3, 0, 1, 2):
        s = np.sign(q[..., i])
        sign = np.where(sign == 0, s, sign)
    sign = np.where(sign == 0, 1.0, sign)
    return q * sign[..., None]


def quat_normalize(q) -> np.ndarray:
    """Unit-norm, canonical-sign copy of ``q``; raises ``ValueError`` on a zero or non-finite quaternion."""
    q = _f64(q)
    n = np.linalg.norm(q, axis=-1, keepdims=True)
    if not np.all(np.isfinite(q)) or np.any(n < 1e-12):
        raise ValueError("quaternion must be finite and non-zero to normalise, got %r" % (q,))
    return quat_canonical(q / n)


def quat_multiply(q1, q2) -> np.ndarray:
    """Hamilton product ``q1 * q2`` ([x, y, z, w]): rotate by ``q2`` first, then by ``q1``."""
    q1, q2 = _f64(q1), _f64(q2)
    x1, y1, z1, w1 = np.moveaxis(q1, -1, 0)
    x2, y2, z2, w2 = np.moveaxis(q2, -1, 0)
    out = np.stack(
        [
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
        ],
        axis=-1,
    )
    return quat_canonical(out)


def quat_conjugate(q) -> np.ndarray:
    """Conjugate ``[-x, -y, -z, w]``: the inverse rotation for a unit quaternion (canonical sign)."""
    q = _f64(q)
    return quat_canonical(q * np.array([-1.0, -1.0, -1.0, 1.0]))


quat_inverse = quat_conjugate


def quat_to_matrix(q) -> np.ndarray:
    """Rotation matrix ``[..., 3, 3]`` of a quaternion (normalised first, either sign)."""
    q = _f64(q)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    x, y, z, w = np.moveaxis(q, -1, 0)
    R = np.empty(q.shape[:-1] + (3, 3))
    R[..., 0, 0] = 1 - 2 * (y * y + z * z)
    R[..., 0, 1] = 2 * (x * y - z * w)
    R[..., 0, 2] = 2 * (x * z + y * w)
    R[..., 1, 0] = 2 * (x * y + z * w)
    R[..., 1, 1] = 1 - 2 * (x * x + z * z)
    R[..., 1, 2] = 2 * (y * z - x * w)
    R[..., 2, 0] = 2 * (x * z - y * w)
    R[..., 2, 1] = 2 * (y * z + x * w)
    R[..., 2, 2] = 1 - 2 * (x * x + y * y)
    return R


def matrix_to_quat(R) -> np.ndarray:
    """Canonical unit quaternion of a rotation matrix ``[..., 3, 3]`` (Shepperd's method)."""
    R = _f64(R)
    if R.shape[-2:] == (4, 4):
        R = R[..., :3, :3]
    m00, m11, m22 = R[..., 0, 0], R[..., 1, 1], R[..., 2, 2]
    trace = m00 + m11 + m22
    # Four candidate formulas, each exact but well conditioned only when its pivot is the largest.
    pivots = np.stack([m00, m11, m22, trace], axis=-1)
    k = np.argmax(pivots, axis=-1)
    cands = np.empty(R.shape[:-2] + (4, 4))
    # pivot x
    cands[..., 0, :] = np.stack(
        [1 + m00 - m11 - m22, R[..., 0, 1] + R[..., 1, 0], R[..., 0, 2] + R[..., 2, 0], R[..., 2, 1] - R[..., 1, 2]], -1
    )
    # pivot y
    cands[..., 1, :] = np.stack(
        [R[..., 0, 1] + R[..., 1, 0], 1 - m00 + m11 - m22, R[..., 1, 2] + R[..., 2, 1], R[..., 0, 2] - R[..., 2, 0]], -1
    )
    # pivot z
    cands[..., 2, :] = np.stack(
        [R[..., 0, 2] + R[..., 2, 0], R[..., 1, 2] + R[..., 2, 1], 1 - m00 - m11 + m22, R[..., 1, 0] - R[..., 0, 1]], -1
    )
    # pivot w
    cands[..., 3, :] = np.stack(
        [R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1], 1 + trace], -1
    )
    q = np.take_along_axis(cands, k[..., None, None], axis=-2)[..., 0, :]
    return quat_normalize(q)


def rotvec_to_quat(v) -> np.ndarray:
    """Quaternion of a rotation vector (axis * angle, rad); any angle, canonical sign."""
    v = _f64(v)
    angle = np.linalg.norm(v, axis=-1, keepdims=True)
    # sin(a/2)/a written with sinc so a = 0 needs no special case.
    scale = 0.5 * np.sinc(angle / (2 * np.pi))
    q = np.concatenate([v * scale, np.cos(angle / 2)], axis=-1)
    return quat_canonical(q)


def quat_to_rotvec(q) -> np.ndarray:
    """Rotation vector of a quaternion (either sign), angle in ``[0, pi]``."""
    q = quat_canonical(_f64(q))
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    xyz, w = q[..., :3], q[..., 3:]
    s = np.linalg.norm(xyz, axis=-1, keepdims=True)
    angle = 2 * np.arctan2(s, w)
    small = s < 1e-8
    # angle / sin(angle/2) -> 2 / w * (1 + s^2/(6 w^2)) as s -> 0 (w ~ 1 there).
    safe_s = np.where(small, 1.0, s)
    safe_w = np.where(small, w, 1.0)  # both np.where branches are evaluated; keep them finite
    factor = np.where(small, 2.0 / safe_w * (1 + s * s / (6 * safe_w * safe_w)), angle / safe_s)
    return xyz * factor


def quat_from_euler_xyz(roll, pitch, yaw) -> np.ndarray:
    """Quaternion of extrinsic X-Y-Z Euler angles (ROS RPY): ``R = Rz(yaw) @ Ry(pitch) @ Rx(roll)``."""
    roll, pitch, yaw = np.broadcast_arrays(_f64(roll), _f64(pitch), _f64(yaw))
    cr, sr = np.cos(roll / 2), np.sin(roll / 2)
    cp, sp = np.cos(pitch / 2), np.sin(pitch / 2)
    cy, sy = np.cos(yaw / 2), np.sin(yaw / 2)
    q = np.stack(
        [
            sr * cp * cy - cr * sp * sy,
            cr * sp * cy + sr * cp * sy,
            cr * cp * sy - sr * sp * cy,
            cr * cp * cy + sr * sp * sy,
        ],
        axis=-1,
    )
    return quat_canonical(q)


def quat_to_euler_xyz(q) -> np.ndarray:
    """``[..., 3]`` array ``[roll, pitch, yaw]`` (extrinsic XYZ, ROS RPY), pitch in ``[-pi/2, pi/2]``.

    At gimbal lock (``|pitch| = pi/2``) roll is set to 0 and the whole rotation
    about the vertical goes into yaw.
    """
    R = quat_to_matrix(q)
    sin_pitch = np.clip(-R[..., 2, 0], -1.0, 1.0)
    pitch = np.arcsin(sin_pitch)
    cos_pitch = np.hypot(R[..., 2, 1], R[..., 2, 2])
    locked = cos_pitch < 1e-9
    roll = np.where(locked, 0.0, np.arctan2(R[..., 2, 1], R[..., 2, 2]))
    yaw = np.where(locked, np.arctan2(-R[..., 0, 1], R[..., 1, 1]), np.arctan2(R[..., 1, 0], R[..., 0, 0]))
    # Near the lock arcsin loses precision; atan2 of the column norm does not.
    pitch = np.where(locked, pitch, np.arctan2(sin_pitch, cos_pitch))
    return np.stack([roll, pitch, yaw], axis=-1)


def quat_angle(q1, q2) -> np.ndarray:
    """Geodesic angle (rad, in ``[0, pi]``) between two orientations; invariant to the sign of either."""
    d = quat_multiply(quat_conjugate(q1), _f64(q2))
    return 2 * np.arctan2(np.linalg.norm(d[..., :3], axis=-1), np.abs(d[..., 3]))


def quat_slerp(q0, q1, t) -> np.ndarray:
    """Spherical interpolation along the shortest arc: ``t = 0`` gives ``q0``, ``t = 1`` gives ``q1``."""
    q0 = _f64(q0)
    t = _f64(t)
    delta = quat_to_rotvec(quat_multiply(quat_conjugate(q0), q1))
    return quat_multiply(q0, rotvec_to_quat(delta * t[..., None]))


def quat_rotate(q, v) -> np.ndarray:
    """Rotate vector(s) ``v`` by quaternion(s) ``q``."""
    return np.einsum("...ij,...j->...i", quat_to_matrix(q), _f64(v))


# --------------------------------------------------------------------------- poses


def skew(v) -> np.ndarray:
    """Cross-product matrix: ``skew(a) @ b == np.cross(a, b)``."""
    v = _f64(v)
    S = np.zeros(v.shape[:-1] + (3, 3))
    S[..., 0, 1], S[..., 0, 2] = -v[..., 2], v[..., 1]
    S[..., 1, 0], S[..., 1, 2] = v[..., 2], -v[..., 0]
    S[..., 2, 0], S[..., 2, 1] = -v[..., 1], v[..., 0]
    return S


def pose_to_matrix(position, quat) -> np.ndarray:
    """4x4 homogeneous matrix from a position ``[..., 3]`` and a quaternion ``[..., 4]`` (xyzw)."""
    position, R = _f64(position), quat_to_matrix(quat)
    batch = np.broadcast_shapes(position.shape[:-1], R.shape[:-2])
    T = np.zeros(batch + (4, 4))
    T[..., :3, :3] = R
    T[..., :3, 3] = position
    T[..., 3, 3] = 1.0
    return T


def as_pose_matrix(pose) -> np.ndarray:
    """A pose as a 4x4 matrix: a ``(position, quat_xyzw)`` tuple is converted, an array is returned as float64.

    Every function here that takes a pose (``T``, ``T_ab``, ``T_start``, ...) accepts either form.
    """
    if isinstance(pose, tuple):
        if len(pose) != 2:
            raise ValueError("a pose tuple must be (position[3], quat_xyzw[4]), got %d items" % len(pose))
        return pose_to_matrix(*pose)
    T = _f64(pose)
    if T.shape[-2:] != (4, 4):
        raise ValueError("a pose must be a 4x4 homogeneous matrix or a (position, quat_xyzw) tuple, got shape %s" % (T.shape,))
    return T


def matrix_to_pose(T) -> Tuple[np.ndarray, np.ndarray]:
    """``(position[..., 3], quat_xyzw[..., 4])`` of a 4x4 homogeneous matrix."""
    T = as_pose_matrix(T)
    return T[..., :3, 3].copy(), matrix_to_quat(T[..., :3, :3])


def inverse_pose(T) -> np.ndarray:
    """``T_ba`` from ``T_ab`` (rigid inverse, no general matrix inversion)."""
    T = as_pose_matrix(T)
    Rt = np.swapaxes(T[..., :3, :3], -1, -2)
    out = np.zeros(T.shape)
    out[..., :3, :3] = Rt
    out[..., :3, 3] = -np.einsum("...ij,...j->...i", Rt, T[..., :3, 3])
    out[..., 3, 3] = 1.0
    return out


def compose(T_ab, T_bc) -> np.ndarray:
    """``T_ac = T_ab @ T_bc``."""
    return np.matmul(as_pose_matrix(T_ab), as_pose_matrix(T_bc))


# --------------------------------------------------------------------------- Lie groups


def so3_exp(w) -> np.ndarray:
    """Rotation matrix ``exp([w]x)`` (Rodrigues) of a rotation vector ``w`` (rad)."""
    w = _f64(w)
    theta = np.linalg.norm(w, axis=-1)[..., None, None]
    W = skew(w)
    a = np.sinc(theta / np.pi)  # sin(t)/t
    b = 0.5 * np.sinc(theta / (2 * np.pi)) ** 2  # (1 - cos t)/t^2
    return np.eye(3) + a * W + b * (W @ W)


def so3_log(R) -> np.ndarray:
    """Rotation vector (angle in ``[0, pi]``) of a rotation matrix; stable near 0 and pi."""
    return quat_to_rotvec(matrix_to_quat(R))


def _left_jacobian_coeffs(theta):
    """(1 - cos t)/t^2 and (t - sin t)/t^3 with series below _SMALL_ANGLE."""
    b = 0.5 * np.sinc(theta / (2 * np.pi)) ** 2
    t2 = theta * theta
    safe = np.where(theta < _SMALL_ANGLE, 1.0, theta)
    c = np.where(theta < _SMALL_ANGLE, 1 / 6 - t2 / 120 + t2 * t2 / 5040, (safe - np.sin(safe)) / safe**3)
    return b, c


def se3_exp(xi) -> np.ndarray:
    """4x4 pose ``exp(xi^)`` of a twist ``xi = [v, w]`` integrated for unit time (body = spatial at identity)."""
    xi = _f64(xi)
    v, w = xi[..., :3], xi[..., 3:]
    theta = np.linalg.norm(w, axis=-1)[..., None, None]
    W = skew(w)
    b, c = _left_jacobian_coeffs(theta)
    V = np.eye(3) + b * W + c * (W @ W)
    T = np.zeros(xi.shape[:-1] + (4, 4))
    T[..., :3, :3] = so3_exp(w)
    T[..., :3, 3] = np.einsum("...ij,...j->...i", V, v)
    T[..., 3, 3] = 1.0
    return T


def se3_log(T) -> np.ndarray:
    """Twist ``xi = [v, w]`` with ``se3_exp(xi) == T``; rotation angle in ``[0, pi]``."""
    T = as_pose_matrix(T)
    w = so3_log(T[..., :3, :3])
    theta = np.linalg.norm(w, axis=-1)[..., None, None]
    W = skew(w)
    t2 = theta * theta
    safe = np.where(theta < _SMALL_ANGLE, 1.0, theta)
    # V^-1 = I - W/2 + (1 - (t/2) cot(t/2)) / t^2 * W^2; the coefficient is 1/12 + t^2/720 + ... near 0.
    d = np.where(
        theta < _SMALL_ANGLE,
        1 / 12 + t2 / 720 + t2 * t2 / 30240,
        (1 - (safe / 2) / np.tan(safe / 2)) / (safe * safe),
    )
    V_inv = np.eye(3) - 0.5 * W + d * (W @ W)
    v = np.einsum("...ij,...j->...i", V_inv, T[..., :3, 3])
    return np.concatenate([v, w], axis=-1)


# --------------------------------------------------------------------------- twists and wrenches


def adjoint(T) -> np.ndarray:
    """6x6 adjoint of ``T_ab`` for ``[v, w]`` twists: ``[[R, [p]x R], [0, R]]``, so ``V_a = Ad(T_ab) V_b``."""
    T = as_pose_matrix(T)
    R, p = T[..., :3, :3], T[..., :3, 3]
    Ad = np.zeros(T.shape[:-2] + (6, 6))
    Ad[..., :3, :3] = R
    Ad[..., :3, 3:] = skew(p) @ R
    Ad[..., 3:, 3:] = R
    return Ad


def transform_twist(T_ab, twist_b) -> np.ndarray:
    """Full adjoint: twist referenced at b's origin in b's axes -> at a's origin in a's axes.

    ``v_a = R v_b + p x (R w_b)``, ``w_a = R w_b``. Use it only when the reference
    point really changes (velocity of another point of the same rigid body, or a
    body twist turned spatial). For the EE twist in base vs EE axes use
    :func:`rotate_twist`.
    """
    T_ab, twist_b = as_pose_matrix(T_ab), _f64(twist_b)
    R, p = T_ab[..., :3, :3], T_ab[..., :3, 3]
    v = np.einsum("...ij,...j->...i", R, twist_b[..., :3])
    w = np.einsum("...ij,...j->...i", R, twist_b[..., 3:])
    return np.concatenate([v + np.cross(p, w), w], axis=-1)


def rotate_twist(R_ab, twist_b) -> np.ndarray:
    """Same reference point, new axes: ``[R v, R w]`` with ``R_ab`` a 3x3 rotation (b's axes in a).

    Use it for the measured EE twist (EE-origin velocity) between base and EE
    axes, and for actions commanded in the current EE frame.
    """
    R_ab, twist_b = _f64(R_ab), _f64(twist_b)
    if R_ab.shape[-2:] != (3, 3):
        raise ValueError("rotate_twist takes a 3x3 rotation matrix, got shape %s" % (R_ab.shape,))
    return np.concatenate(
        [np.einsum("...ij,...j->...i", R_ab, twist_b[..., :3]), np.einsum("...ij,...j->...i", R_ab, twist_b[..., 3:])],
        axis=-1,
    )


def transform_wrench(T_ab, wrench_b) -> np.ndarray:
    """Full adjoint-transpose: wrench about b's origin in b's axes -> about a's origin in a's axes.

    ``f_a = R f_b``, ``tau_a = R tau_b + p x f_a``; equals ``adjoint(inverse_pose(T_ab)).T @ wrench_b``,
    so power ``wrench . twist`` is preserved. Use it when the point the torque is
    taken about changes (e.g. a force sensor offset from the EE); for re-expressing
    the external wrench at the EE in base vs EE axes use :func:`rotate_wrench`.
    """
    T_ab, wrench_b = as_pose_matrix(T_ab), _f64(wrench_b)
    R, p = T_ab[..., :3, :3], T_ab[..., :3, 3]
    f = np.einsum("...ij,...j->...i", R, wrench_b[..., :3])
    tau = np.einsum("...ij,...j->...i", R, wrench_b[..., 3:])
    return np.concatenate([f, tau + np.cross(p, f)], axis=-1)


def rotate_wrench(R_ab, wrench_b) -> np.ndarray:
    """Same point, new axes: ``[R f, R tau]`` with ``R_ab`` a 3x3 rotation (b's axes in a)."""
    return rotate_twist(R_ab, wrench_b)


def pose_error(target_pos, target_quat, pos, quat) -> np.ndarray:
    """Impedance-control error ``[p_t - p, log(R_t R^T)]`` (6,), both parts in base axes.

    The orientation part is the rotation vector (angle in ``[0, pi]``) that turns
    the measured orientation into the target one, applied on the left (base frame).
    """
    e_pos = _f64(target_pos) - _f64(pos)
    e_rot = quat_to_rotvec(quat_multiply(target_quat, quat_conjugate(quat)))
    return np.concatenate([e_pos, e_rot], axis=-1)


# --------------------------------------------------------------------------- egocentric frames (paper: relative observation/action frames)


def _rotation_of(X) -> np.ndarray:
    X = as_pose_matrix(X) if isinstance(X, tuple) else _f64(X)
    if X.shape[-2:] == (4, 4):
        return X[..., :3, :3]
    if X.shape[-2:] == (3, 3):
        return X
    raise ValueError("expected a 4x4 pose or a 3x3 rotation, got shape %s" % (X.shape,))


def relative_pose(T_start, T_now) -> np.ndarray:
    """Current EE pose expressed in the episode-start EE frame: ``T_start^-1 @ T_now``.

    HIL-SERL randomises the start pose; expressing proprioception relative to it
    makes the policy invariant to where the episode began.
    """
    return compose(inverse_pose(T_start), T_now)


def proprio_size(n_gripper: int = 1, orientation: str = "quat") -> int:
    """Length of :func:`egocentric_proprio`: 3 + (4 or 3) + 6 + 6 + n_gripper."""
    if orientation not in ("quat", "rotvec"):
        raise ValueError("orientation must be 'quat' or 'rotvec', got %r" % (orientation,))
    return 3 + (4 if orientation == "quat" else 3) + 12 + int(n_gripper)


def egocentric_proprio(T_start, T_now, twist_base, wrench_base, gripper, orientation: str = "quat") -> np.ndarray:
    """Egocentric proprioception vector (float32) of the paper's relative observation frame.

    Inputs: ``T_start`` and ``T_now`` are base-frame EE poses (4x4) at episode
    start and now; ``twist_base`` is the EE twist as robots report it (velocity
    of the EE origin, base axes); ``wrench_base`` the external wrench at the EE
    origin, base axes (franka ``O_F_ext_hat_K``); ``gripper`` a scalar or ``[G]``.

    Layout (``orientation="quat"``, length ``19 + G``)::

        [0:3]   position of the current EE in the start EE frame (m)
        [3:7]   orientation relative to start, quaternion xyzw, canonical (w >= 0)
        [7:13]  EE twist [v, w] in current EE axes (same point, only rotated)
        [13:19] external wrench [f, tau] in current EE axes (same point)
        [19:]   gripper

    With ``orientation="rotvec"`` the orientation is a rotation vector and every
    later block starts one slot earlier (length ``18 + G``). The result is
    unchanged by any global change of the base frame, except that at a relative
    rotation of exactly pi the quaternion sign (rotation-vector direction) is
    ambiguous, as for any 3- or 4-number orientation code.
    """
    if orientation not in ("quat", "rotvec"):
        raise ValueError("orientation must be 'quat' or 'rotvec', got %r" % (orientation,))
    pos, quat = matrix_to_pose(relative_pose(T_start, T_now))
    rot = quat if orientation == "quat" else quat_to_rotvec(quat)
    R_ee_base = np.swapaxes(_rotation_of(T_now), -1, -2)
    twist_ee = rotate_twist(R_ee_base, twist_base)
    wrench_ee = rotate_wrench(R_ee_base, wrench_base)
    g = np.atleast_1d(_f64(gripper))  # scalar, [G] shared by the batch, or [..., G]
    g = np.broadcast_to(g, pos.shape[:-1] + g.shape[-1:])
    return np.concatenate([pos, rot, twist_ee, wrench_ee, g], axis=-1).astype(np.float32)


def ee_twist_to_base(T_base_ee, twist_ee) -> np.ndarray:
    """Action twist in current EE axes -> base axes, same point (the EE origin): only the rotation is used.

    This is the conversion for actions "in the current end-effector frame": the
    resulting ``v`` is the EE-origin displacement rate in base axes, ``w`` the
    angular velocity in base axes. ``T_base_ee`` may be 4x4 or a 3x3 rotation.
    """
    return rotate_twist(_rotation_of(T_base_ee), twist_ee)


def base_twist_to_ee(T_base_ee, twist_base) -> np.ndarray:
    """Inverse of :func:`ee_twist_to_base`: EE-origin twist in base axes -> current EE axes."""
    return rotate_twist(np.swapaxes(_rotation_of(T_base_ee), -1, -2), twist_base)
