"""One simulated Franka arm: state read-out and the Cartesian controller.

The control law is the real controller's, from :mod:`hilserl_core.robot.control`
(reference limiting, impedance wrench, wrench clamps and watchdog); this module
only maps it to joint torques with the same structure as the C++ controller:

    tau = J^T (F_impedance + F_feedforward) + N (K_null (q_null - q) - D_null qd) + c(q, qd) + g(q)

with ``N = I - J^T (J J^T + lambda^2 I)^-1 J`` the nullspace projector (the C++
controller's ``law::nullspace_torque``: J the base-frame TCP Jacobian, damped
pseudo-inverse of J^T with ``nullspace_pinv_damping`` lambda, 0.2 by default as in
franka_example_controllers) and ``c + g`` MuJoCo's bias forces (the real robot
compensates gravity itself). Torques saturate at the actuators' datasheet limits.

``external_wrench`` follows franka's ``O_F_ext_hat_K``: the wrench the robot exerts
on the environment (minus the contact wrench the environment exerts on the hand),
at the TCP, base axes; pressing down on a table reads f_z < 0, a load resting in the
hand f_z > 0. Contacts count on link7, the hand, the fingers and every body rigidly
attached to them (joint-less children such as a tool, bodies held by an active weld equality).

Commands are validated on arrival. A NaN/Inf, malformed or out-of-range
command, or one that goes stale, makes the controller hold the pose measured at
that moment and record why (``diagnostics()``); nothing here raises on bad input.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Deque, Dict, Optional, Tuple

import mujoco
import numpy as np

from hilserl_core.formats.config import param
from hilserl_core.robot import control as law
from hilserl_core.robot import frames

from .model import ARM_JOINTS, FINGER_JOINTS, quat_xyzw_from_mj

GRIPPER_MAX_WIDTH_M = 0.08


@dataclass
class ArmControlConfig:
    """Controller parameters of one simulated arm (names as in the real controller's YAML)."""

    translational_stiffness: float = param(2000.0, "Cartesian translational stiffness", units="N/m", low=0.0, high=5000.0)
    rotational_stiffness: float = param(150.0, "Cartesian rotational stiffness", units="N m/rad", low=0.0, high=500.0)
    damping_ratio: float = param(1.0, "damping as a fraction of critical for a unit-mass end effector (D = 2 zeta sqrt(K))", low=0.0, high=3.0)
    reference_limit_m: float = param(0.02, "reference limiting: max distance of the commanded from the measured position", units="m", low=1e-4, high=0.5)
    reference_limit_rad: float = param(0.1, "reference limiting: max angle of the commanded from the measured orientation", units="rad", low=1e-4, high=3.14)
    nullspace_stiffness: float = param(1.0, "joint-space posture stiffness in the nullspace (the C++ controllers' default; 10 leaked up to 30 N into the task near singular reaches through the damped projector)", units="N m/rad", low=0.0, high=100.0)
    nullspace_pinv_damping: float = param(0.2, "damping lambda of the pseudo-inverse in the nullspace projector I - J^T (J J^T + lambda^2 I)^-1 J (the C++ controllers' nullspace_pinv_damping); larger is more robust near singularities, smaller decouples posture and task more exactly", low=1e-6, high=1.0)
    mode: str = param("pose", "active controller: pose = impedance to target_pose; wrench = target_pose impedance (wrench_* gains) plus feed-forward target_wrench", choices=("pose", "wrench"))
    wrench_translational_stiffness: float = param(100.0, "translational stiffness in wrench mode", units="N/m", low=0.0, high=5000.0)
    wrench_rotational_stiffness: float = param(3.0, "rotational stiffness in wrench mode", units="N m/rad", low=0.0, high=500.0)
    wrench_damping_ratio: float = param(0.3, "damping ratio of the holding impedance in wrench mode (low, so the feed-forward wrench is not eaten by damping)", low=0.0, high=3.0)
    wrench_reference_limit_m: float = param(0.1, "reference limit in wrench mode", units="m", low=1e-4, high=1.0)
    wrench_reference_limit_rad: float = param(0.5, "angular reference limit in wrench mode", units="rad", low=1e-4, high=3.14)
    max_force_n: float = param(30.0, "feed-forward force clamp (norm)", units="N", low=0.0, high=200.0)
    max_torque_nm: float = param(5.0, "feed-forward torque clamp (norm)", units="N m", low=0.0, high=50.0)
    wrench_timeout_s: float = param(0.25, "watchdog: a feed-forward wrench older than this is zeroed", units="s", low=0.001, high=5.0)
    pose_timeout_s: float = param(1.0, "a target_pose older than this is stale: hold the measured pose", units="s", low=0.001, high=60.0)
    target_low: Tuple[float, ...] = param((-0.3, -0.8, -0.1), "lowest accepted target position (base frame x, y, z)", units="m")
    target_high: Tuple[float, ...] = param((0.95, 0.8, 1.0), "highest accepted target position (base frame x, y, z)", units="m")


@dataclass
class ArmState:
    """What the real stack publishes for one arm (base frame of that arm)."""

    stamp_s: float
    position: np.ndarray  # TCP position [m]
    quat: np.ndarray  # TCP orientation [x, y, z, w]
    twist: np.ndarray  # TCP twist [v, w], base axes
    wrench: np.ndarray  # franka O_F_ext_hat_K: wrench the hand exerts on the environment, at the TCP, base axes [f, tau]
    gripper_position: np.ndarray  # finger joint openings [m] (2,)
    gripper_velocity: np.ndarray  # [m/s] (2,)
    gripper_effort: np.ndarray  # finger actuator forces [N] (2,)
    q: np.ndarray  # arm joint angles [rad] (7,)

    @property
    def gripper_width(self) -> float:
        return float(self.gripper_position.sum())


def _welded_closure(model: mujoco.MjModel, core, weld_eqs) -> frozenset:
    """``core`` plus every body rigidly attached to it: a child without joints of a body in the
    set (MuJoCo welds it to its parent), or the other side of one of the weld equalities
    ``weld_eqs`` (ids) with one side in the set. Never the world body."""
    bodies = set(int(b) for b in core)
    ends = []
    for i in weld_eqs:
        pair = []
        for obj in (model.eq_obj1id[i], model.eq_obj2id[i]):
            if model.eq_objtype[i] == mujoco.mjtObj.mjOBJ_SITE:
                obj = model.site_bodyid[obj]
            pair.append(int(obj))
        ends.append(pair)
    grown = True
    while grown:
        grown = False
        for b in range(1, model.nbody):
            if b not in bodies and model.body_jntnum[b] == 0 and int(model.body_parentid[b]) in bodies:
                bodies.add(b)
                grown = True
        for b1, b2 in ends:
            for a, other in ((b1, b2), (b2, b1)):
                if a in bodies and other != 0 and other not in bodies:
                    bodies.add(other)
                    grown = True
    return frozenset(bodies)


def _impedance_params(k_t: float, k_r: float, zeta: float, lim_m: float, lim_rad: float):
    return law.ImpedanceParams(
        translational_stiffness_n_per_m=k_t,
        rotational_stiffness_nm_per_rad=k_r,
        reference_limit_m=lim_m,
        reference_limit_rad=lim_rad,
        translational_damping_ns_per_m=2.0 * zeta * math.sqrt(k_t),
        rotational_damping_nms_per_rad=2.0 * zeta * math.sqrt(k_r),
    )


class SimArm:
    """Indices, state and controller of the arm named ``name`` (elements ``<name>/...``)."""

    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData, name: str, config: Optional[ArmControlConfig] = None):
        self.model, self.data, self.name = model, data, name
        self.config = config or ArmControlConfig()
        jid = [model.joint(f"{name}/{j}").id for j in ARM_JOINTS]
        self.qadr = np.array([model.jnt_qposadr[j] for j in jid])
        self.dadr = np.array([model.jnt_dofadr[j] for j in jid])
        fj = [model.joint(f"{name}/{j}").id for j in FINGER_JOINTS]
        self.finger_qadr = np.array([model.jnt_qposadr[j] for j in fj])
        self.finger_dadr = np.array([model.jnt_dofadr[j] for j in fj])
        self.act = np.array([model.actuator(f"{name}/{j}").id for j in ARM_JOINTS])
        # The 7 joints, dofs and motors of one arm are contiguous: slices are views, not copies.
        for idx in (self.qadr, self.dadr, self.act):
            assert np.all(np.diff(idx) == 1), f"{name}: arm joints/actuators are not contiguous"
        self.q_sl = slice(int(self.qadr[0]), int(self.qadr[0]) + 7)
        self.d_sl = slice(int(self.dadr[0]), int(self.dadr[0]) + 7)
        self.a_sl = slice(int(self.act[0]), int(self.act[0]) + 7)
        self._J = np.zeros((6, 7))
        self.finger_act = np.array([model.actuator(f"{name}/finger{i}").id for i in (1, 2)])
        self.tau_limit = model.actuator_ctrlrange[self.act, 1].copy()
        self.site = model.site(f"{name}/tcp").id
        self.base_body = model.body(f"{name}/link0").id
        self.finger_bodies = (model.body(f"{name}/left_finger").id, model.body(f"{name}/right_finger").id)
        # Bodies whose contacts count in the external wrench: link7, the hand, the fingers and
        # everything welded to them (see the hand_bodies property).
        self._hand_core = frozenset((model.body(f"{name}/link7").id, model.body(f"{name}/hand").id) + self.finger_bodies)
        self._static_hand_bodies = _welded_closure(model, self._hand_core, ())
        self._weld_eqs = [i for i in range(model.neq) if model.eq_type[i] == mujoco.mjtEq.mjEQ_WELD]
        self._hand_bodies_key: Optional[Tuple[bool, ...]] = None
        self._hand_bodies_cache = self._static_hand_bodies
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))
        self._quat_mj = np.zeros(4)
        self.q_null = np.zeros(7)
        self.diag_reasons: Deque[Tuple[float, str]] = deque(maxlen=50)
        self.reason_counts: Dict[str, int] = {}
        self.set_config(self.config)
        self.reset_base_frame()
        self.reset_commands()

    # ------------------------------------------------------------------ set-up
    def set_config(self, config: ArmControlConfig) -> None:
        c = self.config = config
        self._pose_params = _impedance_params(c.translational_stiffness, c.rotational_stiffness, c.damping_ratio,
                                              c.reference_limit_m, c.reference_limit_rad)
        self._wrench_mode_params = _impedance_params(c.wrench_translational_stiffness, c.wrench_rotational_stiffness,
                                                     c.wrench_damping_ratio, c.wrench_reference_limit_m, c.wrench_reference_limit_rad)
        self._wrench_params = law.WrenchParams(max_force_n=c.max_force_n, max_torque_nm=c.max_torque_nm, watchdog_timeout_s=c.wrench_timeout_s)
        self._low, self._high = np.asarray(c.target_low, float), np.asarray(c.target_high, float)
        self.null_kp = c.nullspace_stiffness
        self.null_kd = 2.0 * math.sqrt(c.nullspace_stiffness)
        self.null_lambda2 = float(c.nullspace_pinv_damping) ** 2
        self.watchdog = law.WrenchWatchdog(self._wrench_params)

    def reset_base_frame(self) -> None:
        """Cache the (fixed) base pose; call after mj_forward on a new model."""
        mujoco.mj_kinematics(self.model, self.data)
        self.R_wb = self.data.xmat[self.base_body].reshape(3, 3).copy()
        self.p_wb = self.data.xpos[self.base_body].copy()

    def reset_commands(self) -> None:
        """Forget every command: hold the current pose, open nothing, zero wrench."""
        pos, quat = self.tcp_pose()
        self.target_pos, self.target_quat = pos, quat
        self.pose_stamp_s = self.data.time
        self.holding = False
        self.watchdog = law.WrenchWatchdog(self._wrench_params)
        self.last_ff_wrench_base = np.zeros(6)
        self.q_null = self.data.qpos[self.qadr].copy()
        self.gripper_width_cmd = float(self.data.qpos[self.finger_qadr].sum())
        self.data.ctrl[self.finger_act] = self.gripper_width_cmd / 2.0

    # ------------------------------------------------------------------ state
    def tcp_pose(self) -> Tuple[np.ndarray, np.ndarray]:
        d = self.data
        pos = self.R_wb.T @ (d.site_xpos[self.site] - self.p_wb)
        R = self.R_wb.T @ d.site_xmat[self.site].reshape(3, 3)
        mujoco.mju_mat2Quat(self._quat_mj, R.ravel())
        q = quat_xyzw_from_mj(self._quat_mj)
        return pos, (q if q[3] >= 0 else -q)  # canonical sign (w >= 0), as hilserl_core.robot.frames returns

    def jacobian(self) -> np.ndarray:
        """Geometric Jacobian of the TCP [v; w] in base axes (6 x 7); a fresh array."""
        mujoco.mj_jacSite(self.model, self.data, self._jacp, self._jacr, self.site)
        J = np.empty((6, 7))
        np.dot(self.R_wb.T, self._jacp[:, self.d_sl], out=J[:3])
        np.dot(self.R_wb.T, self._jacr[:, self.d_sl], out=J[3:])
        return J

    @property
    def hand_bodies(self) -> frozenset:
        """Body ids whose contacts are "on the hand": link7, hand, fingers and every body rigidly
        attached to them, by having no joint of its own under one of them (a welded child, e.g. the
        pan of pan_flip) or by an active weld equality (whatever a task attaches at run time)."""
        if not self._weld_eqs:
            return self._static_hand_bodies
        key = tuple(bool(self.data.eq_active[i]) for i in self._weld_eqs)
        if key != self._hand_bodies_key:
            active = [i for i, on in zip(self._weld_eqs, key) if on]
            self._hand_bodies_cache = _welded_closure(self.model, self._hand_core, active)
            self._hand_bodies_key = key
        return self._hand_bodies_cache

    def external_wrench(self) -> np.ndarray:
        """franka ``O_F_ext_hat_K``: the contact wrench the hand (with everything rigidly attached
        to it, and the fingers) exerts on the environment, at the TCP, base axes. It is minus
        the wrench of the contact forces on those bodies: pushing down on a table gives
        f_z < 0 ("forces applied by the robot to the environment are positive, forces
        applied by the environment on the robot negative", libfranka robot_state.h)."""
        m, d = self.model, self.data
        hand = self.hand_bodies
        tcp = d.site_xpos[self.site]
        total = np.zeros(6)
        f6 = np.zeros(6)
        for i in range(d.ncon):
            c = d.contact[i]
            b1, b2 = m.geom_bodyid[c.geom1], m.geom_bodyid[c.geom2]
            on1, on2 = b1 in hand, b2 in hand
            if on1 == on2:
                continue
            mujoco.mj_contactForce(m, d, i, f6)
            frame = c.frame.reshape(3, 3)
            f_world = frame.T @ f6[:3]  # force of geom1 on geom2
            if on2:
                f_world = -f_world  # now: force of the hand's geom on the other one
            total[:3] += f_world
            total[3:] += np.cross(c.pos - tcp, f_world)
        return np.concatenate((self.R_wb.T @ total[:3], self.R_wb.T @ total[3:]))

    def state(self) -> ArmState:
        d = self.data
        pos, quat = self.tcp_pose()
        twist = self.jacobian() @ d.qvel[self.dadr]
        return ArmState(
            stamp_s=float(d.time), position=pos, quat=quat, twist=twist, wrench=self.external_wrench(),
            gripper_position=d.qpos[self.finger_qadr].copy(), gripper_velocity=d.qvel[self.finger_dadr].copy(),
            gripper_effort=d.actuator_force[self.finger_act].copy(), q=d.qpos[self.qadr].copy(),
        )

    def finger_contacts(self, geom_ids) -> Tuple[bool, bool]:
        """Whether each finger touches any of ``geom_ids``."""
        m, d = self.model, self.data
        touch = [False, False]
        for i in range(d.ncon):
            c = d.contact[i]
            for g_self, g_other in ((c.geom1, c.geom2), (c.geom2, c.geom1)):
                if g_other in geom_ids:
                    b = m.geom_bodyid[g_self]
                    if b == self.finger_bodies[0]:
                        touch[0] = True
                    elif b == self.finger_bodies[1]:
                        touch[1] = True
        return touch[0], touch[1]

    # ------------------------------------------------------------------ commands
    def _reject(self, reason: str) -> None:
        self.diag_reasons.append((float(self.data.time), reason))
        key = reason.split(":")[0]
        self.reason_counts[key] = self.reason_counts.get(key, 0) + 1

    def hold(self, reason: str) -> None:
        """Hold the pose measured now (and drop any feed-forward wrench)."""
        self._reject(reason)
        self.target_pos, self.target_quat = self.tcp_pose()
        self.watchdog = law.WrenchWatchdog(self._wrench_params)
        self.holding = True

    def command_pose(self, position, quat_xyzw, stamp_s: Optional[float] = None) -> bool:
        """Accept a target TCP pose (base frame). Returns False (and holds) if it is rejected."""
        stamp = float(self.data.time) if stamp_s is None else stamp_s
        try:
            p = np.asarray(position, dtype=np.float64).reshape(3)
            q = np.asarray(quat_xyzw, dtype=np.float64).reshape(4)
            stamp = float(stamp)
        except (TypeError, ValueError):
            self.hold("target_pose rejected: malformed (need 3 position and 4 quaternion numbers)")
            return False
        if not (np.all(np.isfinite(p)) and np.all(np.isfinite(q)) and math.isfinite(stamp)):
            self.hold("target_pose rejected: NaN/Inf in the command")
            return False
        n = float(np.linalg.norm(q))
        if abs(n - 1.0) > 0.1:
            self.hold(f"target_pose rejected: quaternion norm {n:.3g} is not ~1")
            return False
        if np.any(p < self._low) or np.any(p > self._high):
            self.hold(f"target_pose rejected: position {np.round(p, 3).tolist()} outside "
                      f"[{list(self._low)}, {list(self._high)}] m")
            return False
        if self.data.time - stamp > self.config.pose_timeout_s:
            self.hold(f"target_pose rejected: stale on arrival (age {self.data.time - stamp:.3f} s)")
            return False
        self.target_pos, self.target_quat, self.pose_stamp_s = p, q / n, stamp
        self.holding = False
        return True

    def command_wrench(self, wrench_ee, stamp_s: Optional[float] = None) -> bool:
        """Accept a feed-forward wrench [f, tau] in the current EE frame (applied at the TCP)."""
        stamp = float(self.data.time) if stamp_s is None else stamp_s
        try:
            w = np.asarray(wrench_ee, dtype=np.float64).reshape(6)
            stamp = float(stamp)
        except (TypeError, ValueError):
            self.hold("target_wrench rejected: malformed (need 6 numbers)")
            return False
        if not (np.all(np.isfinite(w)) and math.isfinite(stamp)):
            self.hold("target_wrench rejected: NaN/Inf in the command")
            return False
        if self.config.mode != "wrench":
            self._reject("target_wrench ignored: arm controller is in pose mode")
            return False
        if not self.watchdog.command(w, stamp, now_s=float(self.data.time)):  # a stamp in the future is refused
            self._reject(f"target_wrench rejected: {self.watchdog.last_rejection}")
            return False
        if not np.allclose(law.clamp_wrench(w, self._wrench_params), w):
            self._reject("target_wrench clamped: exceeds max_force_n/max_torque_nm")
        return True

    def command_gripper(self, width_m) -> bool:
        """Finger opening target [m] in [0, 0.08] (both fingers together)."""
        try:
            w = float(width_m)
        except (TypeError, ValueError):
            self._reject("gripper command rejected: not a number")
            return False
        if not math.isfinite(w) or w < -1e-3 or w > GRIPPER_MAX_WIDTH_M + 1e-3:
            self._reject(f"gripper command rejected: width {w!r} outside [0, {GRIPPER_MAX_WIDTH_M}] m")
            return False
        self.gripper_width_cmd = min(max(w, 0.0), GRIPPER_MAX_WIDTH_M)
        self.data.ctrl[self.finger_act] = self.gripper_width_cmd / 2.0
        return True

    def diagnostics(self) -> Dict[str, object]:
        return {
            "arm": self.name,
            "mode": self.config.mode,
            "holding": self.holding,
            "last_reason": self.diag_reasons[-1][1] if self.diag_reasons else "",
            "reason_counts": dict(self.reason_counts),
        }

    # ------------------------------------------------------------------ control (every physics step)
    def compute_torques(self) -> None:
        """Write this arm's joint torques into ``data.ctrl`` (call between mj_step1 and mj_step2)."""
        d = self.data
        now = d.time
        # In wrench mode the pose target is a deliberately held anchor (the mux sends only
        # wrenches), so only pose mode treats an old target_pose as stale.
        if self.config.mode == "pose" and not self.holding and now - self.pose_stamp_s > self.config.pose_timeout_s:
            self.hold(f"target_pose stale: no command for {now - self.pose_stamp_s:.3f} s "
                      f"(> pose_timeout_s {self.config.pose_timeout_s} s)")
        pos, quat = self.tcp_pose()
        J = self.jacobian()
        qd = d.qvel[self.d_sl]
        twist = J @ qd
        try:
            # Reference limiting happens inside impedance_wrench (|F_spring| <= K * limit).
            if self.config.mode == "wrench":  # the C++ WrenchController's law: hold the anchor + feed-forward
                w_ee = self.watchdog.output(now)
                F = law.wrench_mode_wrench(self.target_pos, self.target_quat, pos, quat, twist, w_ee, self._wrench_mode_params)
                self.last_ff_wrench_base = frames.rotate_wrench(frames.quat_to_matrix(quat), w_ee)
            else:
                F = law.impedance_wrench(self.target_pos, self.target_quat, pos, quat, twist, self._pose_params)
        except ValueError as exc:  # NaN/Inf state: never crash, command nothing but gravity compensation
            self.hold(f"controller fault: {exc}")
            F = np.zeros(6)
            self.last_ff_wrench_base = np.zeros(6)
        tau_null = law.nullspace_torque(J, d.qpos[self.q_sl], qd, self.q_null, self.null_kp, self.null_kd, self.null_lambda2)
        # Saturation at the datasheet torque limits is MuJoCo's (motors are ctrllimited).
        d.ctrl[self.a_sl] = J.T @ F + tau_null + d.qfrc_bias[self.d_sl]
