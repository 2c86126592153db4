"""Replay buffers for the HIL-SERL learner: compact, boundary-correct, pickle-free.

Memory layout
-------------
A :class:`ReplayBuffer` is a ring of ``capacity`` *slots*. Every slot holds one
observation (``proprio`` float32, ``image/<cam>`` uint8 ``[H, W, 3]`` or
``feature/<cam>`` float16 ``[4, 4, 512]``, per camera) and, when it starts a
stored transition, that transition's action, reward, flags and ids. Images are
never stored as float (a defect of the published implementation: 4x memory).

Next observations are not duplicated: the next observation of the transition
in slot ``i`` is always the observation in slot ``i + 1`` (mod capacity).
``add(t)`` writes ``t.next_observation`` into the slot after ``t`` straight away,
so the real final observation of every episode is stored (one extra slot per
episode). When the following transition continues the chain, it reuses that
slot as its own observation instead of writing a new one.

Chaining rule (why this is safe at every boundary): ``t`` continues the chain
iff the previous transition was not ``done`` (terminated or truncated), has the
same ``episode_id``, and ``t.observation`` is byte-for-byte equal to the stored
``next_observation`` of the previous transition. Otherwise (new episode, an
episode cut by the operator, transitions out of order, a skipped step, the demo
buffer receiving only the intervention segments of an episode) ``t`` starts a
new chain: its observation gets its own slot. So an observation sampled as
``next_obs`` is always exactly the ``next_observation`` that was inserted with
that transition, never the next episode's first frame or a stale frame; the
cost of a non-chaining insert is one extra slot. The ``intervened`` flag plays
no role in chaining: adjacent policy/intervention steps chain as usual.

Ring wrap-around: slots are written strictly in order, and a slot is only
sampleable (``valid``) while both it and its successor hold data written for
it. Overwriting a slot clears its ``valid`` flag; the transition written into a
slot always has its successor written in the same ``add`` call, so no valid
slot ever has a dangling next pointer.

``len(buffer)`` counts sampleable transitions, which is at most ``capacity - 1``
and about ``capacity * T / (T + 1)`` for episodes of ``T`` steps.

Feature mode trades augmentation for speed: cached encoder features cannot be
random-shifted, so DrQ augmentation (``augment.random_shift``) only applies to
cameras stored as images.

Buffers live in host memory, also for a learner on a GPU: a sampled batch goes to the
device as it is drawn (``sample(..., device=)``, :func:`to_device`).

A buffer is not thread-safe: a learner that inserts from a subscription thread
and samples from an update thread holds one lock around ``add``/``sample``/``save``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..formats import tensorio
from ..formats.types import FEATURE_PREFIX, FEATURE_SHAPE_128, IMAGE_PREFIX, PROPRIO_KEY, Batch, Observation, Transition

BUFFER_KIND = "hilserl.replay_buffer"
BUFFER_FORMAT = 1

DEMO_BUFFER = "demo"
RL_BUFFER = "rl"

ObservationSpec = Dict[str, Tuple[Tuple[int, ...], np.dtype]]


def route_transition(transition: Transition) -> Tuple[str, ...]:
    """Which buffers a transition goes into (HIL-SERL Sec. 3: interventions feed both).

    Intervention transitions -> ``(DEMO_BUFFER, RL_BUFFER)``; policy transitions ->
    ``(RL_BUFFER,)``.
    """
    return (DEMO_BUFFER, RL_BUFFER) if transition.intervened else (RL_BUFFER,)


def make_observation_spec(
    cameras: Sequence[str],
    proprio_dim: int,
    mode: Union[str, Mapping[str, str]] = "image",
    image_shape: Tuple[int, int, int] = (128, 128, 3),
    feature_shape: Tuple[int, int, int] = FEATURE_SHAPE_128,
) -> ObservationSpec:
    """Observation spec for a buffer: ``mode`` is ``"image"`` or ``"feature"``, or a
    per-camera mapping of those."""
    spec: ObservationSpec = {}
    if proprio_dim > 0:
        spec[PROPRIO_KEY] = ((int(proprio_dim),), np.dtype(np.float32))
    for cam in cameras:
        cam_mode = mode if isinstance(mode, str) else mode[cam]
        if cam_mode == "image":
            spec[IMAGE_PREFIX + cam] = (tuple(image_shape), np.dtype(np.uint8))
        elif cam_mode == "feature":
            spec[FEATURE_PREFIX + cam] = (tuple(feature_shape), np.dtype(np.float16))
        else:
            raise ValueError(f"camera {cam!r}: storage mode must be 'image' or 'feature', got {cam_mode!r}")
    return spec


def _check_spec(spec: Mapping[str, Tuple[Sequence[int], object]]) -> ObservationSpec:
    out: ObservationSpec = {}
    if not spec:
        raise ValueError("observation_spec is empty; give at least 'proprio' or one camera")
    for key, (shape, dtype) in spec.items():
        shape, dtype = tuple(int(s) for s in shape), np.dtype(dtype)
        if key.startswith(IMAGE_PREFIX):
            if dtype != np.uint8 or len(shape) != 3 or shape[-1] != 3:
                raise ValueError(
                    f"{key}: images are stored as uint8 [H, W, 3], got {dtype} {shape} "
                    "(float image buffers cost 4x the memory)"
                )
        elif key.startswith(FEATURE_PREFIX):
            if dtype != np.float16:
                raise ValueError(f"{key}: cached features are stored as float16, got {dtype}")
        elif key == PROPRIO_KEY:
            if dtype != np.float32 or len(shape) != 1:
                raise ValueError(f"{key}: proprio is float32 [P], got {dtype} {shape}")
        else:
            raise ValueError(
                f"unknown observation key {key!r}; use 'proprio', 'image/<cam>' or 'feature/<cam>'"
            )
        out[key] = (shape, dtype)
    return out


@dataclass
class _Last:
    """What the chaining rule needs to know about the previous insert."""

    episode_id: int
    done: bool


class ReplayBuffer:
    """Fixed-capacity ring buffer of transitions in numpy storage (see module docstring)."""

    _FIELDS = (
        ("actions", None, np.float32),  # shape filled in per buffer
        ("rewards", (), np.float32),
        ("terminated", (), np.bool_),
        ("truncated", (), np.bool_),
        ("intervened", (), np.bool_),
        ("grasp_actions", (), np.int64),
        ("grasp_penalties", (), np.float32),
        ("episode_ids", (), np.int64),
        ("steps", (), np.int64),
        ("valid", (), np.bool_),
    )

    def __init__(self, capacity: int, observation_spec: Mapping[str, Tuple[Sequence[int], object]], action_dim: int):
        if capacity < 2:
            raise ValueError(f"capacity must be >= 2 slots (a transition needs two), got {capacity}")
        if action_dim <= 0:
            raise ValueError(f"action_dim must be positive, got {action_dim}")
        self.capacity = int(capacity)
        self.action_dim = int(action_dim)
        self.observation_spec = _check_spec(observation_spec)
        self._obs: Dict[str, np.ndarray] = {
            key: np.zeros((self.capacity, *shape), dtype) for key, (shape, dtype) in self.observation_spec.items()
        }
        self._data: Dict[str, np.ndarray] = {}
        for name, shape, dtype in self._FIELDS:
            shape = (self.action_dim,) if shape is None else shape
            self._data[name] = np.zeros((self.capacity, *shape), dtype)
        self._pending: Optional[int] = None  # slot holding the last inserted next_observation
        self._last: Optional[_Last] = None
        self._slots_written = 0  # total ever; slots [0, min(this, capacity)) hold data
        self._num_valid = 0
        self._valid_idx: Optional[np.ndarray] = None  # cache of flatnonzero(valid)
        self.stats = {"transitions_added": 0, "chained": 0, "new_chains": 0, "observation_mismatches": 0}

    @classmethod
    def for_cameras(
        cls,
        capacity: int,
        cameras: Sequence[str],
        proprio_dim: int,
        action_dim: int,
        mode: Union[str, Mapping[str, str]] = "image",
        image_shape: Tuple[int, int, int] = (128, 128, 3),
        feature_shape: Tuple[int, int, int] = FEATURE_SHAPE_128,
    ) -> "ReplayBuffer":
        spec = make_observation_spec(cameras, proprio_dim, mode, image_shape, feature_shape)
        return cls(capacity, spec, action_dim)

    # ------------------------------------------------------------- sizes
    def __len__(self) -> int:
        return self._num_valid

    @property
    def num_slots_filled(self) -> int:
        return min(self._slots_written, self.capacity)

    def allocated_bytes(self) -> int:
        return sum(a.nbytes for a in self._obs.values()) + sum(a.nbytes for a in self._data.values())

    def bytes_per_slot(self) -> float:
        """Allocated bytes / capacity: the cost of one stored observation + transition."""
        return self.allocated_bytes() / self.capacity

    def bytes_per_transition(self, episode_length: Optional[int] = None) -> float:
        """Measured bytes per stored transition.

        Without ``episode_length``: bytes per slot (the limit of long episodes).
        With it: includes the one extra final-observation slot per episode,
        ``bytes_per_slot * (T + 1) / T``.
        """
        per_slot = self.bytes_per_slot()
        if episode_length is None:
            return per_slot
        if episode_length <= 0:
            raise ValueError(f"episode_length must be positive, got {episode_length}")
        return per_slot * (episode_length + 1) / episode_length

    # ------------------------------------------------------------- insert
    def _coerce(self, observation: Observation, what: str) -> Dict[str, np.ndarray]:
        missing = [k for k in self.observation_spec if k not in observation]
        if missing:
            raise KeyError(
                f"{what} lacks {missing}; this buffer stores {sorted(self.observation_spec)} "
                "(convert images with encoders.featurize_observation for feature mode)"
            )
        out = {}
        for key, (shape, dtype) in self.observation_spec.items():
            value = np.asarray(observation[key])
            if value.shape != shape:
                raise ValueError(f"{what}[{key!r}] has shape {value.shape}, buffer expects {shape}")
            if key.startswith(IMAGE_PREFIX) and value.dtype != np.uint8:
                raise TypeError(f"{what}[{key!r}] is {value.dtype}; images must be uint8")
            out[key] = np.ascontiguousarray(value, dtype=dtype)
        return out

    def _claim(self, slot: int) -> None:
        """About to overwrite ``slot``: whatever transition it held is gone."""
        if self._data["valid"][slot]:
            self._data["valid"][slot] = False
            self._num_valid -= 1
        self._slots_written += 1

    def _matches_pending(self, obs: Dict[str, np.ndarray]) -> bool:
        slot = self._pending
        return all(np.array_equal(self._obs[k][slot].view(np.uint8), v.view(np.uint8)) for k, v in obs.items())

    def add(self, transition: Transition) -> None:
        """Insert one transition (see the chaining rule in the module docstring)."""
        obs = self._coerce(transition.observation, "observation")
        next_obs = self._coerce(transition.next_observation, "next_observation")
        action = np.asarray(transition.action, dtype=np.float32).reshape(-1)
        if action.shape != (self.action_dim,):
            raise ValueError(f"action has {action.size} values, buffer expects {self.action_dim}")

        chained = False
        if self._pending is not None and self._last is not None:
            same_episode = not self._last.done and self._last.episode_id == int(transition.episode_id)
            if same_episode:
                chained = self._matches_pending(obs)
                if not chained:
                    self.stats["observation_mismatches"] += 1
        if chained:
            slot = self._pending
            self.stats["chained"] += 1
        else:
            slot = 0 if self._pending is None else (self._pending + 1) % self.capacity
            self._claim(slot)
            for key, value in obs.items():
                self._obs[key][slot] = value
            self.stats["new_chains"] += 1

        d = self._data
        d["actions"][slot] = action
        d["rewards"][slot] = transition.reward
        d["terminated"][slot] = bool(transition.terminated)
        d["truncated"][slot] = bool(transition.truncated)
        d["intervened"][slot] = bool(transition.intervened)
        d["grasp_actions"][slot] = int(transition.grasp_action)
        d["grasp_penalties"][slot] = transition.grasp_penalty
        d["episode_ids"][slot] = int(transition.episode_id)
        d["steps"][slot] = int(transition.step)

        nxt = (slot + 1) % self.capacity
        self._claim(nxt)
        for key, value in next_obs.items():
            self._obs[key][nxt] = value
        d["valid"][slot] = True
        self._num_valid += 1
        self._pending = nxt
        self._last = _Last(int(transition.episode_id), bool(transition.done))
        self._valid_idx = None
        self.stats["transitions_added"] += 1

    def extend(self, transitions) -> None:
        for t in transitions:
            self.add(t)

    # ------------------------------------------------------------- sample
    def valid_indices(self) -> np.ndarray:
        """Slots that start a sampleable transition (ascending)."""
        if self._valid_idx is None:
            self._valid_idx = np.flatnonzero(self._data["valid"])
        return self._valid_idx

    def sample_indices(self, batch_size: int, rng: Optional[np.random.Generator] = None) -> np.ndarray:
        valid = self.valid_indices()
        if valid.size == 0:
            raise ValueError("cannot sample from an empty replay buffer; wait until it holds transitions")
        rng = np.random.default_rng() if rng is None else rng
        return valid[rng.integers(0, valid.size, size=int(batch_size))]

    def gather(self, idx: np.ndarray) -> Dict[str, object]:
        """Numpy arrays for the transitions starting at slots ``idx``."""
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size and not self._data["valid"][idx].all():
            raise IndexError("gather() was given slots that hold no sampleable transition")
        nxt = (idx + 1) % self.capacity
        d = self._data
        return {
            "observations": {k: v[idx] for k, v in self._obs.items()},
            "next_observations": {k: v[nxt] for k, v in self._obs.items()},
            "actions": d["actions"][idx],
            "rewards": d["rewards"][idx],
            "terminated": d["terminated"][idx].astype(np.float32),
            "grasp_actions": d["grasp_actions"][idx],
            "grasp_penalties": d["grasp_penalties"][idx],
            "intervened": d["intervened"][idx],
        }

    def sample(
        self, batch_size: int, rng: Optional[np.random.Generator] = None, device: Optional[torch.device] = None
    ) -> Batch:
        """Uniformly sample ``batch_size`` transitions (with replacement) as a torch Batch."""
        return to_batch(self.gather(self.sample_indices(batch_size, rng)), device)

    # ------------------------------------------------------------- disk
    def _expected_tensors(self, rows: int) -> Dict[str, Tuple[Tuple[int, ...], np.dtype]]:
        exp = {f"obs/{k}": ((rows, *shape), dtype) for k, (shape, dtype) in self.observation_spec.items()}
        for name, arr in self._data.items():
            exp[name] = ((rows, *arr.shape[1:]), arr.dtype)
        return exp

    def save(self, path: Union[str, Path]) -> Path:
        """Atomically write the filled part of the buffer (safetensors + JSON, no pickle)."""
        rows = self.num_slots_filled
        arrays = {f"obs/{k}": v[:rows] for k, v in self._obs.items()}
        arrays.update({name: arr[:rows] for name, arr in self._data.items()})
        meta = {
            "kind": BUFFER_KIND,
            "buffer_format": BUFFER_FORMAT,
            "capacity": self.capacity,
            "action_dim": self.action_dim,
            "observation_spec": {k: [list(s), str(d)] for k, (s, d) in self.observation_spec.items()},
            "slots_written": self._slots_written,
            "pending": self._pending,
            "last": None if self._last is None else [self._last.episode_id, self._last.done],
            "stats": dict(self.stats),
            "saved_unix_s": time.time(),
        }
        return tensorio.save_file(path, arrays, meta)

    @classmethod
    def load(cls, path: Union[str, Path]) -> "ReplayBuffer":
        """Load a buffer written by :meth:`save`; validates kind, shapes and dtypes."""
        where = str(path)
        with tensorio.FileReader(path) as reader:
            meta = reader.metadata
            if meta.get("kind") != BUFFER_KIND:
                raise tensorio.TensorIOError(f"{where}: holds {meta.get('kind')!r}, not a replay buffer")
            if int(meta.get("buffer_format", -1)) > BUFFER_FORMAT:
                raise tensorio.TensorIOError(f"{where}: buffer format {meta['buffer_format']} is newer than this code")
            try:
                spec = {k: (tuple(s), np.dtype(d)) for k, (s, d) in meta["observation_spec"].items()}
                buf = cls(int(meta["capacity"]), spec, int(meta["action_dim"]))
                slots_written = int(meta["slots_written"])
                pending = meta["pending"]
                last = meta["last"]
            except (KeyError, TypeError, ValueError) as exc:
                raise tensorio.TensorIOError(f"{where}: replay metadata is incomplete or invalid ({exc})") from exc
            rows = min(slots_written, buf.capacity)
            expected = buf._expected_tensors(rows)
            tensorio.check_arrays({k: _ShapeOnly(*v) for k, v in reader.tensors.items()}, expected, where)
            for name in expected:
                target = buf._obs[name[4:]] if name.startswith("obs/") else buf._data[name]
                target[:rows] = reader.get(name)
        valid = buf._data["valid"]
        bad = np.flatnonzero(valid[:rows] & ((np.arange(rows) + 1) % buf.capacity >= rows))
        if bad.size or (pending is not None and not 0 <= int(pending) < max(rows, 1)):
            raise tensorio.TensorIOError(f"{where}: slot pointers are inconsistent; the buffer file is corrupt")
        buf._slots_written = slots_written
        buf._pending = None if pending is None else int(pending)
        buf._last = None if last is None else _Last(int(last[0]), bool(last[1]))
        buf._num_valid = int(valid.sum())
        buf.stats.update({k: int(v) for k, v in meta.get("stats", {}).items() if k in buf.stats})
        return buf


class _ShapeOnly:
    """Stand-in with .shape/.dtype so header info can be validated before reading data."""

    def __init__(self, shape, dtype):
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)


def to_device(t: torch.Tensor, device: Optional[torch.device] = None) -> torch.Tensor:
    """A host tensor on ``device`` (None or the CPU: ``t`` itself). To a CUDA device it is staged
    in pinned memory (torch's caching host allocator, reused from batch to batch) and copied
    with ``non_blocking``: the copy overlaps the GPU's work instead of waiting for it."""
    if device is None:
        return t
    device = torch.device(device)
    if device.type == "cpu":
        return t
    if device.type == "cuda":
        t = t.pin_memory()
    return t.to(device, non_blocking=True)


def to_batch(arrays: Mapping[str, object], device: Optional[torch.device] = None) -> Batch:
    """Wrap :meth:`ReplayBuffer.gather` output (fresh numpy arrays) as torch tensors on ``device``
    (:func:`to_device`; the buffers themselves stay in host memory)."""

    def t(x: np.ndarray) -> torch.Tensor:
        return to_device(torch.from_numpy(np.ascontiguousarray(x)), device)

    return Batch(
        observations={k: t(v) for k, v in arrays["observations"].items()},
        actions=t(arrays["actions"]),
        rewards=t(arrays["rewards"]),
        terminated=t(arrays["terminated"]),
        next_observations={k: t(v) for k, v in arrays["next_observations"].items()},
        grasp_actions=t(arrays["grasp_actions"]),
        grasp_penalties=t(arrays["grasp_penalties"]),
        intervened=t(arrays["intervened"]),
    )


def _concat(parts: Sequence[Mapping[str, object]]) -> Dict[str, object]:
    out: Dict[str, object] = {}
    for key, value in parts[0].items():
        if isinstance(value, dict):
            out[key] = {k: np.concatenate([p[key][k] for p in parts]) for k in value}
        else:
            out[key] = np.concatenate([p[key] for p in parts])
    return out


class MixedSampler:
    """Batches that are ``demo_fraction`` demo and the rest online (RLPD symmetric sampling).

    HIL-SERL samples every batch half from the demo buffer (demonstrations +
    interventions) and half from the RL buffer. The demo part comes first in the
    batch; ``round(batch_size * demo_fraction)`` rows.
    """

    def __init__(self, demo_buffer: ReplayBuffer, rl_buffer: ReplayBuffer, demo_fraction: float = 0.5):
        if not 0.0 <= demo_fraction <= 1.0:
            raise ValueError(f"demo_fraction must be in [0, 1], got {demo_fraction}")
        if demo_buffer.observation_spec != rl_buffer.observation_spec or demo_buffer.action_dim != rl_buffer.action_dim:
            raise ValueError(
                "demo and RL buffers must store the same observation keys/shapes/dtypes and action size: "
                f"{demo_buffer.observation_spec} / {demo_buffer.action_dim} vs "
                f"{rl_buffer.observation_spec} / {rl_buffer.action_dim}"
            )
        self.demo_buffer = demo_buffer
        self.rl_buffer = rl_buffer
        self.demo_fraction = float(demo_fraction)

    def split(self, batch_size: int) -> Tuple[int, int]:
        n_demo = int(round(batch_size * self.demo_fraction))
        return n_demo, batch_size - n_demo

    def sample(
        self, batch_size: int, rng: Optional[np.random.Generator] = None, device: Optional[torch.device] = None
    ) -> Batch:
        rng = np.random.default_rng() if rng is None else rng
        n_demo, n_rl = self.split(batch_size)
        parts = []
        for buf, n, name in ((self.demo_buffer, n_demo, "demo"), (self.rl_buffer, n_rl, "RL")):
            if n == 0:
                continue
            if len(buf) == 0:
                raise ValueError(f"the {name} buffer is empty; fill it before sampling mixed batches")
            parts.append(buf.gather(buf.sample_indices(n, rng)))
        return to_batch(parts[0] if len(parts) == 1 else _concat(parts), device)


def bytes_per_transition(
    cameras: Sequence[str] = ("wrist", "side"),
    mode: Union[str, Mapping[str, str]] = "image",
    proprio_dim: int = 19,
    action_dim: int = 7,
    image_shape: Tuple[int, int, int] = (128, 128, 3),
    feature_shape: Tuple[int, int, int] = FEATURE_SHAPE_128,
    episode_length: Optional[int] = None,
    capacity: int = 1000,
) -> float:
    """Measure bytes per transition of a real buffer of this configuration.

    Allocates a buffer (numpy zero pages are lazily committed, so this is cheap)
    and divides its arrays' ``nbytes`` by the capacity; see
    :meth:`ReplayBuffer.bytes_per_transition` for ``episode_length``.
    """
    buf = ReplayBuffer.for_cameras(capacity, cameras, proprio_dim, action_dim, mode, image_shape, feature_shape)
    return buf.bytes_per_transition(episode_length)
