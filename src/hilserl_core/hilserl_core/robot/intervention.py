"""The intervention mux of one arm, as a pure state machine (paper: human interventions).

The mux is the only thing that turns actions into controller targets. Each
control step it decides who acts:

- **operator**: SpaceMouse input above the dead zone (or a button) takes over at
  once and keeps control for ``intervention_hold_s`` after the last input, so a
  person's brief pause does not flicker control back to the policy;
- **policy**: otherwise a fresh, finite policy action is executed (once);
- **hold**: otherwise (stale or rejected policy action) the last target is held.
  The hold is re-anchored to the measured pose (clipped to the box) when the arm
  is found far from the held target (moved by a reset or by something else), and
  once when no command has come for ``hold_reanchor_after_s``, so a commanded
  target is never held for ever. A measured pose with NaN/Inf or a zero
  quaternion is never used: the step holds the last target (or has none).

A policy action is stale when it was received more than ``policy_timeout_s``
ago or when the observation it was computed from (its stamp, node clock) is
older than that; in lockstep (the simulator waits for each action, its world
still) the bound is at least ``LOCKSTEP_INPUT_AGE_S``, for operator input too.

It integrates the chosen normalised twist into a target pose in the current
end-effector frame (``control.integrate_twist_target``, clipped to the
workspace box), or scales it to a feed-forward wrench in wrench mode, and
reports the action it actually executed and who acted, which is what the actor
records (intervention transitions go to both demo and RL buffers).

Rejected input is never silently dropped: a policy action or an operator twist
with NaN/Inf, the wrong length, a component beyond ``input_limit`` (a broken
device or policy; values up to it are clipped to [-1, 1]) or, for the policy, an
unknown gripper action, is refused and counted per source in ``rejections``
(:class:`RejectionLog`), whose :meth:`RejectionLog.status` is WARN naming the
source and the count until ``rejection_quiet_s`` pass without one, then OK. A
rejected operator twist also zeroes the operator's twist (a broken SpaceMouse
never keeps driving the arm with its last good value).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from ..formats.config import ConfigError, param
from . import control, frames

__all__ = [
    "Source",
    "RejectionLog",
    "OK",
    "WARN",
    "WorkspaceConfig",
    "MuxConfig",
    "MuxDecision",
    "InterventionMux",
    "measured_pose_problem",
    "policy_staleness",
    "GRIPPER_OPEN",
    "GRIPPER_STAY",
    "GRIPPER_CLOSE",
]

GRIPPER_OPEN, GRIPPER_STAY, GRIPPER_CLOSE = 0, 1, 2
GRIPPER_NONE = -1
GRIPPER_CLOSURE = {GRIPPER_OPEN: 0.0, GRIPPER_CLOSE: 1.0}  # gripper/command of an open / close event
# Status levels of RejectionLog.status, the values of diagnostic_msgs/DiagnosticStatus.
OK, WARN = 0, 1


class Source(enum.IntEnum):
    POLICY = 0
    OPERATOR = 1
    HOLD = 2


@dataclass(frozen=True)
class WorkspaceConfig:
    min_position_m: Tuple[float, ...] = param((0.25, -0.35, 0.02), "lower corner of the target box in the arm's base frame", units="m")
    max_position_m: Tuple[float, ...] = param((0.75, 0.35, 0.55), "upper corner of the target box in the arm's base frame", units="m")

    def __post_init__(self) -> None:
        lo, hi = tuple(self.min_position_m), tuple(self.max_position_m)
        if len(lo) != 3 or len(hi) != 3:
            raise ConfigError(f"workspace: min_position_m and max_position_m need 3 values (x, y, z), got {list(lo)} and {list(hi)}")
        if not all(a < b for a, b in zip(lo, hi)):
            raise ConfigError(f"workspace: min_position_m {list(lo)} must be below max_position_m {list(hi)} on every axis")

    def box(self) -> control.WorkspaceBox:
        return control.WorkspaceBox(self.min_position_m, self.max_position_m)


@dataclass(frozen=True)
class MuxConfig:
    mode: str = param("twist", "action space: twist -> target_pose, wrench -> target_wrench", choices=("twist", "wrench"))
    control_rate_hz: float = param(10.0, "control steps per second when no policy action drives the mux", units="Hz", low=1.0, high=1000.0)
    linear_step_m: float = param(0.015, "end-effector displacement per control step at full action", units="m", low=1e-4, high=0.1)
    angular_step_rad: float = param(0.1, "end-effector rotation per control step at full action", units="rad", low=1e-3, high=0.5)
    max_force_n: float = param(20.0, "feed-forward force at full action (wrench mode)", units="N", low=0.0, high=100.0)
    max_torque_nm: float = param(2.0, "feed-forward torque at full action (wrench mode)", units="N m", low=0.0, high=20.0)
    speed_scale: float = param(1.0, "gain on the operator's SpaceMouse twist", low=0.0, high=5.0, live=True)
    dead_zone: float = param(0.05, "SpaceMouse axis magnitude below which it counts as untouched", low=0.0, high=0.9, live=True)
    intervention_hold_s: float = param(0.3, "operator keeps control this long after the last input above the dead zone (fresh input above it always takes over)", units="s", low=0.0, high=5.0, live=True)
    policy_timeout_s: float = param(0.25, "a policy action received longer ago than this, or computed from an observation older than this (its stamp), is stale and not executed", units="s", low=0.01, high=5.0, live=True)
    operator_timeout_s: float = param(0.25, "operator input older than this counts as released", units="s", low=0.01, high=5.0, live=True)
    hold_reanchor_distance_m: float = param(0.05, "while holding, a measured position this far from the held target re-anchors the hold at the measured pose (the arm was moved by a reset or something else)", units="m", low=0.005, high=1.0, live=True)
    hold_reanchor_angle_rad: float = param(0.25, "while holding, a measured orientation this far from the held target re-anchors the hold at the measured pose", units="rad", low=0.01, high=3.15, live=True)
    hold_reanchor_after_s: float = param(1.0, "a target set by a command is held at most this long after the last command (policy or operator); then the hold is re-anchored once at the measured pose", units="s", low=0.1, high=60.0, live=True)
    lockstep: bool = param(False, "the simulator waits for each action (sim graphs' lockstep:=true): a policy action or "
                           "operator input is stale only when older than its timeout or 5 s, whichever is longer (the "
                           "frame and the operator's sample for it stay current while the simulator waits), and the node "
                           "steps on policy actions only, on its timer only after 5 s without one (a timer step would "
                           "move the target while the simulated world stands still). Never on a robot")
    input_limit: float = param(2.0, "a policy action or operator twist with a component beyond this magnitude is rejected and counted "
                               "(a broken device or policy); components up to it are clipped to [-1, 1]", low=1.0, high=1e6, live=True)
    rejection_quiet_s: float = param(5.0, "a source's rejected-input WARN returns to OK after this long without a rejection", units="s",
                                     low=0.1, high=3600.0, live=True)
    operator_frame: str = param("base", "frame of the SpaceMouse twist: base (how a person sees the robot) or ee", choices=("base", "ee"))
    workspace: WorkspaceConfig = field(default_factory=WorkspaceConfig)


@dataclass
class MuxDecision:
    source: Source
    executed_action: np.ndarray  # normalised [6] in the current EE frame (what the buffer stores)
    gripper_action: int  # 0 open, 1 stay, 2 close, -1 no gripper
    # gripper/command to publish (0 open .. 1 closed) when this step opens or closes the gripper;
    # None otherwise (stay, no gripper): the gripper keeps what the last command or a reset left, so
    # starting the mux never opens a gripper holding something (a peg, a real part)
    gripper_closure: Optional[float]
    target_pos: Optional[np.ndarray] = None  # twist mode
    target_quat: Optional[np.ndarray] = None
    wrench_ee: Optional[np.ndarray] = None  # wrench mode, [f, tau] in EE axes
    policy_stamp_s: Optional[float] = None  # stamp of the policy action this step answered
    reason: str = ""  # why the mux held, for diagnostics


def measured_pose_problem(pos, quat) -> str:
    """Why a measured pose cannot be used as the origin of a target ("" when it can).

    NaN/Inf anywhere, or a (near) zero quaternion that has no orientation: the mux
    then holds and never guesses (``frames.quat_normalize`` would raise on it).
    """
    p, q = np.asarray(pos, dtype=float), np.asarray(quat, dtype=float)
    if p.shape != (3,) or q.shape != (4,):
        return f"measured pose malformed: pos shape {p.shape}, quat shape {q.shape}"
    if not (control.is_finite_command(p) and control.is_finite_command(q)):
        return f"measured pose has NaN/Inf: pos={p.tolist()}, quat={q.tolist()}"
    if np.linalg.norm(q) < 1e-6:
        return f"measured quaternion {q.tolist()} is zero: no orientation"
    return ""


# Lockstep (sim graphs' lockstep:=true): while the simulator waits for the action on its last frame,
# its world stands still, so that frame, the state sent with it and an action computed from it stay
# current however old they are by the wall clock. The nodes that refuse old inputs (the mux and the
# actor) accept them up to this old in lockstep: the simulator's default lockstep_timeout_s, after
# which it goes on with the wall clock and sends fresh frames again. Long enough for the waits that
# lockstep makes on purpose: an actor holding its action while the learner catches up with its
# update-to-data ratio (after a checkpoint of a few GB, ~10 s on 2 cores; on a loaded test host, the
# learner's first updates).
LOCKSTEP_INPUT_AGE_S = 60.0


def input_age_limit(max_age_s: float, lockstep: bool) -> float:
    """The age (s) beyond which an input is stale: ``max_age_s``, or in lockstep at least
    :data:`LOCKSTEP_INPUT_AGE_S`."""
    return max(max_age_s, LOCKSTEP_INPUT_AGE_S) if lockstep else max_age_s


def policy_staleness(stamp_s: float, received_s: float, now_s: float, timeout_s: float) -> str:
    """Why a policy action is too old to execute ("" when it is fresh).

    Stale when it was received more than ``timeout_s`` ago, or when the observation
    it was computed from (``stamp_s``, same clock as ``now_s``) is older than that.
    """
    if now_s - received_s > timeout_s:
        return f"policy action stale (received {now_s - received_s:.3f} s ago > {timeout_s} s)"
    if now_s - stamp_s > timeout_s:
        return f"policy action stale (its observation is {now_s - stamp_s:.3f} s old > {timeout_s} s)"
    return ""


class RejectionLog:
    """Rejected inputs per source (``policy``, ``operator``), and the status they give.

    :meth:`reject` counts one rejection of a source at ``now_s`` with its reason;
    :meth:`status` is ``(level, message, values)`` for a diagnostic: WARN naming the
    source and the counts while the last rejection is less than ``quiet_s`` old, OK
    (with the total so far) once it is older.
    """

    LABELS = {"policy": "policy action (policy/action)", "operator": "operator input (spacenav/twist, spacenav/joy)"}

    def __init__(self, quiet_s: float):
        self.quiet_s = float(quiet_s)
        self.total: Dict[str, int] = {k: 0 for k in self.LABELS}
        self.since_ok: Dict[str, int] = {k: 0 for k in self.LABELS}  # rejections in the current WARN episode
        self.last_s: Dict[str, float] = {k: -np.inf for k in self.LABELS}
        self.last_reason: Dict[str, str] = {k: "" for k in self.LABELS}

    def reject(self, source: str, reason: str, now_s: float) -> None:
        if source not in self.LABELS:
            raise ValueError(f"unknown input source {source!r}; one of {sorted(self.LABELS)}")
        if not now_s - self.last_s[source] <= self.quiet_s:  # a new WARN episode (also when now_s is not finite)
            self.since_ok[source] = 0
        self.total[source] += 1
        self.since_ok[source] += 1
        self.last_s[source] = float(now_s) if np.isfinite(now_s) else self.last_s[source]
        self.last_reason[source] = reason

    def status(self, source: str, now_s: float) -> Tuple[int, str, Dict[str, object]]:
        label, total = self.LABELS[source], self.total[source]
        age = now_s - self.last_s[source]
        values = {"rejected": total}
        if age <= self.quiet_s:
            n = self.since_ok[source]
            return WARN, (f"{label}: {n} rejected in the last {age:.1f} s or so ({total} in all); "
                          f"last: {self.last_reason[source]}"), values
        if total:
            return OK, f"{label}: none rejected for {self.quiet_s:g} s ({total} in all)", values
        return OK, f"{label}: none rejected", values


class InterventionMux:
    def __init__(self, config: MuxConfig, has_gripper: bool = True):
        self.config = config
        self._box = config.workspace.box()
        self.has_gripper = has_gripper
        self._policy: Optional[Tuple[np.ndarray, int, float, float]] = None  # action, gripper, stamp, received
        self._operator_twist = np.zeros(6)
        self._operator_buttons: Tuple[int, ...] = ()
        self._operator_received = -np.inf
        self._last_operator_activity = -np.inf
        self._pending_gripper_event = GRIPPER_STAY
        self._last_target: Optional[Tuple[np.ndarray, np.ndarray]] = None
        self._target_from_command = False  # the held target came from a policy/operator step
        self._last_command_s = -np.inf  # time of the last policy/operator step
        self.rejections = RejectionLog(config.rejection_quiet_s)
        self.last_reason = ""

    @property
    def rejected(self) -> int:
        """Policy actions rejected so far."""
        return self.rejections.total["policy"]

    @property
    def rejected_operator(self) -> int:
        """Operator inputs rejected so far."""
        return self.rejections.total["operator"]

    def set_config(self, config: MuxConfig) -> None:
        """Apply a live parameter change (the workspace box may change too)."""
        self.config = config
        self._box = config.workspace.box()
        self.rejections.quiet_s = float(config.rejection_quiet_s)

    def forget_target(self) -> None:
        """Drop the held target: the next hold anchors at the measured pose (the arm was held by
        someone else meanwhile, e.g. during a second publisher on the target topic)."""
        self._last_target, self._target_from_command = None, False

    def reject_policy(self, reason: str, now_s: float) -> None:
        """Count a policy action refused before it reached :meth:`on_policy` (a malformed message)."""
        self.last_reason = reason
        self.rejections.reject("policy", reason, now_s)

    @staticmethod
    def _as_vector(values: Sequence[float]) -> np.ndarray:
        """A command as floats; what cannot be read as numbers becomes NaN (and is refused)."""
        try:
            return np.asarray(values, dtype=float)
        except (TypeError, ValueError):
            return np.full(1, np.nan)

    def _input_problem(self, a: np.ndarray) -> str:
        if a.shape != (6,) or not control.is_finite_command(a):
            return "needs 6 finite numbers"
        if np.max(np.abs(a)) > self.config.input_limit:
            return f"a component beyond input_limit {self.config.input_limit:g}"
        return ""

    # -- inputs -------------------------------------------------------------------------
    def on_policy(self, action: Sequence[float], gripper: int, stamp_s: float, now_s: float) -> bool:
        """Queue a policy action; a NaN/Inf or malformed one is rejected (returns False)."""
        a = self._as_vector(action)
        problem = self._input_problem(a)
        if problem:
            self.reject_policy(f"rejected policy action {a.tolist()}: {problem}", now_s)
            return False
        if gripper not in (GRIPPER_OPEN, GRIPPER_STAY, GRIPPER_CLOSE, GRIPPER_NONE):
            self.reject_policy(f"rejected policy gripper action {gripper}: must be 0 (open), 1 (stay) or 2 (close)", now_s)
            return False
        self._policy = (np.clip(a, -1.0, 1.0), int(gripper), float(stamp_s), float(now_s))
        return True

    def on_operator(self, twist: Sequence[float], buttons: Sequence[int], now_s: float) -> None:
        """SpaceMouse input: a twist in [-1, 1]^6 (spacenav/twist) and its buttons (spacenav/joy)."""
        t = self._as_vector(twist)
        problem = self._input_problem(t)
        if problem:
            # Counted, and the twist is zeroed: a broken device never keeps driving with its last good value.
            self.rejections.reject("operator", f"rejected operator twist {t.tolist()}: {problem}", now_s)
            self._operator_twist = np.zeros(6)
            return
        buttons = tuple(int(b) for b in buttons)
        prev = self._operator_buttons
        # rising edges: button 0 closes, button 1 opens (as on the two-button SpaceMouse)
        if len(buttons) > 0 and buttons[0] and not (len(prev) > 0 and prev[0]):
            self._pending_gripper_event = GRIPPER_CLOSE
        if len(buttons) > 1 and buttons[1] and not (len(prev) > 1 and prev[1]):
            self._pending_gripper_event = GRIPPER_OPEN
        self._operator_twist = np.clip(t, -1.0, 1.0)
        self._operator_buttons = buttons
        self._operator_received = float(now_s)
        dz = self.config.dead_zone
        if np.max(np.abs(self._operator_twist)) > dz or any(buttons):
            self._last_operator_activity = float(now_s)

    def on_operator_twist(self, twist: Sequence[float], now_s: float) -> None:
        """Twist-only input (spacenav/twist); buttons keep their last state."""
        self.on_operator(twist, self._operator_buttons, now_s)

    def on_operator_buttons(self, buttons: Sequence[int], now_s: float) -> None:
        """Button-only input (spacenav/joy buttons); the twist keeps its last value."""
        self.on_operator(self._operator_twist, buttons, now_s)

    def operator_active(self, now_s: float) -> bool:
        """Fresh input above the dead zone (or a button) is active; the hold time extends it after."""
        c = self.config
        age = now_s - self._operator_received
        timeout = self._operator_timeout_s()
        if age > max(timeout, c.intervention_hold_s):
            return False
        touched = age <= timeout and (
            np.max(np.abs(self._operator_twist)) > c.dead_zone or any(self._operator_buttons)
        )
        return touched or now_s - self._last_operator_activity <= c.intervention_hold_s

    def has_fresh_policy_action(self, now_s: float) -> bool:
        p = self._policy
        return p is not None and not policy_staleness(p[2], p[3], now_s, self._policy_timeout_s())

    def _policy_timeout_s(self) -> float:
        return input_age_limit(self.config.policy_timeout_s, self.config.lockstep)

    def _operator_timeout_s(self) -> float:
        return input_age_limit(self.config.operator_timeout_s, self.config.lockstep)

    # -- one control step ---------------------------------------------------------------
    def step(self, now_s: float, measured_pos, measured_quat) -> MuxDecision:
        c = self.config
        policy, self._policy = self._policy, None  # each policy action is executed at most once
        policy_stamp = policy[2] if policy is not None else None
        stale = policy_staleness(policy[2], policy[3], now_s, self._policy_timeout_s()) if policy is not None else ""
        pose_problem = measured_pose_problem(measured_pos, measured_quat)
        if pose_problem:  # measured pose broken: hold everything (arm and gripper), never guess
            return self._broken_pose_hold(policy_stamp, pose_problem)
        measured_pos = np.asarray(measured_pos, dtype=float)
        measured_quat = frames.quat_normalize(measured_quat)
        if self.operator_active(now_s):
            source, action = Source.OPERATOR, self._operator_action(now_s, measured_quat)
            gripper = self._pending_gripper_event
            reason = ""
        elif policy is not None and not stale:
            source, action, gripper, reason = Source.POLICY, policy[0], policy[1], ""
        else:
            source, action, gripper = Source.HOLD, np.zeros(6), GRIPPER_STAY
            if policy is not None:
                reason = stale
            else:
                recent = now_s - self.rejections.last_s["policy"] <= c.policy_timeout_s
                reason = self.last_reason if recent else "no policy action"
        self._pending_gripper_event = GRIPPER_STAY
        if not self.has_gripper:
            gripper = GRIPPER_NONE
        decision = MuxDecision(
            source=source,
            executed_action=action,
            gripper_action=gripper,
            gripper_closure=GRIPPER_CLOSURE.get(gripper),
            policy_stamp_s=policy_stamp,
            reason=reason,
        )
        if c.mode == "wrench":
            scale = np.array([c.max_force_n] * 3 + [c.max_torque_nm] * 3)
            decision.wrench_ee = action * scale
            return decision
        if source == Source.HOLD:
            anchor = self._box.clip(measured_pos, measured_quat)
            reanchor = self._hold_reanchor_reason(now_s, anchor)
            if reanchor:
                verb = "re-anchored" if self._last_target is not None else "anchored"
                self._last_target, self._target_from_command = anchor, False
                decision.reason += f"; hold {verb} at the measured pose: {reanchor}"
            decision.target_pos, decision.target_quat = self._last_target
            return decision
        pos, quat = control.integrate_twist_target(
            measured_pos, measured_quat, action, c.linear_step_m, c.angular_step_rad, self._box
        )
        self._last_target = (pos, quat)
        self._target_from_command, self._last_command_s = True, float(now_s)
        decision.target_pos, decision.target_quat = pos, quat
        return decision

    def _hold_reanchor_reason(self, now_s: float, anchor: Tuple[np.ndarray, np.ndarray]) -> str:
        """Why the hold should move to ``anchor`` (the measured pose clipped to the box) now ("" if not).

        Holding keeps the target where it is (a stale or missing command must not move
        the arm). It is re-anchored at the measured pose when there is no target yet,
        when the arm is far from the held target (a reset or something else moved it:
        holding would drag it back), and once when a commanded target has outlived
        ``hold_reanchor_after_s`` without a new command. Never every step: a target
        that follows the measured pose would let the arm creep (gravity sag, contact).
        """
        c = self.config
        if self._last_target is None:
            return "no target yet"
        idle = now_s - self._last_command_s
        if self._target_from_command and idle > c.hold_reanchor_after_s:
            return f"no command for {idle:.2f} s > {c.hold_reanchor_after_s} s"
        e = frames.pose_error(*self._last_target, *anchor)
        dist, angle = float(np.linalg.norm(e[:3])), float(np.linalg.norm(e[3:]))
        if dist > c.hold_reanchor_distance_m or angle > c.hold_reanchor_angle_rad:
            return (
                f"the arm is {dist:.3f} m / {angle:.2f} rad from the held target "
                f"(> {c.hold_reanchor_distance_m} m or {c.hold_reanchor_angle_rad} rad): moved by a reset or something else"
            )
        return ""

    def _broken_pose_hold(self, policy_stamp: Optional[float], problem: str) -> MuxDecision:
        """A step whose measured pose cannot be used: hold the last target, or publish none."""
        self._pending_gripper_event = GRIPPER_STAY
        decision = MuxDecision(
            source=Source.HOLD,
            executed_action=np.zeros(6),
            gripper_action=GRIPPER_STAY if self.has_gripper else GRIPPER_NONE,
            gripper_closure=None,
            policy_stamp_s=policy_stamp,
        )
        if self.config.mode == "wrench":
            decision.wrench_ee = np.zeros(6)
            decision.reason = f"{problem}; holding (zero wrench)"
        elif self._last_target is not None:
            decision.target_pos, decision.target_quat = self._last_target
            decision.reason = f"{problem}; holding the last target"
        else:
            decision.reason = f"{problem}; no target yet: publishing none"
        return decision

    def _operator_action(self, now_s: float, measured_quat) -> np.ndarray:
        c = self.config
        t = self._operator_twist.copy() if now_s - self._operator_received <= self._operator_timeout_s() else np.zeros(6)
        t[np.abs(t) <= c.dead_zone] = 0.0
        if c.operator_frame == "base":
            # A person pushes the SpaceMouse in the robot's base axes; the action space is the EE frame.
            R_base_ee = frames.quat_to_matrix(frames.quat_normalize(measured_quat))
            t = frames.rotate_twist(R_base_ee.T, t)
        return np.clip(t * c.speed_scale, -1.0, 1.0)
