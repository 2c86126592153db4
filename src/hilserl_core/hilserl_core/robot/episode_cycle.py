"""Between episodes and across arms, without ROS: the actor's reset cycle and the join of the
mux reports.

:class:`EpisodeCycle` is the actor's state machine::

    RESET --(reset service asked)--> RESETTING --(service answered success)--> WAITING
    RESET --(no reset service)-----> OPERATOR --(operator's /episode/reset)---> WAITING
    WAITING --(fresh inputs measured after the reset)--> RUNNING --(episode end)--> RESET

A refused reset is asked again after ``retry_s``; one with no answer after ``reset_timeout_s``
at once. ``/episode/reset`` while RUNNING cuts the episode (a truncation); while OPERATOR it
says the scene is ready; at any other time a reset is under way and it is ignored.

:class:`ExecutedJoin` pairs each arm's ``mux/executed`` report with the action the actor
sent for one observation stamp and, once every arm has reported, gives the joint action,
the joint grasp action and who acted.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..rl.grasp_dqn import gripper_actions_to_joint_index
from .intervention import GRIPPER_NONE, GRIPPER_STAY, Source

__all__ = ["EpisodePhase", "EpisodeCycle", "ExecutedStep", "ExecutedJoin", "RESET_RETRY_S"]

RESET_RETRY_S = 1.0  # a reset service that refused is asked again after this long


class EpisodePhase(Enum):
    RESET = "reset"  # an episode ended (or none began yet): ask for a reset
    RESETTING = "resetting"  # the reset service was asked; waiting for its answer
    OPERATOR = "operator"  # no reset service: waiting for the operator's /episode/reset
    WAITING = "waiting"  # the scene is reset: the next fresh observation starts an episode
    RUNNING = "running"


class EpisodeCycle:
    def __init__(self, reset_timeout_s: float, retry_s: float = RESET_RETRY_S) -> None:
        self.phase = EpisodePhase.RESET
        self.reset_timeout_s = reset_timeout_s
        self.retry_s = retry_s
        self.cut_requested = False  # /episode/reset during an episode
        self.reset_done_s = 0.0  # when the scene was reset: start poses must be measured after it
        self._operator_ready = False
        self._retry_after_s = 0.0
        self._requested_s = 0.0

    # -- events
    def operator_signal(self) -> None:
        """``/episode/reset``: cut the running episode, or the scene is ready; else ignored."""
        if self.phase is EpisodePhase.RUNNING:
            self.cut_requested = True
        elif self.phase is EpisodePhase.OPERATOR:
            self._operator_ready = True

    def may_request_reset(self, now_s: float) -> bool:
        return self.phase is EpisodePhase.RESET and now_s >= self._retry_after_s

    def wait_for_operator(self) -> None:
        self.phase, self._operator_ready = EpisodePhase.OPERATOR, False

    def reset_requested(self, now_s: float) -> None:
        self.phase, self._requested_s = EpisodePhase.RESETTING, now_s

    def service_unavailable(self) -> None:
        self.phase = EpisodePhase.RESET

    def waited_s(self, now_s: float) -> float:
        return now_s - self._requested_s

    def reset_timed_out(self, now_s: float) -> bool:
        """No answer within ``reset_timeout_s``: ask again at once."""
        if self.waited_s(now_s) < self.reset_timeout_s:
            return False
        self.phase = EpisodePhase.RESET
        return True

    def reset_refused(self, now_s: float) -> None:
        self.phase, self._retry_after_s = EpisodePhase.RESET, now_s + self.retry_s

    def scene_ready(self, now_s: float) -> None:
        self.phase, self.reset_done_s = EpisodePhase.WAITING, now_s

    def operator_says_ready(self, now_s: float) -> bool:
        """In OPERATOR: whether the operator's signal came (then the scene counts as reset now)."""
        if self.phase is EpisodePhase.OPERATOR and self._operator_ready:
            self._operator_ready = False
            self.scene_ready(now_s)
            return True
        return False

    def episode_started(self) -> None:
        self.phase, self.cut_requested = EpisodePhase.RUNNING, False

    def take_cut(self) -> bool:
        """Whether the operator cut the episode since the last step (and clear it)."""
        cut, self.cut_requested = self.cut_requested, False
        return cut

    def episode_ended(self) -> None:
        self.phase = EpisodePhase.RESET


@dataclass(frozen=True)
class ExecutedStep:
    """The joined mux reports of one observation stamp."""

    action: np.ndarray  # every arm's executed 6-D action, in arm order
    grasp_action: int  # joint grasp action (base-3 digits, arm 0 first)
    source: Source  # OPERATOR if any arm's operator acted, else HOLD if any arm held, else POLICY
    arms_without_gripper: Tuple[str, ...]  # arms whose mux reported no gripper


class ExecutedJoin:
    def __init__(self, arms: Sequence[str], use_grasp_critic: bool = True) -> None:
        self.arms = list(arms)
        self.use_grasp_critic = use_grasp_critic
        self.pending_stamp: Optional[float] = None
        self._reports: Dict[str, Tuple[float, np.ndarray, int, Source]] = {}

    def sent(self, stamp_s: float) -> None:
        """Actions for the observation at ``stamp_s`` went out: earlier reports no longer count."""
        self.pending_stamp = stamp_s
        self._reports.clear()

    def clear(self) -> None:
        self.pending_stamp = None
        self._reports.clear()

    def report(self, arm: str, stamp_s: float, action: np.ndarray, gripper: int, source: Source,
               tol_s: float = 1e-6) -> Optional[ExecutedStep]:
        """One arm's report; the joined step once every arm reported the pending stamp, else None."""
        self._reports[arm] = (stamp_s, action, gripper, source)
        if self.pending_stamp is None or not all(
            a in self._reports and abs(self._reports[a][0] - self.pending_stamp) < tol_s for a in self.arms
        ):
            return None
        rep: List[Tuple[float, np.ndarray, int, Source]] = [self._reports[a] for a in self.arms]
        sources = {r[3] for r in rep}
        source = Source.OPERATOR if Source.OPERATOR in sources else (Source.HOLD if Source.HOLD in sources else Source.POLICY)
        # an arm without a gripper (GRIPPER_NONE) counts as "stay"; without a grasp critic every gripper stays
        digits = [GRIPPER_STAY if r[2] == GRIPPER_NONE or not self.use_grasp_critic else r[2] for r in rep]
        grasp = gripper_actions_to_joint_index(digits)
        no_gripper = tuple(a for a, r in zip(self.arms, rep) if r[2] == GRIPPER_NONE)
        return ExecutedStep(np.concatenate([r[1] for r in rep]), grasp, source, no_gripper)
