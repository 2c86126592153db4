"""Gymnasium bridge: the project's learner and policy trained on a Gymnasium environment, in one process.

What is the same as on the ROS graph: the agents and the learner (``RLPDAgent``, ``GraspDQNAgent``,
``ReplayBuffer``, ``Learner``, built as ``rl.build.build_learner`` builds them, with the defaults of
``LearnerNodeConfig``), the actor's policy (``rl.policy.PolicyRunner``, loaded with the float16 weights
the learner would broadcast, ``formats.wire.weights_to_arrays``), the transition format
(``formats.types.Transition``), the image preprocessing of the crop node (centred square, area resize
to 128x128, ``vision.imageproc.CropResizer``), the grasp penalty (``robot.actor.grasp_penalty``) and
the run record of ``hilserl train`` / ``hilserl eval`` (``episodes.csv``, ``training.png``,
``summary.json``, ``eval.json`` with a 95% Wilson interval).

What the bridge does in place of the nodes: it steps the environment itself, one transition per
``env.step``; after each it adds the transition and runs the updates the update-to-data ratio allows
(``Learner.updates_due``), and it copies the weights into the policy every ``weights_period_steps``
env steps (the node's 2 s at 10 Hz), so a run is reproducible from its seed: nothing depends on
the wall clock.

Observations: every ``uint8 [H, W, 3]`` entry of the (possibly nested) observation dict is a camera
(``pixels/front`` -> ``image/pixels_front``); every other Box entry goes, flattened and in order,
into the state vector (``proprio``), optionally scaled per element (``state_scale``).

Actions: the env's action Box is split into the dimensions the agent drives (``action_dims``),
each mapped from the agent's [-1, 1] to ``centre + a * half_range * scale`` of that dimension's
bounds (``action_scale``), and at most one gripper dimension (``gripper_dim``), driven by the
grasp critic as the actor drives a gripper: open / stay / close -> the env values
``gripper_values`` (default: low / centre / high). Other dimensions are held at their centre. A
transition stores the agent-space action that was executed (the env action mapped back).

Episodes: ``terminated`` stops bootstrapping (success or a failure the env ends), ``truncated``
(the env's time limit, ``max_episode_steps``, the end of the step budget) does not. Success is
``info[key]`` for the first of ``success_keys`` the env reports, else a terminating step with
reward > 0. Demonstrations come from an optional scripted policy (env actions in, successful
episodes only into the demo buffer); an optional operator callable can take over steps
(intervention transitions, which go into both buffers).

Gymnasium is imported by the caller (it makes the env); this module needs only the env's spaces.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from hilserl_core.formats import config as cfg
from hilserl_core.formats.config import ConfigError, param
from hilserl_core.formats.types import PROPRIO_KEY, Observation, Transition, image_key
from hilserl_core.formats.wire import weights_to_arrays
from hilserl_core.rl.build import LearnerNodeConfig, build_learner_for
from hilserl_core.rl.learner import progress_line
from hilserl_core.rl.policy import PolicyRunner
from hilserl_core.rl.replay import DEMO_BUFFER, RL_BUFFER, MixedSampler
from hilserl_core.robot.actor import ActorConfig, grasp_penalty
from hilserl_core.robot.intervention import GRIPPER_CLOSE, GRIPPER_OPEN, GRIPPER_STAY
from hilserl_core.vision.encoders import featurize_observation, load_frozen_encoder
from hilserl_core.vision.imageproc import CropResizer, Roi

from .evaluate import wilson_interval
from .runlog import EpisodeRow, RunLog, plot_run

__all__ = ["GymBridgeConfig", "ObservationMap", "ActionMap", "EpisodeResult", "GymBridge", "eval_summary"]

EnvAction = np.ndarray
ScriptedPolicy = Callable[[Any], Optional[EnvAction]]  # raw env observation -> env action (None: not acting)

_ACTOR = ActorConfig()  # the actor node's defaults for exploration and the grasp penalty


@dataclass(frozen=True)
class GymBridgeConfig:
    cameras: Tuple[str, ...] = param((), "camera entries of the observation as paths (e.g. pixels/front); empty = every uint8 [H, W, 3] entry")
    state_keys: Tuple[str, ...] = param((), "state entries of the observation as paths, concatenated in this order; empty = every other Box entry")
    state_scale: Tuple[float, ...] = param((), "per-element multipliers of the state vector (e.g. 1/255 for a gripper command in 0..255); empty = 1")
    action_dims: Tuple[int, ...] = param((), "env action dimensions the policy drives; empty = all but gripper_dim", low=0)
    action_scale: Tuple[float, ...] = param((), "per driven dimension: the policy's +-1 is this fraction of the half range of the env's bounds; empty = 1")
    gripper_dim: int = param(-1, "env action dimension driven by the grasp critic (open/stay/close); -1 = none (no grasp critic)", low=-1)
    gripper_values: Tuple[float, ...] = param((), "env values of open, stay, close on gripper_dim; empty = its low, centre, high")
    image_size: int = param(128, "side of the square camera image the encoder reads (the crop node's output_size)", units="px", low=8, high=1024)
    max_episode_steps: int = param(0, "time limit (a truncation) on top of the env's own; 0 = the env's alone", units="steps", low=0)
    weights_period_steps: int = param(20, "env steps between copies of the learner's weights into the policy (the node's 2 s at 10 Hz)", units="steps", low=1)
    grasp_epsilon: float = param(_ACTOR.grasp_epsilon, "probability of a random gripper action while training", low=0.0, high=1.0)
    grasp_penalty: float = param(_ACTOR.grasp_penalty, "reward added for a gripper action that changes the gripper state (grasp critic only)", low=-1.0, high=0.0)
    success_keys: Tuple[str, ...] = param(("is_success", "success", "succeed"), "info keys read as the success signal (first present wins); none present = a terminating step with reward > 0")
    control_dt_s: float = param(0.0, "seconds per env step for durations and cycle times; 0 = the env's control_dt (else durations are in steps)", units="s", low=0.0)
    progress_period_steps: int = param(1000, "env steps between the learner's progress lines; 0 = none", units="steps", low=0)
    seed: int = param(0, "seed of the agents, the sampler and the first training reset", low=0)
    learner: LearnerNodeConfig = field(default_factory=LearnerNodeConfig)

    def __post_init__(self) -> None:
        cfg.validate(self, "GymBridgeConfig")
        if self.gripper_values and len(self.gripper_values) != 3:
            raise ConfigError(f"GymBridgeConfig: gripper_values needs 3 values (open, stay, close), got {list(self.gripper_values)}")


def _entries(space: Any, path: str = "") -> List[Tuple[str, Any]]:
    """(path, Box) of every leaf of a (nested) Dict space, in the space's order."""
    sub = getattr(space, "spaces", None)
    if isinstance(sub, Mapping):
        out = []
        for key, s in sub.items():
            out += _entries(s, f"{path}/{key}" if path else str(key))
        return out
    return [(path, space)]


def _lookup(obs: Any, path: str) -> np.ndarray:
    for part in path.split("/") if path else ():
        obs = obs[part]
    return np.asarray(obs)


def _is_image(space: Any) -> bool:
    shape = tuple(getattr(space, "shape", None) or ())
    return len(shape) == 3 and shape[-1] == 3 and np.dtype(getattr(space, "dtype", np.float32)) == np.uint8


def centred_square(width: int, height: int) -> Roi:
    """The crop node's default region of interest: the largest centred square."""
    side = min(width, height)
    return Roi((width - side) // 2, (height - side) // 2, side, side)


class ObservationMap:
    """A Gymnasium observation -> the project's observation (``image/<cam>`` 128x128 uint8 + ``proprio``)."""

    def __init__(self, observation_space: Any, conf: GymBridgeConfig) -> None:
        leaves = _entries(observation_space)
        boxes = dict(leaves)
        images = [p for p, s in leaves if _is_image(s)]
        for wanted in tuple(conf.cameras) + tuple(conf.state_keys):
            if wanted not in boxes:
                raise ConfigError(f"GymBridgeConfig: observation has no entry {wanted!r}; it has {[p for p, _ in leaves]}")
        self.camera_paths = tuple(conf.cameras) or tuple(images)
        bad = [p for p in self.camera_paths if not _is_image(boxes[p])]
        if bad:
            raise ConfigError(f"GymBridgeConfig: cameras {bad} are not uint8 [H, W, 3] images")
        if not self.camera_paths:
            raise ConfigError(f"the environment's observation has no uint8 [H, W, 3] image entry (entries: {[p for p, _ in leaves]}); "
                              "the bridge trains from images + state")
        self.state_paths = tuple(conf.state_keys) or tuple(p for p, s in leaves if p not in images and getattr(s, "shape", None) is not None)
        self.cameras = tuple(p.replace("/", "_") for p in self.camera_paths)
        self.proprio_dim = int(sum(int(np.prod(boxes[p].shape)) for p in self.state_paths))
        if conf.state_scale and len(conf.state_scale) != self.proprio_dim:
            raise ConfigError(f"GymBridgeConfig: state_scale has {len(conf.state_scale)} values, the state vector "
                              f"{self.state_paths} has {self.proprio_dim}")
        self.state_scale = np.asarray(conf.state_scale, np.float32) if conf.state_scale else None
        self.size = int(conf.image_size)
        self._resizers: Dict[Tuple[str, Tuple[int, int]], CropResizer] = {}

    def image(self, camera: str, rgb: np.ndarray) -> np.ndarray:
        """One camera frame cropped and resized as the crop node does (passed through at the output size)."""
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        hw = rgb.shape[:2]
        if hw == (self.size, self.size):
            return rgb
        key = (camera, hw)
        if key not in self._resizers:
            self._resizers[key] = CropResizer(centred_square(hw[1], hw[0]), hw, (self.size, self.size))
        return self._resizers[key](rgb)

    def __call__(self, obs: Any) -> Observation:
        state = [_lookup(obs, p).astype(np.float32).reshape(-1) for p in self.state_paths]
        proprio = np.concatenate(state) if state else np.zeros(0, np.float32)
        if self.state_scale is not None:
            proprio = proprio * self.state_scale
        out: Observation = {PROPRIO_KEY: proprio.astype(np.float32)}
        for cam, path in zip(self.cameras, self.camera_paths):
            out[image_key(cam)] = self.image(cam, _lookup(obs, path))
        return out


class ActionMap:
    """The agent's action (``[A]`` in [-1, 1]) and grasp-critic action <-> the env's action Box."""

    def __init__(self, action_space: Any, conf: GymBridgeConfig) -> None:
        shape = tuple(getattr(action_space, "shape", None) or ())
        if len(shape) != 1 or not hasattr(action_space, "low"):
            raise ConfigError(f"the bridge needs a 1-D continuous Box action space, got {action_space}")
        n = shape[0]
        self.low = np.asarray(action_space.low, np.float64)
        self.high = np.asarray(action_space.high, np.float64)
        self.dtype = np.dtype(getattr(action_space, "dtype", np.float32))
        self.gripper_dim = int(conf.gripper_dim)
        if self.gripper_dim >= n:
            raise ConfigError(f"GymBridgeConfig: gripper_dim {self.gripper_dim} is outside the {n}-D action")
        self.dims = tuple(conf.action_dims) or tuple(d for d in range(n) if d != self.gripper_dim)
        if any(d >= n or d == self.gripper_dim for d in self.dims) or len(set(self.dims)) != len(self.dims):
            raise ConfigError(f"GymBridgeConfig: action_dims {list(self.dims)} must be distinct dimensions of the {n}-D "
                              f"action other than gripper_dim {self.gripper_dim}")
        if not self.dims:
            raise ConfigError("GymBridgeConfig: the policy drives no action dimension (action_dims)")
        finite = np.isfinite(self.low) & np.isfinite(self.high)
        self.centre = np.where(finite, (self.low + self.high) / 2, 0.0)
        half = np.where(finite, (self.high - self.low) / 2, 1.0)
        scale = np.ones(len(self.dims))
        if conf.action_scale:
            if len(conf.action_scale) != len(self.dims):
                raise ConfigError(f"GymBridgeConfig: action_scale has {len(conf.action_scale)} values for "
                                  f"{len(self.dims)} driven dimensions {list(self.dims)}")
            scale = np.asarray(conf.action_scale, np.float64)
        self.gain = half[list(self.dims)] * scale  # env units per unit of policy action
        if np.any(self.gain == 0):
            raise ConfigError(f"GymBridgeConfig: a driven dimension of {list(self.dims)} has no range (bounds or action_scale 0)")
        if self.gripper_dim >= 0:
            g = self.gripper_dim
            values = conf.gripper_values or (self.low[g], self.centre[g], self.high[g])
            if not np.all(np.isfinite(values)):
                raise ConfigError(f"GymBridgeConfig: gripper dimension {g} has unbounded limits; set gripper_values")
            self.gripper_values = tuple(float(v) for v in values)  # indexed by GRIPPER_OPEN, GRIPPER_STAY, GRIPPER_CLOSE
        else:
            self.gripper_values = ()

    @property
    def action_dim(self) -> int:
        return len(self.dims)

    @property
    def has_gripper(self) -> bool:
        return self.gripper_dim >= 0

    def to_env(self, action: np.ndarray, grasp: Optional[int] = None) -> EnvAction:
        """Agent action (+ gripper action 0 open / 1 stay / 2 close) -> env action within its bounds."""
        a = np.clip(np.asarray(action, np.float64).reshape(-1), -1.0, 1.0)
        out = self.centre.copy()
        out[list(self.dims)] = self.centre[list(self.dims)] + a * self.gain
        if self.has_gripper:
            out[self.gripper_dim] = self.gripper_values[GRIPPER_STAY if grasp is None else int(grasp)]
        return np.clip(out, self.low, self.high).astype(self.dtype)

    def from_env(self, env_action: np.ndarray) -> Tuple[np.ndarray, int]:
        """Env action -> (agent action in [-1, 1], gripper action: the nearest of open / stay / close)."""
        e = np.clip(np.asarray(env_action, np.float64).reshape(-1), self.low, self.high)
        a = np.clip((e[list(self.dims)] - self.centre[list(self.dims)]) / self.gain, -1.0, 1.0).astype(np.float32)
        grasp = GRIPPER_STAY
        if self.has_gripper:
            grasp = int(np.argmin([abs(e[self.gripper_dim] - v) for v in self.gripper_values]))
        return a, grasp


@dataclass
class EpisodeResult:
    episode: int
    steps: int
    success: bool
    end: str  # "success", "terminated" (the env ended it without success), "time_limit", "budget"
    intervened_steps: int
    episode_return: float
    transitions: List[Transition] = field(default_factory=list, repr=False)


def eval_summary(results: Sequence[EpisodeResult], control_dt_s: Optional[float]) -> Dict[str, Any]:
    """Success rate with its 95% Wilson interval and cycle time of the successes (``hilserl eval``'s keys)."""
    wins = [r.steps for r in results if r.success]
    lo, hi = wilson_interval(len(wins), len(results))
    dt = control_dt_s or None
    return {"episodes": len(results), "successes": len(wins),
            "success_rate": len(wins) / len(results) if results else None, "ci95": [round(lo, 3), round(hi, 3)],
            "cycle_time_s": round(float(np.mean(wins)) * dt, 2) if wins and dt else None,
            "cycle_time_median_s": round(float(np.median(wins)) * dt, 2) if wins and dt else None,
            "cycle_steps": round(float(np.mean(wins)), 1) if wins else None}


class GymBridge:
    """Trains the project's agents on ``env`` (a Gymnasium env: ``reset``/``step``, Dict observation
    with images, Box action) and evaluates the policy alone."""

    def __init__(self, env: Any, config: GymBridgeConfig = GymBridgeConfig(), *,  # noqa: B008
                 say: Callable[[str], None] = print) -> None:
        self.env, self.conf, self.say = env, config, say
        self.obs_map = ObservationMap(env.observation_space, config)
        self.act_map = ActionMap(env.action_space, config)
        lc = config.learner
        if lc.learner.algorithm != "rlpd":
            raise ConfigError("GymBridgeConfig: learner.learner.algorithm must be rlpd (the bridge runs no baselines)")
        s = config.seed
        lc = dataclasses.replace(lc, agent=cfg.replace(lc.agent, seed=s), grasp=cfg.replace(lc.grasp, seed=s),
                                 learner=cfg.replace(lc.learner, seed=s))
        self.learner_conf = lc
        torch.manual_seed(s)
        self.use_grasp = self.act_map.has_gripper and lc.use_grasp_critic
        cams, p, a = self.obs_map.cameras, self.obs_map.proprio_dim, self.act_map.action_dim
        self.learner = build_learner_for(lc, cams, p, a, 1 if self.use_grasp else 0)
        # the policy acts on the CPU, as the actor node does; the learner's encoder may be on its device
        on_cpu = self.learner.encoder is not None and next(self.learner.encoder.parameters()).device.type == "cpu"
        self.encoder = self.learner.encoder if on_cpu else load_frozen_encoder(lc.encoder_weights, lc.encoder_dtype)
        grasp_conf = cfg.replace(lc.grasp, n_grippers=1) if self.use_grasp else None
        self.policy = PolicyRunner(lc.agent, a, cams, p, self.encoder, grasp_conf)
        self._features = lc.learner.storage == "features"
        unwrapped = getattr(env, "unwrapped", env)
        self.control_dt_s = config.control_dt_s or float(getattr(unwrapped, "control_dt", 0.0) or 0.0) or None
        self.env_steps = 0
        self.episodes = 0
        self._first_reset = True
        self._closed = False  # the gripper state for the grasp penalty (closed since the last close)
        self.copy_weights()  # the policy acts with the learner's initial weights

    # -- policy <- learner ---------------------------------------------------------------
    def copy_weights(self) -> int:
        """Copy the learner's policy weights into the policy as the weights topic carries them
        (``weights_dtype``, all-or-nothing load); returns the version."""
        state, version = self.learner.policy_weights()
        arrays, _ = weights_to_arrays(state, version, float_dtype=self.learner_conf.weights_dtype)
        self.policy.load_weights(arrays, version)
        self._copied_at_updates = self.learner.updates
        return version

    # -- one episode ---------------------------------------------------------------------
    def _prepare(self, raw: Any) -> Observation:
        obs = self.obs_map(raw)
        # encoded once: the policy acts on the features and the learner stores them (feature storage)
        return featurize_observation(obs, self.encoder, self.obs_map.cameras) if self._features else obs

    def _success(self, info: Mapping[str, Any], reward: float, terminated: bool) -> bool:
        for key in self.conf.success_keys:
            if key in info:
                return bool(np.asarray(info[key]).any())
        return bool(terminated and reward > 0)

    def _penalty(self, grasp: int) -> float:
        penalty = grasp_penalty(grasp, self._closed, self.conf.grasp_penalty)
        self._closed = True if grasp == GRIPPER_CLOSE else False if grasp == GRIPPER_OPEN else self._closed
        return penalty

    def run_episode(self, *, explore: bool = True, seed: Optional[int] = None, scripted: Optional[ScriptedPolicy] = None,
                    operator: Optional[ScriptedPolicy] = None, max_steps: Optional[int] = None,
                    on_transition: Optional[Callable[[Transition], None]] = None) -> EpisodeResult:
        """One episode. The policy acts (sampling if ``explore``, else its mean and no random gripper
        actions) unless ``scripted`` does (every step: demos, a reference) or ``operator`` returns an
        env action (that step is an intervention). ``on_transition`` gets each transition as it happens."""
        raw, info = self.env.reset(seed=seed)
        own_limit = self.conf.max_episode_steps or None
        limits = [x for x in (own_limit, max_steps) if x]
        limit = min(limits) if limits else None
        self.episodes += 1
        self._closed = False
        obs = self._prepare(raw)
        result = EpisodeResult(self.episodes, 0, False, "time_limit", 0, 0.0)
        while True:
            env_action = scripted(raw) if scripted is not None else (operator(raw) if operator is not None else None)
            intervened = env_action is not None
            if intervened:
                action, grasp = self.act_map.from_env(env_action)
            else:
                action, grasp = self.policy.act(obs, deterministic=not explore,
                                                grasp_epsilon=self.conf.grasp_epsilon if explore else 0.0)
                grasp = GRIPPER_STAY if grasp is None else int(grasp)
            if not self.use_grasp:
                grasp = GRIPPER_STAY
            executed = self.act_map.to_env(action, grasp)
            raw, reward, terminated, truncated, info = self.env.step(executed)
            result.steps += 1
            reward, terminated = float(reward), bool(terminated)
            cut = limit is not None and result.steps >= limit
            env_truncated = bool(truncated)
            truncated = not terminated and (env_truncated or cut)
            success = self._success(info, reward, terminated)
            next_obs = self._prepare(raw)
            stored_action, _ = self.act_map.from_env(executed)  # what ran, in the agent's units
            t = Transition(observation=obs, action=stored_action, reward=reward, terminated=terminated, truncated=truncated,
                           next_observation=next_obs, intervened=intervened, grasp_action=int(grasp),
                           grasp_penalty=self._penalty(int(grasp)) if self.use_grasp else 0.0,
                           episode_id=result.episode, step=result.steps - 1)
            result.transitions.append(t)
            result.intervened_steps += int(intervened)
            result.episode_return += reward
            if on_transition is not None:
                on_transition(t)
            obs = next_obs
            if terminated or truncated:
                result.success = success
                by_budget = cut and max_steps is not None and result.steps >= max_steps and not (
                    own_limit and result.steps >= own_limit)
                result.end = ("success" if success else "terminated" if terminated
                              else "budget" if by_budget and not env_truncated else "time_limit")
                return result

    def _train_seed(self) -> Optional[int]:
        """The first training reset is seeded; later ones continue the env's random stream (Gymnasium's rule)."""
        if self._first_reset:
            self._first_reset = False
            return self.conf.seed
        return None

    # -- demos ---------------------------------------------------------------------------
    def collect_demos(self, scripted: ScriptedPolicy, episodes: int, seed: Optional[int] = None) -> Dict[str, int]:
        """Run ``scripted`` for ``episodes`` episodes; the successful ones go into the demo buffer
        (the paper's demos are successful teleoperated trajectories)."""
        kept = transitions = 0
        for i in range(episodes):
            r = self.run_episode(scripted=scripted, seed=(seed + i) if seed is not None else self._train_seed())
            if r.success:
                kept += 1
                for t in r.transitions:
                    self.learner.add_demo(t)
                    transitions += 1
        self.say(f"[gym] demos: {kept}/{episodes} scripted episodes succeeded, {transitions} transitions in the demo buffer")
        return {"episodes": episodes, "successful": kept, "transitions": transitions}

    # -- training ------------------------------------------------------------------------
    def _add(self, t: Transition) -> None:
        self.learner.add(t)
        for _ in range(self.learner.updates_due()):
            self.learner.train_step()
        self.env_steps += 1
        if self.env_steps % self.conf.weights_period_steps == 0 and self.learner.updates != self._copied_at_updates:
            self.copy_weights()
        every = self.conf.progress_period_steps
        if every and self.env_steps % every == 0:
            buffers = {name: len(buf) for name, buf in self.learner.buffers.items()}
            self.say("[gym] learner: " + progress_line(self.learner.counters(), {}, 0.0, buffers, self.learner.last_metrics))

    def train(self, steps: int, run_dir: Optional[Path] = None, operator: Optional[ScriptedPolicy] = None) -> Dict[str, Any]:
        """Train until ``steps`` env steps; with ``run_dir``, write ``episodes.csv``, ``training.png`` and
        ``summary.json`` there as ``hilserl train`` does. Returns the summary."""
        if len(self.learner.buffers[DEMO_BUFFER]) == 0 and operator is None and self.learner.config.demo_fraction > 0:
            # the demo buffer would stay empty and Learner.ready() false: every batch comes from the RL buffer
            self.learner.config = cfg.replace(self.learner.config, demo_fraction=0.0)
            self.learner.sampler = MixedSampler(self.learner.buffers[DEMO_BUFFER], self.learner.buffers[RL_BUFFER], 0.0)
            self.say("[gym] no demos and no operator: demo_fraction 0 (every batch from the RL buffer)")
        log = RunLog(run_dir) if run_dir is not None else None
        rows: List[EpisodeRow] = []
        start_s, start_steps = time.monotonic(), self.env_steps
        budget = start_steps + int(steps)
        while self.env_steps < budget:
            r = self.run_episode(seed=self._train_seed(), operator=operator, max_steps=budget - self.env_steps,
                                 on_transition=self._add)
            wall_s = time.monotonic() - start_s
            dt = self.control_dt_s or 0.0
            row = EpisodeRow(env_steps=self.env_steps, wall_s=round(wall_s, 2), episode=len(rows) + 1, success=int(r.success),
                             steps=r.steps, intervened_steps=r.intervened_steps, alone=int(r.intervened_steps == 0),
                             duration_s=round(r.steps * dt, 3), episode_return=round(r.episode_return, 4),
                             weights_version=self.policy.version, updates=self.learner.updates)
            rows.append(row)
            if log is not None:
                log.add(row)
            recent = rows[-20:]
            rate = (self.env_steps - start_steps) / wall_s if wall_s > 0 else 0.0
            left_min = (budget - self.env_steps) / rate / 60 if rate > 0 else float("nan")
            self.say(f"[gym] episode {row.episode}: {r.end} after {r.steps} steps ({r.intervened_steps} intervened) | "
                     f"{self.env_steps}/{budget} env steps, last {len(recent)}: success "
                     f"{sum(x.success for x in recent) / len(recent):.2f} | {self.learner.updates} updates, "
                     f"v{self.policy.version} | {rate:.1f} steps/s, ~{left_min:.0f} min left")
        recent = rows[-20:]
        alone = [x for x in rows if x.alone][-20:]
        summary = {"env_steps": self.env_steps, "episodes": len(rows), "wall_clock_s": round(time.monotonic() - start_s, 1),
                   "updates": self.learner.updates,
                   "success_rate": sum(x.success for x in recent) / len(recent) if recent else None,
                   "alone_success_rate": sum(x.success for x in alone) / len(alone) if alone else None}
        if run_dir is not None:
            Path(run_dir, "summary.json").write_text(json.dumps(summary, indent=1))
            plot_run(log.rows, Path(run_dir) / "training.png", "gym bridge")
        return summary

    # -- evaluation ----------------------------------------------------------------------
    def evaluate(self, episodes: int, seed: int = 1000, scripted: Optional[ScriptedPolicy] = None) -> Dict[str, Any]:
        """The policy alone (its mean, no random gripper actions, no operator, nothing learned), or
        ``scripted``, on the episodes reset with seeds ``seed``, ``seed + 1``, ...; ``eval_summary``."""
        results = [self.run_episode(explore=False, seed=seed + i, scripted=scripted) for i in range(episodes)]
        for r in results:
            r.transitions.clear()
        return eval_summary(results, self.control_dt_s)

    def close(self) -> None:
        self.policy.close()
