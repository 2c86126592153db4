"""Control laws of the HIL-SERL low-level stack as pure functions (numpy only).

The same law runs in the MuJoCo simulator (``hilserl_sim``) and in the C++
ros2_control controllers (``hilserl_controllers``); both are checked against
the golden vectors in ``hilserl_core/data/control_golden.json`` (see
:func:`load_golden` and ``hilserl_core/data/make_control_golden.py``).

Frames and conventions are those of :mod:`hilserl_core.robot.frames`: quaternions
``[x, y, z, w]``, twists ``[v, w]``, wrenches ``[f, tau]``. All poses and
wrenches here are of the end effector (TCP) in the robot's base frame unless a
name says ``_ee`` (current end-effector axes, same reference point).

Pieces (paper, system design: the low-level impedance controller with
reference limiting, and the relative observation/action frames):

- :func:`limit_reference` and :func:`impedance_wrench`: Cartesian impedance
  ``F = K e - D v`` on a reference clipped to within ``reference_limit_m`` /
  ``reference_limit_rad`` of the measured pose, so the spring force can never
  exceed ``K * limit`` however far away the target is.
- :func:`clamp_wrench` and :class:`WrenchWatchdog`: the feed-forward wrench path
  of dynamic tasks: norm clamps, NaN/Inf rejection, zero after a timeout,
  commands stamped in the future (beyond a clock-offset tolerance) rejected.
- :func:`wrench_mode_wrench`: the Cartesian wrench of wrench mode: a soft,
  reference-limited impedance toward an anchor pose plus the feed-forward
  wrench rotated from the current EE axes to base axes.
- :func:`integrate_twist_target` and :class:`WorkspaceBox`: how a normalised
  twist action in the current EE frame becomes a target pose (intervention mux
  and simulator share it).
- :class:`SinglePublisherGuard`: a command topic is followed only while exactly
  one node publishes on it (the intervention mux); with two or more the arm
  holds (the simulator and the C++ controllers' ``law::SinglePublisherGuard``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np

from hilserl_core.robot import frames

__all__ = [
    "NonFiniteCommandError",
    "is_finite_command",
    "ImpedanceParams",
    "limit_reference",
    "impedance_wrench",
    "WrenchParams",
    "clamp_wrench",
    "WrenchWatchdog",
    "REJECT_MALFORMED",
    "REJECT_NON_FINITE_WRENCH",
    "REJECT_NON_FINITE_STAMP",
    "REJECT_OUT_OF_ORDER",
    "REJECT_FUTURE_STAMP",
    "wrench_mode_wrench",
    "nullspace_torque",
    "WorkspaceBox",
    "integrate_twist_target",
    "SinglePublisherGuard",
    "GOLDEN_PATH",
    "load_golden",
]

GOLDEN_PATH = Path(__file__).resolve().parent.parent / "data" / "control_golden.json"


class NonFiniteCommandError(ValueError):
    """A command contained NaN or Inf; the caller must hold the last safe target instead."""


def is_finite_command(x) -> bool:
    """True when ``x`` is a non-empty array of real numbers with no NaN/Inf (False if malformed, never raises)."""
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return a.size > 0 and bool(np.all(np.isfinite(a)))


def _vec3(name: str, value, low: float, allow_none: bool = False) -> Optional[np.ndarray]:
    """Validate a scalar-or-3-vector parameter and broadcast it to (3,)."""
    if value is None and allow_none:
        return None
    try:
        a = np.broadcast_to(np.asarray(value, dtype=np.float64), (3,)).copy()
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number or 3 numbers (x, y, z), got {value!r}") from None
    if not np.all(np.isfinite(a)) or np.any(a < low):
        raise ValueError(f"{name} must be finite and >= {low} on every axis, got {a.tolist()}")
    return a


def _clamp_norm(v: np.ndarray, max_norm: float) -> np.ndarray:
    """Scale ``v`` down to norm ``max_norm`` if longer; direction preserved."""
    n = float(np.linalg.norm(v))
    return v * (max_norm / n) if n > max_norm else v


def _positive(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be finite and > 0, got {v!r}")
    return v


# --------------------------------------------------------------------------- impedance with reference limiting


@dataclass
class ImpedanceParams:
    """Gains and reference limits of the Cartesian impedance law (base-frame axes).

    Stiffness and damping accept a scalar (same on x, y, z) or 3 numbers and are
    stored as (3,) arrays. Damping left as ``None`` is critical for a unit mass,
    ``2 * sqrt(K)`` per axis. The reference limits must be finite and > 0: they
    are what bounds contact force (``|F_spring| <= K * limit``), and
    ``reference_limit_rad`` must stay below pi, where the rotation error flips.
    """

    translational_stiffness_n_per_m: Any = 2000.0
    rotational_stiffness_nm_per_rad: Any = 150.0
    reference_limit_m: float = 0.02
    reference_limit_rad: float = 0.1
    translational_damping_ns_per_m: Any = None
    rotational_damping_nms_per_rad: Any = None

    def __post_init__(self):
        self.translational_stiffness_n_per_m = _vec3("translational_stiffness_n_per_m", self.translational_stiffness_n_per_m, 0.0)
        self.rotational_stiffness_nm_per_rad = _vec3("rotational_stiffness_nm_per_rad", self.rotational_stiffness_nm_per_rad, 0.0)
        d_t = _vec3("translational_damping_ns_per_m", self.translational_damping_ns_per_m, 0.0, allow_none=True)
        d_r = _vec3("rotational_damping_nms_per_rad", self.rotational_damping_nms_per_rad, 0.0, allow_none=True)
        # Critical damping of a unit mass: zeta = 1 <=> D = 2 sqrt(K m).
        self.translational_damping_ns_per_m = 2.0 * np.sqrt(self.translational_stiffness_n_per_m) if d_t is None else d_t
        self.rotational_damping_nms_per_rad = 2.0 * np.sqrt(self.rotational_stiffness_nm_per_rad) if d_r is None else d_r
        self.reference_limit_m = _positive("reference_limit_m", self.reference_limit_m)
        self.reference_limit_rad = _positive("reference_limit_rad", self.reference_limit_rad)
        if self.reference_limit_rad >= math.pi:
            raise ValueError(f"reference_limit_rad must be < pi (3.14159), got {self.reference_limit_rad}")

    @property
    def stiffness(self) -> np.ndarray:
        """Diagonal of K as a 6-vector [translational (N/m), rotational (N m/rad)]."""
        return np.concatenate([self.translational_stiffness_n_per_m, self.rotational_stiffness_nm_per_rad])

    @property
    def damping(self) -> np.ndarray:
        """Diagonal of D as a 6-vector [translational (N s/m), rotational (N m s/rad)]."""
        return np.concatenate([self.translational_damping_ns_per_m, self.rotational_damping_nms_per_rad])


def limit_reference(
    target_pos, target_quat, measured_pos, measured_quat, limit_m, limit_rad: Optional[float] = None
) -> Tuple[np.ndarray, np.ndarray]:
    """Reference limiting (paper, low-level controller): keep the target near the measured pose.

    The position moves toward the target along the straight line and stops at
    ``limit_m``; the orientation turns toward the target along the geodesic and
    stops at ``limit_rad`` (the base-frame rotation-error vector is scaled, so
    :func:`frames.pose_error` of the result has norm <= the limits). Targets
    already inside the limits are returned unchanged, so limiting twice is the
    same as once. ``limit_m`` may also be an :class:`ImpedanceParams` (then
    ``limit_rad`` is omitted). Returns ``(pos, quat)`` with the quaternion canonical.
    """
    if isinstance(limit_m, ImpedanceParams):
        if limit_rad is not None:
            raise TypeError("pass either ImpedanceParams or (limit_m, limit_rad), not both")
        limit_m, limit_rad = limit_m.reference_limit_m, limit_m.reference_limit_rad
    limit_m = _positive("limit_m", limit_m)
    limit_rad = _positive("limit_rad", limit_rad)
    target_pos, measured_pos = np.asarray(target_pos, float), np.asarray(measured_pos, float)
    if not (is_finite_command(target_pos) and is_finite_command(target_quat)):
        raise NonFiniteCommandError(f"target pose has NaN/Inf: pos={target_pos!r}, quat={target_quat!r}")
    e = frames.pose_error(target_pos, target_quat, measured_pos, measured_quat)
    dist, angle = np.linalg.norm(e[:3]), np.linalg.norm(e[3:])
    pos = target_pos if dist <= limit_m else measured_pos + e[:3] * (limit_m / dist)
    if angle <= limit_rad:
        quat = frames.quat_normalize(target_quat)
    else:
        quat = frames.quat_multiply(frames.rotvec_to_quat(e[3:] * (limit_rad / angle)), measured_quat)
    return np.array(pos, dtype=float), quat


def impedance_wrench(target_pos, target_quat, measured_pos, measured_quat, measured_twist_base, params: ImpedanceParams) -> np.ndarray:
    """Cartesian impedance wrench ``F = K e - D v`` (6,) in base axes at the TCP, after reference limiting.

    ``e`` is :func:`frames.pose_error` of the limited reference (position error,
    base-frame rotation vector); ``v`` is the measured TCP twist ``[v, w]`` in
    base axes. With zero velocity, ``|F_translational| <= max(K_t) * reference_limit_m``
    and ``|F_rotational| <= max(K_r) * reference_limit_rad`` for any target.
    """
    twist = np.asarray(measured_twist_base, dtype=float)
    if twist.shape != (6,):
        raise ValueError(f"measured twist must be 6 numbers [vx, vy, vz, wx, wy, wz], got shape {twist.shape}")
    if not is_finite_command(twist):
        raise NonFiniteCommandError(f"measured twist has NaN/Inf: {twist.tolist()}")
    if not (is_finite_command(target_pos) and is_finite_command(target_quat)):
        raise NonFiniteCommandError(f"target pose has NaN/Inf: pos={target_pos!r}, quat={target_quat!r}")
    e = frames.pose_error(target_pos, target_quat, measured_pos, measured_quat)
    # Limiting the reference as in limit_reference scales exactly these two error vectors; doing it on the
    # error directly gives the same wrench without building the reference pose (this runs at 1 kHz).
    e[:3] = _clamp_norm(e[:3], params.reference_limit_m)
    e[3:] = _clamp_norm(e[3:], params.reference_limit_rad)
    return params.stiffness * e - params.damping * twist


# --------------------------------------------------------------------------- feed-forward wrench: clamps and watchdog


@dataclass
class WrenchParams:
    """Limits of the feed-forward wrench path: norm clamps and the command watchdog.

    ``max_future_stamp_s`` is how far a command's stamp may lie ahead of the
    controller's clock (``stamp_s - now_s``) and still be accepted. It absorbs
    the clock offset between the machine that stamps commands (intervention mux)
    and the one that runs the controller, so that offset must stay below it
    (NTP: a few ms on a LAN; PTP: microseconds). Without this bound one command
    stamped far ahead would be applied until ``now > stamp + watchdog_timeout_s``
    and every correctly stamped follow-up would be refused as out of order.
    """

    max_force_n: float = 30.0
    max_torque_nm: float = 5.0
    watchdog_timeout_s: float = 0.25
    max_future_stamp_s: float = 0.05

    def __post_init__(self):
        for name in ("max_force_n", "max_torque_nm", "max_future_stamp_s"):
            v = float(getattr(self, name))
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"WrenchParams.{name} must be finite and >= 0, got {v!r}")
            setattr(self, name, v)
        self.watchdog_timeout_s = _positive("WrenchParams.watchdog_timeout_s", self.watchdog_timeout_s)


def clamp_wrench(wrench, params: WrenchParams) -> np.ndarray:
    """Scale the force and the torque part separately so their norms stay within the limits.

    Directions are preserved (no per-axis clipping, which would bend the
    commanded direction). Raises :class:`NonFiniteCommandError` on NaN/Inf.
    """
    w = np.asarray(wrench, dtype=float)
    if w.shape != (6,):
        raise ValueError(f"wrench must be 6 numbers [fx, fy, fz, tx, ty, tz], got shape {w.shape}")
    if not is_finite_command(w):
        raise NonFiniteCommandError(f"wrench has NaN/Inf: {w.tolist()}")
    return np.concatenate([_clamp_norm(w[:3], params.max_force_n), _clamp_norm(w[3:], params.max_torque_nm)])


# Reason codes of WrenchWatchdog rejections (stable strings: the C++ controller and the golden file use them).
REJECT_MALFORMED = "malformed"
REJECT_NON_FINITE_WRENCH = "non_finite_wrench"
REJECT_NON_FINITE_STAMP = "non_finite_stamp"
REJECT_OUT_OF_ORDER = "out_of_order_stamp"
REJECT_FUTURE_STAMP = "future_stamp"


class WrenchWatchdog:
    """Holds the last accepted feed-forward wrench and zeroes it when commands stop.

    Pure: time comes in as arguments (``stamp_s`` of the command, ``now_s`` of
    the control tick), so the same sequence gives the same outputs in the
    simulator, the C++ controller and the golden file.

    - :meth:`command` clamps (:func:`clamp_wrench`) and stores a command, or
      rejects it. A rejection is fail-safe: the output is zero until the next
      accepted command. Reasons, checked in this order: ``malformed`` (not 6
      numbers), ``non_finite_wrench``, ``non_finite_stamp``, ``future_stamp``
      (``stamp_s - now_s > max_future_stamp_s``; only when ``now_s`` is given),
      ``out_of_order_stamp`` (older than the last accepted one).
    - :meth:`output` returns the stored wrench while ``now_s - stamp_s <=
      watchdog_timeout_s`` and ``stamp_s - now_s <= max_future_stamp_s``, and
      zeros otherwise (and before any command). The second condition only
      matters for commands offered without ``now_s`` or after the clock jumped
      back: a stamp far in the future is never applied.
    - ``rejected_count``, ``rejection_counts`` (per reason) and
      ``last_rejection`` (a sentence for a diagnostic message) report rejections.
    """

    def __init__(self, params: WrenchParams):
        self.params = params
        self._wrench = np.zeros(6)
        self._stamp_s: Optional[float] = None
        self.rejected_count = 0
        self.rejection_counts: Dict[str, int] = {}
        self.last_rejection = ""
        self.last_rejection_code = ""

    def _reject(self, code: str, detail: str) -> bool:
        self.rejected_count += 1
        self.rejection_counts[code] = self.rejection_counts.get(code, 0) + 1
        self.last_rejection_code = code
        self.last_rejection = f"{code}: {detail}; feed-forward wrench zeroed until the next valid command"
        self._wrench = np.zeros(6)
        return False

    def command(self, wrench, stamp_s: float, now_s: Optional[float] = None) -> bool:
        """Offer a wrench ``[f, tau]`` stamped ``stamp_s`` (s), received at ``now_s`` (s); True if accepted.

        ``now_s`` is the controller's clock at the tick the command is handled
        (the clock ``stamp_s`` must come from). Pass it: only then is a command
        stamped more than ``max_future_stamp_s`` ahead rejected (``future_stamp``);
        a non-finite ``now_s`` rejects every command. ``None`` skips that check
        (callers without a clock); :meth:`output` still never applies such a command.
        """
        try:
            w = np.asarray(wrench, dtype=float)
            stamp = float(stamp_s)
            now = None if now_s is None else float(now_s)
        except (TypeError, ValueError):
            return self._reject(REJECT_MALFORMED, f"wrench {wrench!r} / stamp {stamp_s!r} / now {now_s!r} are not numbers")
        if w.shape != (6,):
            return self._reject(REJECT_MALFORMED, f"wrench must have 6 components, got shape {w.shape}")
        if not np.all(np.isfinite(w)):
            return self._reject(REJECT_NON_FINITE_WRENCH, f"wrench has NaN/Inf {w.tolist()}")
        if not math.isfinite(stamp):
            return self._reject(REJECT_NON_FINITE_STAMP, f"stamp is {stamp!r}")
        if now is not None and (not math.isfinite(now) or stamp - now > self.params.max_future_stamp_s):
            return self._reject(
                REJECT_FUTURE_STAMP,
                f"stamp {stamp:.6f} s is {stamp - now:.6f} s ahead of the controller clock {now:.6f} s "
                f"(> max_future_stamp_s {self.params.max_future_stamp_s:g} s: are the clocks synchronised?)",
            )
        if self._stamp_s is not None and stamp < self._stamp_s:
            return self._reject(REJECT_OUT_OF_ORDER, f"stamp {stamp:.6f} s is older than the last accepted {self._stamp_s:.6f} s")
        self._wrench = clamp_wrench(w, self.params)
        self._stamp_s = stamp
        return True

    def output(self, now_s: float) -> np.ndarray:
        """Wrench to apply at time ``now_s``: the last accepted command, or zeros once it is too old (or still in the future)."""
        if (
            self._stamp_s is None
            or not math.isfinite(now_s)
            or now_s - self._stamp_s > self.params.watchdog_timeout_s
            or self._stamp_s - now_s > self.params.max_future_stamp_s
        ):
            return np.zeros(6)
        return self._wrench.copy()

    def is_stale(self, now_s: float) -> bool:
        """True when :meth:`output` would return zeros because no recent command is held."""
        return not np.any(self.output(now_s))


# --------------------------------------------------------------------------- wrench mode


def wrench_mode_wrench(
    anchor_pos, anchor_quat, measured_pos, measured_quat, measured_twist_base, feedforward_wrench_ee, params: ImpedanceParams
) -> np.ndarray:
    """Cartesian wrench of wrench mode (6,), base axes at the TCP: holding impedance plus feed-forward.

    ``impedance_wrench(anchor, measured, twist, params)`` (a soft spring toward
    the anchor pose, reference-limited, so it adds at most ``K * limit``) plus
    ``feedforward_wrench_ee`` (``[f, tau]`` at the TCP in the CURRENT EE axes,
    e.g. :meth:`WrenchWatchdog.output`) rotated to base axes by the measured
    orientation (same point: a rotation, not the full adjoint). With a zero or
    stale feed-forward wrench the arm is held near the anchor instead of
    floating. The simulator's wrench mode and the C++ WrenchController apply
    this with the ``wrench_*`` gains. Raises :class:`NonFiniteCommandError` on NaN/Inf.
    """
    w = np.asarray(feedforward_wrench_ee, dtype=float)
    if w.shape != (6,):
        raise ValueError(f"feed-forward wrench must be 6 numbers [fx, fy, fz, tx, ty, tz], got shape {w.shape}")
    if not is_finite_command(w):
        raise NonFiniteCommandError(f"feed-forward wrench has NaN/Inf: {w.tolist()}")
    if not (is_finite_command(measured_pos) and is_finite_command(measured_quat)):
        raise NonFiniteCommandError(f"measured pose has NaN/Inf: pos={measured_pos!r}, quat={measured_quat!r}")
    F = impedance_wrench(anchor_pos, anchor_quat, measured_pos, measured_quat, measured_twist_base, params)
    return F + frames.rotate_wrench(frames.quat_to_matrix(measured_quat), w)


# --------------------------------------------------------------------------- nullspace posture


def nullspace_torque(J: np.ndarray, q, qd, q_posture, stiffness: float, damping: float, lambda2: float) -> np.ndarray:
    """The C++ ``law::nullspace_torque``: tau0 = K (q_posture - q) - D qd projected by
    N = I - J^T (J J^T + lambda^2 I)^-1 J (damped pseudo-inverse of J^T), applied to tau0."""
    tau0 = stiffness * (np.asarray(q_posture) - q) - damping * np.asarray(qd)
    JJt = J @ J.T
    JJt.flat[::JJt.shape[0] + 1] += lambda2
    return tau0 - J.T @ np.linalg.solve(JJt, J @ tau0)


# --------------------------------------------------------------------------- twist actions -> target pose


@dataclass
class WorkspaceBox:
    """Where targets may go: a position box in the base frame, optionally an orientation box.

    The orientation limit is a per-axis bound on the rotation vector of the
    target relative to ``orientation_reference_quat``, written in the reference
    frame's axes: ``|log(R_ref^T R_target)_i| <= orientation_limit_rad[i]``.
    This has no Euler-angle wrap-around near +-pi (a gripper pointing down has
    roll ~ pi). Both orientation fields are given together or not at all.
    """

    min_position_m: Any
    max_position_m: Any
    orientation_reference_quat: Any = None
    orientation_limit_rad: Any = None

    def __post_init__(self):
        lo = np.asarray(self.min_position_m, dtype=float).reshape(-1)
        hi = np.asarray(self.max_position_m, dtype=float).reshape(-1)
        if lo.shape != (3,) or hi.shape != (3,) or not (is_finite_command(lo) and is_finite_command(hi)):
            raise ValueError(f"WorkspaceBox min/max_position_m must be 3 finite numbers each, got {lo.tolist()} / {hi.tolist()}")
        if np.any(lo > hi):
            raise ValueError(f"WorkspaceBox min_position_m {lo.tolist()} must be <= max_position_m {hi.tolist()} on every axis")
        self.min_position_m, self.max_position_m = lo, hi
        if (self.orientation_reference_quat is None) != (self.orientation_limit_rad is None):
            raise ValueError("WorkspaceBox: give orientation_reference_quat and orientation_limit_rad together, or neither")
        if self.orientation_reference_quat is not None:
            q = np.asarray(self.orientation_reference_quat, dtype=float)
            if q.shape != (4,) or not is_finite_command(q) or abs(np.linalg.norm(q) - 1.0) > 1e-3:
                raise ValueError(f"WorkspaceBox.orientation_reference_quat must be a unit quaternion [x, y, z, w], got {q.tolist()}")
            self.orientation_reference_quat = frames.quat_normalize(q)
            lim = _vec3("WorkspaceBox.orientation_limit_rad", self.orientation_limit_rad, 0.0)
            if np.any(lim >= math.pi):
                raise ValueError(f"WorkspaceBox.orientation_limit_rad must be < pi on every axis, got {lim.tolist()}")
            self.orientation_limit_rad = lim

    def clip(self, pos, quat) -> Tuple[np.ndarray, np.ndarray]:
        """Nearest position inside the box; orientation rotation vector clipped per axis."""
        pos = np.clip(np.asarray(pos, dtype=float), self.min_position_m, self.max_position_m)
        quat = frames.quat_normalize(quat)
        if self.orientation_reference_quat is not None:
            q_ref = self.orientation_reference_quat
            r = frames.quat_to_rotvec(frames.quat_multiply(frames.quat_conjugate(q_ref), quat))
            r_clipped = np.clip(r, -self.orientation_limit_rad, self.orientation_limit_rad)
            if np.any(r_clipped != r):  # untouched orientations pass through bit-exact
                quat = frames.quat_multiply(q_ref, frames.rotvec_to_quat(r_clipped))
        return pos, quat

    def contains(self, pos, quat=None, atol: float = 1e-9) -> bool:
        """True when the pose satisfies the box (orientation only checked when given and limited)."""
        pos = np.asarray(pos, dtype=float)
        if np.any(pos < self.min_position_m - atol) or np.any(pos > self.max_position_m + atol):
            return False
        if quat is None or self.orientation_reference_quat is None:
            return True
        r = frames.quat_to_rotvec(frames.quat_multiply(frames.quat_conjugate(self.orientation_reference_quat), quat))
        return bool(np.all(np.abs(r) <= self.orientation_limit_rad + atol))


def integrate_twist_target(
    measured_pos,
    measured_quat,
    action_twist_ee_normalised,
    linear_step_m: float,
    angular_step_rad: float,
    box: Optional[WorkspaceBox],
) -> Tuple[np.ndarray, np.ndarray]:
    """Target pose of one control step from a normalised twist action in the CURRENT EE frame.

    ``action`` is ``[v(3), w(3)]`` in ``[-1, 1]^6`` (values outside are clipped
    to it), in the axes of the measured EE pose with the EE origin as reference
    point (paper: actions relative to the current end-effector frame). One step
    moves the EE origin by ``R @ (v * linear_step_m)`` in the base frame and
    turns it by ``w * angular_step_rad`` about its own axes
    (``q_target = q_measured * exp(w * angular_step_rad)``). The result is
    clipped to ``box`` (``None``: no clipping) and the quaternion is canonical.

    Raises :class:`NonFiniteCommandError` (a ``ValueError``) when the action or
    the measured pose has NaN/Inf; the caller then holds its last target.
    Raises ``ValueError`` for a malformed action or non-positive step sizes.
    """
    a = np.asarray(action_twist_ee_normalised, dtype=float)
    if a.shape != (6,):
        raise ValueError(f"action must be 6 numbers [vx, vy, vz, wx, wy, wz] in the EE frame, got shape {a.shape}")
    if not is_finite_command(a):
        raise NonFiniteCommandError(f"action has NaN/Inf: {a.tolist()}")
    if not (is_finite_command(measured_pos) and is_finite_command(measured_quat)):
        raise NonFiniteCommandError(f"measured pose has NaN/Inf: pos={measured_pos!r}, quat={measured_quat!r}")
    linear_step_m = _positive("linear_step_m", linear_step_m)
    angular_step_rad = _positive("angular_step_rad", angular_step_rad)
    a = np.clip(a, -1.0, 1.0)
    q = frames.quat_normalize(measured_quat)
    # Same reference point (EE origin), EE axes -> base axes: a rotation, not the full adjoint.
    dp_base = frames.quat_rotate(q, a[:3] * linear_step_m)
    target_pos = np.asarray(measured_pos, dtype=float) + dp_base
    target_quat = frames.quat_multiply(q, frames.rotvec_to_quat(a[3:] * angular_step_rad))
    if box is not None:
        target_pos, target_quat = box.clip(target_pos, target_quat)
    return target_pos, target_quat


# --------------------------------------------------------------------------- single-publisher guard


class SinglePublisherGuard:
    """Commands on a topic are followed only while at most one node publishes on it.

    The intervention mux is the only publisher of an arm's targets. When a second
    one appears (a stray script, a bag played into the live graph, a second mux),
    the commands on the topic are two interleaved streams that nobody chose, so the
    receiver (simulator, controller) holds the arm where it is and drops every
    command until the topic is back to one publisher. Pure: the caller counts the
    topic's publishers (``Node.count_publishers``, a subscription's
    ``get_publisher_count``) and feeds the count to :meth:`observe`; the C++
    twin is ``law::SinglePublisherGuard`` (``control_law.hpp``).

    - :meth:`observe` returns ``"conflict"`` when a conflict starts (hold now),
      ``"clear"`` when it ends, ``""`` otherwise;
    - :meth:`accept` says whether a command that arrived now may be used (and
      counts the dropped ones);
    - ``publishers``, ``conflicts`` (how many times one started) and ``dropped``
      are for diagnostics.
    """

    CONFLICT, CLEAR = "conflict", "clear"

    def __init__(self) -> None:
        self.publishers = 0
        self.conflict = False
        self.conflicts = 0
        self.dropped = 0

    def observe(self, publishers: int) -> str:
        n = int(publishers)
        if n < 0:
            raise ValueError(f"a publisher count is >= 0, got {publishers!r}")
        self.publishers = n
        if n > 1 and not self.conflict:
            self.conflict = True
            self.conflicts += 1
            return self.CONFLICT
        if n <= 1 and self.conflict:
            self.conflict = False
            return self.CLEAR
        return ""

    def accept(self) -> bool:
        """True when a command arriving now may be followed; False (counted in ``dropped``) during a conflict."""
        if self.conflict:
            self.dropped += 1
            return False
        return True


# --------------------------------------------------------------------------- golden vectors


def load_golden(path: Optional[Path] = None) -> Dict[str, Any]:
    """Load the golden-vector file, turning the strings "NaN", "Infinity", "-Infinity" into floats."""

    def decode(x):
        if isinstance(x, str) and x in ("NaN", "Infinity", "-Infinity"):
            return float(x.replace("Infinity", "inf"))
        if isinstance(x, list):
            return [decode(v) for v in x]
        if isinstance(x, dict):
            return {k: (v if k in ("schema", "name", "function", "op", "reason", "description") else decode(v)) for k, v in x.items()}
        return x

    with open(path or GOLDEN_PATH, "r", encoding="utf-8") as f:
        return decode(json.load(f))
