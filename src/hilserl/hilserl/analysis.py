"""A training run's learner record and the paper's analysis plots, without ROS.

Beside ``episodes.csv`` (``hilserl.runlog``) a run directory gets, appended as the run goes (a
resumed run appends to them, as to the episode table):

- ``learner.csv``: at each episode's end, the learner's figures from its diagnostics
  (:data:`LEARNER_COLUMNS`: updates, updates/s, losses, temperature, and the training analysis the
  learner takes every ``learner.analysis_period_updates`` updates: Q variance around the policy's
  action, Eq. 1, and the policy's mean and std, with the updates it was taken at); empty cells
  where the learner had no such figure (before training, another algorithm).
- ``ee_positions.csv``: the end-effector position of every arm (``arm, env_steps, x, y, z``, metres
  in the arm's base frame) at each control step the mux executed; ``env_steps`` is the run's count
  at the start of that step's episode.
- ``tensorboard/``: TensorBoard scalars against env steps (:class:`Scalars`): per episode
  ``episode/*`` and the rolling ``rolling/*`` figures of ``RunLog.figures``; the learner's
  ``learner/*`` and ``analysis/*``. Needs the ``tensorboard`` package (requirements.txt); without it
  the CSV files are all there is.

Plots: :func:`plot_analysis` draws ``analysis.png`` (Q variance around the policy's action; the
policy's mean |mu| and std, against env steps), :func:`plot_visitation` ``visitation.png`` (per arm,
the end-effector's xy and xz visitation in the first and in the last 20% of the env steps: the
paper's state-visitation heatmaps, early vs late).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .runlog import EpisodeRow, RunLog, append_csv_row, pyplot, save_figure

__all__ = ["LEARNER_COLUMNS", "ANALYSIS_METRICS", "LearnerLog", "PoseLog", "Scalars", "plot_analysis", "plot_visitation"]

# the learner's diagnostics values kept per episode (agent/metric names as the learner publishes them)
LEARNER_METRICS = ("rlpd/critic_loss", "rlpd/actor_loss", "rlpd/temperature", "rlpd/entropy", "rlpd/q_mean",
                   "rlpd/bc_loss", "grasp/grasp_critic_loss", "grasp/grasp_bc_loss")
ANALYSIS_METRICS = ("rlpd/q_action_variance", "rlpd/policy_mean_abs", "rlpd/policy_std")
LEARNER_COLUMNS = ("env_steps", "wall_s", "updates", "updates_per_s", "transitions_received", "weights_version",
                   *LEARNER_METRICS, "analysis_updates", *ANALYSIS_METRICS)
_COUNTS = {"env_steps", "updates", "transitions_received", "weights_version", "analysis_updates"}
POSE_COLUMNS = ("arm", "env_steps", "x", "y", "z")
Row = Dict[str, Optional[float]]


def _number(text: object) -> Optional[float]:
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


class LearnerLog:
    """``learner.csv`` of a run directory: read what is there, append a row per episode."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / "learner.csv"
        self.rows: List[Row] = []
        if self.path.is_file():
            with open(self.path, newline="") as f:
                self.rows = [{k: _number(rec.get(k)) for k in LEARNER_COLUMNS} for rec in csv.DictReader(f)]
        self._last: Optional[Row] = None  # this session's last row: updates/s is not taken across a restart

    def add(self, env_steps: int, wall_s: float, learner: Mapping[str, object]) -> Row:
        """A row from the learner's diagnostics values ``learner`` (strings as published) at
        ``env_steps`` and ``wall_s`` of the run; updates/s since this session's previous row."""
        row: Row = {k: _number(learner.get(k)) for k in LEARNER_COLUMNS}
        row["env_steps"], row["wall_s"] = float(env_steps), round(float(wall_s), 2)
        last = self._last
        if last is not None and row["updates"] is not None and last["updates"] is not None:
            dt, du = row["wall_s"] - last["wall_s"], row["updates"] - last["updates"]
            row["updates_per_s"] = round(du / dt, 3) if dt > 0 and du >= 0 else None
        append_csv_row(self.path, LEARNER_COLUMNS,
                       {k: "" if v is None else int(v) if k in _COUNTS else v for k, v in row.items()})
        self.rows.append(row)
        self._last = row
        return row


def analysis_points(rows: Sequence[Row]) -> List[Row]:
    """Each training analysis once (the first row that carries it), in order."""
    seen, out = set(), []
    for r in rows:
        taken = r.get("analysis_updates")
        if taken and taken not in seen and any(r.get(k) is not None for k in ANALYSIS_METRICS):
            seen.add(taken)
            out.append(r)
    return out


class PoseLog:
    """``ee_positions.csv``: end-effector positions per arm, appended as they come."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / "ee_positions.csv"
        self._file = None

    def add(self, samples: Sequence[Tuple[str, int, Sequence[float]]]) -> None:
        """``(arm, env_steps, (x, y, z))`` samples, written at once (millimetre precision)."""
        if not samples:
            return
        if self._file is None:
            new = not self.path.is_file()
            self._file = open(self.path, "a", newline="")
            if new:
                self._file.write(",".join(POSE_COLUMNS) + "\n")
        self._file.write("".join(f"{arm},{steps},{p[0]:.4f},{p[1]:.4f},{p[2]:.4f}\n" for arm, steps, p in samples))
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    @staticmethod
    def read(path: Path) -> Dict[str, np.ndarray]:
        """Per arm an array ``[N, 4]``: env_steps, x, y, z (nothing for a missing file)."""
        out: Dict[str, List[List[float]]] = {}
        if Path(path).is_file():
            with open(path, newline="") as f:
                for rec in csv.DictReader(f):
                    try:
                        out.setdefault(rec["arm"], []).append([float(rec[k]) for k in POSE_COLUMNS[1:]])
                    except (KeyError, TypeError, ValueError):  # a line cut short by a crash
                        continue
        return {arm: np.asarray(v, dtype=np.float64) for arm, v in out.items()}


class Scalars:
    """TensorBoard scalars in ``RUN/tensorboard`` against env steps; a resumed run adds an event
    file there, TensorBoard reads them as one run. ``available`` is False (and nothing is written)
    when the ``tensorboard`` package is missing: ``why`` says so."""

    def __init__(self, run_dir: Path, analysis_updates: Optional[float] = None) -> None:
        """``analysis_updates``: the last analysis written before (a resumed run's), not written again."""
        self.directory = Path(run_dir) / "tensorboard"
        self.why = ""
        self._analysis_seen = analysis_updates
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:  # tensorboard is in requirements.txt; an older venv may lack it
            self.writer = None
            self.why = f"no TensorBoard scalars ({exc}; pip install -r requirements.txt)"
            return
        self.writer = SummaryWriter(log_dir=str(self.directory), flush_secs=30)

    @property
    def available(self) -> bool:
        return self.writer is not None

    def _add(self, tag: str, value: Optional[float], step: int) -> None:
        if value is not None and math.isfinite(value):
            self.writer.add_scalar(tag, float(value), int(step))

    def episode(self, row: EpisodeRow, log: RunLog) -> None:
        """One episode (already in ``log``): its own figures and the rolling ones after it."""
        if self.writer is None:
            return
        step = row.env_steps
        self._add("episode/success", float(row.success), step)
        self._add("episode/return", row.episode_return, step)
        self._add("episode/intervention_rate", row.intervened_steps / max(1, row.steps), step)
        self._add("episode/duration_s", row.duration_s, step)
        f = log.figures()
        self._add("rolling/success_rate", f["success_rate"], step)
        if row.alone:  # changes only with an unassisted episode
            self._add("rolling/alone_success_rate", f["alone_success_rate"], step)
        self._add("rolling/intervention_rate", f["intervention_rate"], step)
        if row.success:
            self._add("rolling/cycle_time_s", f["cycle_time_s"], step)

    def learner(self, row: Row) -> None:
        """A ``learner.csv`` row: the learner's figures, and the analysis once per analysis taken."""
        if self.writer is None:
            return
        step = int(row["env_steps"] or 0)
        for key in ("updates", "updates_per_s", *LEARNER_METRICS):
            self._add(f"learner/{key}", row.get(key), step)
        taken = row.get("analysis_updates")
        if taken and taken != self._analysis_seen:
            self._analysis_seen = taken
            for key in ANALYSIS_METRICS:
                self._add(f"analysis/{key.split('/', 1)[1]}", row.get(key), step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def plot_analysis(rows: Sequence[Row], path: Path, title: str = "") -> Optional[Path]:
    """``analysis.png``: Q variance around the policy's action (Eq. 1) and the policy's mean |mu|
    and std against env steps. None when no analysis was taken."""
    points = analysis_points(rows)
    if not points:
        return None
    plt = pyplot()
    steps = [p["env_steps"] for p in points]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    var = [p.get("rlpd/q_action_variance") for p in points]
    axes[0].plot(steps, [np.nan if v is None else v for v in var], marker=".", color="tab:purple")
    if all(v is not None and v > 0 for v in var):
        axes[0].set_yscale("log")
    axes[0].set_ylabel("Var Q(s, a + u), u ~ U[-0.2, 0.2]")
    axes[0].set_title("Q variance around the policy's action (Eq. 1)")
    for key, label in (("rlpd/policy_mean_abs", "mean |mu|"), ("rlpd/policy_std", "mean std")):
        axes[1].plot(steps, [np.nan if p.get(key) is None else p[key] for p in points], marker=".", label=label)
    axes[1].set_ylabel("Gaussian policy (before tanh)")
    axes[1].set_title("policy mean and std")
    axes[1].legend(loc="best")
    for ax in axes:
        ax.set_xlabel("env steps")
        ax.grid(alpha=0.3)
    return save_figure(fig, path, title)


def plot_visitation(samples: Mapping[str, np.ndarray], path: Path, title: str = "", share: float = 0.2,
                    total_steps: Optional[float] = None, bins: int = 40) -> Optional[Path]:
    """``visitation.png``: per arm (a row each), the end-effector's xy and xz visitation in the
    first and the last ``share`` of the run's env steps (``total_steps``, default the last sample's),
    as fractions of the samples of that period, on the same axes early and late. ``samples``: per arm
    ``[N, 4]`` env_steps, x, y, z (``PoseLog.read``). None when there is nothing to plot."""
    samples = {arm: np.asarray(s, dtype=np.float64).reshape(-1, 4) for arm, s in samples.items() if len(s)}
    if not samples:
        return None
    total = float(total_steps) if total_steps else max(float(s[:, 0].max()) for s in samples.values())
    plt = pyplot()
    arms = sorted(samples)
    fig, axes = plt.subplots(len(arms), 4, figsize=(16, 3.8 * len(arms)), squeeze=False)
    for row, arm in enumerate(arms):
        s = samples[arm]
        periods = ((f"first {share:.0%}", s[s[:, 0] <= share * total]), (f"last {share:.0%}", s[s[:, 0] >= (1 - share) * total]))
        for col, (plane, (a, b)) in enumerate((("xy", (1, 2)), ("xz", (1, 3)))):
            ranges = [_extent(s[:, a]), _extent(s[:, b])]
            for k, (name, part) in enumerate(periods):
                ax = axes[row][2 * col + k]
                hist = np.zeros((bins, bins))
                if len(part):
                    hist, _, _ = np.histogram2d(part[:, a], part[:, b], bins=bins, range=ranges)
                    hist /= len(part)
                im = ax.imshow(hist.T, origin="lower", aspect="auto", cmap="viridis",
                               extent=(*ranges[0], *ranges[1]))
                fig.colorbar(im, ax=ax, fraction=0.046)
                ax.set_xlabel("x (m)")
                ax.set_ylabel(f"{plane[1]} (m)")
                ax.set_title(f"{arm} {plane}, {name} of env steps ({len(part)} samples)")
    return save_figure(fig, path, title, dpi=80)


def _extent(values: np.ndarray) -> List[float]:
    lo, hi = float(values.min()), float(values.max())
    pad = max(0.005, 0.05 * (hi - lo))
    return [lo - pad, hi + pad]
