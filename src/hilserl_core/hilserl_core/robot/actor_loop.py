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
  :class:`~hilserl_core.robot.actor.EpisodeRecorder`);
- its reward (and whether it ends the episode as a success) is the success verdict for the
  frames it holds (:class:`RewardVerdicts`, below).

Reward pairing. ``/reward/success`` carries the stamp of the frame it judged
(:func:`success_from_msg`). A step's success is the verdict whose stamp equals one of the
observation's camera frames (its oldest frame, where the classifier sees every camera and
the cameras are in step, as in simulation; another of its frames where the classifier sees
a subset of unsynchronised cameras). The actor never waits for a verdict to act: it acts on
the observation at once and keeps the step that leads into it open
(:attr:`ActorLoop.awaiting_reward`; the node ticks again when a verdict comes) until the
verdict of those frames is in, at most until the oldest frame is half ``max_input_age_s`` old
(newer frames do not extend it). Then, or at once when the reward source has already judged
newer frames without judging these, the step takes the newest verdict of an earlier frame of
the same episode (no older than ``max_input_age_s`` before the observation) and says so
(:attr:`TickOutcome.reward_note`, counted in ``reward_late_steps``); with none, that step is
dropped. While a step waits for its verdict, newer frames wait too (one step in flight). No
new observation is acted on while the reward source has sent nothing for ``max_input_age_s``
(a dead reward source stops the actor, as a stale input does). An episode's first
observation waits for its verdict (so an episode starts only while the reward source is
alive) but does not use it: no step ends there, and a success left from the last episode
must not end the next at once.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..formats import msgconv
from ..formats.types import Observation, Transition
from . import frames
from .actor import EpisodeRecorder, EpisodeSummary, LatestInputs, egocentric_observation
from .episode_cycle import EpisodeCycle, EpisodePhase, ExecutedJoin, ExecutedStep
from .intervention import Source

__all__ = ["ActorLoop", "TickOutcome", "PROPRIO_INPUTS", "ARM_INPUTS", "gripper_opening", "stamp_s", "success_from_msg",
           "RewardVerdicts", "REWARD_STAMP_TOL_S"]

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


def success_from_msg(msg: Any) -> Tuple[bool, float]:
    """``/reward/success`` (sensor_msgs/Joy: ``buttons[0]`` 1 success / 0 not, ``axes[0]`` the
    probability, ``header.stamp`` the judged frame's stamp) -> ``(success, probability)``."""
    buttons, axes = list(msg.buttons), list(msg.axes)
    if not buttons or int(buttons[0]) not in (0, 1):
        raise ValueError(f"/reward/success needs buttons[0] = 1 (success) or 0 (not), got buttons {buttons}")
    success = bool(buttons[0])
    return success, float(axes[0]) if axes else float(success)


REWARD_STAMP_TOL_S = 1e-4  # a verdict's stamp "equals" a frame's within this (both are copies of one header stamp)


class RewardVerdicts:
    """Success verdicts by the stamp of the frame each judged (the newest ``keep``)."""

    def __init__(self, keep: int = 256) -> None:
        self._items: deque = deque(maxlen=keep)  # (stamp_s, success), in arrival order

    def put(self, stamp_s: float, success: bool) -> None:
        self._items.append((float(stamp_s), bool(success)))

    def last_arrived_stamp(self) -> Optional[float]:
        """The frame stamp of the verdict that came last (how recently the reward source spoke)."""
        return self._items[-1][0] if self._items else None

    def clear(self) -> None:
        self._items.clear()

    def match(self, stamps: Sequence[float], tol_s: float = REWARD_STAMP_TOL_S) -> Optional[Tuple[float, bool]]:
        """The newest verdict whose stamp equals one of ``stamps``."""
        best = None
        for stamp, success in reversed(self._items):
            if any(abs(stamp - s) <= tol_s for s in stamps) and (best is None or stamp > best[0]):
                best = (stamp, success)
        return best

    def newest_stamp(self) -> Optional[float]:
        return max((s for s, _ in self._items), default=None)

    def latest_between(self, earliest_s: float, latest_s: float) -> Optional[Tuple[float, bool]]:
        """The verdict of the newest frame in ``[earliest_s, latest_s]``."""
        inside = [(s, v) for s, v in self._items if earliest_s <= s <= latest_s]
        return max(inside, key=lambda x: x[0]) if inside else None


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
    awaiting_reward: bool = False  # waiting for the success verdict of the observation's frames (tick again when it comes)
    reward_note: str = ""  # the step took an earlier frame's verdict (late or unjudged frames): say so


class ActorLoop:
    """Inputs, the episode cycle, the mux-report join and the episode recorder of one actor."""

    def __init__(self, arms: Sequence[str], cam_keys: Sequence[str], *, control_rate_hz: float, max_episode_steps: int,
                 max_input_age_s: float, grasp_penalty: float, use_grasp_critic: bool, reset_timeout_s: float,
                 max_unexecuted_steps: int = 10, steps_by_observation: bool = False) -> None:
        self.arms, self.cam_keys = list(arms), list(cam_keys)
        self.control_rate_hz = control_rate_hz
        self.max_episode_steps = max_episode_steps  # live parameters: the node updates these two
        self.max_input_age_s = max_input_age_s
        self.use_grasp_critic = use_grasp_critic
        self.inputs = LatestInputs()
        self.cycle = EpisodeCycle(reset_timeout_s)
        self.join = ExecutedJoin(self.arms, use_grasp_critic)
        self.recorder = EpisodeRecorder(max_episode_steps, 1.0 / control_rate_hz, grasp_penalty, n_grippers=len(self.arms),
                                        max_unexecuted_steps=max_unexecuted_steps, steps_by_observation=steps_by_observation)
        self.last_obs_stamp = -1.0  # image time of the last observation used
        self.verdicts = RewardVerdicts()
        self.reward_late_steps = 0  # steps that took an earlier frame's verdict
        self._reward_deadline_s: Optional[float] = None  # waiting for a verdict until then
        self._reward_wait_for: Tuple[bool, int] = (False, -1)  # (episode start?, episode id) the wait belongs to
        self._episode_start_stamp = 0.0  # verdicts of frames before the episode never count for it
        self._open: Optional[Tuple[Observation, float, List[float], bool]] = None  # acted on, verdict not in: (obs, stamp, frame stamps, cut)
        self._open_report: Optional[ExecutedStep] = None  # the mux's report of the action taken on it

    # -- inputs
    def put(self, key: str, value: Any, stamp_s: float) -> None:
        """``<arm>/pose|twist|wrench|gripper`` or ``image/<cam key>`` (``success``: :meth:`put_success`)."""
        if key == "success":
            self.put_success(bool(value), stamp_s)
            return
        self.inputs.put(key, value, stamp_s)

    def put_success(self, success: bool, frame_stamp_s: float) -> None:
        """The reward source's verdict on the frame stamped ``frame_stamp_s``."""
        self.verdicts.put(frame_stamp_s, success)

    @property
    def awaiting_reward(self) -> bool:
        """A step waits for the verdict of its frames: tick again when one comes (or soon)."""
        return self._open is not None or self._reward_deadline_s is not None

    def awaiting_report(self, now_s: float) -> bool:
        """Lockstep: the step acted on last has no joined mux report yet. The simulator moved on
        because the muxes reported, so the report is on its way: the next frames are not taken
        before it is in (they would close the step unexecuted and drop it), at most until the
        step's frame is ``max_input_age_s`` old."""
        stamp = self.recorder.unreported_stamp()
        return (self.recorder.steps_by_observation and stamp is not None and self.join.pending_stamp is not None
                and abs(self.join.pending_stamp - stamp) < 1e-6 and now_s - stamp <= self.max_input_age_s)

    def required(self) -> List[str]:
        keys = [f"{a}/{k}" for a in self.arms for k in PROPRIO_INPUTS]
        return keys + ["image/" + k for k in self.cam_keys]

    def frames_stamp(self) -> Optional[float]:
        """The time an observation of the newest frames would have (its oldest camera frame); None
        until every camera sent one."""
        got = [self.inputs.get("image/" + k) for k in self.cam_keys]
        return min(g[1] for g in got) if all(g is not None for g in got) else None

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
            if self._open is not None and abs(self.join.pending_stamp - self._open[1]) < 1e-6:
                self._open_report = step  # its step opens once the verdict of the step before is in
            else:
                self.recorder.on_executed(self.join.pending_stamp, step.action, step.grasp_action, step.source)
        return step

    def acted(self, stamp_s: float) -> None:
        """Actions for the observation at ``stamp_s`` went out: the mux reports now pair with it."""
        self.join.sent(stamp_s)

    # -- the tick
    def tick(self, now_s: float) -> TickOutcome:
        """Once the scene is reset (phase WAITING or RUNNING, or OPERATOR with the operator's go):
        settle the step waiting for its verdict, then start an episode or act on new frames."""
        cycle = self.cycle
        if cycle.phase is EpisodePhase.OPERATOR and not cycle.operator_says_ready(now_s):
            return TickOutcome(waiting="waiting for the operator")
        out = TickOutcome()
        if self._open is not None and cycle.phase is not EpisodePhase.RUNNING:  # the episode ended between ticks
            self._open = self._open_report = self._reward_deadline_s = None
        if self._open is not None:
            if not self._settle(now_s, out):
                return TickOutcome(waiting=f"waiting for the success verdict of the frame at {min(self._open[2]):.3f} s",
                                   stamp_s=self._open[1], awaiting_reward=True)
            if out.summary is not None:
                return out
        if cycle.phase not in (EpisodePhase.WAITING, EpisodePhase.RUNNING):
            out.waiting = out.waiting or f"episode phase {cycle.phase.value}"
            return out
        return self._observe(now_s, out)

    def _observe(self, now_s: float, out: TickOutcome) -> TickOutcome:
        """Act on the newest frames: start an episode, or open a step (closing the one before when
        its verdict is in)."""
        cycle = self.cycle
        values, why = self.inputs.snapshot(now_s, self.required(), self.max_input_age_s)
        if values is None:
            out.waiting, out.inputs_ok = why, False
            return out
        # The observation's time is its oldest camera frame; never use the same frames twice.
        stamp = self.inputs.oldest_stamp(["image/" + k for k in self.cam_keys])
        if stamp <= self.last_obs_stamp:
            out.waiting, out.inputs_ok = "waiting for new camera frames", True
            return out
        frame_stamps = [self.inputs.get("image/" + k)[1] for k in self.cam_keys]
        starting = cycle.phase is EpisodePhase.WAITING
        if not starting and self.awaiting_report(now_s):
            out.waiting = "waiting for the muxes' report of the last action (lockstep)"
            return out
        # start poses must be measured after the reset finished
        if starting and self.inputs.oldest_stamp([f"{a}/pose" for a in self.arms]) < cycle.reset_done_s:
            out.waiting = "waiting for poses measured after the reset"
            return out
        if self._reward_wait_for != (starting, self.recorder.episode_id):  # a wait left from another episode (or its end)
            self._reward_wait_for, self._reward_deadline_s = (starting, self.recorder.episode_id), None
        success, why = False, ""
        if starting:  # the reward source must be alive before an episode starts
            success, why, wait = self._reward_for(frame_stamps, now_s, float("-inf"))
            if wait:
                out.waiting, out.stamp_s, out.awaiting_reward = why, stamp, True
                return out
            self._reward_deadline_s = None
            if success is None:
                out.waiting, out.inputs_ok = why, False
                return out
        else:
            newest = self.verdicts.last_arrived_stamp()
            if newest is None or now_s - newest > self.max_input_age_s:
                out.waiting, out.inputs_ok = (f"no success verdict for {self.max_input_age_s * 1e3:.0f} ms: is the reward "
                                              "source running?"), False
                return out
        out.stamp_s, out.inputs_ok = stamp, True
        if starting:
            self.recorder.max_episode_steps = self.max_episode_steps
            self.recorder.start_episode({a: frames.pose_to_matrix(*values[f"{a}/pose"]) for a in self.arms})
            self._episode_start_stamp = stamp
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
        self.last_obs_stamp = stamp
        out.observation = obs
        if starting:
            self.recorder.observe(obs, stamp, 0.0, False, False)  # opens the first step; a success left from before is not used
            return out
        self._open = (obs, stamp, frame_stamps, cycle.take_cut())
        self._open_report = None
        if not self._settle(now_s, out):  # the verdict is not in yet: act now, close the step before when it comes
            out.awaiting_reward = True
        elif out.summary is not None:  # these frames ended the episode: nothing to act on
            out.observation = None
        return out

    def _settle(self, now_s: float, out: TickOutcome) -> bool:
        """Close the step leading into the open observation with its verdict (False: still waiting)."""
        obs, stamp, frame_stamps, cut = self._open
        success, why, wait = self._reward_for(frame_stamps, now_s, self._episode_start_stamp)
        if wait:
            return False
        self._reward_deadline_s = None
        report, self._open, self._open_report = self._open_report, None, None
        if success is None:  # no verdict to take: that step is dropped (the next observation finds the gap)
            out.waiting = why
            return True
        if why:
            self.reward_late_steps += 1
            out.reward_note = why
        out.transition, out.summary = self.recorder.observe(obs, stamp, float(success), success, cut)
        if out.summary is not None:
            self.join.clear()
            self.cycle.episode_ended()
        elif report is not None:  # the action already taken on this observation, as the mux reported it
            self.recorder.on_executed(stamp, report.action, report.grasp_action, report.source)
        return True

    def _reward_for(self, frame_stamps: Sequence[float], now_s: float, since_s: float) -> Tuple[Optional[bool], str, bool]:
        """``(success, note, wait)`` for the observation of these frames (see the module doc):
        wait for its verdict, or take it, or take an earlier frame's (none before ``since_s``)
        with a note, or none (no step)."""
        hit = self.verdicts.match(frame_stamps)
        if hit is not None:
            return hit[1], "", False
        oldest, newest = min(frame_stamps), max(frame_stamps)
        newest_judged = self.verdicts.newest_stamp()
        passed = newest_judged is not None and newest_judged > newest + REWARD_STAMP_TOL_S
        if not passed:
            if self._reward_deadline_s is None:
                # half the input-age budget, fixed until a step is taken: newer frames do not extend it
                self._reward_deadline_s = oldest + 0.5 * self.max_input_age_s
            if now_s <= self._reward_deadline_s:
                return None, f"waiting for the success verdict of the frame at {oldest:.3f} s", True
        earlier = self.verdicts.latest_between(max(since_s, oldest - self.max_input_age_s), newest)
        what = "the reward source judged later frames, not these" if passed else \
            f"its verdict did not come within half max_input_age_s ({0.5 * self.max_input_age_s * 1e3:.0f} ms)"
        if earlier is None:
            return None, f"no success verdict for the frame at {oldest:.3f} s ({what}), nor one of an earlier frame " \
                         f"within {self.max_input_age_s * 1e3:.0f} ms to take instead: is the reward source running?", False
        return earlier[1], f"reward of the frame at {oldest:.3f} s: {what}; took the verdict of the frame " \
                           f"{(oldest - earlier[0]) * 1e3:.0f} ms earlier", False
