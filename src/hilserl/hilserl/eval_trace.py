"""``hilserl eval RUN trace:=true``: what the policy alone did, step by step.

``RUN/eval_trace.csv`` holds one row per arm and control step of the evaluation's policy
episodes: the actor's episode id, whether the evaluation counted the episode and whether it
succeeded, the arm, the time since the episode's first step, the TCP position in the arm's base
frame (the last ``current_pose`` before the step), the gripper's opening (its finger joints
summed, m), the executed normalised action (axes ``a0..a5``: twist or wrench, EE frame;
``gripper_action`` 0 open, 1 stay, 2 close) and who acted (policy, operator or hold).

``RUN/eval_trace.png`` draws, per arm, the TCP path of every counted episode seen from above
(x, y) and its height over time. The summary (printed, and ``trace`` in eval.json) gives per arm
the share of steps with each action axis at its limit (|a| >= 0.9), the share of gripper
"close" actions, and the range of TCP positions: a policy that drives an arm into the walls of
its workspace, or closes a gripper on nothing, shows there.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from .runlog import pyplot, save_figure

__all__ = ["EvalTrace", "TRACE_COLUMNS", "summarize", "plot_trace", "read_trace"]

AXES = ("a0", "a1", "a2", "a3", "a4", "a5")
TRACE_COLUMNS = ("episode", "counted", "success", "arm", "t_s", "x", "y", "z", "gripper_width_m", *AXES,
                 "gripper_action", "source")
SATURATED = 0.9


class EvalTrace:
    """Collects each arm's executed steps while an episode runs; the actor's end-of-episode report
    (``end_episode``) writes them with the episode's id and outcome."""

    def __init__(self, path: Path, arms: Sequence[str]) -> None:
        self.path = Path(path)
        self.arms = tuple(arms)
        self._pose: Dict[str, tuple] = {}
        self._width: Dict[str, float] = {}
        self._pending: List[list] = []
        self._file = open(self.path, "w", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow(TRACE_COLUMNS)

    def subscribe(self, node) -> None:
        from geometry_msgs.msg import PoseStamped
        from sensor_msgs.msg import JointState, Joy

        from hilserl_interfaces import qos, topics

        for arm in self.arms:
            ns = f"/{arm}/"
            node.create_subscription(PoseStamped, ns + topics.CURRENT_POSE, lambda m, a=arm: self.on_pose(a, m), qos.SENSOR)
            node.create_subscription(JointState, ns + topics.GRIPPER_JOINT_STATES, lambda m, a=arm: self.on_gripper(a, m), qos.SENSOR)
            node.create_subscription(Joy, ns + "mux/executed", lambda m, a=arm: self.on_executed(a, m), qos.EVENTS)

    def on_pose(self, arm: str, msg) -> None:
        p = msg.pose.position
        self._pose[arm] = (p.x, p.y, p.z)

    def on_gripper(self, arm: str, msg) -> None:
        self._width[arm] = float(sum(msg.position))

    def on_executed(self, arm: str, msg) -> None:
        from hilserl_interfaces.actions import from_joy

        a = from_joy(msg)
        pos = self._pose.get(arm, (float("nan"),) * 3)
        self._pending.append([arm, a.stamp_s, *pos, self._width.get(arm, float("nan")), *a.action, a.gripper,
                              a.source.name.lower()])

    def end_episode(self, episode: int, counted: bool, success: bool, steps: int) -> None:
        """The actor's report that ``episode`` ended after ``steps`` steps: each arm's last ``steps``
        reports are the episode's (before them: the mux holding the arm through the reset, and the
        previous episode's last step when it was reported after that episode's end)."""
        rows = self._last_steps(self._pending, steps)
        if rows:
            t0 = min(r[1] for r in rows)
            for r in rows:
                self._writer.writerow([episode, int(counted), int(success), r[0], f"{r[1] - t0:.3f}",
                                       *(f"{v:.4f}" for v in r[2:6]), *(f"{v:.3f}" for v in r[6:12]), *r[12:]])
            self._file.flush()
        self._pending = []

    @staticmethod
    def _last_steps(pending: List[list], steps: int) -> List[list]:
        keep = set()
        for arm in {r[0] for r in pending}:
            keep.update([i for i, r in enumerate(pending) if r[0] == arm][-steps:] if steps > 0 else [])
        return [r for i, r in enumerate(pending) if i in keep]

    def close(self) -> None:
        self._file.close()


def read_trace(path: Path) -> List[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def summarize(rows: Sequence[dict], counted_only: bool = True) -> Dict[str, dict]:
    """Per arm: steps, share of steps per axis at its limit, share of "close" gripper actions,
    and the TCP position range (base frame) over the (counted) episodes' policy steps."""
    out: Dict[str, dict] = {}
    arms = sorted({r["arm"] for r in rows})
    for arm in arms:
        mine = [r for r in rows if r["arm"] == arm and r["source"] == "policy" and (r["counted"] == "1" or not counted_only)]
        if not mine:
            continue
        act = np.array([[float(r[k]) for k in AXES] for r in mine])
        pos = np.array([[float(r[k]) for k in ("x", "y", "z")] for r in mine])
        out[arm] = {
            "steps": len(mine),
            "axis_at_limit": [round(float(v), 3) for v in (np.abs(act) >= SATURATED).mean(axis=0)],
            "mean_abs_action": [round(float(v), 3) for v in np.abs(act).mean(axis=0)],
            "gripper_close_share": round(float(np.mean([r["gripper_action"] == "2" for r in mine])), 3),
            "tcp_min_m": [round(float(v), 3) for v in np.nanmin(pos, axis=0)],
            "tcp_max_m": [round(float(v), 3) for v in np.nanmax(pos, axis=0)],
        }
    return out


def summary_lines(summary: Dict[str, dict]) -> List[str]:
    lines = []
    for arm, s in summary.items():
        limits = " ".join(f"{v:.2f}" for v in s["axis_at_limit"])
        lines.append(f"{arm}: {s['steps']} policy steps; share at |a| >= {SATURATED} per axis [{limits}]; "
                     f"gripper close {s['gripper_close_share']:.2f}; TCP x {s['tcp_min_m'][0]:.2f}..{s['tcp_max_m'][0]:.2f}, "
                     f"y {s['tcp_min_m'][1]:.2f}..{s['tcp_max_m'][1]:.2f}, z {s['tcp_min_m'][2]:.2f}..{s['tcp_max_m'][2]:.2f} m")
    return lines


def plot_trace(rows: Sequence[dict], path: Path, title: str = "") -> Optional[Path]:
    """``eval_trace.png``: per arm (a column each), the counted episodes' TCP paths from above and
    their height over time; a circle marks each start, a cross each end (green: success, red: failure)."""
    arms = sorted({r["arm"] for r in rows if r["counted"] == "1"})
    if not arms:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(2, len(arms), figsize=(5.5 * len(arms), 9), squeeze=False)
    for col, arm in enumerate(arms):
        episodes: Dict[str, List[dict]] = {}
        for r in rows:
            if r["arm"] == arm and r["counted"] == "1":
                episodes.setdefault(r["episode"], []).append(r)
        top, height = axes[0][col], axes[1][col]
        for ep, rs in episodes.items():
            xyz = np.array([[float(r[k]) for k in ("x", "y", "z")] for r in rs])
            t = np.array([float(r["t_s"]) for r in rs])
            colour = "tab:green" if rs[0]["success"] == "1" else "tab:red"
            top.plot(xyz[:, 0], xyz[:, 1], color=colour, alpha=0.6, lw=1)
            top.plot(xyz[0, 0], xyz[0, 1], "o", color=colour, ms=4)
            top.plot(xyz[-1, 0], xyz[-1, 1], "x", color=colour, ms=6)
            height.plot(t, xyz[:, 2], color=colour, alpha=0.6, lw=1)
        top.set_title(f"{arm}: TCP from above ({len(episodes)} episodes; green success, red failure)")
        top.set_xlabel("x (m, base frame)")
        top.set_ylabel("y (m)")
        top.set_aspect("equal", adjustable="datalim")
        height.set_xlabel("time in episode (s)")
        height.set_ylabel("z (m, base frame)")
        for ax in (top, height):
            ax.grid(alpha=0.3)
    return save_figure(fig, path, title, dpi=80)
