"""Transitions and policy weights as named arrays + JSON metadata (the wire format).

``hilserl_interfaces.payload`` puts these into safetensors bytes inside a
std_msgs/UInt8MultiArray. Everything is explicit arrays and JSON: no pickle, and
any language with a safetensors reader can decode a bag of them.

Transitions carry a per-actor sequence number so the learner can count gaps
(a lost intervention must never go unnoticed). Policy weights carry a version,
the parameter names of the trainable policy only (never the frozen encoder),
and the sha256 of the container (checked by tensorio on decode).
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Tuple

import numpy as np

from .types import Transition

TRANSITION_KIND = "hilserl.transition"
WEIGHTS_KIND = "hilserl.policy_weights"
_OBS, _NEXT = "obs/", "next_obs/"


def transition_to_arrays(t: Transition, actor_id: str, sequence: int) -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
    arrays: Dict[str, np.ndarray] = {}
    for k, v in t.observation.items():
        arrays[_OBS + k] = np.ascontiguousarray(v)
    for k, v in t.next_observation.items():
        arrays[_NEXT + k] = np.ascontiguousarray(v)
    arrays["action"] = np.asarray(t.action, dtype=np.float32)
    meta = {
        "kind": TRANSITION_KIND,
        "actor_id": actor_id,
        "sequence": int(sequence),
        "reward": float(t.reward),
        "terminated": bool(t.terminated),
        "truncated": bool(t.truncated),
        "intervened": bool(t.intervened),
        "grasp_action": int(t.grasp_action),
        "grasp_penalty": float(t.grasp_penalty),
        "episode_id": int(t.episode_id),
        "step": int(t.step),
        "info": {k: float(v) for k, v in t.info.items()},
    }
    return arrays, meta


def arrays_to_transition(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Tuple[Transition, str, int]:
    """The transition, its actor id and sequence number; ValueError for a foreign payload."""
    if meta.get("kind") != TRANSITION_KIND:
        raise ValueError(f"payload kind {meta.get('kind')!r} is not {TRANSITION_KIND!r}")
    try:
        obs = {k[len(_OBS):]: v for k, v in arrays.items() if k.startswith(_OBS)}
        nxt = {k[len(_NEXT):]: v for k, v in arrays.items() if k.startswith(_NEXT)}
        t = Transition(
            observation=obs,
            action=np.asarray(arrays["action"], dtype=np.float32),
            reward=float(meta["reward"]),
            terminated=bool(meta["terminated"]),
            truncated=bool(meta["truncated"]),
            next_observation=nxt,
            intervened=bool(meta["intervened"]),
            grasp_action=int(meta["grasp_action"]),
            grasp_penalty=float(meta["grasp_penalty"]),
            episode_id=int(meta["episode_id"]),
            step=int(meta["step"]),
            info=dict(meta.get("info", {})),
        )
    except KeyError as exc:
        raise ValueError(f"transition payload lacks {exc}") from exc
    return t, str(meta.get("actor_id", "")), int(meta["sequence"])


class SequenceTracker:
    """Counts transitions lost between an actor and the learner, per actor."""

    def __init__(self) -> None:
        self.last: Dict[str, int] = {}
        self.lost = 0
        self.duplicates = 0

    def see(self, actor_id: str, sequence: int) -> int:
        """Record a sequence number; returns how many were skipped just before it."""
        prev = self.last.get(actor_id)
        self.last[actor_id] = max(sequence, prev if prev is not None else sequence)
        if prev is None:
            return 0
        if sequence <= prev:
            self.duplicates += 1
            return 0
        gap = sequence - prev - 1
        self.lost += gap
        return gap


def weights_to_arrays(
    state: Mapping[str, Any], version: int, extra: Mapping[str, Any] | None = None, float_dtype: str | None = None
) -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
    """Policy parameters (torch tensors or arrays) -> arrays + metadata with a version.

    ``float_dtype="float16"`` halves the broadcast: the actor copies the values into
    its float32 parameters (a relative change of about 1e-3, far below the policy's
    own exploration noise); the learner keeps training in full precision.
    """
    arrays = {k: np.ascontiguousarray(v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)) for k, v in state.items()}
    if float_dtype is not None:
        arrays = {k: v.astype(float_dtype) if np.issubdtype(v.dtype, np.floating) else v for k, v in arrays.items()}
    meta = {"kind": WEIGHTS_KIND, "version": int(version), "names": sorted(arrays), **(dict(extra) if extra else {})}
    return arrays, meta


def arrays_to_weights(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Tuple[Dict[str, np.ndarray], int]:
    """Arrays and version of a policy-weights payload (``weights_metadata`` gives the rest)."""
    if meta.get("kind") != WEIGHTS_KIND:
        raise ValueError(f"payload kind {meta.get('kind')!r} is not {WEIGHTS_KIND!r}")
    if sorted(arrays) != list(meta.get("names", [])):
        raise ValueError("policy weights payload: tensor names do not match its metadata")
    return dict(arrays), int(meta["version"])
