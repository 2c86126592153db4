"""Start-pose resets on the robot, planned without ROS (the ``hilserl_robot reset_node``).

Between episodes the reset node brings every arm to a randomised start pose (paper: the start
pose is randomised each episode), sets the gripper for the task, waits for the operator's go,
and only then answers the actor's reset service with success. This module holds all of its
decisions:

- :func:`sample_start_pose`: the nominal start pose plus uniform noise per axis (position in
  the base frame, orientation as a rotation vector in the nominal pose's own axes), the
  position clipped into the workspace box (the mux's box: a start outside it could not be held);
- :class:`ResetMotion`: a speed-limited path from the measured pose to the start pose (an
  optional straight lift first, then a straight line with slerped orientation), each segment
  lasting ``max(distance / max_linear_speed_mps, angle / max_angular_speed_radps)``, sampled
  as a waypoint per control step; and the decision whether the arm has converged (within
  ``position_tolerance_m`` and ``angle_tolerance_rad`` for ``settle_s``), stalled (no progress
  by ``stall_distance_m`` for ``stall_s`` once the path is done: blocked, or the controller
  cannot reach it) or timed out (``motion_timeout_s``);
- :func:`twist_action_towards`: the normalised EE-frame twist action that makes the intervention
  mux step its target from the measured pose to a waypoint (the mux's own integration,
  ``control.integrate_twist_target``, inverted), which is how the node moves the arm without a
  second publisher on ``target_pose`` (docs/real_robot.md "Robot-side nodes");
- :class:`ResetProcedure`: the sequence for all arms: gripper, motion, wait for the go
  (``/episode/reset`` after the arms arrived, or a SpaceMouse button), with every failure
  (no measured pose, stall, timeout, no go in time) a message, never a silent skip.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..formats.config import ConfigError, param
from . import control, frames

__all__ = [
    "ResetConfig",
    "ArmStart",
    "per_arm",
    "arm_starts",
    "sample_start_pose",
    "segment_duration",
    "ResetMotion",
    "MotionState",
    "twist_action_towards",
    "ResetPhase",
    "ResetProcedure",
    "ButtonEdge",
    "GRIPPER_OPEN",
    "GRIPPER_STAY",
    "GRIPPER_CLOSE",
]

GRIPPER_OPEN, GRIPPER_STAY, GRIPPER_CLOSE = 0, 1, 2  # policy/action buttons[0] (hilserl_interfaces.actions)
_GRIPPER_ACTIONS = {"open": GRIPPER_OPEN, "keep": GRIPPER_STAY, "close": GRIPPER_CLOSE}


@dataclass(frozen=True)
class ResetConfig:
    arms: Tuple[str, ...] = param(("left",), "arm namespaces this node resets together (one service resets the whole scene)")
    service: str = param("/robot/reset", "std_srvs/Trigger offered to the actor (its reset_service parameter)")
    via: str = param("mux", "how the arm is moved: mux = normalised twists on <arm>/policy/action (the intervention mux stays "
                     "the only target_pose publisher; twist mode); anchor = waypoints on <arm>/<anchor_topic> for the "
                     "WrenchController's anchor_topics (wrench mode), with zero-wrench policy actions for the gripper",
                     choices=("mux", "anchor"))
    anchor_topic: str = param("reset/anchor_pose", "via anchor: PoseStamped waypoints (relative: in the arm's namespace)")
    base_frame_id: str = param("{arm}_base", "frame_id of published poses ({arm} is replaced by the arm's name)")
    start_position_m: Tuple[float, ...] = param((0.5, 0.0, 0.25), "nominal TCP start position in the base frame: 3 values "
                                                "(every arm) or 3 per arm in arm order", units="m")
    start_rpy_rad: Tuple[float, ...] = param((math.pi, 0.0, 0.0), "nominal start orientation, roll-pitch-yaw (x-y-z) of the TCP in "
                                             "the base frame: 3 values or 3 per arm", units="rad")
    position_noise_m: Tuple[float, ...] = param((0.02, 0.02, 0.0), "uniform start-position noise, +- per base axis: 3 values or 3 "
                                                "per arm", units="m")
    orientation_noise_rad: Tuple[float, ...] = param((0.0, 0.0, 0.1), "uniform start-orientation noise, +- rotation about the nominal "
                                                     "TCP axes: 3 values or 3 per arm", units="rad")
    min_position_m: Tuple[float, ...] = param((0.25, -0.35, 0.02), "workspace box lower corner (as the mux's): 3 values or 3 per arm",
                                              units="m")
    max_position_m: Tuple[float, ...] = param((0.75, 0.35, 0.55), "workspace box upper corner: 3 values or 3 per arm", units="m")
    lift_m: float = param(0.0, "first lift the TCP straight up (base +z) by this much, clipped to the box, then go to the start "
                          "(keeps a held object or the fingers off the table)", units="m", low=0.0, high=0.3)
    max_linear_speed_mps: float = param(0.05, "TCP speed along the reset path", units="m/s", low=0.001, high=0.25, live=True)
    max_angular_speed_radps: float = param(0.3, "TCP rotation speed along the reset path", units="rad/s", low=0.01, high=1.5,
                                           live=True)
    control_rate_hz: float = param(10.0, "waypoints per second (the mux's control_rate_hz)", units="Hz", low=1.0, high=1000.0)
    linear_step_m: float = param(0.015, "via mux: the mux's linear_step_m (TCP displacement per step at full action)", units="m",
                                 low=1e-4, high=0.1)
    angular_step_rad: float = param(0.1, "via mux: the mux's angular_step_rad", units="rad", low=1e-3, high=0.5)
    position_tolerance_m: float = param(0.01, "arrived: every arm within this distance of its start position ...", units="m",
                                        low=1e-4, high=0.1, live=True)
    angle_tolerance_rad: float = param(0.05, "... and this angle of its start orientation ...", units="rad", low=1e-3, high=0.5,
                                       live=True)
    settle_s: float = param(0.3, "... for this long", units="s", low=0.0, high=10.0, live=True)
    stall_s: float = param(3.0, "after the path's end, no progress by stall_distance_m for this long: unreachable (failure)",
                           units="s", low=0.1, high=60.0, live=True)
    stall_distance_m: float = param(0.002, "progress (distance or 0.1 m/rad of angle) that counts against a stall", units="m",
                                    low=1e-5, high=0.1, live=True)
    motion_timeout_s: float = param(30.0, "the arms not at their start this long after the reset began: failure", units="s",
                                    low=1.0, high=600.0, live=True)
    gripper: str = param("open", "gripper at reset, per task: open, keep (a held peg stays held) or close",
                         choices=("open", "keep", "close"))
    gripper_wait_s: float = param(1.0, "after commanding the gripper (open/close), wait this long before moving", units="s",
                                  low=0.0, high=10.0)
    wait_for_operator: bool = param(True, "after the arms arrive, wait for the operator's go (the scene is reset) before "
                                    "answering success")
    go_topic: str = param("/episode/reset", "std_msgs/Empty: the operator's go (episode_keys 'r', hilserl record); only one that "
                          "comes after the arms arrived counts ('' = none)")
    go_joy_topic: str = param("", "sensor_msgs/Joy whose button go_button (rising edge) also means go, e.g. a third SpaceMouse "
                              "button ('' = none; relative: in the first arm's namespace)")
    go_button: int = param(2, "index of the go button on go_joy_topic", low=0, high=63)
    operator_timeout_s: float = param(300.0, "no go this long after the arms arrived: failure (the actor asks again)", units="s",
                                      low=1.0, high=3600.0, live=True)
    pose_timeout_s: float = param(0.5, "a current_pose older than this is stale: the motion waits, and fails at "
                                  "motion_timeout_s", units="s", low=0.01, high=10.0)
    seed: int = param(-1, "seed of the start-pose noise (-1: from the OS)", low=-1)


@dataclass(frozen=True)
class ArmStart:
    """One arm's start-pose ranges and box."""

    position: np.ndarray
    quat: np.ndarray
    position_noise: np.ndarray
    orientation_noise: np.ndarray
    box: control.WorkspaceBox


def per_arm(values: Sequence[float], n_arms: int, name: str) -> List[np.ndarray]:
    """3 values (the same for every arm) or 3 per arm -> one [3] array per arm."""
    v = np.asarray(values, dtype=float).reshape(-1)
    if v.size == 3:
        return [v.copy() for _ in range(n_arms)]
    if v.size == 3 * n_arms:
        return [v[3 * i:3 * i + 3].copy() for i in range(n_arms)]
    raise ConfigError(f"{name}: expected 3 values (every arm) or 3 per arm ({3 * n_arms}), got {v.size}")


def arm_starts(config: ResetConfig) -> Dict[str, ArmStart]:
    """Each arm's :class:`ArmStart` from the config; a start whose range leaves the box is a ConfigError."""
    n = len(config.arms)
    if n == 0:
        raise ConfigError("reset: arms is empty")
    fields = {k: per_arm(getattr(config, k), n, k) for k in ("start_position_m", "start_rpy_rad", "position_noise_m",
                                                             "orientation_noise_rad", "min_position_m", "max_position_m")}
    out = {}
    for i, arm in enumerate(config.arms):
        f = {k: v[i] for k, v in fields.items()}
        if not all(np.all(np.isfinite(v)) for v in f.values()):
            raise ConfigError(f"reset: arm {arm}: non-finite start-pose setting {dict((k, v.tolist()) for k, v in f.items())}")
        if np.any(f["position_noise_m"] < 0) or np.any(f["orientation_noise_rad"] < 0):
            raise ConfigError(f"reset: arm {arm}: noise ranges must be >= 0")
        try:
            box = control.WorkspaceBox(f["min_position_m"], f["max_position_m"])
        except ValueError as exc:
            raise ConfigError(f"reset: arm {arm}: {exc}") from exc
        if not box.contains(f["start_position_m"]):
            raise ConfigError(f"reset: arm {arm}: start_position_m {f['start_position_m'].tolist()} is outside the workspace box "
                              f"{box.min_position_m.tolist()} .. {box.max_position_m.tolist()}: unreachable")
        out[arm] = ArmStart(f["start_position_m"], frames.quat_from_euler_xyz(*f["start_rpy_rad"]), f["position_noise_m"],
                            f["orientation_noise_rad"], box)
    return out


def sample_start_pose(start: ArmStart, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """Nominal + uniform noise (position in base axes, orientation about the nominal TCP axes), clipped into the box."""
    dp = rng.uniform(-1.0, 1.0, 3) * start.position_noise
    dr = rng.uniform(-1.0, 1.0, 3) * start.orientation_noise
    pos = start.position + dp
    quat = frames.quat_multiply(start.quat, frames.rotvec_to_quat(dr))
    return start.box.clip(pos, quat)


def segment_duration(p0, q0, p1, q1, max_linear_speed: float, max_angular_speed: float) -> float:
    """Time for a straight, slerped segment at the speed limits (the slower of translation and rotation)."""
    d = float(np.linalg.norm(np.asarray(p1, dtype=float) - np.asarray(p0, dtype=float)))
    a = float(frames.quat_angle(q0, q1))
    return max(d / max_linear_speed, a / max_angular_speed)


class MotionState(enum.Enum):
    MOVING = "moving"
    ARRIVED = "arrived"
    STALLED = "stalled"
    TIMED_OUT = "timed out"


class ResetMotion:
    """One arm's path from ``(p0, q0)`` to the goal, and whether it got there.

    Waypoints (:meth:`waypoint`) follow the path at the speed limits starting at ``t0``; the
    path starts where the arm was measured, so the first waypoint is that pose.
    """

    def __init__(self, config: ResetConfig, box: control.WorkspaceBox, p0, q0, goal_pos, goal_quat, t0_s: float) -> None:
        self.config = config
        p0, q0 = np.asarray(p0, dtype=float), frames.quat_normalize(q0)
        self.goal = (np.asarray(goal_pos, dtype=float), frames.quat_normalize(goal_quat))
        points = [(p0, q0)]
        if config.lift_m > 0:
            lifted = p0.copy()  # straight up, not above the box (unless the arm already is)
            lifted[2] = min(p0[2] + config.lift_m, max(float(box.max_position_m[2]), p0[2]))
            points.append((lifted, q0))
        points.append(self.goal)
        self.points = points
        self.durations = [segment_duration(*a, *b, config.max_linear_speed_mps, config.max_angular_speed_radps)
                          for a, b in zip(points[:-1], points[1:])]
        self.t0_s = float(t0_s)
        self.path_s = float(sum(self.durations))
        self.state = MotionState.MOVING
        self.message = ""
        self._within_since: Optional[float] = None
        self._best = math.inf
        self._best_s = float(t0_s)

    def waypoint(self, now_s: float) -> Tuple[np.ndarray, np.ndarray]:
        t = max(0.0, float(now_s) - self.t0_s)
        for (pa, qa), (pb, qb), d in zip(self.points[:-1], self.points[1:], self.durations):
            if t < d:
                s = t / d
                return pa + s * (pb - pa), frames.quat_slerp(qa, qb, s)
            t -= d
        return self.points[-1][0].copy(), self.points[-1][1].copy()

    def error(self, pos, quat) -> Tuple[float, float]:
        e = frames.pose_error(self.goal[0], self.goal[1], pos, quat)
        return float(np.linalg.norm(e[:3])), float(np.linalg.norm(e[3:]))

    def update(self, now_s: float, measured: Optional[Tuple[np.ndarray, np.ndarray]]) -> MotionState:
        """Decide with the newest fresh measured pose (None: none fresh)."""
        if self.state is not MotionState.MOVING:
            return self.state
        c, elapsed = self.config, float(now_s) - self.t0_s
        if measured is not None:
            dist, angle = self.error(*measured)
            if dist <= c.position_tolerance_m and angle <= c.angle_tolerance_rad:
                if self._within_since is None:
                    self._within_since = float(now_s)
                if now_s - self._within_since >= c.settle_s:
                    self.state, self.message = MotionState.ARRIVED, f"at the start pose ({dist * 1000:.1f} mm, {angle:.3f} rad)"
                    return self.state
            else:
                self._within_since = None
            progress = dist + 0.1 * angle  # metres; 0.1 m per rad
            if progress < self._best - c.stall_distance_m:
                self._best, self._best_s = progress, float(now_s)
            if elapsed > self.path_s and now_s - max(self._best_s, self.t0_s + self.path_s) > c.stall_s:
                self.state = MotionState.STALLED
                self.message = (f"unreachable: stopped {dist:.3f} m / {angle:.2f} rad from the start pose, no progress for "
                                f"{c.stall_s:g} s after the path ended (blocked by contact, clipped by the mux's workspace box, "
                                "or out of the controller's reach)")
                return self.state
        if elapsed > c.motion_timeout_s:
            where = "no fresh current_pose" if measured is None else f"{self.error(*measured)[0]:.3f} m from the start pose"
            self.state = MotionState.TIMED_OUT
            self.message = f"timed out after {elapsed:.1f} s (motion_timeout_s): {where}"
        return self.state


def twist_action_towards(measured_pos, measured_quat, target_pos, target_quat, linear_step_m: float,
                         angular_step_rad: float) -> np.ndarray:
    """Normalised twist action [v, w] in the current EE frame that moves one mux step toward the target.

    Inverts ``control.integrate_twist_target``: ``target = p + R (v * linear_step)``,
    ``q_target = q * exp(w * angular_step)``. The linear and angular parts are each scaled
    down together (direction kept) when a component would exceed 1.
    """
    q = frames.quat_normalize(measured_quat)
    R = frames.quat_to_matrix(q)
    v = R.T @ (np.asarray(target_pos, dtype=float) - np.asarray(measured_pos, dtype=float)) / linear_step_m
    w = frames.quat_to_rotvec(frames.quat_multiply(frames.quat_conjugate(q), frames.quat_normalize(target_quat))) / angular_step_rad
    v = v / max(1.0, float(np.max(np.abs(v))))
    w = w / max(1.0, float(np.max(np.abs(w))))
    return np.concatenate([v, w])


class ResetPhase(enum.Enum):
    IDLE = "idle"
    GRIPPER = "gripper"
    MOVING = "moving"
    WAITING_GO = "waiting for the operator's go"
    DONE = "done"
    FAILED = "failed"


@dataclass
class ArmCommand:
    waypoint: Optional[Tuple[np.ndarray, np.ndarray]]  # None: no motion command this step
    action: Optional[np.ndarray]  # policy/action axes (via mux: the twist; via anchor: zeros); None: send none (the mux holds)
    gripper: int  # policy/action buttons[0]


@dataclass
class StepOut:
    phase: ResetPhase
    commands: Dict[str, ArmCommand] = field(default_factory=dict)
    finished: bool = False  # DONE or FAILED reached in this step
    message: str = ""


class ResetProcedure:
    """One reset of every arm: :meth:`start`, then :meth:`step` at the control rate until finished."""

    def __init__(self, config: ResetConfig, rng: Optional[np.random.Generator] = None) -> None:
        self.config = config
        self.starts = arm_starts(config)
        self.rng = rng if rng is not None else np.random.default_rng(None if config.seed < 0 else config.seed)
        self.phase = ResetPhase.IDLE
        self.message = ""
        self.goals: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}
        self.motions: Dict[str, ResetMotion] = {}
        self._phase_since = 0.0
        self._started_s = 0.0
        self._go = False
        self.count = 0

    @property
    def busy(self) -> bool:
        return self.phase in (ResetPhase.GRIPPER, ResetPhase.MOVING, ResetPhase.WAITING_GO)

    def start(self, now_s: float) -> None:
        """Sample new start poses and begin (gripper first)."""
        self.goals = {arm: sample_start_pose(s, self.rng) for arm, s in self.starts.items()}
        self.motions = {}
        self._go = False
        self._started_s = self._phase_since = float(now_s)
        self.count += 1
        self.phase, self.message = ResetPhase.GRIPPER, f"gripper: {self.config.gripper}"

    def operator_go(self) -> bool:
        """The operator's go; counts only while waiting for it (True when it counted)."""
        if self.phase is ResetPhase.WAITING_GO:
            self._go = True
            return True
        return False

    def _fail(self, message: str) -> StepOut:
        self.phase, self.message = ResetPhase.FAILED, message
        return StepOut(self.phase, {}, True, message)

    def step(self, now_s: float, measured: Dict[str, Optional[Tuple[np.ndarray, np.ndarray]]]) -> StepOut:
        """One control step; ``measured`` holds each arm's fresh measured pose (None: stale or none)."""
        c = self.config
        grip = _GRIPPER_ACTIONS[c.gripper]
        if self.phase is ResetPhase.GRIPPER:
            cmds = {a: ArmCommand(None, np.zeros(6), grip) for a in c.arms}
            wait = 0.0 if c.gripper == "keep" else c.gripper_wait_s
            if now_s - self._phase_since < wait:
                return StepOut(self.phase, cmds, message=self.message)
            missing = [a for a in c.arms if measured.get(a) is None]
            if missing:
                if now_s - self._started_s > c.motion_timeout_s:
                    return self._fail(f"no fresh current_pose from {', '.join(missing)} for {now_s - self._started_s:.1f} s "
                                      "(motion_timeout_s): is the robot state adapter running?")
                return StepOut(self.phase, cmds, message=f"waiting for a fresh current_pose from {', '.join(missing)}")
            self.motions = {a: ResetMotion(c, self.starts[a].box, *measured[a], *self.goals[a], now_s) for a in c.arms}
            self.phase, self._phase_since = ResetPhase.MOVING, float(now_s)
        if self.phase is ResetPhase.MOVING:
            cmds, states = {}, {}
            for arm in c.arms:
                motion, m = self.motions[arm], measured.get(arm)
                states[arm] = motion.update(now_s, m)
                wp = motion.waypoint(now_s)
                if m is None:
                    action = None  # no fresh measured pose: send nothing, the mux holds
                elif c.via == "mux":
                    action = (twist_action_towards(*m, *wp, c.linear_step_m, c.angular_step_rad)
                              if states[arm] is MotionState.MOVING else np.zeros(6))
                else:
                    action = np.zeros(6)
                cmds[arm] = ArmCommand(wp if c.via == "anchor" else None, action, GRIPPER_STAY)
            bad = [(a, self.motions[a]) for a, s in states.items() if s in (MotionState.STALLED, MotionState.TIMED_OUT)]
            if bad:
                out = self._fail("; ".join(f"arm {a}: {mo.message}" for a, mo in bad))
                out.commands = {a: ArmCommand(None, np.zeros(6), GRIPPER_STAY) for a in c.arms}  # stop pushing
                return out
            if all(s is MotionState.ARRIVED for s in states.values()):
                arrived = "; ".join(f"{a} {self.motions[a].message}" for a in c.arms)
                if not c.wait_for_operator:
                    self.phase, self.message = ResetPhase.DONE, f"reset {self.count}: {arrived}"
                    return StepOut(self.phase, {}, True, self.message)
                self.phase, self._phase_since = ResetPhase.WAITING_GO, float(now_s)
                self._go = False  # only a go after the arms arrived counts
                self.message = f"{arrived}; waiting for the operator's go"
                return StepOut(self.phase, cmds, message=self.message)
            far = {a: self.motions[a].error(*measured[a]) for a in c.arms if measured.get(a) is not None}
            self.message = "moving to the start pose: " + ", ".join(f"{a} {d:.3f} m/{r:.2f} rad" for a, (d, r) in far.items())
            return StepOut(self.phase, cmds, message=self.message)
        if self.phase is ResetPhase.WAITING_GO:
            if self._go:
                self.phase, self.message = ResetPhase.DONE, f"reset {self.count}: at the start pose, operator said go"
                return StepOut(self.phase, {}, True, self.message)
            if now_s - self._phase_since > c.operator_timeout_s:
                return self._fail(f"no operator go within operator_timeout_s ({c.operator_timeout_s:g} s) after the arms "
                                  f"arrived (publish {c.go_topic or 'the go button'})")
            # hold: the arms are there; the mux holds its target (no policy action is sent)
            return StepOut(self.phase, {}, message=self.message)
        return StepOut(self.phase, {}, message=self.message)


class ButtonEdge:
    """Rising edges of one Joy button (pressed now, not pressed in the previous message)."""

    def __init__(self, index: int) -> None:
        self.index = int(index)
        self._prev = False

    def update(self, buttons: Sequence[int]) -> bool:
        now = len(buttons) > self.index and bool(buttons[self.index])
        rising = now and not self._prev
        self._prev = now
        return rising
