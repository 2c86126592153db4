"""The actor's bookkeeping, without ROS: inputs, episodes, transitions.

The actor node (10 Hz) does, every tick:

1. ``LatestInputs.snapshot``: the newest message of every required input
   (cropped images, pose, twist, wrench, gripper) no older than
   ``max_input_age_s``; a stale or missing input means **no action** and a
   diagnostic, never a guess (this replaces message_filters).
2. ``EpisodeRecorder.observe``: closes the previous step into a Transition
   (its observation, the action the mux ACTUALLY executed, the reward, the new
   observation) and opens the new step;
3. runs the policy on the observation and publishes the action stamped with the
   observation's time; the mux answers on ``mux/executed`` with the same stamp,
   the executed action and who acted (``EpisodeRecorder.on_executed``).

Episode ends: success (``terminated``), time limit (``truncated``: the target
still bootstraps), operator reset (``truncated``). The time limit counts control
periods elapsed in camera time, so an episode ends on time even when steps are
dropped. A step whose executed action never came back (mux held, message lost),
or whose next observation came more than ``max_step_gap_periods`` control
periods later (inputs went stale in between, and whatever moved the arm then is
not this action's doing), is dropped and counted, never filled with the
policy's intention: the buffer must hold what the robot did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..formats.config import param
from ..formats.types import Observation, Transition
from ..rl.grasp_dqn import GraspDQNConfig
from ..rl.rlpd import RLPDConfig
from ..vision.encoders import ENCODER_DTYPE_HELP, ENCODER_DTYPES
from . import frames
from .intervention import GRIPPER_CLOSE, GRIPPER_OPEN, Source

__all__ = ["ActorConfig", "LatestInputs", "StepRecord", "EpisodeRecorder", "grasp_penalty", "EpisodeSummary"]


@dataclass(frozen=True)
class ActorConfig:
    """The actor node's parameters (``config/params/actor.yaml``)."""

    arms: Tuple[str, ...] = param(("left",), "arm namespaces, in action order")
    cameras: Tuple[str, ...] = param(("left/wrist", "left/side"), "cameras as <arm>/<camera>")
    encoder_weights: str = param("", "frozen ResNet-10 weights (safetensors); empty = random weights (tests/smoke runs only)")
    encoder_dtype: str = param("auto", ENCODER_DTYPE_HELP, choices=ENCODER_DTYPES)
    control_rate_hz: float = param(10.0, "policy rate", units="Hz", low=1.0, high=100.0)
    trigger: str = param("camera", "when to act: camera (as soon as a new frame of every camera is in, at most about control_rate_hz; lowest latency) or timer (a free-running control_rate_hz timer)", choices=("camera", "timer"))
    max_input_age_s: float = param(0.25, "inputs older than this at a tick mean no action", units="s", low=0.01, high=5.0, live=True)
    max_episode_steps: int = param(100, "time limit (a truncation, not a terminal state)", units="steps", low=1, high=100_000, live=True)
    deterministic: bool = param(False, "act with the policy mean (evaluation) instead of sampling (exploration)", live=True)
    grasp_epsilon: float = param(0.05, "probability of a random gripper action (grasp exploration)", low=0.0, high=1.0, live=True)
    await_weights: bool = param(False, "begin no episode before the learner's first policy weights are in (hilserl eval: "
                                "every episode acts with the checkpoint's weights, from the first scene on)")
    use_grasp_critic: bool = param(True, "grippers are driven by the grasp critic (else they stay)")
    grasp_penalty: float = param(-0.02, "reward added for a gripper action that changes the gripper state", low=-1.0, high=0.0)
    reset_service: str = param("/sim/reset", "std_srvs/Trigger that resets the scene between episodes; empty = wait until the operator resets it and publishes /episode/reset")
    reset_timeout_s: float = param(30.0, "a reset request with no answer after this long is sent again (DDS can drop a service response; the actor must not wait forever); set it above the longest reset the service performs", units="s", low=1.0, high=3600.0, live=True)
    actor_id: str = param("", "name in transition payloads (default: the node's full name)")
    spool_max_transitions: int = param(2000, "transitions kept until the learner acknowledges them as stored (resent "
                                       "when it answers again, e.g. after a restart); while this many wait, the actor "
                                       "starts no new episode", low=1, high=1_000_000)
    resend_after_s: float = param(3.0, "a transition not acknowledged this long after it was sent is sent again "
                                  "(while the learner answers)", units="s", low=0.1, high=600.0)
    drain_timeout_s: float = param(5.0, "on Ctrl-C/SIGTERM the actor stops acting and waits this long for the learner "
                                   "to confirm the transitions it has not confirmed yet (resending them)", units="s",
                                   low=0.0, high=600.0)
    max_unexecuted_steps: int = param(10, "an episode in which the mux reported none of this many actions in a row "
                                      "ends as failed_to_act (the command path is broken)", units="steps", low=1, high=100_000)
    lockstep: bool = param(False, "the simulator waits for each action (sim graphs' lockstep:=true): an episode's steps are "
                           "counted one per observation (camera stamps do not measure simulated time while it waits), and "
                           "the actor waits before acting while the learner is more than max_learner_backlog updates behind "
                           "its update-to-data ratio (it says so in its acknowledgements), so the ratio holds on a machine "
                           "too slow for it; inputs count as stale only after max_input_age_s or 5 s, whichever is "
                           "longer (the simulator's frame stays current while it waits). Never on a robot: the real "
                           "world does not wait")
    max_learner_backlog: int = param(20, "lockstep: how far (updates) the learner may be behind its ratio",
                                     units="updates", low=0, high=1_000_000, live=True)
    torch_threads: int = param(1, "torch CPU threads; 1 beside other busy processes (OpenMP threads waiting on a busy core slow every pass)", low=1, high=256)
    encoder_threads: int = param(0, "threads that share out each step's camera frames for the frozen ResNet-10, each held on "
                                 "its own core (helpers are kept off the main thread's CPU): 0 = auto (2 where this process may "
                                 "use 4 or more CPUs, else 1); up to the number of cameras where cores are free; 1 beside a "
                                 "learner busy on the same cores",
                                 low=0, high=64)
    agent: RLPDConfig = field(default_factory=RLPDConfig)
    grasp: GraspDQNConfig = field(default_factory=GraspDQNConfig)


class LatestInputs:
    """Newest value of each named input with its stamp (seconds)."""

    def __init__(self) -> None:
        self._values: Dict[str, Tuple[Any, float]] = {}

    def put(self, key: str, value: Any, stamp_s: float) -> None:
        self._values[key] = (value, float(stamp_s))

    def get(self, key: str) -> Optional[Tuple[Any, float]]:
        return self._values.get(key)

    def snapshot(self, now_s: float, keys: Sequence[str], max_age_s: float) -> Tuple[Optional[Dict[str, Any]], str]:
        """All ``keys`` if each is present and fresh, else ``(None, reason)``."""
        missing = [k for k in keys if k not in self._values]
        if missing:
            return None, "waiting for " + ", ".join(missing)
        stale = [(k, now_s - self._values[k][1]) for k in keys if now_s - self._values[k][1] > max_age_s]
        if stale:
            return None, "stale: " + ", ".join(f"{k} ({age * 1e3:.0f} ms old)" for k, age in stale) + f" > {max_age_s * 1e3:.0f} ms"
        return {k: self._values[k][0] for k in keys}, ""

    def oldest_stamp(self, keys: Sequence[str]) -> float:
        return min(self._values[k][1] for k in keys)


def grasp_penalty(gripper_action: int, closed_before: bool, penalty: float) -> float:
    """The paper's small penalty for a gripper action that changes the gripper state."""
    if gripper_action == GRIPPER_CLOSE and not closed_before:
        return penalty
    if gripper_action == GRIPPER_OPEN and closed_before:
        return penalty
    return 0.0


@dataclass
class StepRecord:
    observation: Observation
    stamp_s: float
    executed: Optional[np.ndarray] = None
    grasp_action: int = 1
    source: Optional[Source] = None


@dataclass
class EpisodeSummary:
    episode_id: int
    steps: int  # control periods elapsed (what the time limit counts)
    success: bool
    duration_s: float
    intervention_steps: int
    end: str  # "success", "time_limit", "operator_reset", "failed_to_act"
    total_reward: float
    transitions: int = 0  # steps recorded as transitions (the others were dropped)
    last_step_recorded: bool = True  # False: the step that ended the episode was dropped, so no transition
    # carries its end (for a success: the learner never sees that episode's reward)


@dataclass
class EpisodeRecorder:
    """Turns a stream of observations and executed actions into Transitions."""

    max_episode_steps: int
    control_period_s: float
    grasp_penalty_value: float = -0.02
    n_grippers: int = 1
    max_step_gap_periods: float = 2.5  # a longer wait for the next observation drops the step
    steps_by_observation: bool = False  # lockstep: one control period per observation, gaps never drop a step
    max_unexecuted_steps: int = 10  # this many steps in a row with no mux report end the episode (failed_to_act)
    episode_id: int = 0
    dropped_steps: int = 0
    _pending: Optional[StepRecord] = None
    _steps: int = 0  # control periods elapsed in this episode
    _transitions: int = 0
    _interventions: int = 0
    _reward_sum: float = 0.0
    _unexecuted_run: int = 0  # steps in a row the mux did not report
    _closed: List[bool] = field(default_factory=list)
    start_pose: Dict[str, np.ndarray] = field(default_factory=dict)

    def start_episode(self, start_poses: Dict[str, np.ndarray], episode_id: Optional[int] = None) -> None:
        """Begin an episode at the given EE poses (4x4 per arm): the egocentric origin."""
        self.episode_id = self.episode_id + 1 if episode_id is None else episode_id
        self.start_pose = {k: np.asarray(v, dtype=float) for k, v in start_poses.items()}
        self._pending = None
        self._steps = 0
        self._transitions = 0
        self._interventions = 0
        self._reward_sum = 0.0
        self._unexecuted_run = 0
        self._closed = [False] * self.n_grippers

    @property
    def steps(self) -> int:
        return self._steps

    def unreported_stamp(self) -> Optional[float]:
        """The stamp of the open step while no mux report has closed its action in (else None)."""
        p = self._pending
        return p.stamp_s if p is not None and p.executed is None else None

    def on_executed(self, stamp_s: float, action: np.ndarray, grasp_action: int, source: Source, tol_s: float = 1e-6) -> bool:
        """The mux's report for the step stamped ``stamp_s``; False if it matches no open step."""
        p = self._pending
        if p is None or abs(p.stamp_s - stamp_s) > tol_s:
            return False
        p.executed = np.asarray(action, dtype=np.float32)
        p.grasp_action = int(grasp_action)
        p.source = Source(source)
        return True

    def observe(
        self,
        observation: Observation,
        stamp_s: float,
        reward: float,
        success: bool,
        operator_reset: bool = False,
    ) -> Tuple[Optional[Transition], Optional[EpisodeSummary]]:
        """A new observation (with the reward for reaching it): close the open step, open a new one.

        Returns the finished transition (or None: first step, or the open step was
        never executed) and, when the episode ended with it, its summary. After an
        episode end, call ``start_episode`` before the next ``observe``.
        """
        transition = None
        p = self._pending
        if p is not None:
            gap_s = float(stamp_s) - p.stamp_s
            step = self._steps  # the control step the open observation was taken at
            self._steps += 1 if self.steps_by_observation else max(1, round(gap_s / self.control_period_s))
            late = not self.steps_by_observation and gap_s > self.max_step_gap_periods * self.control_period_s
            self._unexecuted_run = self._unexecuted_run + 1 if p.executed is None else 0
            if p.executed is None or p.source == Source.HOLD or late:
                self.dropped_steps += 1
            else:
                self._transitions += 1
                intervened = p.source == Source.OPERATOR
                self._interventions += int(intervened)
                self._reward_sum += float(reward)
                transition = Transition(
                    observation=p.observation,
                    action=p.executed,
                    reward=float(reward),
                    terminated=False,
                    truncated=False,
                    next_observation=observation,
                    intervened=intervened,
                    grasp_action=p.grasp_action,
                    grasp_penalty=self._grasp_penalty(p.grasp_action),
                    episode_id=self.episode_id,
                    step=step,
                    info={"stamp_s": p.stamp_s},  # the observation's time: pairs the step with the mux's report
                )
        # success ends the MDP; a time limit, an operator reset or a broken command path only cuts it (bootstrap)
        terminated = p is not None and bool(success)
        failed_to_act = self._unexecuted_run >= self.max_unexecuted_steps
        truncated = not terminated and (operator_reset or failed_to_act or self._steps >= self.max_episode_steps)
        if terminated or truncated:
            if transition is not None:
                transition.terminated, transition.truncated = terminated, truncated
            end = ("success" if terminated else "operator_reset" if operator_reset
                   else "failed_to_act" if failed_to_act else "time_limit")
            self._pending = None
            return transition, self._summary(terminated, end, last_step_recorded=transition is not None)
        self._pending = StepRecord(observation, float(stamp_s))
        return transition, None

    def _grasp_penalty(self, grasp_action: int) -> float:
        """Penalty over all grippers of a joint grasp action (base-3 digits, gripper 0 first)."""
        total, a = 0.0, grasp_action
        for g in range(self.n_grippers):
            digit = a % 3
            a //= 3
            total += grasp_penalty(digit, self._closed[g], self.grasp_penalty_value)
            if digit == GRIPPER_CLOSE:
                self._closed[g] = True
            elif digit == GRIPPER_OPEN:
                self._closed[g] = False
        return total

    def _summary(self, success: bool, end: str, last_step_recorded: bool) -> EpisodeSummary:
        return EpisodeSummary(
            episode_id=self.episode_id,
            steps=self._steps,
            success=success,
            duration_s=self._steps * self.control_period_s,
            intervention_steps=self._interventions,
            end=end,
            total_reward=self._reward_sum,
            transitions=self._transitions,
            last_step_recorded=last_step_recorded,
        )


def egocentric_observation(
    images: Dict[str, np.ndarray],
    arms: Sequence[str],
    start_pose: Dict[str, np.ndarray],
    pose: Dict[str, Tuple[np.ndarray, np.ndarray]],
    twist_base: Dict[str, np.ndarray],
    wrench_base: Dict[str, np.ndarray],
    gripper: Dict[str, float],
) -> Observation:
    """The policy's observation: images as given plus one egocentric proprio vector over the arms."""
    # all arms as one batch of the frame functions (half the time of one call per arm)
    T_now = frames.pose_to_matrix(np.stack([pose[a][0] for a in arms]), np.stack([pose[a][1] for a in arms]))
    rows = frames.egocentric_proprio(
        np.stack([start_pose[a] for a in arms]), T_now, np.stack([twist_base[a] for a in arms]),
        np.stack([wrench_base[a] for a in arms]), np.array([[gripper[a]] for a in arms], dtype=np.float64),
    )
    obs: Observation = {"proprio": rows.reshape(-1).astype(np.float32)}
    obs.update(images)
    return obs
