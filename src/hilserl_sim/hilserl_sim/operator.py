"""A scripted stand-in for a person with a SpaceMouse (no ROS).

Per arm it outputs what the SpaceMouse driver publishes after scaling: a
normalized 6-D twist in [-1, 1] (linear then angular, in the current
end-effector frame, which is how the mux interprets ``spacenav/twist``) and
buttons: ``button[0]`` toggles that arm's gripper (a press = one True step),
``button[1]`` is held while the operator is intervening.

Two uses (HIL-SERL Sec. "Human interventions"):
- ``demonstrate``: full control, solving the task from privileged simulator
  state (object poses, contacts), as a person does for the 20-30 demos;
- ``act``: watch a policy; when its actions disagree with what the operator
  would do for ``patience_steps`` steps, take over with probability
  ``intervention_probability`` (high early, low as the policy's success rate
  rises, like a person gaining trust), correct for a few steps and hand back
  (or, with ``carry_through``, carry the task to its end). With ``stall_progress``
  a policy that holds back (stops, or does not press the gripper) strays too;
  with ``reconsider_steps`` it decides again while a policy it let go on keeps straying;
  with ``hands_off_prob`` it lets the policy try some whole episodes alone and trusts by those.

Human imperfection: ``skill`` in (0, 1] scales the operator's gain, ``noise_std``
adds Gaussian noise to the twist, ``reaction_delay_steps`` delays what it outputs.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Deque, Dict, Mapping, Optional, Tuple

import numpy as np

from hilserl_core.formats.config import param

from .env import ArmAction, TaskEnv
from .robot import ArmState
from .tasks import down_quat


@dataclass
class OperatorConfig:
    skill: float = param(1.0, "operator skill: scales the corrective gain (1 = expert)", low=0.05, high=1.0)
    noise_std: float = param(0.05, "std of Gaussian noise added to the normalized twist", low=0.0, high=1.0)
    reaction_delay_steps: int = param(1, "control steps between seeing the state and acting on it", low=0, high=10)
    intervention_prob_max: float = param(0.9, "probability of taking over a straying policy when it never succeeds", low=0.0, high=1.0)
    intervention_prob_min: float = param(0.05, "probability of taking over a straying policy when it always succeeds", low=0.0, high=1.0)
    deviation_threshold: float = param(0.5, "RMS disagreement (normalized twist units) between policy and operator that counts as straying", low=0.0, high=2.0)
    stall_progress: float = param(0.0, "a policy that makes less than this fraction of the operator's own motion along it, or "
                                  "does not press the gripper when the operator would, also counts as straying (a person steps "
                                  "in when the robot stops as well as when it goes the wrong way); 0: off", low=0.0, high=1.0)
    reconsider_steps: int = param(0, "after deciding not to step in, decide again once the policy has strayed this many more "
                                  "steps in a row (a person who let the robot try steps in when it keeps failing); 0: one "
                                  "decision per straying stretch", low=0, high=1000)
    judge_window: int = param(1, "judge the policy by the mean of its last this many proposed motions against the mean of "
                              "the operator's own over the same steps (a person sees where the robot goes, not each "
                              "jittery command; exploration noise averages out); 1: every step on its own", low=1, high=50)
    patience_steps: int = param(3, "consecutive straying steps before the operator decides whether to intervene", low=1, high=50)
    correction_steps_min: int = param(5, "shortest intervention (control steps)", low=1, high=200)
    correction_steps_max: int = param(15, "longest intervention (control steps)", low=1, high=200)
    success_window: int = param(20, "episodes in the running success rate that sets the intervention probability", low=1, high=1000)
    carry_through: bool = param(False, "once it takes over, the operator keeps control until the episode ends (it carries the "
                                "task to success, as a teaching person does) instead of handing back after a short correction; "
                                "its trust then grows only with episodes the policy finished alone")
    hand_back_at_phase: bool = param(False, "with carry_through: hand control back when the operator's own plan enters "
                                     "the task's next phase (handover: the bar lifted, presented, let go) instead of at "
                                     "the episode's end, so the policy tries every phase from where a person left it")
    hands_off_prob: float = param(0.0, "probability that the operator lets the policy try a whole episode without stepping in "
                                  "(a person checking what the robot can do alone); when above 0, its trust (the success rate "
                                  "that sets the intervention probability) is the policy's success rate in those episodes only",
                                  low=0.0, high=1.0)
    seed: int = param(0, "random seed of the operator's noise and decisions", low=0)


@dataclass
class OperatorOutput:
    """One SpaceMouse sample per arm: twist in [-1, 1]^6 and buttons [gripper toggle, intervening]."""

    twist: Dict[str, np.ndarray]
    buttons: Dict[str, Tuple[int, int]]
    intervening: bool


# ---------------------------------------------------------------------------- geometry helpers


def _quat_to_R(q) -> np.ndarray:
    x, y, z, w = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _rotvec_between(R_target: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Rotation vector (base axes) of R_target R^T."""
    Rd = R_target @ R.T
    c = np.clip((np.trace(Rd) - 1) / 2, -1.0, 1.0)
    ang = math.acos(c)
    v = np.array([Rd[2, 1] - Rd[1, 2], Rd[0, 2] - Rd[2, 0], Rd[1, 0] - Rd[0, 1]])
    s = np.linalg.norm(v)
    if s < 1e-9:
        if ang < 1e-6:
            return np.zeros(3)
        # 180 degrees: axis from the symmetric part.
        w, V = np.linalg.eigh((Rd + np.eye(3)) / 2)
        return V[:, np.argmax(w)] * ang
    return v / s * ang


def yaw_of(R: np.ndarray) -> float:
    """Yaw of a frame's x axis about base z."""
    return math.atan2(R[1, 0], R[0, 0])


def wrap(a: float, period: float = 2 * math.pi) -> float:
    return (a + period / 2) % period - period / 2


def nearest_symmetric_yaw(target: float, current: float, period: float) -> float:
    """The yaw target + k*period closest to ``current`` (object symmetry)."""
    return current + wrap(target - current, period)


def twist_towards(state: ArmState, target_pos, target_R: Optional[np.ndarray], linear_step_m: float,
                  angular_step_rad: float, gain: float = 0.6, max_lin: float = 1.0, deadband_m: float = 0.0) -> np.ndarray:
    """Normalized EE-frame twist that moves the TCP a fraction ``gain`` of the way to the target per step."""
    R = _quat_to_R(state.quat)
    e_pos = np.asarray(target_pos) - state.position
    e_rot = _rotvec_between(target_R, R) if target_R is not None else np.zeros(3)
    if np.linalg.norm(e_pos) < deadband_m and np.linalg.norm(e_rot) < 5 * deadband_m:
        return np.zeros(6)  # close enough: a person lets go of the SpaceMouse
    v = gain * e_pos / linear_step_m
    n = np.linalg.norm(v)
    if n > max_lin:
        v *= max_lin / n
    w = np.zeros(3)
    if target_R is not None:
        w = gain * e_rot / angular_step_rad
        n = np.abs(w).max()
        if n > 1.0:
            w /= n
    tw = np.concatenate((R.T @ v, R.T @ w))
    m = np.abs(tw[:3]).max()
    if m > 1.0:
        tw[:3] /= m
    return tw


# ---------------------------------------------------------------------------- experts (privileged)


@dataclass
class _Mem:
    since_toggle: int = 100
    phase: str = ""
    counter: int = 0
    best: float = 1e9
    extra: dict = field(default_factory=dict)


class _Expert:
    """Per-task scripted solution: returns a desired twist and gripper state per arm."""

    def __init__(self, env: TaskEnv, gain: float):
        self.env, self.gain = env, gain
        self.mem: Dict[str, _Mem] = {a: _Mem() for a in env.arm_names}

    def phases(self) -> Tuple[str, ...]:
        """Where the plan is in the task: each arm's phase (a change means a new phase began)."""
        return tuple(self.mem[a].phase for a in self.env.arm_names)

    def move(self, state, pos, R, max_lin=1.0, deadband_m=0.0):
        m = self.env.mux
        return twist_towards(state, pos, R, m.linear_step_m, m.angular_step_rad, self.gain, max_lin, deadband_m)

    def __call__(self, obs) -> Dict[str, Tuple[np.ndarray, bool]]:
        raise NotImplementedError


def _grasp_and_lift(ex: _Expert, arm: str, st: ArmState, obj_pos, obj_yaw: float, yaw_period: float, grasped: bool,
                    closed: bool, lift_pos, grasp_z: float, hover_dz: float = 0.07, xy_tol: float = 0.008,
                    yaw_tol: float = 0.08) -> Tuple[np.ndarray, bool]:
    """Shared pick logic: hover, align yaw, descend, close, lift. Returns (twist, want_closed)."""
    mem = ex.mem[arm]
    R = _quat_to_R(st.quat)
    cur_yaw = yaw_of(R)
    yaw_t = nearest_symmetric_yaw(obj_yaw, cur_yaw, yaw_period)
    R_t = _quat_to_R(down_quat(yaw_t))
    xy_err = np.linalg.norm(st.position[:2] - obj_pos[:2])
    hover = np.array([obj_pos[0], obj_pos[1], grasp_z + hover_dz])
    if closed:
        if grasped:
            return ex.move(st, lift_pos, R_t), True
        if mem.since_toggle < 4:
            return np.zeros(6), True
        return ex.move(st, st.position + [0, 0, 0.05], R_t), False  # missed: reopen
    if mem.since_toggle < 3:
        return np.zeros(6), False
    if xy_err > 0.03 and st.position[2] < grasp_z + 0.04:
        return ex.move(st, [st.position[0], st.position[1], hover[2]], R_t), False
    if xy_err > xy_tol or abs(wrap(cur_yaw - yaw_t)) > yaw_tol:
        tgt = hover if xy_err > 0.015 else np.array([obj_pos[0], obj_pos[1], st.position[2]])
        return ex.move(st, tgt, R_t), False
    grasp = np.array([obj_pos[0], obj_pos[1], grasp_z])
    if st.position[2] - grasp_z < 0.006:
        return np.zeros(6), True
    return ex.move(st, grasp, R_t), False


class PickCubeExpert(_Expert):
    def __call__(self, obs):
        env = self.env
        arm = env.arm_names[0]
        ps = env.task.privileged_state()
        st = obs["state"][arm]
        c = env.task.config
        cube_R = _quat_to_R(ps["cube_quat"])
        lift = np.array([ps["cube_pos"][0], ps["cube_pos"][1], c.cube_half_size_m + c.lift_height_m + 0.05])
        tw, closed = _grasp_and_lift(self, arm, st, ps["cube_pos"], yaw_of(cube_R), math.pi / 2, ps["grasped"],
                                     env.gripper_closed[arm], lift, grasp_z=c.cube_half_size_m)
        return {arm: (tw, closed)}


class PegInsertionExpert(_Expert):
    def __call__(self, obs):
        env = self.env
        arm = env.arm_names[0]
        ps = env.task.privileged_state()
        st = obs["state"][arm]
        c = env.task.config
        mem = self.mem[arm]
        R = _quat_to_R(st.quat)
        peg_R = _quat_to_R(ps["peg_quat"])
        # Align the peg's yaw with the hole's (square: 90 degree symmetry), rotating the EE by the same amount.
        peg_yaw = yaw_of(peg_R)
        dyaw = wrap(nearest_symmetric_yaw(0.0, peg_yaw, math.pi / 2) - peg_yaw)
        R_t = _quat_to_R(down_quat(yaw_of(R) + dyaw))
        tip, hole = ps["peg_tip"], ps["hole_pos"]
        top = ps["hole_top_z"]
        xy_err = np.linalg.norm(tip[:2] - hole[:2])
        if mem.phase == "retreat":
            mem.counter -= 1
            if mem.counter <= 0:
                mem.phase = ""
            tgt_tip = np.array([hole[0], hole[1], top + 0.03])
        elif tip[2] > top + 0.004 and (xy_err > 0.0015 or abs(dyaw) > 0.03):
            tgt_tip = np.array([hole[0], hole[1], top + 0.012])
            mem.best = 1e9
        elif tip[2] <= top + 0.004 and xy_err > c.clearance_m + 0.002:
            tgt_tip = np.array([tip[0], tip[1], top + 0.02])  # caught on the rim: back up
        else:
            tgt_tip = np.array([hole[0], hole[1], -0.01])  # push in; reference limiting bounds the force
            if tip[2] < mem.best - 0.002:
                mem.best, mem.counter = tip[2], 0
            else:
                mem.counter += 1
                if mem.counter > 15:  # jammed: lift, re-align, try again
                    mem.phase, mem.counter, mem.best = "retreat", 5, 1e9
        tw = self.move(st, st.position + (tgt_tip - tip), R_t, max_lin=0.5)
        return {arm: (tw, True)}


class HandoverExpert(_Expert):
    """Giver picks the bar near its end, presents it mid-table; receiver grasps the other end; giver lets go."""

    grasp_offset_m = 0.06

    def __call__(self, obs):
        env = self.env
        task = env.task
        ps = task.privileged_state()
        g, r = ps["giver"], ps["receiver"]
        out = {}
        # ---- giver
        st = obs["state"][g]
        bp, bq = ps[g]["bar_pos"], ps[g]["bar_quat"]
        bar_R = _quat_to_R(bq)
        axis = bar_R[:, 0] * np.sign(bar_R[0, 0] or 1.0)  # points away from the giver's base
        grasp_pt = bp - self.grasp_offset_m * axis
        half_h = ps["bar_half_size"][2]
        mem = self.mem[g]
        handover_center = np.array([0.5, 0.0, 0.2])  # giver base frame
        if mem.phase == "released":
            out[g] = (self.move(st, mem.extra["retreat"], None), False)
        elif ps[r]["holds"] and ps[g]["holds"] and env.gripper_closed[g] and self.mem[r].since_toggle > 3:
            mem.phase = "released"
            mem.extra["retreat"] = st.position + np.array([-0.12, 0.0, 0.05])
            out[g] = (np.zeros(6), False)
        elif ps[g]["holds"] and env.gripper_closed[g] and bp[2] > 0.05 or (mem.phase == "carry" and ps[g]["holds"]):
            mem.phase = "carry"
            # Bring the bar centre to the hand-over point, bar axis along base x.
            bar_yaw = yaw_of(bar_R)
            ee_R = _quat_to_R(st.quat)
            dyaw = wrap(nearest_symmetric_yaw(0.0, bar_yaw, math.pi) - bar_yaw)
            R_t = _quat_to_R(down_quat(yaw_of(ee_R) + dyaw))
            out[g] = (self.move(st, st.position + (handover_center - bp), R_t, max_lin=0.5, deadband_m=0.006), True)
        else:
            mem.phase = ""
            lift = np.array([grasp_pt[0], grasp_pt[1], 0.12])
            out[g] = _grasp_and_lift(self, g, st, grasp_pt, yaw_of(bar_R), math.pi, ps[g]["holds"],
                                     env.gripper_closed[g], lift, grasp_z=half_h)
        # ---- receiver
        st = obs["state"][r]
        bp_r, bq_r = ps[r]["bar_pos"], ps[r]["bar_quat"]
        bar_R_r = _quat_to_R(bq_r)
        axis_r = bar_R_r[:, 0] * np.sign(bar_R_r[0, 0] or 1.0)
        grasp_r = bp_r - self.grasp_offset_m * axis_r
        presented = self.mem[g].phase == "carry" and np.linalg.norm(bp - handover_center) < 0.02
        memr = self.mem[r]
        standby = np.array([0.3, 0.0, 0.3])
        if ps[r]["holds"] and env.gripper_closed[r]:
            lift = st.position + np.array([0.0, 0.0, 0.05]) if self.mem[g].phase == "released" else st.position
            out[r] = (self.move(st, lift, None), True)
        elif presented or memr.phase == "approach" or env.gripper_closed[r]:
            memr.phase = "approach"
            out[r] = _grasp_and_lift(self, r, st, grasp_r, yaw_of(bar_R_r), math.pi, ps[r]["holds"],
                                     env.gripper_closed[r], st.position, grasp_z=bp_r[2], hover_dz=0.06,
                                     xy_tol=0.012, yaw_tol=0.12)
            if not ps[g]["holds"] and not ps[r]["holds"]:
                memr.phase = ""
        else:
            out[r] = (self.move(st, standby, _quat_to_R(down_quat(0.0))), False)
        return out


class PanFlipExpert(_Expert):
    """Wrench actions: wait for the object to settle, toss (upward force + pitch torque), then catch.

    The catch is closed loop like a person's: push the pan under the object and
    level it. An object that did not turn over but is still in the pan is tossed again.
    """

    # Toss: (steps, normalized EE-frame wrench). EE z points down, so "up" is -z.
    toss = ((1, (0.0, 0.0, -0.8, 0.0, 1.0, 0.0)), (1, (0.0, 0.0, 0.8, 0.0, -0.3, 0.0)))
    catch_gains = (2.0, 0.2, 0.3, 0.05)  # lateral kp [1/m], lateral kd [s/m], level kp [1/rad], level kd [s/rad]

    def __init__(self, env, gain):
        super().__init__(env, gain)
        self.toss_steps = [np.array(w) for n, w in self.toss for _ in range(n)]

    def __call__(self, obs):
        env = self.env
        arm = env.arm_names[0]
        st = obs["state"][arm]
        ps = env.task.privileged_state()
        mem = self.mem[arm]
        R = _quat_to_R(st.quat)
        R0 = _quat_to_R(env.anchor[arm][1])
        v_ee, w_ee = R.T @ st.twist[:3], R.T @ st.twist[3:]
        kp, kd, kr, kw = self.catch_gains
        catch = np.zeros(6)
        catch[:2] = kp * ps["cake_rel"][:2] - kd * v_ee[:2]
        catch[3:5] = (kr * (R.T @ _rotvec_between(R0, R)) - kw * w_ee)[:2]  # level the pan (not its yaw)
        catch = np.clip(catch, -1.0, 1.0)
        if mem.phase == "nudge":  # object leaning on the rim: jerk the pan under it, then back
            mem.counter += 1
            d = mem.extra["nudge"]
            if mem.counter <= 2:
                return {arm: (np.concatenate((d if mem.counter == 1 else -d, [0.0, 0.0, 0.0, 0.0])), True)}
            mem.phase, mem.counter = "catch", 0
        if mem.phase == "toss":
            if mem.counter < len(self.toss_steps):
                mem.counter += 1
                return {arm: (self.toss_steps[mem.counter - 1], True)}
            mem.phase, mem.counter = "catch", 0
        if mem.phase == "catch":
            mem.counter += 1
            settled = ps["cake_speed"] < 0.05 and abs(ps["cake_rel"][2]) < 0.03
            if (mem.counter > 6 and settled) or mem.counter > 12:  # then let go and let it settle
                mem.phase, mem.counter = "", 0
            return {arm: (catch, True)}
        # Settle: level the pan, wait for the object to rest, then toss if it is still the right way up.
        in_pan = ps["cake_rel"][2] > -0.005
        if in_pan and ps["cake_speed"] < 0.03 and ps["cake_up"] > -0.9 and np.linalg.norm(st.twist[3:]) < 0.2:
            mem.counter += 1
            if mem.counter >= 2:
                mem.phase, mem.counter = "toss", 0
                rel = ps["cake_rel"][:2]
                if abs(ps["cake_up"]) < 0.9 and np.linalg.norm(rel) > 1e-3:
                    mem.phase = "nudge"
                    mem.extra["nudge"] = 0.8 * rel / np.linalg.norm(rel)
        else:
            mem.counter = 0
        return {arm: (np.zeros(6), True)}


EXPERTS: Dict[str, Callable[[TaskEnv, float], _Expert]] = {
    "pick_cube": PickCubeExpert,
    "peg_insertion": PegInsertionExpert,
    "handover": HandoverExpert,
    "pan_flip": PanFlipExpert,
}


def register_expert(task_name: str, factory) -> None:
    EXPERTS[task_name] = factory


# ---------------------------------------------------------------------------- the operator


class ScriptedOperator:
    def __init__(self, env: TaskEnv, config: Optional[OperatorConfig] = None):
        self.env = env
        self.config = config or OperatorConfig()
        name = env.task.name
        if name not in EXPERTS:
            raise KeyError(f"no scripted operator for task {name!r}; available: {', '.join(sorted(EXPERTS))}")
        self._factory = EXPERTS[name]
        self.rng = np.random.default_rng(self.config.seed)
        self.recent_success: Deque[float] = deque(maxlen=self.config.success_window)
        self.reset()

    # ------------------------------------------------------------------ bookkeeping
    def reset(self, seed: Optional[int] = None) -> None:
        """New episode; with ``seed`` the operator's noise and decisions are reproducible per episode."""
        if seed is not None:
            self.rng = np.random.default_rng([self.config.seed, seed])
        self.expert = self._factory(self.env, 0.6 * self.config.skill)
        self._queue: Deque[Dict[str, Tuple[np.ndarray, bool]]] = deque()
        self.intervening = False
        self._straying = 0
        self._seen: Deque[Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]] = deque(maxlen=self.config.judge_window)
        self._decide_at = self.config.patience_steps  # straying steps in a row at which the operator next decides
        self._left = 0
        self._phases_at_takeover: Tuple[str, ...] = ()
        c = self.config
        self.hands_off = c.hands_off_prob > 0 and bool(self.rng.random() < c.hands_off_prob)
        self.interventions = 0
        self.intervention_steps = 0

    @property
    def success_rate(self) -> float:
        return float(np.mean(self.recent_success)) if self.recent_success else 0.0

    @property
    def intervention_probability(self) -> float:
        c = self.config
        return c.intervention_prob_min + (c.intervention_prob_max - c.intervention_prob_min) * (1.0 - self.success_rate)

    def record_episode(self, success: bool) -> None:
        """Tell the operator how the policy's episode ended (it trusts a policy that succeeds; with
        ``carry_through``, only one that succeeded without its help; with ``hands_off_prob``, only
        the episodes it let the policy try alone count, successes and failures)."""
        if self.config.hands_off_prob > 0 and not self.hands_off:
            return
        alone = not (self.config.carry_through and self.intervention_steps > 0)
        self.recent_success.append(1.0 if success and alone else 0.0)

    # ------------------------------------------------------------------ acting
    def _expert_now(self, obs) -> Dict[str, Tuple[np.ndarray, bool]]:
        # One call per control step: the operator's sense of time since its last press.
        for mem in self.expert.mem.values():
            mem.since_toggle += 1
        plan = self.expert(obs)
        # Remember the gripper state the decision was made against (a delayed press must not undo a newer one).
        plan = {a: (tw, closed, self.env.gripper_closed[a]) for a, (tw, closed) in plan.items()}
        self._queue.append(plan)
        while len(self._queue) > self.config.reaction_delay_steps + 1:
            self._queue.popleft()
        return self._queue[0]  # what the operator decided reaction_delay_steps ago

    def _to_output(self, plan, intervening: bool) -> OperatorOutput:
        noise = self.config.noise_std + 0.3 * (1.0 - self.config.skill)
        twists, buttons = {}, {}
        for arm, (tw, want_closed, closed_then) in plan.items():
            t = np.clip(tw + self.rng.normal(0.0, noise, 6) * (np.abs(tw).max() > 1e-9), -1.0, 1.0)
            twists[arm] = t
            toggle = int(want_closed != closed_then and closed_then == self.env.gripper_closed[arm])
            if toggle:
                self.expert.mem[arm].since_toggle = 0
            buttons[arm] = (toggle, int(intervening))
        return OperatorOutput(twists, buttons, intervening)

    def to_actions(self, out: OperatorOutput) -> Dict[str, ArmAction]:
        """Apply the SpaceMouse semantics: a toggle press flips the arm's gripper (no side effects)."""
        acts = {}
        for arm, tw in out.twist.items():
            g = 0.0
            if out.buttons[arm][0]:
                g = 1.0 if self.env.gripper_closed[arm] else -1.0
            acts[arm] = ArmAction(tw, g)
        return acts

    def demonstrate(self, obs) -> OperatorOutput:
        """Full control (a teleoperated demonstration)."""
        return self._to_output(self._expert_now(obs), True)

    def _strays(self, plan, policy: Mapping[str, ArmAction]) -> bool:
        """Whether the policy's proposed actions disagree with ``plan`` (the operator's own): the RMS
        twist difference (plus 1 for a gripper command against the operator's) above
        ``deviation_threshold`` for some arm, or (``stall_progress``) an arm that holds back; with
        ``judge_window`` motions are the means over that many steps, and none strays before it has
        been watched that long."""
        c = self.config
        self._seen.append(({a: np.asarray(policy[a].twist, dtype=float) for a in plan}, {a: v[0] for a, v in plan.items()}))
        if len(self._seen) < c.judge_window:
            return False
        for arm, (tw, want_closed, closed_then) in plan.items():
            # over the judged window: the policy's mean motion against the operator's (its gripper: the latest press)
            p = ArmAction(np.mean([seen[0][arm] for seen in self._seen], axis=0), policy[arm].gripper)
            tw = np.mean([seen[1][arm] for seen in self._seen], axis=0)
            d = float(np.sqrt(np.mean((np.asarray(p.twist) - tw) ** 2)))
            if (p.gripper < -0.5 and not want_closed) or (p.gripper > 0.5 and want_closed):
                d += 1.0
            if d > c.deviation_threshold or (c.stall_progress > 0 and stalls(p, tw, want_closed, closed_then, c.stall_progress)):
                return True
        return False

    def act(self, obs, policy: Mapping[str, ArmAction]) -> Tuple[Dict[str, ArmAction], bool, OperatorOutput]:
        """Watch ``policy``'s proposed actions; returns (executed actions, intervened?, SpaceMouse sample)."""
        c = self.config
        plan = self._expert_now(obs)
        if self.intervening:
            self._left -= 0 if c.carry_through else 1
            if c.carry_through and c.hand_back_at_phase and self.expert.phases() != self._phases_at_takeover:
                self._left = 0
            if self._left <= 0:
                self.intervening = False
                self._straying, self._decide_at = 0, c.patience_steps
                self._seen.clear()  # the policy is judged on what it does from here
        elif not self.hands_off:  # (in a hands-off episode it only watches)
            if self._strays(plan, policy):
                self._straying += 1
            else:
                self._straying, self._decide_at = 0, c.patience_steps
            if self._straying >= self._decide_at:  # a person choosing whether to step in
                self._decide_at = self._straying + c.reconsider_steps if c.reconsider_steps else math.inf
                if self.rng.random() < self.intervention_probability:
                    self.intervening = True
                    self.interventions += 1
                    self._phases_at_takeover = self.expert.phases()
                    self._left = int(self.rng.integers(c.correction_steps_min, c.correction_steps_max + 1))
        if self.intervening:
            self.intervention_steps += 1
            out = self._to_output(plan, True)
            return self.to_actions(out), True, out
        out = OperatorOutput({a: np.zeros(6) for a in plan}, {a: (0, 0) for a in plan}, False)
        return dict(policy), False, out


# The operator's own motion below this norm (normalized twist) is a fine adjustment, not a move the
# policy could be seen to hold back from.
STALL_MIN_TWIST = 0.3


def stalls(policy: ArmAction, twist: np.ndarray, want_closed: bool, closed_then: bool, progress: float) -> bool:
    """Whether ``policy`` holds back where the operator would act: it would press the gripper
    (``want_closed`` differs from the state ``closed_then``) and the policy does not command that
    change, or it moves (``twist`` at least ``STALL_MIN_TWIST``) and the policy makes less than
    ``progress`` of that motion along it. (-1 closes the gripper, +1 opens it.)"""
    if want_closed != closed_then:
        return not (policy.gripper < -0.5 if want_closed else policy.gripper > 0.5)
    speed = float(np.linalg.norm(twist))
    if speed < STALL_MIN_TWIST:
        return False
    return float(np.dot(np.asarray(policy.twist, dtype=float), twist)) / speed ** 2 < progress


def run_demo_episode(env: TaskEnv, operator: ScriptedOperator, seed: int, render: bool = False) -> Dict[str, float]:
    """One full scripted demonstration; returns success, steps and sim time."""
    obs = env.reset(seed=seed) if render else _reset_no_render(env, seed)
    operator.reset(seed=seed)
    steps = 0
    while True:
        out = operator.demonstrate(obs)
        obs, _, terminated, truncated, info = env.step(operator.to_actions(out), render=render)
        steps += 1
        if terminated or truncated:
            return {"success": bool(terminated), "steps": steps}


def _reset_no_render(env: TaskEnv, seed: int):
    cams = env.cameras
    env.cameras = ()
    try:
        return env.reset(seed=seed)
    finally:
        env.cameras = cams
