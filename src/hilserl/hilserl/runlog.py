"""A training run's record, without ROS: the table of every episode, progress figures and plots.

``episodes.csv`` has one row per episode the actor finished (``/metrics/episodes``), appended as
it comes, so an interrupted run keeps what it saw and a resumed run goes on counting:

==================  =================================================================
env_steps           control steps of the whole run up to the end of this episode
wall_s              seconds of training (all sessions of the run) at the episode's end
episode             the run's episode number
success             1 if the episode reached the task's success
steps               control steps of the episode
intervened_steps    steps the operator acted
alone               1 if no step was intervened (the policy alone)
duration_s          the episode's length (steps / control rate)
return              the episode's summed reward
weights_version     the policy weights the actor acted with
updates             the learner's updates when the episode ended
==================  =================================================================

:func:`plot_run` draws the paper's Fig. 3 panels (success rate with help and of the policy
alone, intervention rate, cycle time of successful episodes) against env steps and wall-clock.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

__all__ = ["EpisodeRow", "RunLog", "append_csv_row", "rolling", "plot_run", "WINDOW"]

WINDOW = 20  # episodes in a rolling rate, as in the paper


@dataclass
class EpisodeRow:
    env_steps: int
    wall_s: float
    episode: int
    success: int
    steps: int
    intervened_steps: int
    alone: int
    duration_s: float
    episode_return: float
    weights_version: int
    updates: int


def append_csv_row(path: Path, columns: Sequence[str], row: Mapping[str, object]) -> None:
    """Append ``row`` to the CSV table ``path``, writing the header first when the file is new."""
    new = not path.is_file()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(columns))
        if new:
            w.writeheader()
        w.writerow(row)


class RunLog:
    """``episodes.csv`` of a run directory: read what is there, append as episodes come."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / "episodes.csv"
        self.rows: List[EpisodeRow] = []
        if self.path.is_file():
            with open(self.path, newline="") as f:
                for rec in csv.DictReader(f):
                    self.rows.append(EpisodeRow(**{fl.name: float(rec[fl.name]) if fl.type == "float" else int(float(rec[fl.name]))
                                                   for fl in fields(EpisodeRow)}))

    @property
    def env_steps(self) -> int:
        return self.rows[-1].env_steps if self.rows else 0

    @property
    def wall_s(self) -> float:
        return self.rows[-1].wall_s if self.rows else 0.0

    def add(self, row: EpisodeRow) -> None:
        append_csv_row(self.path, [fl.name for fl in fields(EpisodeRow)], asdict(row))
        self.rows.append(row)

    def figures(self, window: int = WINDOW) -> Dict[str, Optional[float]]:
        """Rates over the last ``window`` episodes (with help) and the last ``window`` unassisted ones."""
        recent = self.rows[-window:]
        alone = [r for r in self.rows if r.alone][-window:]
        wins = [r for r in recent if r.success]
        return {
            "success_rate": sum(r.success for r in recent) / len(recent) if recent else None,
            "alone_success_rate": sum(r.success for r in alone) / len(alone) if alone else None,
            "alone_episodes": float(len(alone)),
            "intervention_rate": (sum(r.intervened_steps for r in recent) / max(1, sum(r.steps for r in recent))
                                  if recent else None),
            "cycle_time_s": sum(r.duration_s for r in wins) / len(wins) if wins else None,
        }


def rolling(values: Sequence[float], window: int = WINDOW) -> List[float]:
    """Mean of each value with up to ``window - 1`` before it."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def pyplot():
    """matplotlib's pyplot on the Agg backend: plots are written to files, never shown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, title: str = "", dpi: int = 90) -> Path:
    """Give ``fig`` its title, lay it out, write it to ``path`` and close it."""
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path


def plot_run(rows: Sequence[EpisodeRow], path: Path, title: str = "") -> Optional[Path]:
    """``training.png``: success rate, intervention rate and cycle time against env steps (top)
    and wall-clock minutes (bottom). None when there is nothing to plot."""
    if not rows:
        return None
    plt = pyplot()
    steps = [r.env_steps for r in rows]
    minutes = [r.wall_s / 60.0 for r in rows]
    success = rolling([float(r.success) for r in rows])
    interv = rolling([r.intervened_steps / max(1, r.steps) for r in rows])
    alone_idx = [i for i, r in enumerate(rows) if r.alone]
    alone = rolling([float(rows[i].success) for i in alone_idx])
    win_idx = [i for i, r in enumerate(rows) if r.success]
    cycle = rolling([rows[i].duration_s for i in win_idx])
    fig, axes = plt.subplots(2, 3, figsize=(15, 7), sharey="col")
    for row, (xs, xlabel) in enumerate(((steps, "env steps"), (minutes, "wall-clock (min)"))):
        ax = axes[row][0]
        ax.plot(xs, success, label="with interventions")
        ax.plot([xs[i] for i in alone_idx], alone, label="policy alone", marker=".", linestyle="-")
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel(f"success rate (last {WINDOW})")
        ax.legend(loc="lower right")
        axes[row][1].plot(xs, interv, color="tab:red")
        axes[row][1].set_ylim(-0.02, 1.02)
        axes[row][1].set_ylabel("intervened steps / steps")
        axes[row][2].plot([xs[i] for i in win_idx], cycle, color="tab:green")
        axes[row][2].set_ylabel("cycle time of successes (s)")
        for ax in axes[row]:
            ax.set_xlabel(xlabel)
            ax.grid(alpha=0.3)
    return save_figure(fig, path, title)
