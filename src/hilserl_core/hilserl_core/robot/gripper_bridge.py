"""The gripper bridge of one arm as a pure state machine (no ROS): ``gripper/command`` ->
franka_gripper's ``move`` / ``grasp`` actions.

``gripper/command`` (std_msgs/Float64) is a closure, 0 open .. 1 closed (docs/DESIGN.md
"Conventions"); the intervention mux publishes it on every control step (10 Hz), so the same
value arrives again and again. The bridge turns it into franka_gripper goals:

- closure ``>= close_threshold``: **grasp** (``width = grasp_width_m``, ``speed_mps``,
  ``force_n``, ``epsilon_inner_m``/``epsilon_outer_m``): the fingers close until they hold
  something with the force; a grasp on nothing ends at width ~0, which the default epsilon
  window (0 - 5 mm .. 0 + 8 cm) counts as success, so an empty grasp is no error;
- below it: **move** to ``width = (1 - closure) * max_width_m`` at ``speed_mps`` (0 opens fully).

Debouncing: a goal goes out only when the wanted goal *changes* (another kind, or a width
more than ``width_tolerance_m`` away from the last goal sent); repeats of the same command
send nothing. While a goal is active nothing else is sent: a changed command waits as
*pending* (the newest wins) and goes out when the active goal ends (no preemption: franka's
gripper finishes one motion before it takes another).

Failures are never dropped silently: a goal the server rejects, a result with
``success = false`` (its ``error`` text kept), or no result within ``goal_timeout_s`` (the
node then cancels it) counts as a failure; the same goal is tried again up to
``max_retries`` times after ``retry_delay_s``, then the bridge gives up on it until the
command changes. :meth:`GripperBridge.status` is ERROR from a failure until a goal succeeds,
WARN while the action server is not available for a goal that is due or for rejected
(NaN/out of range) commands, else OK.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from ..formats.config import param

__all__ = ["GripperBridgeConfig", "GripperGoal", "GripperBridge", "MOVE", "GRASP", "OK", "WARN", "ERROR",
           "forward_joint_state"]

MOVE, GRASP = "move", "grasp"
OK, WARN, ERROR = 0, 1, 2  # diagnostic_msgs/DiagnosticStatus levels


@dataclass(frozen=True)
class GripperBridgeConfig:
    gripper_namespace: str = param("franka_gripper", "namespace of franka_gripper's node: actions <ns>/move, <ns>/grasp "
                                   "and its <ns>/joint_states (relative names resolve in the arm's namespace)")
    max_width_m: float = param(0.08, "finger opening of a fully open gripper (Franka Hand: 0.08)", units="m", low=0.01, high=0.3)
    speed_mps: float = param(0.1, "finger speed of move and grasp goals", units="m/s", low=0.001, high=0.2)
    force_n: float = param(40.0, "grasp force (Franka Hand: at most 70 N continuous)", units="N", low=1.0, high=140.0)
    grasp_width_m: float = param(0.0, "width a grasp aims for (0: close until the object stops the fingers)", units="m",
                                 low=0.0, high=0.3)
    epsilon_inner_m: float = param(0.005, "a grasp succeeds when the final width is within [width - inner, width + outer]",
                                   units="m", low=0.0, high=0.3)
    epsilon_outer_m: float = param(0.08, "see epsilon_inner_m; the default window takes any object up to 8 cm, and nothing",
                                   units="m", low=0.0, high=0.3)
    close_threshold: float = param(0.5, "closure (gripper/command) at or above which the gripper grasps; below, it moves to "
                                   "(1 - closure) * max_width_m", low=0.0, high=1.0)
    width_tolerance_m: float = param(0.002, "move goals closer than this to the last goal sent are the same goal (no new goal)",
                                     units="m", low=0.0, high=0.05)
    goal_timeout_s: float = param(5.0, "a goal without a result after this long is cancelled and counted as failed", units="s",
                                  low=0.1, high=60.0)
    max_retries: int = param(1, "a failed goal is sent again this many times before the bridge gives up on it (until the "
                             "command changes)", low=0, high=10)
    retry_delay_s: float = param(0.5, "wait before sending a failed goal again", units="s", low=0.0, high=10.0)


@dataclass(frozen=True)
class GripperGoal:
    kind: str  # MOVE or GRASP
    width_m: float
    speed_mps: float
    force_n: float = 0.0  # grasp only
    epsilon_inner_m: float = 0.0
    epsilon_outer_m: float = 0.0
    seq: int = 0  # which goal this is (results carry it; stale ones are ignored)

    def same_as(self, other: Optional["GripperGoal"], width_tolerance_m: float) -> bool:
        if other is None or other.kind != self.kind:
            return False
        return self.kind == GRASP or abs(self.width_m - other.width_m) <= width_tolerance_m


class GripperBridge:
    def __init__(self, config: GripperBridgeConfig) -> None:
        self.config = config
        self._wanted: Optional[GripperGoal] = None  # what the newest command asks for (seq 0)
        self._last_sent: Optional[GripperGoal] = None  # the newest goal sent (active or finished)
        self.active: Optional[GripperGoal] = None
        self._active_since_s = 0.0
        self._retries_left = 0
        self._retry_after_s = -math.inf
        self._gave_up = False  # the wanted goal failed max_retries + 1 times: wait for a new command
        self._seq = 0
        self.sent = 0
        self.succeeded = 0
        self.failed = 0
        self.rejected_commands = 0
        self.last_error = ""
        self.last_rejection = ""
        self._failure_open = False  # ERROR until a goal succeeds
        self._server_missing = False

    # -- command -> goal ----------------------------------------------------------------
    def goal_for(self, closure: float) -> GripperGoal:
        """The goal a closure (0 open .. 1 closed) asks for (seq 0: not sent yet)."""
        c = self.config
        if closure >= c.close_threshold:
            return GripperGoal(GRASP, c.grasp_width_m, c.speed_mps, c.force_n, c.epsilon_inner_m, c.epsilon_outer_m)
        return GripperGoal(MOVE, (1.0 - closure) * c.max_width_m, c.speed_mps)

    def on_command(self, closure: float, now_s: float) -> bool:
        """A ``gripper/command``; False (counted, nothing changes) for NaN/Inf or outside [0, 1]."""
        try:
            x = float(closure)
        except (TypeError, ValueError):
            x = math.nan
        if not math.isfinite(x) or x < -1e-9 or x > 1.0 + 1e-9:
            self.rejected_commands += 1
            self.last_rejection = f"rejected gripper/command {closure!r}: needs a finite closure in [0, 1] (0 open .. 1 closed)"
            return False
        goal = self.goal_for(min(max(x, 0.0), 1.0))
        if goal.same_as(self._wanted, self.config.width_tolerance_m):
            return True  # a repeat: nothing changes (the mux sends the same closure every step)
        self._wanted = goal
        self._gave_up = False
        self._retries_left = self.config.max_retries
        self._retry_after_s = -math.inf
        return True

    @property
    def pending(self) -> Optional[GripperGoal]:
        """The goal still to be sent (None when the newest sent goal is the wanted one, or it was given up)."""
        w = self._wanted
        if w is None or self._gave_up:
            return None
        if w.same_as(self._last_sent, self.config.width_tolerance_m) and not self._awaiting_retry():
            return None
        return w

    def _awaiting_retry(self) -> bool:
        return self._retry_after_s > -math.inf

    def poll(self, now_s: float, server_ready: bool) -> Optional[GripperGoal]:
        """The goal to send now, or None. A returned goal is active from now (send it!)."""
        if self.active is not None:
            return None
        goal = self.pending
        if goal is None or now_s < self._retry_after_s:
            return None
        if not server_ready:
            self._server_missing = True
            return None
        self._server_missing = False
        self._seq += 1
        sent = GripperGoal(goal.kind, goal.width_m, goal.speed_mps, goal.force_n, goal.epsilon_inner_m,
                           goal.epsilon_outer_m, self._seq)
        self.active, self._active_since_s, self._last_sent = sent, float(now_s), sent
        self._retry_after_s = -math.inf
        self.sent += 1
        return sent

    # -- outcomes -----------------------------------------------------------------------
    def on_result(self, seq: int, success: bool, error: str, now_s: float) -> None:
        """The action's result (``success``, ``error`` as franka_gripper reports them)."""
        if self.active is None or seq != self.active.seq:
            return  # a result of a goal already given up (timed out): ignored
        if success:
            self.active = None
            self.succeeded += 1
            self._failure_open = False
            self._retries_left = self.config.max_retries
            return
        self._fail(f"{error or 'no error text'}", now_s)

    def on_rejected(self, seq: int, reason: str, now_s: float) -> None:
        """The action server rejected the goal (or sending it failed)."""
        if self.active is not None and seq == self.active.seq:
            self._fail(f"goal rejected: {reason}", now_s)

    def check_timeout(self, now_s: float) -> Optional[GripperGoal]:
        """The active goal when it has had no result for ``goal_timeout_s`` (now failed: cancel it), else None."""
        a = self.active
        if a is None or now_s - self._active_since_s < self.config.goal_timeout_s:
            return None
        self._fail(f"no result after {now_s - self._active_since_s:.1f} s (goal_timeout_s {self.config.goal_timeout_s} s)", now_s)
        return a

    def _fail(self, why: str, now_s: float) -> None:
        goal, self.active = self.active, None
        self.failed += 1
        self._failure_open = True
        what = f"{goal.kind} (width {goal.width_m:.3f} m)" if goal is not None else "goal"
        wanted_still = goal is not None and goal.same_as(self._wanted, self.config.width_tolerance_m)
        if wanted_still and self._retries_left > 0:
            self._retries_left -= 1
            self._retry_after_s = float(now_s) + self.config.retry_delay_s
            self.last_error = f"{what} failed: {why}; trying again in {self.config.retry_delay_s:g} s"
        elif wanted_still:
            self._gave_up = True
            self.last_error = (f"{what} failed: {why}; gave up after {self.config.max_retries} retries "
                               "(a new gripper/command sends a new goal)")
        else:
            self.last_error = f"{what} failed: {why} (the command has changed since: sending the new one)"

    # -- diagnostics ------------------------------------------------------------------------
    def status(self) -> Tuple[int, str, Dict[str, object]]:
        values = {"sent": self.sent, "succeeded": self.succeeded, "failed": self.failed,
                  "rejected_commands": self.rejected_commands,
                  "active": f"{self.active.kind} {self.active.width_m:.3f} m" if self.active else "none"}
        if self._failure_open:
            return ERROR, self.last_error, values
        if self._server_missing:
            return WARN, (f"a {self.pending.kind if self.pending else 'gripper'} goal is due but the franka_gripper action "
                          f"server ({self.config.gripper_namespace}) is not available"), values
        if self.rejected_commands:
            return WARN, self.last_rejection, values
        if self.active is not None:
            return OK, f"{self.active.kind} to {self.active.width_m:.3f} m under way", values
        return OK, "idle" if self._last_sent is None else f"last goal {self._last_sent.kind} done", values


def forward_joint_state(arm: str, names: Sequence[str], position: Sequence[float], velocity: Sequence[float],
                        effort: Sequence[float], max_width_m: float = 0.08) -> Tuple[List[str], List[float], List[float], List[float]]:
    """franka_gripper's ``joint_states`` -> hilserl's ``gripper/joint_states`` fields.

    franka_gripper publishes the two finger joints (``<prefix>_finger_joint1/2``), each at half
    the opening, which is what the simulator publishes and the actor reads (the sum of the
    positions is the opening). Names become ``<arm>_finger_joint1/2``; missing velocity or
    effort become zeros. Raises ``ValueError`` for anything else (not two finger joints,
    NaN/Inf, a finger beyond its range), which the node counts and reports.
    """
    idx = [i for i, n in enumerate(names) if "finger_joint" in n]
    if len(idx) != 2 or len(position) != len(names):
        raise ValueError(f"expected two finger joints with positions, got names {list(names)} and {len(position)} positions")
    idx.sort(key=lambda i: names[i])
    pos = [float(position[i]) for i in idx]
    vel = [float(velocity[i]) if len(velocity) == len(names) else 0.0 for i in idx]
    eff = [float(effort[i]) if len(effort) == len(names) else 0.0 for i in idx]
    if not all(math.isfinite(x) for x in pos + vel + eff):
        raise ValueError(f"finger joint state has NaN/Inf: position {pos}, velocity {vel}, effort {eff}")
    half = 0.5 * max_width_m
    if any(p < -0.005 or p > half + 0.005 for p in pos):
        raise ValueError(f"finger positions {pos} outside [0, {half:.3f}] m (half of max_width_m)")
    return [f"{arm}_finger_joint1", f"{arm}_finger_joint2"], pos, vel, eff
