"""The operator's episode marks and how a recording splits into episodes (no ROS).

Three global topics, each ``std_msgs/Empty``, published by whoever watches the scene (a
person at the keyboard of ``hilserl record``, SpaceMouse buttons mapped to marks, or the
simulator's scripted operator when it drives a recording):

- ``/episode/success``: the task is done; the scene shows success from now on.
- ``/episode/failure``: the attempt failed (or is given up).
- ``/episode/reset``: the scene is reset and a new episode starts. The actor reads the same
  topic (``hilserl_policy``): while it runs an episode the signal cuts it short, while it
  waits for a manual reset it says the scene is ready.

They are recorded like any other topic, so a bag carries its own labels. The time of a
mark is its log time in the bag (the recorder's receive time; ``std_msgs/Empty`` has no
stamp). :func:`segment` splits a recording into :class:`Episode` s:

- an episode starts at the start of the recording or at a reset mark, and ends at the
  next reset mark or the end of the recording;
- its outcome is its first success or failure mark (later ones within it are counted in
  ``extra_marks`` and ignored); an episode without one is ``unmarked``.

:class:`EpisodeCounter` counts finished (outcome-marked) episodes online, which is how
``hilserl record episodes:=N`` knows when to stop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, List, Optional, Tuple

__all__ = [
    "SUCCESS_TOPIC",
    "FAILURE_TOPIC",
    "RESET_TOPIC",
    "MARK_TOPICS",
    "MARK_TYPE",
    "SUCCESS",
    "FAILURE",
    "RESET",
    "UNMARKED",
    "Episode",
    "segment",
    "EpisodeCounter",
]

SUCCESS_TOPIC = "/episode/success"
FAILURE_TOPIC = "/episode/failure"
RESET_TOPIC = "/episode/reset"
MARK_TYPE = "std_msgs/msg/Empty"

SUCCESS, FAILURE, RESET, UNMARKED = "success", "failure", "reset", "unmarked"
MARK_TOPICS = {SUCCESS_TOPIC: SUCCESS, FAILURE_TOPIC: FAILURE, RESET_TOPIC: RESET}


@dataclass(frozen=True)
class Episode:
    """One episode of a recording; times in seconds on the bag's clock (log time)."""

    index: int  # 0, 1, ... in recording order
    start_s: float
    end_s: float  # the next reset mark, or the end of the recording
    outcome: str  # SUCCESS, FAILURE or UNMARKED
    outcome_s: Optional[float]  # time of the outcome mark
    extra_marks: int = 0  # success/failure marks after the first (ignored)

    def contains(self, t_s: float) -> bool:
        return self.start_s <= t_s < self.end_s


def segment(marks: Iterable[Tuple[float, str]], start_s: float, end_s: float) -> List[Episode]:
    """Episodes of a recording from ``(time_s, kind)`` marks (kind: SUCCESS, FAILURE, RESET).

    ``start_s``/``end_s``: the recording's first and last message times. Marks may come in
    any order; a reset at the very start opens no empty episode.
    """
    ordered = sorted((float(t), str(k)) for t, k in marks)
    for _, kind in ordered:
        if kind not in (SUCCESS, FAILURE, RESET):
            raise ValueError(f"unknown episode mark {kind!r}; marks are {SUCCESS}, {FAILURE}, {RESET}")
    end_s = max(float(end_s), ordered[-1][0] if ordered else float(end_s))
    bounds = [float(start_s)] + [t for t, k in ordered if k == RESET and t > start_s] + [end_s + 1e-9]
    episodes: List[Episode] = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        if b <= a:
            continue
        outcomes = [(t, k) for t, k in ordered if k != RESET and a <= t < b]
        first = outcomes[0] if outcomes else (None, UNMARKED)
        episodes.append(Episode(len(episodes), a, b, first[1], first[0], max(len(outcomes) - 1, 0)))
    return episodes


class EpisodeCounter:
    """Online count of finished episodes: an episode finishes at its first outcome mark."""

    def __init__(self) -> None:
        self.finished = 0
        self.successes = 0
        self._marked = False  # the current episode has its outcome
        self.last: Optional[str] = None

    def mark(self, kind: str) -> bool:
        """Feed one mark; True when it finished an episode."""
        self.last = kind
        if kind == RESET:
            self._marked = False
            return False
        if kind not in (SUCCESS, FAILURE):
            raise ValueError(f"unknown episode mark {kind!r}")
        if self._marked:
            return False
        self._marked = True
        self.finished += 1
        self.successes += int(kind == SUCCESS)
        return True

