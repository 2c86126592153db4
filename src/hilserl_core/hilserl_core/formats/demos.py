"""Demo files: recorded transitions for the learner's demo buffer (safetensors, no pickle).

Written by ``hilserl bag2demos`` and ``hilserl train`` (scripted-operator demos), read by the
learner at start (``learner.demo_paths``). Observations are stored once: within an episode the
next observation of a step is the observation of the following step, so a file holds ``M``
distinct observations (``obs/<key>``, e.g. ``obs/proprio`` ``[M, P]`` float32,
``obs/image/left_wrist`` ``[M, H, W, 3]`` uint8) and per transition the row of its observation
and of its next one (``obs_index``, ``next_obs_index``) beside ``action``, ``reward``,
``terminated``, ``truncated``, ``intervened``, ``grasp_action``, ``grasp_penalty``,
``episode_id``, ``step``. The metadata says what the demos are (``kind``, ``setup``, ``arms``,
``cameras``, ``episodes``, ``successes``, ``sources``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import tensorio
from .types import Transition

__all__ = ["DEMOS_KIND", "DemoFileError", "save_demos", "load_demos", "demo_summary"]

DEMOS_KIND = "hilserl.demos"
_COLUMNS = {  # name -> (dtype, Transition attribute)
    "action": (np.float32, "action"),
    "reward": (np.float32, "reward"),
    "terminated": (np.bool_, "terminated"),
    "truncated": (np.bool_, "truncated"),
    "intervened": (np.bool_, "intervened"),
    "grasp_action": (np.int64, "grasp_action"),
    "grasp_penalty": (np.float32, "grasp_penalty"),
    "episode_id": (np.int64, "episode_id"),
    "step": (np.int64, "step"),
}


class DemoFileError(ValueError):
    """A demo file that is missing, damaged or not a demo file (the message names the file)."""


def save_demos(path: Union[str, Path], transitions: Sequence[Transition], metadata: Optional[Mapping[str, Any]] = None) -> Path:
    """Write ``transitions`` atomically (temp file + rename)."""
    if not transitions:
        raise DemoFileError(f"{path}: no transitions to write")
    rows: Dict[int, int] = {}  # id(observation dict) -> row
    observations: List[Mapping[str, np.ndarray]] = []

    def row(obs: Mapping[str, np.ndarray]) -> int:
        if id(obs) not in rows:
            rows[id(obs)] = len(observations)
            observations.append(obs)
        return rows[id(obs)]

    obs_index = np.array([row(t.observation) for t in transitions], np.int64)
    next_index = np.array([row(t.next_observation) for t in transitions], np.int64)
    keys = sorted(observations[0])
    for o in observations:
        if sorted(o) != keys:
            raise DemoFileError(f"{path}: observations differ in their keys ({sorted(o)} vs {keys})")
    arrays = {f"obs/{k}": np.stack([np.asarray(o[k]) for o in observations]) for k in keys}
    arrays["obs_index"], arrays["next_obs_index"] = obs_index, next_index
    for name, (dtype, attr) in _COLUMNS.items():
        arrays[name] = np.array([getattr(t, attr) for t in transitions], dtype=dtype)
    episodes = sorted({t.episode_id for t in transitions})
    meta = {"kind": DEMOS_KIND, "transitions": len(transitions), "episodes": len(episodes),
            "successes": int(sum(t.terminated for t in transitions))}
    meta.update(dict(metadata or {}))
    return tensorio.save_file(path, arrays, meta)


def load_demos(path: Union[str, Path]) -> Tuple[List[Transition], Dict[str, Any]]:
    """The transitions and metadata of a demo file; DemoFileError (one line, naming it) otherwise."""
    path = Path(path)
    if not path.is_file():
        raise DemoFileError(f"{path}: no such demo file")
    try:
        arrays, meta = tensorio.load_file(path)
    except (tensorio.TensorIOError, OSError) as exc:
        raise DemoFileError(f"{path}: not a readable demo file ({exc})") from None
    if meta.get("kind") != DEMOS_KIND:
        raise DemoFileError(f"{path}: not a demo file (kind {meta.get('kind')!r}, expected {DEMOS_KIND!r})")
    missing = [k for k in ("obs_index", "next_obs_index", *_COLUMNS) if k not in arrays]
    if missing:
        raise DemoFileError(f"{path}: demo file lacks {', '.join(missing)}")
    obs_keys = [k[4:] for k in arrays if k.startswith("obs/")]
    n_obs = {arrays[f"obs/{k}"].shape[0] for k in obs_keys}
    n = arrays["obs_index"].shape[0]
    if len(n_obs) != 1 or any(arrays[c].shape[0] != n for c in ("next_obs_index", *_COLUMNS)):
        raise DemoFileError(f"{path}: demo file columns differ in length")
    (m,) = n_obs
    for idx in ("obs_index", "next_obs_index"):
        if n and (arrays[idx].min() < 0 or arrays[idx].max() >= m):
            raise DemoFileError(f"{path}: {idx} points outside the {m} stored observations")
    observations = [{k: arrays[f"obs/{k}"][i] for k in obs_keys} for i in range(m)]
    out = []
    for i in range(n):
        out.append(Transition(
            observation=observations[int(arrays["obs_index"][i])],
            action=arrays["action"][i],
            reward=float(arrays["reward"][i]),
            terminated=bool(arrays["terminated"][i]),
            truncated=bool(arrays["truncated"][i]),
            next_observation=observations[int(arrays["next_obs_index"][i])],
            intervened=bool(arrays["intervened"][i]),
            grasp_action=int(arrays["grasp_action"][i]),
            grasp_penalty=float(arrays["grasp_penalty"][i]),
            episode_id=int(arrays["episode_id"][i]),
            step=int(arrays["step"][i]),
        ))
    return out, meta


def demo_summary(transitions: Sequence[Transition]) -> Dict[str, int]:
    """Episodes, steps (transitions), successes (terminal transitions) and intervened steps."""
    return {"episodes": len({t.episode_id for t in transitions}), "steps": len(transitions),
            "successes": int(sum(t.terminated for t in transitions)),
            "intervened": int(sum(t.intervened for t in transitions))}
