"""Task registry: scene objects, randomized resets, time limits, ground-truth success.

Every task declares its parameters once (a dataclass of ``hilserl_core.formats.config.param``
fields); :func:`make_task` validates a mapping against it, so a malformed config
names the bad key and its allowed range, and a bad task name lists the valid ones.

``success()`` reads privileged simulator state and is for evaluation only (the
learning system's reward comes from the image classifier, as on the robot).
Positions in configs are in the arm's base frame (metres); the table top is
z = 0 of every base frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Type

import mujoco
import numpy as np

from hilserl_core.formats import config as cfg
from hilserl_core.formats.config import param

from .model import HOME_QPOS, build_scene_spec, compile_scene, quat_mj_from_xyzw, quat_xyzw_from_mj
from .robot import GRIPPER_MAX_WIDTH_M, ArmControlConfig
from .sim import Simulator

# EE pointing straight down (hand z = -world z), fingers closing along base y.
DOWN_QUAT_XYZW = np.array([1.0, 0.0, 0.0, 0.0])

OBJ_CONTYPE, OBJ_CONAFFINITY = 1, 3  # objects touch the scene, each other and the arms


class TaskError(ValueError):
    """Unknown task name or an invalid task configuration."""


def yaw_quat(yaw: float) -> np.ndarray:
    """[x,y,z,w] of a rotation by ``yaw`` about z."""
    return np.array([0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2)])


def down_quat(yaw: float) -> np.ndarray:
    """EE pointing down, rotated by ``yaw`` about the base z axis: q = Rz(yaw) * Rx(pi)."""
    c, s = math.cos(yaw / 2), math.sin(yaw / 2)
    # Rz(yaw) = [0,0,s,c], Rx(pi) = [1,0,0,0]  ->  product [c, s, 0, 0]
    return np.array([c, s, 0.0, 0.0])


def _quat_mul(a, b):
    x1, y1, z1, w1 = a
    x2, y2, z2, w2 = b
    return np.array([w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2, w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
                     w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2, w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2])


def _uniform(rng: np.random.Generator, low: Sequence[float], high: Sequence[float]) -> np.ndarray:
    return rng.uniform(np.asarray(low, float), np.asarray(high, float))


@dataclass
class EEStartConfig:
    ee_start_low: Tuple[float, ...] = param((0.45, -0.1, 0.15), "lower corner of the randomized EE start box (base frame)", units="m")
    ee_start_high: Tuple[float, ...] = param((0.6, 0.1, 0.3), "upper corner of the randomized EE start box (base frame)", units="m")
    ee_start_yaw_rad: float = param(0.3, "EE start yaw drawn from [-v, v] about the pointing-down orientation", units="rad", low=0.0, high=3.14)


def solve_ik(sim: Simulator, arm: str, pos, quat_xyzw, iters: int = 60) -> bool:
    """Set ``arm``'s joints so its TCP reaches (pos, quat) in its base frame (damped least squares)."""
    a = sim.arms[arm]
    m, d = sim.model, sim.data
    lo, hi = m.jnt_range[[m.joint(f"{arm}/joint{i}").id for i in range(1, 8)]].T
    target_R = np.empty(9)
    mujoco.mju_quat2Mat(target_R, quat_mj_from_xyzw(quat_xyzw))
    target_R = target_R.reshape(3, 3)
    d.qpos[a.qadr] = HOME_QPOS
    ok = False
    for _ in range(iters):
        mujoco.mj_kinematics(m, d)
        mujoco.mj_comPos(m, d)
        p, _ = a.tcp_pose()
        R = a.R_wb.T @ d.site_xmat[a.site].reshape(3, 3)
        e_rot = np.empty(3)
        q_err = np.empty(4)
        mujoco.mju_mat2Quat(q_err, (target_R @ R.T).ravel())
        mujoco.mju_quat2Vel(e_rot, q_err, 1.0)
        err = np.concatenate((np.asarray(pos) - p, e_rot))
        if np.linalg.norm(err[:3]) < 1e-4 and np.linalg.norm(err[3:]) < 1e-3:
            ok = True
            break
        J = a.jacobian()
        dq = J.T @ np.linalg.solve(J @ J.T + 1e-4 * np.eye(6), err)
        # Pull towards the home posture in the nullspace so solutions stay "elbow up".
        N = np.eye(7) - J.T @ np.linalg.solve(J @ J.T + 1e-6 * np.eye(6), J)
        dq += 0.2 * N @ (HOME_QPOS - d.qpos[a.qadr])
        d.qpos[a.qadr] = np.clip(d.qpos[a.qadr] + dq, lo + 1e-3, hi - 1e-3)
    d.qvel[a.dadr] = 0.0
    return ok


class Task:
    """Base class: subclasses set ``name``, ``n_arms``, ``Config`` and implement the hooks."""

    name: str = ""
    n_arms: int = 1
    # The policy opens and closes the grippers (the grasp critic). False where the task holds its
    # object from the start and must keep it (the paper turns the gripper action off there).
    gripper_actions: bool = True
    Config: Type = EEStartConfig
    description: str = ""

    def __init__(self, config):
        self.config = config
        self.sim: Optional[Simulator] = None
        self.step_count = 0

    # hooks -----------------------------------------------------------------
    def add_objects(self, spec: mujoco.MjSpec, arm_names: Sequence[str]) -> None:
        raise NotImplementedError

    def arm_configs(self, arm_names: Sequence[str]) -> Dict[str, ArmControlConfig]:
        return {a: ArmControlConfig() for a in arm_names}

    def randomize(self, rng: np.random.Generator) -> None:
        raise NotImplementedError

    def success(self) -> bool:
        raise NotImplementedError

    # The task's stages in order (the last is success), for telling how far a failed attempt got.
    stage_names: Tuple[str, ...] = ("success",)

    def stage(self) -> int:
        """How many of ``stage_names`` the scene is at now: the index of the furthest stage whose
        condition holds, plus one (0: none); ``len(stage_names)`` exactly when ``success()``.
        Privileged state, for evaluation only."""
        return len(self.stage_names) if self.success() else 0

    # shared ------------------------------------------------------------------
    @property
    def time_limit_steps(self) -> int:
        return int(round(self.config.time_limit_s / self.sim.control_period_s))

    def build(self, arm_names: Optional[Sequence[str]] = None, image_size=(128, 128)) -> Simulator:
        spec = build_scene_spec(arm_names, n_arms=self.n_arms)
        names = tuple(arm_names) if arm_names is not None else None
        from .model import DEFAULT_ARMS

        names = names or DEFAULT_ARMS[self.n_arms]
        self.add_objects(spec, names)
        model = compile_scene(spec)
        self.sim = Simulator(model, names, image_size=image_size, arm_configs=self.arm_configs(names))
        self.bind(model)
        return self.sim

    def bind(self, model: mujoco.MjModel) -> None:
        """Cache model ids after compile (override to add more)."""

    def reset(self, rng: np.random.Generator) -> None:
        sim = self.sim
        mujoco.mj_resetData(sim.model, sim.data)
        self.randomize(rng)
        sim.data.qvel[:] = 0.0
        mujoco.mj_forward(sim.model, sim.data)
        sim.reset_arm_commands()
        self.step_count = 0

    def place_ee(self, arm: str, rng: np.random.Generator, low=None, high=None, yaw_center: float = 0.0) -> None:
        c = self.config
        pos = _uniform(rng, c.ee_start_low if low is None else low, c.ee_start_high if high is None else high)
        yaw = yaw_center + rng.uniform(-c.ee_start_yaw_rad, c.ee_start_yaw_rad)
        solve_ik(self.sim, arm, pos, down_quat(yaw))

    def set_gripper(self, arm: str, width: float) -> None:
        a = self.sim.arms[arm]
        self.sim.data.qpos[a.finger_qadr] = width / 2.0
        self.sim.data.ctrl[a.finger_act] = width / 2.0

    def set_free_body(self, body: str, pos_world, quat_xyzw) -> None:
        m, d = self.sim.model, self.sim.data
        jnt = m.body(body).jntadr[0]
        adr = m.jnt_qposadr[jnt]
        d.qpos[adr:adr + 3] = pos_world
        d.qpos[adr + 3:adr + 7] = quat_mj_from_xyzw(quat_xyzw)
        d.qvel[m.jnt_dofadr[jnt]:m.jnt_dofadr[jnt] + 6] = 0.0

    def body_pose_world(self, body: str) -> Tuple[np.ndarray, np.ndarray]:
        bid = self.sim.model.body(body).id
        return self.sim.data.xpos[bid].copy(), quat_xyzw_from_mj(self.sim.data.xquat[bid])

    def to_base(self, arm: str, p_world) -> np.ndarray:
        a = self.sim.arms[arm]
        return a.R_wb.T @ (np.asarray(p_world) - a.p_wb)

    def body_pose_base(self, arm: str, body: str) -> Tuple[np.ndarray, np.ndarray]:
        """A body's pose in ``arm``'s base frame (position, [x,y,z,w])."""
        a = self.sim.arms[arm]
        bid = self.sim.model.body(body).id
        R = a.R_wb.T @ self.sim.data.xmat[bid].reshape(3, 3)
        q = np.empty(4)
        mujoco.mju_mat2Quat(q, R.ravel())
        return self.to_base(arm, self.sim.data.xpos[bid]), quat_xyzw_from_mj(q)

    def privileged_state(self) -> Dict[str, Any]:
        """Everything a scripted operator may look at (never given to a policy)."""
        return {}


def _add_box(body, size, rgba, mass=None, friction=(1.0, 0.01, 0.001), pos=(0, 0, 0), name="", condim=4, euler=None):
    g = body.add_geom()
    g.type = mujoco.mjtGeom.mjGEOM_BOX
    g.size = list(size)
    g.rgba = list(rgba)
    g.pos = list(pos)
    if euler is not None:
        g.quat = list(quat_mj_from_xyzw(_euler_z_quat(euler)))
    if mass is not None:
        g.mass = mass
    g.friction = list(friction)
    g.contype, g.conaffinity, g.condim = OBJ_CONTYPE, OBJ_CONAFFINITY, condim
    if name:
        g.name = name
    return g


def _euler_z_quat(yaw):
    return yaw_quat(yaw)


def _free_body(spec: mujoco.MjSpec, name: str, pos=(0, 0, 0.1)):
    b = spec.worldbody.add_body()
    b.name = name
    b.pos = list(pos)
    b.add_freejoint()
    return b


# ---------------------------------------------------------------------------- pick_cube


@dataclass
class PickCubeConfig(EEStartConfig):
    time_limit_s: float = param(10.0, "episode time limit (truncation)", units="s", low=1.0, high=120.0)
    cube_half_size_m: float = param(0.02, "cube half edge", units="m", low=0.01, high=0.035)
    cube_mass_kg: float = param(0.08, "cube mass", units="kg", low=0.01, high=1.0)
    cube_low: Tuple[float, ...] = param((0.45, -0.15), "cube start x, y lower bounds (base frame)", units="m")
    cube_high: Tuple[float, ...] = param((0.65, 0.15), "cube start x, y upper bounds (base frame)", units="m")
    cube_yaw_rad: float = param(0.5, "cube start yaw drawn from [-v, v]", units="rad", low=0.0, high=3.14)
    lift_height_m: float = param(0.08, "success: cube centre this far above its resting height, held by both fingers", units="m", low=0.01, high=0.5)


class PickCube(Task):
    name = "pick_cube"
    n_arms = 1
    Config = PickCubeConfig
    description = "single arm: grasp the cube and lift it"

    def add_objects(self, spec, arm_names):
        h = self.config.cube_half_size_m
        b = _free_body(spec, "cube", (0.5, 0, h))
        _add_box(b, (h, h, h), (0.85, 0.15, 0.15, 1), mass=self.config.cube_mass_kg, name="cube")

    def bind(self, model):
        self.arm = self.sim.arm_names[0]
        self.cube_geoms = {model.geom("cube").id}

    def randomize(self, rng):
        c = self.config
        self.place_ee(self.arm, rng)
        self.set_gripper(self.arm, GRIPPER_MAX_WIDTH_M)
        xy = _uniform(rng, c.cube_low, c.cube_high)
        yaw = rng.uniform(-c.cube_yaw_rad, c.cube_yaw_rad)
        a = self.sim.arms[self.arm]
        self.set_free_body("cube", a.R_wb @ np.array([xy[0], xy[1], c.cube_half_size_m]) + a.p_wb, yaw_quat(yaw))

    def grasped(self) -> bool:
        return all(self.sim.arms[self.arm].finger_contacts(self.cube_geoms))

    stage_names = ("grasped", "success")

    def stage(self) -> int:
        return 2 if self.success() else int(self.grasped())

    def success(self) -> bool:
        p, _ = self.body_pose_base(self.arm, "cube")
        return bool(p[2] > self.config.cube_half_size_m + self.config.lift_height_m and self.grasped())

    def privileged_state(self):
        p, q = self.body_pose_base(self.arm, "cube")
        return {"cube_pos": p, "cube_quat": q, "grasped": self.grasped()}


# ---------------------------------------------------------------------------- peg_insertion


@dataclass
class PegInsertionConfig(EEStartConfig):
    ee_start_low: Tuple[float, ...] = param((0.45, -0.1, 0.2), "lower corner of the randomized EE start box (base frame)", units="m")
    ee_start_high: Tuple[float, ...] = param((0.6, 0.1, 0.3), "upper corner of the randomized EE start box (base frame)", units="m")
    ee_start_yaw_rad: float = param(0.25, "EE start yaw drawn from [-v, v] about the pointing-down orientation", units="rad", low=0.0, high=3.14)
    time_limit_s: float = param(12.0, "episode time limit (truncation)", units="s", low=1.0, high=120.0)
    peg_half_width_m: float = param(0.012, "square peg half width", units="m", low=0.005, high=0.03)
    peg_half_length_m: float = param(0.04, "peg half length", units="m", low=0.02, high=0.08)
    clearance_m: float = param(0.0005, "hole half width minus peg half width (per side): tight, insertion needs contact", units="m", low=0.0002, high=0.01)
    hole_depth_m: float = param(0.04, "hole depth", units="m", low=0.01, high=0.08)
    hole_low: Tuple[float, ...] = param((0.5, -0.12), "hole centre x, y lower bounds (base frame)", units="m")
    hole_high: Tuple[float, ...] = param((0.6, 0.12), "hole centre x, y upper bounds (base frame)", units="m")
    insert_depth_m: float = param(0.03, "success: peg tip at least this far below the hole's top face", units="m", low=0.005, high=0.08)


class PegInsertion(Task):
    name = "peg_insertion"
    n_arms = 1
    gripper_actions = False
    Config = PegInsertionConfig
    description = "single arm: insert the grasped square peg into a tight hole (contact-rich, impedance)"

    def add_objects(self, spec, arm_names):
        c = self.config
        w, L = c.peg_half_width_m, c.peg_half_length_m
        peg = _free_body(spec, "peg", (0.5, 0, 0.3))
        _add_box(peg, (w, w, L), (0.2, 0.4, 0.85, 1), mass=0.05, name="peg", friction=(0.6, 0.01, 0.001))
        # Hole: four walls around a square opening, as one fixed (mocap) body moved at reset.
        hole = spec.worldbody.add_body()
        hole.name = "hole"
        hole.mocap = True
        hw = w + c.clearance_m
        t = 0.03  # wall thickness (half)
        dz = c.hole_depth_m / 2
        wall_rgba = (0.3, 0.6, 0.3, 1)
        for i, (px, py, sx, sy) in enumerate([(hw + t, 0, t, hw + 2 * t), (-hw - t, 0, t, hw + 2 * t),
                                              (0, hw + t, hw, t), (0, -hw - t, hw, t)]):
            _add_box(hole, (sx, sy, dz), wall_rgba, pos=(px, py, dz), name=f"hole_wall{i}", friction=(0.3, 0.01, 0.001), condim=3)
        _add_box(hole, (hw, hw, 0.002), (0.1, 0.25, 0.1, 1), pos=(0, 0, 0.002), name="hole_floor", condim=3)

    def bind(self, model):
        self.arm = self.sim.arm_names[0]
        self.hole_mocap = model.body("hole").mocapid[0]
        self.peg_geoms = {model.geom("peg").id}

    def randomize(self, rng):
        c = self.config
        a = self.sim.arms[self.arm]
        self.place_ee(self.arm, rng)
        mujoco.mj_kinematics(self.sim.model, self.sim.data)
        # The peg starts in the closed gripper, its top a few millimetres inside the fingers.
        tcp_w = self.sim.data.site_xpos[a.site].copy()
        R_tcp = self.sim.data.site_xmat[a.site].reshape(3, 3)
        peg_center = tcp_w + R_tcp @ np.array([0, 0, c.peg_half_length_m - 0.02])
        q = np.empty(4)
        mujoco.mju_mat2Quat(q, R_tcp.ravel())
        self.set_free_body("peg", peg_center, quat_xyzw_from_mj(q))
        self.set_gripper(self.arm, 2 * c.peg_half_width_m)
        a.data.ctrl[a.finger_act] = 0.0  # squeeze
        xy = _uniform(rng, c.hole_low, c.hole_high)
        self.sim.data.mocap_pos[self.hole_mocap] = a.R_wb @ np.array([xy[0], xy[1], 0.0]) + a.p_wb
        self.sim.data.mocap_quat[self.hole_mocap] = [1, 0, 0, 0]

    def reset(self, rng):
        super().reset(rng)
        a = self.sim.arms[self.arm]
        a.gripper_width_cmd = 0.0
        a.data.ctrl[a.finger_act] = 0.0

    def hole_pos_base(self) -> np.ndarray:
        return self.to_base(self.arm, self.sim.data.mocap_pos[self.hole_mocap])

    def peg_tip_base(self) -> np.ndarray:
        p, q = self.body_pose_base(self.arm, "peg")
        R = np.empty(9)
        mujoco.mju_quat2Mat(R, quat_mj_from_xyzw(q))
        axis = R.reshape(3, 3)[:, 2]
        # The tip is whichever end points down.
        return p - np.sign(axis[2]) * axis * self.config.peg_half_length_m

    def _over_hole(self) -> Tuple[bool, bool]:
        """(the peg tip is over the hole's opening, it is inserted deep enough)"""
        c = self.config
        tip = self.peg_tip_base()
        hole = self.hole_pos_base()
        over = bool(np.all(np.abs(tip[:2] - hole[:2]) < c.peg_half_width_m + c.clearance_m + 1e-3))
        return over, over and bool(tip[2] < c.hole_depth_m - c.insert_depth_m + 1e-4)

    def success(self) -> bool:
        return self._over_hole()[1]

    stage_names = ("over the hole", "success")

    def stage(self) -> int:
        over, inserted = self._over_hole()
        return 2 if inserted else int(over)

    def privileged_state(self):
        p, q = self.body_pose_base(self.arm, "peg")
        return {"peg_pos": p, "peg_quat": q, "peg_tip": self.peg_tip_base(), "hole_pos": self.hole_pos_base(),
                "hole_top_z": self.config.hole_depth_m,
                "grasped": all(self.sim.arms[self.arm].finger_contacts(self.peg_geoms))}


# ---------------------------------------------------------------------------- handover


@dataclass
class HandoverConfig(EEStartConfig):
    ee_start_low: Tuple[float, ...] = param((0.3, -0.1, 0.2), "lower corner of each arm's randomized EE start box (its base frame)", units="m")
    ee_start_high: Tuple[float, ...] = param((0.4, 0.1, 0.3), "upper corner of each arm's randomized EE start box (its base frame)", units="m")
    ee_start_yaw_rad: float = param(0.25, "EE start yaw drawn from [-v, v] about the pointing-down orientation", units="rad", low=0.0, high=3.14)
    time_limit_s: float = param(25.0, "episode time limit (truncation)", units="s", low=1.0, high=120.0)
    bar_half_size_m: Tuple[float, ...] = param((0.1, 0.015, 0.015), "bar half sizes (long axis first)", units="m")
    bar_mass_kg: float = param(0.1, "bar mass", units="kg", low=0.01, high=1.0)
    bar_low: Tuple[float, ...] = param((0.36, -0.1), "bar start x, y lower bounds in the giving arm's base frame", units="m")
    bar_high: Tuple[float, ...] = param((0.42, 0.1), "bar start x, y upper bounds in the giving arm's base frame", units="m")
    bar_yaw_rad: float = param(0.3, "bar start yaw drawn from [-v, v]", units="rad", low=0.0, high=3.14)
    hold_height_m: float = param(0.1, "success: bar centre at least this high, held by the receiving arm alone", units="m", low=0.03, high=0.5)


class Handover(Task):
    name = "handover"
    n_arms = 2
    Config = HandoverConfig
    description = "two arms: the first picks the bar and hands it to the second, which holds it up alone"

    def add_objects(self, spec, arm_names):
        c = self.config
        b = _free_body(spec, "bar", (0.35, 0, c.bar_half_size_m[2]))
        _add_box(b, c.bar_half_size_m, (0.9, 0.7, 0.1, 1), mass=c.bar_mass_kg, name="bar")

    def bind(self, model):
        self.giver, self.receiver = self.sim.arm_names
        self.bar_geoms = {model.geom("bar").id}

    def randomize(self, rng):
        c = self.config
        for arm in (self.giver, self.receiver):
            self.place_ee(arm, rng)
            self.set_gripper(arm, GRIPPER_MAX_WIDTH_M)
        xy = _uniform(rng, c.bar_low, c.bar_high)
        yaw = rng.uniform(-c.bar_yaw_rad, c.bar_yaw_rad)
        a = self.sim.arms[self.giver]
        self.set_free_body("bar", a.R_wb @ np.array([xy[0], xy[1], c.bar_half_size_m[2]]) + a.p_wb, yaw_quat(yaw))

    def holds(self, arm: str) -> bool:
        return all(self.sim.arms[arm].finger_contacts(self.bar_geoms))

    def touches(self, arm: str) -> bool:
        return any(self.sim.arms[arm].finger_contacts(self.bar_geoms))

    def success(self) -> bool:
        p, _ = self.body_pose_world("bar")
        return bool(p[2] > self.config.hold_height_m and self.holds(self.receiver) and not self.touches(self.giver))

    stage_names = ("giver grasped", "bar lifted", "receiver grasped", "success")

    def stage(self) -> int:
        if self.success():
            return 4
        if self.holds(self.receiver):
            return 3
        if self.holds(self.giver):
            return 2 if self.body_pose_world("bar")[0][2] > 2 * self.config.bar_half_size_m[2] + 0.02 else 1
        return 0

    def privileged_state(self):
        out = {}
        for arm in (self.giver, self.receiver):
            p, q = self.body_pose_base(arm, "bar")
            out[arm] = {"bar_pos": p, "bar_quat": q, "holds": self.holds(arm), "touches": self.touches(arm)}
        out["bar_half_size"] = np.asarray(self.config.bar_half_size_m)
        out["giver"], out["receiver"] = self.giver, self.receiver
        return out


# ---------------------------------------------------------------------------- pan_flip


@dataclass
class PanFlipConfig(EEStartConfig):
    ee_start_low: Tuple[float, ...] = param((0.45, -0.05, 0.25), "lower corner of the randomized EE start box (base frame)", units="m")
    ee_start_high: Tuple[float, ...] = param((0.55, 0.05, 0.32), "upper corner of the randomized EE start box (base frame)", units="m")
    ee_start_yaw_rad: float = param(0.2, "EE start yaw drawn from [-v, v] about the pointing-down orientation", units="rad", low=0.0, high=3.14)
    time_limit_s: float = param(20.0, "episode time limit (truncation)", units="s", low=1.0, high=120.0)
    pan_rim_height_m: float = param(0.06, "height of the pan's rim above its floor", units="m", low=0.005, high=0.15)
    pan_radius_m: float = param(0.12, "half width of the (square) pan floor; the pan is rigidly held by the hand", units="m", low=0.05, high=0.2)
    pan_offset_m: float = param(0.04, "pan surface distance below the TCP along the hand axis", units="m", low=0.0, high=0.2)
    cake_half_size_m: Tuple[float, ...] = param((0.035, 0.035, 0.008), "half sizes of the flat object to flip", units="m")
    cake_mass_kg: float = param(0.03, "mass of the object to flip", units="kg", low=0.005, high=0.5)
    cake_offset_m: float = param(0.02, "object start position drawn within +-v of the pan centre", units="m", low=0.0, high=0.05)
    max_force_n: float = param(60.0, "feed-forward force clamp of the wrench controller (action 1.0)", units="N", low=1.0, high=200.0)
    max_torque_nm: float = param(10.0, "feed-forward torque clamp of the wrench controller (action 1.0)", units="N m", low=0.1, high=50.0)


class PanFlip(Task):
    name = "pan_flip"
    n_arms = 1
    gripper_actions = False
    Config = PanFlipConfig
    description = "single arm, wrench actions: toss the flat object held in a pan so it lands upside down in the pan"

    def arm_configs(self, arm_names):
        c = self.config
        return {a: ArmControlConfig(mode="wrench", max_force_n=c.max_force_n, max_torque_nm=c.max_torque_nm) for a in arm_names}

    def add_objects(self, spec, arm_names):
        c = self.config
        arm = arm_names[0]
        hand = spec.body(f"{arm}/hand")
        pan = hand.add_body()
        pan.name = "pan"
        # Hand z points down: the pan face (normal -z_hand) points up; the handle stub sits between the fingers.
        z_surface = 0.1034 + c.pan_offset_m
        pan.pos = [0.0, 0.0, z_surface]
        # Thick box floor and walls with stiff contacts: a thin floor or a soft contact lets the
        # light tossed object sink through the accelerating pan at 2 ms steps. A square pan
        # (box-box contacts give several points) keeps the object flat when it lands.
        r, t, hr = c.pan_radius_m, 0.015, c.pan_rim_height_m / 2

        def pan_box(size, pos, mass, rgba=(0.2, 0.2, 0.22, 1)):
            g = pan.add_geom()
            g.type = mujoco.mjtGeom.mjGEOM_BOX
            g.size, g.pos, g.mass, g.rgba = list(size), list(pos), mass, list(rgba)
            g.contype, g.conaffinity, g.condim = 2, 1, 3
            g.friction = [0.6, 0.01, 0.001]
            g.solref, g.solimp = [0.005, 1.0], [0.95, 0.99, 0.001, 0.5, 2.0]
            return g

        pan_box((r, r, t), (0, 0, t), 0.25)
        for sx, sy, px, py in ((0.01, r + 0.02, r + 0.01, 0), (0.01, r + 0.02, -r - 0.01, 0),
                               (r, 0.01, 0, r + 0.01), (r, 0.01, 0, -r - 0.01)):
            pan_box((sx, sy, hr), (px, py, -hr), 0.02)
        stub = pan.add_geom()
        stub.type = mujoco.mjtGeom.mjGEOM_BOX
        stub.size = [0.01, 0.012, c.pan_offset_m / 2 + 0.005]
        stub.pos = [0, 0, -c.pan_offset_m / 2 - 0.005]
        stub.mass = 0.01
        stub.rgba = [0.1, 0.1, 0.1, 1]
        stub.contype = stub.conaffinity = 0
        h = c.cake_half_size_m
        cake = _free_body(spec, "cake", (0.5, 0, 0.3))
        # a browned body (the underside, seen when flipped) beside the pale yellow top: a lighter
        # tan rendered almost as the top does under the wrist light, and the reward classifier
        # took unflipped cakes for flipped ones (docs/DEMOS.md)
        g = _add_box(cake, h, (0.5, 0.27, 0.1, 1), mass=c.cake_mass_kg, name="cake", friction=(0.6, 0.01, 0.001), condim=4)
        g.solref, g.solimp = [0.005, 1.0], [0.95, 0.99, 0.001, 0.5, 2.0]
        top = cake.add_geom()  # coloured top face so the cameras can tell the sides apart
        top.type = mujoco.mjtGeom.mjGEOM_BOX
        top.size = [h[0] * 0.9, h[1] * 0.9, 0.001]
        top.pos = [0, 0, h[2]]
        top.rgba = [0.95, 0.85, 0.2, 1]
        top.contype = top.conaffinity = 0
        top.mass = 0.0001

    def bind(self, model):
        self.arm = self.sim.arm_names[0]
        self.pan_body = model.body("pan").id

    def randomize(self, rng):
        c = self.config
        self.place_ee(self.arm, rng)
        self.set_gripper(self.arm, 0.024)
        mujoco.mj_kinematics(self.sim.model, self.sim.data)
        d = self.sim.data
        pan_p = d.xpos[self.pan_body]
        off = rng.uniform(-c.cake_offset_m, c.cake_offset_m, 2)
        pos = pan_p + np.array([off[0], off[1], c.cake_half_size_m[2] + 0.001])
        self.set_free_body("cake", pos, yaw_quat(rng.uniform(-math.pi, math.pi)))

    def reset(self, rng):
        super().reset(rng)
        a = self.sim.arms[self.arm]
        a.command_gripper(0.0)  # squeeze the handle

    def cake_in_pan(self) -> Tuple[np.ndarray, float, float]:
        """(object position in the pan frame, its up-axis z component in the pan frame, world speed)."""
        d = self.sim.data
        R_pan = d.xmat[self.pan_body].reshape(3, 3)
        # Pan frame: z points into the pan (down); flip it so +z is the pan's "up".
        bid = self.sim.model.body("cake").id
        rel = R_pan.T @ (d.xpos[bid] - d.xpos[self.pan_body])
        rel = np.array([rel[0], rel[1], -rel[2]])
        up = -(R_pan.T @ d.xmat[bid].reshape(3, 3)[:, 2])[2]
        jnt = self.sim.model.body("cake").jntadr[0]
        dof = self.sim.model.jnt_dofadr[jnt]
        speed = float(np.linalg.norm(d.qvel[dof:dof + 3]))
        return rel, float(up), speed

    def cake_speed_in_pan(self) -> float:
        """Speed of the object relative to the pan point under it (sliding or bouncing, not carried)."""
        m, d = self.sim.model, self.sim.data
        bid = m.body("cake").id
        dof = m.jnt_dofadr[m.body("cake").jntadr[0]]
        pan_vel = np.zeros(6)  # (angular, linear) at the pan frame's origin, world orientation
        mujoco.mj_objectVelocity(m, d, mujoco.mjtObj.mjOBJ_XBODY, self.pan_body, pan_vel, 0)
        carried = pan_vel[3:] + np.cross(pan_vel[:3], d.xpos[bid] - d.xpos[self.pan_body])
        return float(np.linalg.norm(d.qvel[dof:dof + 3] - carried))

    def success(self) -> bool:
        rel, up, _ = self.cake_in_pan()
        c = self.config
        # Lying flat on the pan floor (not on the table below, not leaning on the rim), upside
        # down, and at rest in the pan. The speed is taken relative to the pan: the object is
        # carried at the arm's speed, which a camera on the arm cannot see, so a world-frame
        # speed made the label flicker on frames that look the same.
        resting = np.all(np.abs(rel[:2]) < c.pan_radius_m) and -0.005 < rel[2] < c.cake_half_size_m[2] + 0.01
        return bool(resting and up < -0.9 and self.cake_speed_in_pan() < 0.2)

    def privileged_state(self):
        rel, up, speed = self.cake_in_pan()
        return {"cake_rel": rel, "cake_up": up, "cake_speed": speed, "cake_speed_in_pan": self.cake_speed_in_pan()}


# ---------------------------------------------------------------------------- registry

TASKS: Dict[str, Type[Task]] = {t.name: t for t in (PickCube, PegInsertion, Handover, PanFlip)}


def register(task_cls: Type[Task]) -> Type[Task]:
    TASKS[task_cls.name] = task_cls
    return task_cls


def task_names() -> List[str]:
    return sorted(TASKS)


def make_task(name: str, config: Optional[Mapping[str, Any]] = None, source: str = "<task config>") -> Task:
    """A task by registry name with its config validated (errors name the bad key and range)."""
    if name not in TASKS:
        raise TaskError(f"unknown task {name!r}; valid tasks: {', '.join(task_names())}")
    cls = TASKS[name]
    try:
        conf = cfg.from_mapping(cls.Config, config, source=f"{source} ({name})")
    except cfg.ConfigError as exc:
        raise TaskError(str(exc)) from exc
    _check_vectors(conf, f"{source} ({name})")
    return cls(conf)


def _check_vectors(conf, source: str) -> None:
    """Tuple-valued box parameters must have the right length and low <= high."""
    d = cfg.to_dict(conf)
    for key, value in d.items():
        if not isinstance(value, list):
            continue
        if key.endswith("_low"):
            other = key[:-4] + "_high"
            if other in d:
                lo, hi = value, d[other]
                if len(lo) != len(hi):
                    raise TaskError(f"{source}: {key} and {other} must have the same length, got {lo} and {hi}")
                if any(a > b for a, b in zip(lo, hi)):
                    raise TaskError(f"{source}: {key} {lo} must be <= {other} {hi} element-wise")
        if key in ("ee_start_low", "ee_start_high") and len(value) != 3:
            raise TaskError(f"{source}: {key} needs 3 numbers (x, y, z in metres), got {value}")
        if any(not math.isfinite(v) for v in value):
            raise TaskError(f"{source}: {key} has a non-finite number: {value}")
