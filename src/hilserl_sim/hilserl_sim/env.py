"""Task episodes at the 10 Hz control period (no ROS).

``TaskEnv`` plays the role of the intervention mux + controller for simulation
loops that run without ROS (tests, benchmarks, the scripted operator's own
evaluation): it turns a normalized per-arm action into the controller command
exactly as the mux does (``hilserl_core.robot.control.integrate_twist_target`` from the
measured pose, clipped to the workspace box), then advances physics one control
period.

Action per arm (:class:`ArmAction`):
- ``twist``: 6 numbers in [-1, 1], [linear, angular] in the CURRENT end-effector
  frame (what ``spacenav/twist`` carries after scaling), or, for arms in wrench
  mode, the normalized feed-forward wrench in the EE frame;
- ``gripper``: -1 close, +1 open, 0 stay.
Time-limit ends are ``truncated`` (never ``terminated``); ``terminated`` is
set on ground-truth success (evaluation only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from hilserl_core.robot import control as law
from hilserl_core.robot.intervention import MuxConfig  # step sizes and workspace box: the mux's own schema

from .robot import GRIPPER_MAX_WIDTH_M
from .tasks import Task, make_task


@dataclass
class ArmAction:
    twist: np.ndarray = field(default_factory=lambda: np.zeros(6))
    gripper: float = 0.0  # -1 close, +1 open, 0 stay


class TaskEnv:
    def __init__(self, task: str | Task, task_config: Optional[Mapping[str, Any]] = None, seed: int = 0,
                 image_size: Tuple[int, int] = (128, 128), cameras: Optional[Sequence[str]] = None,
                 mux: Optional[MuxConfig] = None, arm_names: Optional[Sequence[str]] = None):
        self.task = make_task(task, task_config) if isinstance(task, str) else task
        self.sim = self.task.build(arm_names, image_size=image_size)
        self.arm_names = self.sim.arm_names
        self.cameras = tuple(self.sim.camera_names() if cameras is None else cameras)
        for cam in self.cameras:
            self.sim._camera_id(cam)  # fail early on a bad camera name
        self.mux = mux or MuxConfig()
        self.box = self.mux.workspace.box()
        self.rng = np.random.default_rng(seed)
        self.anchor: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}
        self.steps = 0
        self.episode_success = False

    # ------------------------------------------------------------------ episodes
    def reset(self, seed: Optional[int] = None) -> Dict[str, Any]:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.task.reset(self.rng)
        self.steps = 0
        self.episode_success = False
        for name, arm in self.sim.arms.items():
            self.anchor[name] = arm.tcp_pose()
        return self.observation()

    def observation(self) -> Dict[str, Any]:
        obs: Dict[str, Any] = {"state": {a: self.sim.arm_state(a) for a in self.arm_names}}
        if self.cameras:
            obs["images"] = self.sim.render(self.cameras)
        return obs

    @property
    def gripper_closed(self) -> Dict[str, bool]:
        """Whether each gripper was last told to close: what a person sees of it (read-only,
        derived from the simulated gripper's command, whoever sent it)."""
        return {a: arm.gripper_width_cmd < 0.5 * GRIPPER_MAX_WIDTH_M for a, arm in self.sim.arms.items()}

    def arm_mode(self, arm: str) -> str:
        return self.sim.arms[arm].config.mode

    def apply_action(self, actions: Mapping[str, ArmAction]) -> None:
        """Turn normalized actions into controller commands, as the mux would."""
        now = self.sim.time
        for name, act in actions.items():
            arm = self.sim.arms[name]
            a = np.clip(np.nan_to_num(np.asarray(act.twist, dtype=np.float64), nan=0.0), -1.0, 1.0)
            if arm.config.mode == "wrench":
                c = arm.config
                arm.command_pose(*self.anchor[name], stamp_s=now)
                arm.command_wrench(np.concatenate((a[:3] * c.max_force_n, a[3:] * c.max_torque_nm)), stamp_s=now)
            else:
                pos, quat = arm.tcp_pose()
                t_pos, t_quat = law.integrate_twist_target(pos, quat, a, self.mux.linear_step_m,
                                                           self.mux.angular_step_rad, self.box)
                arm.command_pose(t_pos, t_quat, stamp_s=now)
            closed = arm.gripper_width_cmd < 0.5 * GRIPPER_MAX_WIDTH_M
            if act.gripper > 0.5 and closed:
                arm.command_gripper(GRIPPER_MAX_WIDTH_M)
            elif act.gripper < -0.5 and not closed:
                arm.command_gripper(0.0)

    def step(self, actions: Mapping[str, ArmAction], render: bool = True):
        self.apply_action(actions)
        self.sim.step()
        self.steps += 1
        success = self.task.success()
        self.episode_success = self.episode_success or success
        truncated = (not success) and self.steps >= self.task.time_limit_steps
        obs = self.observation() if render else {"state": {a: self.sim.arm_state(a) for a in self.arm_names}}
        info = {"success": success, "diagnostics": {a: self.sim.arms[a].diagnostics() for a in self.arm_names}}
        return obs, float(success), bool(success), bool(truncated), info

    def close(self) -> None:
        self.sim.close()
