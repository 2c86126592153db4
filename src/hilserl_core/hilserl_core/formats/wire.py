"""Transitions and policy weights as named arrays + JSON metadata (the wire format).

``hilserl_interfaces.payload`` puts these into safetensors bytes inside a
std_msgs/UInt8MultiArray. Everything is explicit arrays and JSON: no pickle, and
any language with a safetensors reader can decode a bag of them.

Transitions carry a per-actor sequence number so the learner can count gaps
(a lost intervention must never go unnoticed). Policy weights carry a version,
the parameter names of the trainable policy only (never the frozen encoder),
and the sha256 of the container (checked by tensorio on decode).

The decoders trust nothing in a payload (anyone on the DDS graph can publish one):
every missing or wrong-typed field is a ValueError naming the field, never
another exception type, so a receiver that catches ValueError keeps running.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Tuple

import numpy as np

from .types import Transition

TRANSITION_KIND = "hilserl.transition"
WEIGHTS_KIND = "hilserl.policy_weights"
_OBS, _NEXT = "obs/", "next_obs/"


def transition_to_arrays(t: Transition, actor_id: str, sequence: int, session: str = "") -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
    """``session`` names the actor process (its sequence numbers restart with it)."""
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
        "session": str(session),
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


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_meta(meta: Any, what: str) -> None:
    if not isinstance(meta, Mapping):
        raise ValueError(f"{what} payload: metadata must be a JSON object, got {type(meta).__name__}")


def _field(meta: Mapping[str, Any], key: str, what: str) -> Any:
    if key not in meta:
        raise ValueError(f"{what} payload lacks {key!r}")
    return meta[key]


def _number(value: Any, key: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} payload: {key!r} must be a number, got {_short(value)}")
    try:
        return float(value)
    except OverflowError:  # a JSON integer beyond float range
        raise ValueError(f"{what} payload: {key!r} = {_short(value)} is out of range") from None


def _integer(value: Any, key: str, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} payload: {key!r} must be an integer, got {_short(value)}")
    return value


def _flag(value: Any, key: str, what: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{what} payload: {key!r} must be true or false, got {_short(value)}")
    return value


def arrays_to_transition(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Tuple[Transition, str, int]:
    """The transition, its actor id and sequence number; ValueError (naming the field) for a foreign
    or malformed payload."""
    what = "transition"
    _check_meta(meta, what)
    if meta.get("kind") != TRANSITION_KIND:
        raise ValueError(f"payload kind {_short(meta.get('kind'))} is not {TRANSITION_KIND!r}")
    if "action" not in arrays:
        raise ValueError("transition payload lacks 'action'")
    num = {k: _number(_field(meta, k, what), k, what) for k in ("reward", "grasp_penalty")}
    ints = {k: _integer(_field(meta, k, what), k, what) for k in ("sequence", "grasp_action", "episode_id", "step")}
    flags = {k: _flag(_field(meta, k, what), k, what) for k in ("terminated", "truncated", "intervened")}
    actor_id = meta.get("actor_id", "")
    if not isinstance(actor_id, str):
        raise ValueError(f"transition payload: 'actor_id' must be a string, got {_short(actor_id)}")
    info = meta.get("info", {})
    if not isinstance(info, Mapping):
        raise ValueError(f"transition payload: 'info' must be an object of numbers, got {_short(info)}")
    info = {str(k): _number(v, f"info.{k}", what) for k, v in info.items()}
    obs = {k[len(_OBS):]: v for k, v in arrays.items() if k.startswith(_OBS)}
    nxt = {k[len(_NEXT):]: v for k, v in arrays.items() if k.startswith(_NEXT)}
    t = Transition(
        observation=obs,
        action=np.asarray(arrays["action"], dtype=np.float32),
        reward=num["reward"],
        terminated=flags["terminated"],
        truncated=flags["truncated"],
        next_observation=nxt,
        intervened=flags["intervened"],
        grasp_action=ints["grasp_action"],
        grasp_penalty=num["grasp_penalty"],
        episode_id=ints["episode_id"],
        step=ints["step"],
        info=info,
    )
    return t, actor_id, ints["sequence"]


def transition_session(meta: Mapping[str, Any]) -> str:
    """The sending actor process's session ("" from a sender that names none)."""
    session = meta.get("session", "")
    if not isinstance(session, str):
        raise ValueError(f"transition payload: 'session' must be a string, got {_short(session)}")
    return session


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
    """Arrays and version of a policy-weights payload; ValueError (naming the field) for a foreign
    or malformed one. Other metadata (``updates``, ``published_s``) is informational: check its
    type before use."""
    what = "policy weights"
    _check_meta(meta, what)
    if meta.get("kind") != WEIGHTS_KIND:
        raise ValueError(f"payload kind {_short(meta.get('kind'))} is not {WEIGHTS_KIND!r}")
    version = _integer(_field(meta, "version", what), "version", what)
    names = meta.get("names", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"policy weights payload: 'names' must be a list of strings, got {_short(names)}")
    if sorted(arrays) != names:
        raise ValueError("policy weights payload: tensor names do not match its metadata")
    return dict(arrays), version
