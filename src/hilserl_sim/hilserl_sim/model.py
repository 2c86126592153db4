"""Packaged MJCF assets and scene assembly (one or two arms + task objects).

Quaternion order: MuJoCo stores ``[w, x, y, z]``; the rest of hilserl uses
``[x, y, z, w]`` (ROS). :func:`quat_xyzw_from_mj` / :func:`quat_mj_from_xyzw`
are the ONLY places that convert.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Sequence

import mujoco
import numpy as np

ASSET_PACKAGE = "hilserl_sim"
SCENES = {1: "scene_single.xml", 2: "scene_dual.xml"}
DEFAULT_ARMS = {1: ("arm",), 2: ("left", "right")}
ARM_FILE = "panda.xml"
ARM_JOINTS = tuple(f"joint{i}" for i in range(1, 8))
FINGER_JOINTS = ("finger_joint1", "finger_joint2")
# A comfortable "ready" posture (rad): EE about 0.5 m in front of the base, pointing down.
HOME_QPOS = np.array([0.0, 0.1, 0.0, -2.2, 0.0, 2.3, np.pi / 4])


class MissingAssetError(FileNotFoundError):
    """A packaged model file is not where the installed package says it is."""


def quat_xyzw_from_mj(q_wxyz) -> np.ndarray:
    """MuJoCo ``[w,x,y,z]`` -> hilserl ``[x,y,z,w]``."""
    q = np.asarray(q_wxyz, dtype=np.float64)
    return np.array([q[1], q[2], q[3], q[0]])


def quat_mj_from_xyzw(q_xyzw) -> np.ndarray:
    """hilserl ``[x,y,z,w]`` -> MuJoCo ``[w,x,y,z]``."""
    q = np.asarray(q_xyzw, dtype=np.float64)
    return np.array([q[3], q[0], q[1], q[2]])


def asset_path(name: str) -> Path:
    """Path of a packaged asset; a clear error names the path when it is missing."""
    path = Path(str(resources.files(ASSET_PACKAGE).joinpath("assets", name)))
    if not path.is_file():
        raise MissingAssetError(
            f"hilserl_sim asset '{name}' not found at {path}; the package install is incomplete "
            f"(rebuild with `colcon build --base-paths src --symlink-install`, and check setup.py "
            f"package_data lists assets/*.xml)"
        )
    return path


def load_spec(name: str) -> mujoco.MjSpec:
    path = asset_path(name)
    try:
        return mujoco.MjSpec.from_file(str(path))
    except Exception as exc:  # mujoco raises ValueError with the parser's message
        raise ValueError(f"cannot parse MJCF asset {path}: {exc}") from exc


def build_scene_spec(arm_names: Sequence[str] | None = None, n_arms: int = 1) -> mujoco.MjSpec:
    """The scene for ``n_arms`` (1 or 2) with a Panda attached at each mount.

    Every arm element is named ``<arm>/<name>`` (e.g. ``left/hand``, ``left/wrist``),
    and each arm's side camera is ``cam/<arm>/front``. Task objects are added by
    the caller (see :mod:`hilserl_sim.tasks`) before :meth:`MjSpec.compile`.
    """
    if n_arms not in SCENES:
        raise ValueError(f"n_arms must be 1 or 2, got {n_arms!r}")
    arms = tuple(arm_names) if arm_names is not None else DEFAULT_ARMS[n_arms]
    if len(arms) != n_arms or len(set(arms)) != n_arms:
        raise ValueError(f"need {n_arms} distinct arm names, got {arms!r}")
    scene = load_spec(SCENES[n_arms])
    default_arms = DEFAULT_ARMS[n_arms]
    for name, default in zip(arms, default_arms):
        frame = scene.frame(f"mount/{default}")
        if frame is None:
            raise ValueError(f"{asset_path(SCENES[n_arms])} has no frame 'mount/{default}'")
        arm = load_spec(ARM_FILE)
        frame.attach_body(arm.body("link0"), f"{name}/", "")
        cam = scene.camera(f"cam/{default}/front")
        if name != default and cam is not None:
            cam.name = f"cam/{name}/front"
    return scene


def compile_scene(spec: mujoco.MjSpec) -> mujoco.MjModel:
    try:
        return spec.compile()
    except Exception as exc:
        raise ValueError(f"MuJoCo could not compile the hilserl_sim scene: {exc}") from exc
