"""Physics, arms and cameras of one scene; advances in 0.1 s control periods.

``Simulator`` is the ROS-free object behind ``sim_node``: it exposes per arm
exactly what the real stack publishes (:class:`~hilserl_sim.robot.ArmState`,
camera images) and accepts what it subscribes (target pose, target wrench,
gripper width). Physics runs at ``1 / model.opt.timestep`` (500 Hz by default)
with the arm controllers evaluated at every physics step.
"""

from __future__ import annotations

from typing import Dict, Iterable, Optional, Sequence, Tuple

import mujoco
import numpy as np

from .model import HOME_QPOS
from .robot import ArmControlConfig, ArmState, SimArm

CONTROL_PERIOD_S = 0.1


class Simulator:
    def __init__(self, model: mujoco.MjModel, arm_names: Sequence[str], image_size: Tuple[int, int] = (128, 128),
                 control_period_s: float = CONTROL_PERIOD_S, arm_configs: Optional[Dict[str, ArmControlConfig]] = None):
        self.model = model
        self.data = mujoco.MjData(model)
        self.arm_names = tuple(arm_names)
        self.control_period_s = control_period_s
        self.substeps = max(1, int(round(control_period_s / model.opt.timestep)))
        self.image_height, self.image_width = image_size
        configs = arm_configs or {}
        for name in self.arm_names:
            adr = model.jnt_qposadr[model.joint(f"{name}/joint1").id]
            self.data.qpos[adr:adr + 7] = HOME_QPOS
        mujoco.mj_forward(model, self.data)
        self.arms: Dict[str, SimArm] = {n: SimArm(model, self.data, n, configs.get(n)) for n in self.arm_names}
        self._renderer: Optional[mujoco.Renderer] = None
        self._scene_option = mujoco.MjvOption()
        # Hide the TCP markers (group 4) from the cameras.
        self._scene_option.sitegroup[4] = 0

    # ------------------------------------------------------------------ cameras
    def camera_names(self, arm: Optional[str] = None) -> Tuple[str, ...]:
        """Camera ids as ``(arm, cam)`` keys, e.g. ("left", "wrist"), ("left", "front")."""
        arms = self.arm_names if arm is None else (arm,)
        return tuple(f"{a}/{c}" for a in arms for c in ("wrist", "front"))

    def _camera_id(self, key: str) -> int:
        arm, cam = key.split("/", 1)
        name = f"{arm}/{cam}" if cam == "wrist" else f"cam/{arm}/{cam}"
        cid = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, name)
        if cid < 0:
            raise KeyError(f"no camera '{key}'; valid: {', '.join(self.camera_names())}")
        return cid

    def render(self, cameras: Iterable[str]) -> Dict[str, np.ndarray]:
        """uint8 [H, W, 3] RGB per requested camera ('<arm>/wrist', '<arm>/front'); one renderer reused."""
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.model, self.image_height, self.image_width)
        out = {}
        for key in cameras:
            self._renderer.update_scene(self.data, camera=self._camera_id(key), scene_option=self._scene_option)
            out[key] = self._renderer.render().copy()
        return out

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    # ------------------------------------------------------------------ state / commands
    @property
    def time(self) -> float:
        return float(self.data.time)

    def arm_state(self, arm: str) -> ArmState:
        return self.arms[arm].state()

    def reset_arm_commands(self) -> None:
        mujoco.mj_forward(self.model, self.data)
        for arm in self.arms.values():
            arm.reset_commands()

    # ------------------------------------------------------------------ physics
    def step(self, duration_s: Optional[float] = None) -> None:
        """Advance physics by one control period (or ``duration_s``), controllers at every physics step."""
        n = self.substeps if duration_s is None else max(1, int(round(duration_s / self.model.opt.timestep)))
        m, d = self.model, self.data
        arms = tuple(self.arms.values())
        for _ in range(n):
            mujoco.mj_step1(m, d)
            for arm in arms:
                arm.compute_torques()
            mujoco.mj_step2(m, d)
        # Positions-dependent quantities (site poses, contacts) match the new state for read-out.
        mujoco.mj_forward(m, d)
