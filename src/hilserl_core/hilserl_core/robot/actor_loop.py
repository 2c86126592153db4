"""One actor tick, without ROS: from the latest inputs to an observation to act on and a transition.

:class:`ActorLoop` is everything the actor node decides; the node only turns messages into
:meth:`ActorLoop.put` calls, asks the reset service, runs the policy and publishes. The same
loop turns recorded messages into demo transitions (``hilserl bag2demos``), so a demo is
assembled exactly as the actor assembles what it acts on:

- the observation is the newest sample of every input, each no older than ``max_input_age_s``
  (a stale or missing input means no step and a reason, never a guess);
- its time is its oldest camera frame, and the same frames are never used twice;
- the proprioceptive part is egocentric: relative to the arm's pose when the episode began
  (:func:`~hilserl_core.robot.actor.egocentric_observation`);
- each step is closed with the action the mux reported as executed
  (:class:`~hilserl_core.robot.episode_cycle.ExecutedJoin`,
  :class:`~hilserl_core.robot.actor.EpisodeRecorder`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..formats import msgconv
from ..formats.types import Observation, Transition
from . import frames
from .actor import EpisodeRecorder, EpisodeSummary, LatestInputs, egocentric_observation
from .episode_cycle import EpisodeCycle, EpisodePhase, ExecutedJoin, ExecutedStep
from .intervention import Source

__all__ = ["ActorLoop", "TickOutcome", "PROPRIO_INPUTS", "ARM_INPUTS", "gripper_opening", "stamp_s"]

GRIPPER_MAX_WIDTH_M = 0.08  # Franka Hand: fully open


def gripper_opening(joint_state: Any) -> float:
    """sensor_msgs/JointState of the fingers -> opening in [0, 1] (1 = fully open)."""
    return min(1.0, sum(joint_state.position) / GRIPPER_MAX_WIDTH_M)


# per arm, input -> (topic relative to the arm's namespace, message -> value); the node subscribes
# with these and ``hilserl bag2demos`` converts recorded messages with the same functions
ARM_INPUTS: Dict[str, Tuple[str, Callable[[Any], Any]]] = {
    "pose": ("current_pose", lambda m: msgconv.pose_to_arrays(m.pose)),
    "twist": ("current_twist", lambda m: msgconv.vector6_from_twist(m.twist)),
    "wrench": ("external_wrench", lambda m: msgconv.vector6_from_wrench(m.wrench)),
    "gripper": ("gripper/joint_states", gripper_opening),
}
PROPRIO_INPUTS = tuple(ARM_INPUTS)  # per arm: "<arm>/<input>"


def stamp_s(stamp: Any, now_s: float) -> float:
    """A header stamp in seconds; a zero stamp (a publisher that left the header empty) counts as now."""
    return msgconv.stamp_to_seconds(stamp) if stamp is not None and (stamp.sec or stamp.nanosec) else now_s


@dataclass
class TickOutcome:
    """What one tick decided. ``observation`` set: act on it (then send ``transition``)."""

    waiting: str = ""  # why nothing happened ("" when something did)
    inputs_ok: Optional[bool] = None  # False: an input is missing or stale (say so); True: inputs fine; None: not checked
    started: bool = False  # an episode began with this tick (clear the reward's memory)
    observation: Optional[Observation] = None
    stamp_s: float = 0.0  # the observation's time: its oldest camera frame
    transition: Optional[Transition] = None  # the step this tick closed, if it was executed
    summary: Optional[EpisodeSummary] = None  # the episode ended with this tick


class ActorLoop:
    """Inputs, the episode cycle, the mux-report join and the episode recorder of one actor."""

    def __init__(self, arms: Sequence[str], cam_keys: Sequence[str], *, control_rate_hz: float, max_episode_steps: int,
                 max_input_age_s: float, grasp_penalty: float, use_grasp_critic: bool, reset_timeout_s: float) -> None:
        self.arms, self.cam_keys = list(arms), list(cam_keys)
        self.control_rate_hz = control_rate_hz
        self.max_episode_steps = max_episode_steps  # live parameters: the node updates these two
        self.max_input_age_s = max_input_age_s
        self.use_grasp_critic = use_grasp_critic
        self.inputs = LatestInputs()
        self.cycle = EpisodeCycle(reset_timeout_s)
        self.join = ExecutedJoin(self.arms, use_grasp_critic)
        self.recorder = EpisodeRecorder(max_episode_steps, 1.0 / control_rate_hz, grasp_penalty, n_grippers=len(self.arms))
        self.last_obs_stamp = -1.0  # image time of the last observation used

    # -- inputs
    def put(self, key: str, value: Any, stamp_s: float) -> None:
        """``<arm>/pose|twist|wrench|gripper``, ``image/<cam key>`` or ``success``."""
        self.inputs.put(key, value, stamp_s)

    def required(self) -> List[str]:
        keys = [f"{a}/{k}" for a in self.arms for k in PROPRIO_INPUTS]
        return keys + ["image/" + k for k in self.cam_keys] + ["success"]

    def new_frames(self) -> bool:
        """Every camera has a frame about one control period newer than the last observation used.

        Measured in camera time, not wall time: a tick that ran late must not push the next
        frame set out (a wall-clock rule phase-locks the actor late).
        """
        min_gap = 0.8 / self.control_rate_hz if self.last_obs_stamp > 0 else 0.0
        got = [self.inputs.get("image/" + k) for k in self.cam_keys]
        return all(g is not None and g[1] >= self.last_obs_stamp + min_gap for g in got)

    def on_executed(self, arm: str, stamp_s: float, action: np.ndarray, gripper: int, source: Source) -> Optional[ExecutedStep]:
        """One arm's ``mux/executed`` report; the joined step (already recorded) once every arm reported."""
        step = self.join.report(arm, stamp_s, action, gripper, source)
        if step is not None:
            self.recorder.on_executed(self.join.pending_stamp, step.action, step.grasp_action, step.source)
        return step

    def acted(self, stamp_s: float) -> None:
        """Actions for the observation at ``stamp_s`` went out: the mux reports now pair with it."""
        self.join.sent(stamp_s)

    # -- the tick
    def tick(self, now_s: float) -> TickOutcome:
        """Once the scene is reset (phase WAITING or RUNNING, or OPERATOR with the operator's go):
        start an episode, or close the open step and open the next."""
        cycle = self.cycle
        if cycle.phase is EpisodePhase.OPERATOR and not cycle.operator_says_ready(now_s):
            return TickOutcome(waiting="waiting for the operator")
        if cycle.phase not in (EpisodePhase.WAITING, EpisodePhase.RUNNING):
            return TickOutcome(waiting=f"episode phase {cycle.phase.value}")
        values, why = self.inputs.snapshot(now_s, self.required(), self.max_input_age_s)
        if values is None:
            return TickOutcome(waiting=why, inputs_ok=False)
        # The observation's time is its oldest camera frame; never use the same frames twice.
        stamp = self.inputs.oldest_stamp(["image/" + k for k in self.cam_keys])
        if stamp <= self.last_obs_stamp:
            return TickOutcome(waiting="waiting for new camera frames", inputs_ok=True)
        out = TickOutcome(stamp_s=stamp, inputs_ok=True)
        if cycle.phase is EpisodePhase.WAITING:
            # start poses must be measured after the reset finished
            if self.inputs.oldest_stamp([f"{a}/pose" for a in self.arms]) < cycle.reset_done_s:
                return TickOutcome(waiting="waiting for poses measured after the reset")
            self.recorder.max_episode_steps = self.max_episode_steps
            self.recorder.start_episode({a: frames.pose_to_matrix(*values[f"{a}/pose"]) for a in self.arms})
            self.inputs.put("success", False, now_s)  # no stale success from the last episode
            values["success"] = False
            cycle.episode_started()
            out.started = True
        obs = egocentric_observation(
            {"image/" + k: values["image/" + k] for k in self.cam_keys},
            self.arms,
            self.recorder.start_pose,
            {a: values[f"{a}/pose"] for a in self.arms},
            {a: values[f"{a}/twist"] for a in self.arms},
            {a: values[f"{a}/wrench"] for a in self.arms},
            {a: values[f"{a}/gripper"] for a in self.arms},
        )
        success = bool(values["success"])
        self.last_obs_stamp = stamp
        out.transition, out.summary = self.recorder.observe(obs, stamp, float(success), success, cycle.take_cut())
        if out.summary is not None:
            self.join.clear()
            cycle.episode_ended()
        else:
            out.observation = obs
        return out
