"""Training metrics of the paper (Sec. 4 / Fig. 3) and the Q-variance analysis (Eq. 1).

Per episode the actor reports an :class:`EpisodeRecord`; :class:`EpisodeMetrics`
keeps running averages over the last ``window`` episodes (20 in the paper):

- ``success_rate``: fraction of the window's episodes that succeeded.
- ``cycle_time_s``: mean duration in seconds over the window's SUCCESSFUL
  episodes only (failed episodes usually run to the time limit and would hide
  progress). ``None`` when the window holds no successful episode.
- ``intervention_rate``: per episode, intervened steps / steps; averaged over
  the window's episodes (episodes with zero steps are skipped).

Every rate is ``None`` while there is no episode to average; ``summary()``
therefore is plain JSON (``null``, never NaN).
"""

from __future__ import annotations

import json
import math
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, Callable, Deque, Dict, Mapping, Optional, Union

import torch

DEFAULT_WINDOW = 20
Q_VARIANCE_SAMPLES = 100
Q_VARIANCE_NOISE = 0.2


@dataclass
class EpisodeRecord:
    """One finished episode as the actor saw it."""

    success: bool
    duration_s: float
    steps: int
    intervention_steps: int = 0
    episode_return: float = 0.0
    episode_id: int = 0

    def __post_init__(self) -> None:
        if self.steps < 0 or not 0 <= self.intervention_steps <= max(self.steps, 0):
            raise ValueError(
                f"episode {self.episode_id}: need 0 <= intervention_steps ({self.intervention_steps}) "
                f"<= steps ({self.steps})"
            )
        if not math.isfinite(self.duration_s) or self.duration_s < 0:
            raise ValueError(f"episode {self.episode_id}: duration_s must be finite and >= 0, got {self.duration_s}")

    @property
    def intervention_fraction(self) -> Optional[float]:
        return self.intervention_steps / self.steps if self.steps > 0 else None


def _mean(values) -> Optional[float]:
    values = list(values)
    return sum(values) / len(values) if values else None


class EpisodeMetrics:
    """Running success rate, cycle time and intervention rate over the last ``window`` episodes."""

    def __init__(self, window: int = DEFAULT_WINDOW):
        if window <= 0:
            raise ValueError(f"window must be a positive number of episodes, got {window}")
        self.window = int(window)
        self._recent: Deque[EpisodeRecord] = deque(maxlen=self.window)
        self.episodes_total = 0
        self.successes_total = 0
        self.steps_total = 0
        self.intervention_steps_total = 0

    def add(self, record: EpisodeRecord) -> None:
        self._recent.append(record)
        self.episodes_total += 1
        self.successes_total += int(bool(record.success))
        self.steps_total += int(record.steps)
        self.intervention_steps_total += int(record.intervention_steps)

    @property
    def recent(self) -> tuple:
        return tuple(self._recent)

    @property
    def success_rate(self) -> Optional[float]:
        return _mean(float(r.success) for r in self._recent)

    @property
    def cycle_time_s(self) -> Optional[float]:
        return _mean(r.duration_s for r in self._recent if r.success)

    @property
    def intervention_rate(self) -> Optional[float]:
        return _mean(f for f in (r.intervention_fraction for r in self._recent) if f is not None)

    def summary(self) -> Dict[str, Any]:
        """JSON-serialisable snapshot (rates over the window; totals since start)."""
        return {
            "window": self.window,
            "window_episodes": len(self._recent),
            "success_rate": self.success_rate,
            "cycle_time_s": self.cycle_time_s,
            "intervention_rate": self.intervention_rate,
            "episodes_total": self.episodes_total,
            "successes_total": self.successes_total,
            "steps_total": self.steps_total,
            "intervention_steps_total": self.intervention_steps_total,
            "total_intervention_rate": (
                self.intervention_steps_total / self.steps_total if self.steps_total else None
            ),
            "last_episode": asdict(self._recent[-1]) if self._recent else None,
        }

    def to_json(self) -> str:
        return json.dumps(self.summary(), allow_nan=False, sort_keys=True)


class RecentMedian:
    """Median of the last ``window`` values (the actor's latency figures on diagnostics)."""

    def __init__(self, window: int = 50) -> None:
        self.window, self.values = window, []

    def add(self, value: float) -> float:
        self.values.append(float(value))
        del self.values[:-self.window]
        return self.median()

    def median(self) -> float:
        v = sorted(self.values)
        return v[len(v) // 2] if v else float("nan")


def _repeat_obs(obs: Union[torch.Tensor, Mapping[str, torch.Tensor]], n: int):
    if isinstance(obs, torch.Tensor):
        return obs.repeat_interleave(n, dim=0)
    return {k: v.repeat_interleave(n, dim=0) for k, v in obs.items()}


def q_value_variance(
    critic_fn: Callable[[Any, torch.Tensor], torch.Tensor],
    obs: Union[torch.Tensor, Mapping[str, torch.Tensor]],
    action: torch.Tensor,
    n: int = Q_VARIANCE_SAMPLES,
    noise: float = Q_VARIANCE_NOISE,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Eq. 1 of the paper: ``Var_{eps ~ U[-noise, noise]^A} Q(s, a + eps)`` per state.

    ``obs`` is a batch (tensor or dict of tensors with leading dim ``B``),
    ``action`` is ``[B, A]`` (usually the policy mean). ``critic_fn(obs, actions)``
    must return Q values of shape ``[B * n]`` (or ``[B * n, 1]``); reduce an
    ensemble inside it (e.g. mean or min over critics). The noisy actions are not
    clipped to the action bounds. Returns the population variance over the ``n``
    samples, shape ``[B]``. Runs without gradients.
    """
    if n < 2:
        raise ValueError(f"n must be >= 2 samples to estimate a variance, got {n}")
    if action.ndim != 2:
        raise ValueError(f"action must be [B, A], got shape {tuple(action.shape)}")
    b, a_dim = action.shape
    with torch.no_grad():
        eps = torch.rand((b * n, a_dim), generator=generator, dtype=action.dtype) * (2 * noise) - noise
        actions = action.repeat_interleave(n, dim=0) + eps.to(action.device)
        q = critic_fn(_repeat_obs(obs, n), actions)
        if q.ndim == 2 and q.shape[1] == 1:
            q = q[:, 0]
        if q.shape != (b * n,):
            raise ValueError(f"critic_fn must return [B * n] = [{b * n}] Q values, got {tuple(q.shape)}")
        return q.view(b, n).var(dim=1, unbiased=False)
