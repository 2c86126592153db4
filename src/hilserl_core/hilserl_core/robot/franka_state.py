"""franka_ros2's robot state -> hilserl's ``current_pose``, ``current_twist``, ``external_wrench`` (no ROS).

The robot-side state adapter (``hilserl_robot franka_state_node``) subscribes to
franka_robot_state_broadcaster's ``robot_state`` (``franka_msgs/FrankaRobotState``) and
publishes, per arm, what the simulator publishes (docs/ARCHITECTURE.md "Topics per arm";
docs/DESIGN.md "Conventions"):

- ``current_pose``: the TCP pose in the arm's base frame. franka's ``O_T_EE`` is that pose
  when the end effector (``F_T_EE``, set in Desk or by ``SetEEFrame``) is the TCP the targets
  refer to (the hilserl controllers control the same frame). libfranka gives it as a 4x4
  matrix in COLUMN-MAJOR order (``O_T_EE[12:15]`` is the translation);
  ``FrankaRobotState`` already carries it as a PoseStamped (``o_t_ee``). Both are read here
  (:func:`pose_from_column_major`, :func:`sample_from_msg`).
- ``external_wrench``: franka's ``O_F_ext_hat_K`` unchanged in sign and axes (base axes, the
  wrench the robot exerts on the environment, as the simulator reports it), but taken about
  the TCP: franka estimates it at the stiffness frame K (``EE_T_K``, identity unless set), so
  the torque is moved from K to the EE origin, ``tau_EE = tau_K + (p_K - p_EE) x f``
  (:func:`wrench_at_ee`). With the default ``EE_T_K`` this is the identity.
- ``current_twist``: the TCP twist ``[v, w]`` in base axes. The robot state has no measured
  Cartesian velocity (``O_dP_EE_d``/``O_dP_EE_c`` are the motion generator's desired and
  commanded twists: zero or meaningless under torque control, which the hilserl controllers
  use), and no Jacobian, so it is estimated from consecutive measured poses on the robot's
  own clock (``FrankaRobotState.time``): ``v = dp/dt``, ``w = log(R_k R_{k-1}^T)/dt``, then a
  first-order low-pass filter (:class:`TwistEstimator`).

A sample that cannot be used (NaN/Inf, a matrix that is not a rigid transform, a zero
quaternion) raises :class:`FrankaStateError`; the node counts it, publishes nothing for it
and reports it on diagnostics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from ..formats.config import param
from . import frames

__all__ = [
    "FrankaStateError",
    "FrankaStateConfig",
    "FrankaSample",
    "ArmStateOut",
    "pose_from_column_major",
    "column_major_from_pose",
    "wrench_at_ee",
    "TwistEstimator",
    "FrankaStateConverter",
    "sample_from_msg",
    "robot_mode_problem",
    "ROBOT_MODES",
]

# franka_msgs/FrankaRobotState.robot_mode
ROBOT_MODES = {0: "other", 1: "idle", 2: "move", 3: "guiding", 4: "reflex", 5: "user stopped", 6: "automatic error recovery"}
_BAD_MODES = {4, 5, 6}


class FrankaStateError(ValueError):
    """A robot-state sample that cannot be converted."""


@dataclass(frozen=True)
class FrankaStateConfig:
    robot_state_topic: str = param("franka_robot_state_broadcaster/robot_state",
                                   "franka_msgs/FrankaRobotState from franka_robot_state_broadcaster (relative: in the arm's namespace)")
    base_frame_id: str = param("base", "frame_id of the published pose, twist and wrench (the arm's base frame, e.g. left_base)")
    publish_rate_hz: float = param(100.0, "rate of current_pose, current_twist and external_wrench (the newest converted sample)",
                                   units="Hz", low=1.0, high=1000.0)
    twist_filter_time_constant_s: float = param(0.01, "time constant of the low-pass filter on the finite-difference TCP twist "
                                                "(0: unfiltered)", units="s", low=0.0, high=1.0)
    max_sample_gap_s: float = param(0.1, "two robot-state samples further apart than this restart the twist estimate "
                                    "(the twist is zero until the next sample)", units="s", low=0.001, high=10.0)
    stale_after_s: float = param(0.2, "no robot state for this long: nothing is published and diagnostics WARN (the actor "
                                 "then waits, as it does for any stale input)", units="s", low=0.01, high=10.0)


@dataclass(frozen=True)
class FrankaSample:
    """The parts of one robot-state message the conversion needs."""

    time_s: float  # robot time (FrankaRobotState.time) or the header stamp
    position: np.ndarray  # O_T_EE translation [3], m
    quat: np.ndarray  # O_T_EE rotation [x, y, z, w]
    wrench_k: np.ndarray  # O_F_ext_hat_K [f(3), tau(3)], base axes, about K
    ee_t_k_position: np.ndarray  # translation of EE_T_K [3] (K's origin in EE axes), m
    robot_mode: Optional[int] = None


@dataclass(frozen=True)
class ArmStateOut:
    position: np.ndarray
    quat: np.ndarray
    twist: np.ndarray  # [v, w], base axes, TCP
    wrench: np.ndarray  # O_F_ext_hat_K about the TCP, base axes
    time_s: float


def _finite(name: str, x, shape) -> np.ndarray:
    try:
        a = np.asarray(x, dtype=float).reshape(shape)
    except (TypeError, ValueError) as exc:
        raise FrankaStateError(f"{name}: expected {int(np.prod(shape))} numbers, got {x!r}") from exc
    if not np.all(np.isfinite(a)):
        raise FrankaStateError(f"{name} has NaN/Inf: {a.ravel().tolist()}")
    return a


def pose_from_column_major(O_T_EE: Sequence[float], tol: float = 1e-4) -> Tuple[np.ndarray, np.ndarray]:
    """libfranka's 16-element column-major homogeneous matrix -> ``(position[3], quat_xyzw[4])``.

    Element ``i + 4 j`` is row ``i``, column ``j``: ``[12], [13], [14]`` are the translation.
    Refuses (``FrankaStateError``) a matrix whose rotation is not orthonormal with determinant
    +1 within ``tol``, or whose last row is not ``[0, 0, 0, 1]`` (a row-major matrix read as
    column-major shows up here: its translation lands in the last row).
    """
    flat = _finite("O_T_EE", O_T_EE, (16,))
    T = flat.reshape(4, 4).T  # C-order reshape of column-major data gives the transpose
    if not np.allclose(T[3], [0.0, 0.0, 0.0, 1.0], atol=tol):
        raise FrankaStateError(f"O_T_EE last row is {T[3].tolist()}, not [0, 0, 0, 1]: not a column-major homogeneous transform")
    R = T[:3, :3]
    if not np.allclose(R.T @ R, np.eye(3), atol=tol) or abs(np.linalg.det(R) - 1.0) > tol:
        raise FrankaStateError(f"O_T_EE rotation is not a rotation matrix: {R.tolist()}")
    return T[:3, 3].copy(), frames.matrix_to_quat(R)


def column_major_from_pose(position, quat) -> np.ndarray:
    """Inverse of :func:`pose_from_column_major` (16 numbers, column-major)."""
    return frames.pose_to_matrix(position, quat).T.reshape(16).copy()


def wrench_at_ee(wrench_k_base, quat_base_ee, ee_t_k_position) -> np.ndarray:
    """``O_F_ext_hat_K`` (base axes, about K) -> the same wrench about the EE origin, base axes.

    K's origin is ``p_K = p_EE + R_EE @ t`` with ``t`` the translation of ``EE_T_K``; the force
    is unchanged and ``tau_EE = tau_K + (p_K - p_EE) x f`` (moving the reference point of a
    wrench). With ``t = 0`` (the default stiffness frame) the wrench is returned unchanged.
    """
    w = _finite("O_F_ext_hat_K", wrench_k_base, (6,))
    t = _finite("EE_T_K translation", ee_t_k_position, (3,))
    if not np.any(t):
        return w.copy()
    r = frames.quat_rotate(frames.quat_normalize(quat_base_ee), t)
    return np.concatenate([w[:3], w[3:] + np.cross(r, w[:3])])


class TwistEstimator:
    """TCP twist ``[v, w]`` (base axes) from consecutive measured poses, low-pass filtered.

    ``update(t, p, q)`` returns the current estimate. The first sample, and the first after a
    gap longer than ``max_gap_s``, give zero (no velocity is known yet). A sample whose time
    does not advance (a duplicate or out of order) is ignored and counted in ``ignored``.
    Filter: ``y += a (x - y)`` with ``a = dt / (time_constant + dt)`` (exact first-order
    response for a constant input; ``time_constant = 0`` is no filtering).
    """

    def __init__(self, time_constant_s: float = 0.01, max_gap_s: float = 0.1) -> None:
        if time_constant_s < 0 or max_gap_s <= 0:
            raise ValueError(f"TwistEstimator: time_constant_s >= 0 and max_gap_s > 0 needed, got {time_constant_s}, {max_gap_s}")
        self.time_constant_s = float(time_constant_s)
        self.max_gap_s = float(max_gap_s)
        self._last: Optional[Tuple[float, np.ndarray, np.ndarray]] = None
        self.twist = np.zeros(6)
        self.ignored = 0
        self.restarts = 0

    def reset(self) -> None:
        self._last, self.twist = None, np.zeros(6)

    def update(self, t_s: float, position, quat) -> np.ndarray:
        p = np.asarray(position, dtype=float)
        q = frames.quat_normalize(quat)
        last = self._last
        if last is not None:
            dt = float(t_s) - last[0]
            if not dt > 0:
                self.ignored += 1
                return self.twist.copy()
            if dt > self.max_gap_s:
                self.restarts += 1
                self.twist = np.zeros(6)
            else:
                raw = frames.pose_error(p, q, last[1], last[2]) / dt  # [dp, log(R_k R_{k-1}^T)] / dt, base axes
                a = dt / (self.time_constant_s + dt)
                self.twist = self.twist + a * (raw - self.twist)
        self._last = (float(t_s), p, q)
        return self.twist.copy()


def robot_mode_problem(mode: Optional[int]) -> str:
    """Why the robot is not following commands ("" when it is, or the mode is unknown)."""
    if mode is None or int(mode) not in _BAD_MODES:
        return ""
    return f"robot mode {ROBOT_MODES[int(mode)]} ({int(mode)}): the arm does not follow commands; see docs/real_robot.md"


class FrankaStateConverter:
    """One arm: robot-state samples in, :class:`ArmStateOut` out (the newest, for the publish timer)."""

    def __init__(self, config: FrankaStateConfig) -> None:
        self.config = config
        self.twist = TwistEstimator(config.twist_filter_time_constant_s, config.max_sample_gap_s)
        self.latest: Optional[ArmStateOut] = None
        self.received_s = -np.inf  # node clock at the newest good sample
        self.rejected = 0
        self.last_error = ""
        self.robot_mode: Optional[int] = None

    def on_sample(self, sample: FrankaSample, now_s: float) -> Optional[ArmStateOut]:
        """Convert one sample; ``None`` (counted in ``rejected``, reason in ``last_error``) when unusable."""
        try:
            pos = _finite("O_T_EE translation", sample.position, (3,))
            q = _finite("O_T_EE quaternion", sample.quat, (4,))
            if np.linalg.norm(q) < 1e-6:
                raise FrankaStateError(f"O_T_EE quaternion {q.tolist()} is zero")
            q = frames.quat_normalize(q)
            wrench = wrench_at_ee(sample.wrench_k, q, sample.ee_t_k_position)
            if not np.isfinite(sample.time_s):
                raise FrankaStateError(f"sample time {sample.time_s} is not finite")
        except FrankaStateError as exc:
            self.rejected += 1
            self.last_error = str(exc)
            return None
        self.robot_mode = sample.robot_mode
        twist = self.twist.update(sample.time_s, pos, q)
        self.latest = ArmStateOut(pos, q, twist, wrench, float(sample.time_s))
        self.received_s = float(now_s)
        return self.latest

    def fresh(self, now_s: float) -> bool:
        return self.latest is not None and now_s - self.received_s <= self.config.stale_after_s


def _xyz(v) -> list:
    return [float(v.x), float(v.y), float(v.z)]


def _stamp_s(header) -> float:
    return float(header.stamp.sec) + 1e-9 * float(header.stamp.nanosec)


def sample_from_msg(msg: Any) -> FrankaSample:
    """The fields of a robot-state message, by duck typing (no ROS import here).

    ``franka_msgs/FrankaRobotState`` (franka_ros2 >= 1.0: ``o_t_ee`` PoseStamped,
    ``o_f_ext_hat_k`` WrenchStamped, ``ee_t_k`` PoseStamped, ``time`` robot seconds,
    ``robot_mode``), or the older ``franka_msgs/FrankaState`` (``O_T_EE``, ``O_F_ext_hat_K``,
    ``EE_T_K`` as float arrays, 4x4 column-major). The robot's ``time`` is preferred over the
    header stamp for the twist estimate (it counts the 1 kHz control ticks exactly); a zero
    time falls back to the header stamp.
    """
    if hasattr(msg, "o_t_ee"):
        pose = msg.o_t_ee.pose
        pos = _xyz(pose.position)
        o = pose.orientation
        quat = [float(o.x), float(o.y), float(o.z), float(o.w)]
        w = msg.o_f_ext_hat_k.wrench
        wrench = _xyz(w.force) + _xyz(w.torque)
        ee_t_k = _xyz(msg.ee_t_k.pose.position) if hasattr(msg, "ee_t_k") else [0.0, 0.0, 0.0]
        time_s = float(getattr(msg, "time", 0.0) or 0.0)
        if time_s <= 0.0:
            time_s = _stamp_s(msg.header)
    elif hasattr(msg, "O_T_EE"):
        pos, quat = pose_from_column_major(msg.O_T_EE)
        wrench = list(msg.O_F_ext_hat_K)
        ee_t_k = pose_from_column_major(msg.EE_T_K)[0] if hasattr(msg, "EE_T_K") else np.zeros(3)
        time_s = float(getattr(msg, "time", 0.0) or 0.0)
        if time_s <= 0.0 and hasattr(msg, "header"):
            time_s = _stamp_s(msg.header)
    else:
        raise FrankaStateError(f"{type(msg).__name__} is not a franka robot state (no o_t_ee or O_T_EE)")
    mode = getattr(msg, "robot_mode", None)
    return FrankaSample(time_s, np.asarray(pos, dtype=float), np.asarray(quat, dtype=float),
                        np.asarray(wrench, dtype=float), np.asarray(ee_t_k, dtype=float),
                        None if mode is None else int(mode))
