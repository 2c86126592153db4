"""The learner without ROS: buffers, routing, update schedule, weights, checkpoints.

Separate from the update rules (``rlpd.py``, ``grasp_dqn.py``) and from the node
that feeds it (``hilserl_learner``), as a loop that reads top to bottom:

- ``check_transition(transition)``: why a transition does not fit the buffers (a
  missing observation key, a wrong shape or dtype, a non-finite value, a grasp
  action out of range), or None; cheap (shapes, and ``isfinite`` on the small
  arrays), so a node can reject an actor configured for other arms or cameras
  before queueing. ``add`` and ``add_demo`` refuse such a transition whole
  (ValueError), never half-inserted.
- ``add(transition)``: cache the frozen encoder's features (if the buffers store
  features), then route: intervention transitions into BOTH the demo and the RL
  buffer, policy transitions only into the RL buffer (paper Sec. on
  interventions); offline demos go to the demo buffer with ``add_demo``.
- ``updates_due()``: the update-to-data schedule: after ``learning_starts``
  transitions, keep ``updates / transitions`` at ``updates_per_transition``
  (so the learner neither idles while data flows nor overfits when it stops).
- ``train_step()``: one mixed batch (50% demo / 50% online) on the agents' device, one
  update of every agent. With image storage the batch's uint8 images are shifted at random
  (``augment``: the paper's random crop, a fresh shift per image) and go through the frozen
  encoder on the device, observations and next observations in one pass per camera; every
  agent then reads the same float16 features that feature storage would hold.
- ``policy_weights()``: trainable policy parameters only (never the frozen
  ResNet), with a version that increases on every call and never repeats: not
  within a process (loading an older checkpoint does not lower it) and not across
  restarts when a version record is kept (``resume`` takes up the record of its
  checkpoint root, ``weights_version.json``; ``policy_weights`` writes each new
  version there, atomically and durably, before returning it). A learner killed
  after publishing v40 and restarted from a checkpoint of v32 goes on with v41.
- ``save_checkpoint`` / ``load_checkpoint``: agents + buffers + counters written to
  a temporary directory, every file and directory fsynced, then renamed into place
  (and the parent directory fsynced), so a crash or power cut mid-save leaves the
  previous checkpoint intact. A checkpoint is named by the learner's ``progress()``
  (updates, transitions received, demos added), so a save after new data but no new
  update is a new checkpoint, not an overwrite. ``load_checkpoint`` validates and
  reads everything before it changes the learner, and restores the agents if one of
  them fails midway: on failure (``CheckpointError``) the learner is unchanged.
  With feature storage the checkpoint records the frozen encoder's identity
  (``ResNet10Encoder.identity``): loading one made with other encoder weights raises
  ``EncoderMismatch`` (its buffers would mix unrelated features); another precision of
  the same weights loads, with a note in ``checkpoint_warnings``.
- ``resume(root)``: tries the checkpoints newest first and keeps the first that
  loads; the ones that failed are reported with the file that did not load and why,
  never deleted. Pruning after a save removes only checkpoints older than the one
  written, and never one known not to load (resume skipped it): such a checkpoint
  neither counts toward ``keep_checkpoints`` (which would prune the good ones in its
  place) nor is deleted, it stays for a person to look at.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..formats.config import param
from ..formats.demos import demo_summary, load_demos
from ..formats.tensorio import fsync_dir, write_atomically
from ..formats.types import FEATURE_PREFIX, FEATURE_SHAPE_128, IMAGE_PREFIX, PROPRIO_KEY, Batch, Transition
from ..vision.encoders import CachedFeaturizer, EncoderMismatch, compare_encoder_identity
from .checkpoints import AgentFileError
from .replay import DEMO_BUFFER, RL_BUFFER, MixedSampler, ReplayBuffer, route_transition, to_batch

__all__ = ["LearnerConfig", "Learner", "UpdatePacer", "CheckpointError", "checkpoints", "latest_checkpoint", "fewest_log_records_held", "progress_line",
           "read_weights_version", "write_weights_version", "WEIGHTS_VERSION_FILE"]

CHECKPOINT_FORMAT = "hilserl.learner_checkpoint/1"
CHECKPOINT_PREFIX = "ckpt_"
_CHECKPOINT_NAME = re.compile(r"ckpt_(\d+(?:_\d+)*)")
WEIGHTS_VERSION_FILE = "weights_version.json"  # the highest policy weights version handed out, in a checkpoint root
WEIGHTS_VERSION_FORMAT = "hilserl.weights_version/1"
# The camera image a cached feature map comes from (the wire carries images; the learner featurizes).
_FEATURE_SOURCE_IMAGE = {FEATURE_SHAPE_128: (128, 128, 3)}
ANALYSIS_OBSERVATIONS = 64  # observations the training analysis averages over


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded into this learner (the learner is left unchanged).
    ``file``: the file (or agent directory) that did not load; the message names it and why."""

    def __init__(self, message: str, file: Optional[Path] = None) -> None:
        super().__init__(message)
        self.file = file


@dataclass(frozen=True)
class LearnerConfig:
    rl_capacity: int = param(200_000, "RL (online) replay buffer capacity", units="transitions", low=10, high=10_000_000)
    demo_capacity: int = param(50_000, "demo replay buffer capacity", units="transitions", low=10, high=10_000_000)
    storage: str = param("features", "features: the frozen encoder runs once on each transition received and the "
                         "buffers keep its float16 features (the CPU learner; no augmentation); images: the buffers keep "
                         "uint8 images and each batch is randomly shifted (pad 4) and encoded on the device (a GPU "
                         "learner: the paper's augmentation)", choices=("features", "images"))
    learning_starts: int = param(100, "transitions received before the first update", low=1, high=1_000_000)
    demo_fraction: float = param(0.5, "share of each batch drawn from the demo buffer", low=0.0, high=1.0)
    algorithm: str = param("rlpd", "rlpd (the paper's method) or bc: behaviour cloning of the demo buffer (demos and "
                           "interventions; with interventions this is HG-DAgger), a baseline; bc draws whole batches from "
                           "the demo buffer", choices=("rlpd", "bc"))
    updates_per_transition: float = param(1.0, "update-to-data ratio: gradient steps per transition received", low=0.0, high=64.0, live=True)
    max_updates_per_s: float = param(1000.0, "cap on the update rate (keeps a shared machine responsive)", units="1/s", low=0.1, high=100_000.0, live=True)
    weights_period_s: float = param(2.0, "minimum time between policy weight broadcasts", units="s", low=0.05, high=3600.0, live=True)
    checkpoint_period_updates: int = param(2000, "updates between checkpoints (0 = never)", low=0, high=10_000_000)
    checkpoint_period_s: float = param(600.0, "seconds between checkpoints, alongside checkpoint_period_updates (whichever "
                                       "comes first), written only when data or updates came in since the last one "
                                       "(updates_per_transition 0 included). Received transitions are safe in the "
                                       "transition log in between; a checkpoint rewrites the whole buffers (hundreds of "
                                       "MB after 10k steps), so not too often. 0 = never", units="s", low=0.0, high=86_400.0)
    keep_checkpoints: int = param(2, "checkpoints kept on disk", low=1, high=100)
    analysis_period_updates: int = param(500, "updates between the paper's training analysis (the rlpd agent's "
                                         "action_analysis: Q variance around the policy's action, Eq. 1, and the "
                                         "policy's mean and std) on a fixed-size seeded sample of the RL buffer's "
                                         "observations; in ``analysis`` and the diagnostics. 0 = never", low=0, high=10_000_000)
    seed: int = param(0, "sampling seed", low=0)


class Learner:
    def __init__(
        self,
        config: LearnerConfig,
        agents: Mapping[str, Any],
        demo_buffer: ReplayBuffer,
        rl_buffer: ReplayBuffer,
        batch_size: int,
        encoder: Optional[torch.nn.Module] = None,
        augment: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        device: "str | torch.device | None" = None,
    ):
        """``encoder``: the frozen encoder, on ``device``; feature storage runs it on each transition
        received, image storage on each batch, after ``augment`` (uint8 ``[B, H, W, 3]`` in and out).
        ``device``: where batches go (default: the rlpd agent's device)."""
        if "rlpd" not in agents:
            raise ValueError("the learner needs an 'rlpd' agent (the continuous policy)")
        self.config = config
        self.agents = dict(agents)
        self.buffers = {DEMO_BUFFER: demo_buffer, RL_BUFFER: rl_buffer}
        self.sampler = MixedSampler(demo_buffer, rl_buffer, self.demo_share)
        self.batch_size = int(batch_size)
        self.encoder = encoder
        self.augment = augment
        self.device = torch.device(device if device is not None else getattr(agents["rlpd"], "device", "cpu"))
        # Reuses the features of the previous next_observation: half the encoder work, and the
        # byte-identical features the buffer needs to store a chained observation once.
        features = config.storage == "features"
        self._featurize = CachedFeaturizer(encoder) if encoder is not None and features else None
        self.rng = np.random.default_rng(config.seed)
        self.transitions_received = 0
        self.interventions_received = 0
        self.demos_added = 0
        self.updates = 0
        self.weights_version = 0
        self._highest_version = 0  # the highest version handed out or recorded: never handed out again
        self.version_record: Optional[Path] = None  # weights_version.json, once resume took up a checkpoint root
        self._unloadable: set = set()  # checkpoints resume found damaged: never pruned, never counted as kept
        self.last_metrics: Dict[str, float] = {}  # latest value of every update metric
        self.analysis: Dict[str, float] = {}  # the latest training analysis (``analyze``), agent-prefixed
        self.analysis_updates = 0  # the updates it was taken at
        self.checkpoint_warnings: List[str] = []  # what the last loaded checkpoint said (e.g. another precision)
        # which received transitions the buffers hold (rl.delivery.LearnerInbox.checkpoint_state): saved
        # and restored with the buffers, so a restart knows what to take back from the transition log
        self.delivery_state: Dict[str, Any] = {}

    # -- data in -------------------------------------------------------------------------
    def _prepare(self, t: Transition) -> Transition:
        if self.config.storage != "features" or self._featurize is None:
            return t
        return Transition(
            observation=self._featurize(t.observation),
            action=t.action,
            reward=t.reward,
            terminated=t.terminated,
            truncated=t.truncated,
            next_observation=self._featurize(t.next_observation),
            intervened=t.intervened,
            grasp_action=t.grasp_action,
            grasp_penalty=t.grasp_penalty,
            episode_id=t.episode_id,
            step=t.step,
            info=t.info,
        )

    def check_transition(self, t: Transition, targets: Optional[Tuple[str, ...]] = None) -> Optional[str]:
        """Why ``t`` cannot go into the buffers ``targets`` (default: where ``add`` routes it),
        or None when it fits. Reads only the buffers' fixed specs: safe from any thread."""
        for name in route_transition(t) if targets is None else targets:
            buf = self.buffers[name]
            for what, obs in (("observation", t.observation), ("next_observation", t.next_observation)):
                problem = self._check_observation(obs, buf, what)
                if problem:
                    return problem
            action = np.asarray(t.action)
            if action.size != buf.action_dim or not np.issubdtype(action.dtype, np.number):
                return f"action has {action.size} values ({action.dtype}), this learner expects {buf.action_dim}"
        if not np.all(np.isfinite(np.asarray(t.action, dtype=np.float64))):
            return "action is not finite"
        for what, value in (("reward", t.reward), ("grasp_penalty", t.grasp_penalty)):
            if not np.isfinite(float(value)):
                return f"{what} {value} is not finite"
        for name, agent in self.agents.items():
            n = getattr(agent, "num_actions", None)  # the grasp critic's joint gripper actions
            if n is not None and not 0 <= int(t.grasp_action) < n:
                return f"grasp_action {t.grasp_action} is outside [0, {n}) of agent {name!r}"
        return None

    def _check_observation(self, obs: Mapping[str, Any], buf: ReplayBuffer, what: str) -> Optional[str]:
        for key, (shape, dtype) in buf.observation_spec.items():
            source, want, want_dtype = key, shape, dtype
            if key.startswith(FEATURE_PREFIX) and key not in obs and self._featurize is not None:
                # the learner featurizes images itself: the actor sends the camera image
                source = IMAGE_PREFIX + key[len(FEATURE_PREFIX):]
                want, want_dtype = _FEATURE_SOURCE_IMAGE.get(shape), np.dtype(np.uint8)
            if source not in obs:
                present = sorted(k for k in obs if k != PROPRIO_KEY)
                return f"{what} lacks {source!r} (it carries {present}); this learner's buffers store {sorted(buf.observation_spec)}"
            value = np.asarray(obs[source])
            if want is None:  # an image for a feature map of unusual size: [H, W, 3]
                ok = value.ndim == 3 and value.shape[-1] == 3
                want = "[H, W, 3]"
            else:
                ok = value.shape == tuple(want)
            if not ok:
                return f"{what}[{source!r}] has shape {value.shape}, this learner expects {want}"
            if want_dtype == np.uint8 and value.dtype != np.uint8:
                return f"{what}[{source!r}] is {value.dtype}, images must be uint8"
            if want_dtype != np.uint8:
                if not np.issubdtype(value.dtype, np.number):
                    return f"{what}[{source!r}] is {value.dtype}, not numeric"
                if not np.all(np.isfinite(value)):
                    return f"{what}[{source!r}] is not finite"
        return None

    def add(self, t: Transition) -> Tuple[str, ...]:
        """Store an online transition; returns the buffers it went into. ValueError (and nothing
        stored, nothing counted) for a transition that does not fit (``check_transition``)."""
        targets = route_transition(t)
        problem = self.check_transition(t, targets)
        if problem:
            raise ValueError(problem)
        prepared = self._prepare(t)
        for name in targets:
            self.buffers[name].add(prepared)
        self.transitions_received += 1
        self.interventions_received += int(t.intervened)
        return targets

    def add_demo(self, t: Transition) -> None:
        """An offline demonstration transition (recorded demos seed the demo buffer)."""
        problem = self.check_transition(t, (DEMO_BUFFER,))
        if problem:
            raise ValueError(problem)
        self.buffers[DEMO_BUFFER].add(self._prepare(t))
        self.demos_added += 1

    def preload_demos(self, paths: Sequence[Union[str, Path]]) -> List[Tuple[str, Dict[str, int]]]:
        """Fill the demo buffer from demo files (``formats.demos``); per file its summary.

        All files are read and checked before anything is added, so a bad file (DemoFileError)
        or a transition that does not fit (ValueError naming the file) leaves the buffer as it was.
        """
        loaded = []
        for path in paths:
            transitions, _ = load_demos(path)
            for t in transitions:
                problem = self.check_transition(t, (DEMO_BUFFER,))
                if problem:
                    raise ValueError(f"{path}: demo transition {t.episode_id}/{t.step} does not fit this learner: {problem}")
            loaded.append((str(path), transitions))
        for _, transitions in loaded:
            for t in transitions:
                self.add_demo(t)
        return [(path, demo_summary(ts)) for path, ts in loaded]

    # -- schedule and updates -------------------------------------------------------------
    def ready(self) -> bool:
        return self.transitions_received >= self.config.learning_starts and all(
            len(b) > 0 for name, b in self.buffers.items() if self._needs(name)
        )

    @property
    def demo_share(self) -> float:
        """Share of a batch from the demo buffer: behaviour cloning learns from the demo buffer alone."""
        return 1.0 if self.config.algorithm == "bc" else self.config.demo_fraction

    def _needs(self, name: str) -> bool:
        demo_share = self.demo_share
        return (name == DEMO_BUFFER and demo_share > 0) or (name == RL_BUFFER and demo_share < 1)

    def updates_due(self) -> int:
        """How many updates the update-to-data ratio allows now."""
        if not self.ready():
            return 0
        allowed = int(self.config.updates_per_transition * (self.transitions_received - self.config.learning_starts + 1))
        return max(0, allowed - self.updates)

    def train_step(self) -> Dict[str, float]:
        batch = self.sampler.sample(self.batch_size, self.rng, None if self.device.type == "cpu" else self.device)
        if self.config.storage == "images" and self.encoder is not None:
            batch = self.encode_images(batch)
        metrics: Dict[str, float] = {}
        for name, agent in self.agents.items():
            info = agent.bc_update(batch) if self.config.algorithm == "bc" else agent.update(batch)
            metrics.update({f"{name}/{k}": float(v) for k, v in info.items()})
        self.updates += 1
        self.last_metrics.update(metrics)  # the actor's losses stay visible between actor steps
        period = self.config.analysis_period_updates
        if period and self.updates % period == 0:
            self.analyze()
        return metrics

    def analyze(self, observations: int = ANALYSIS_OBSERVATIONS) -> Dict[str, float]:
        """The agents' training analysis (``RLPDAgent.action_analysis``) on up to ``observations``
        observations of the RL buffer (the demo buffer while it is empty), drawn without
        replacement by a generator seeded with the seed and the update count: training's own
        random streams are untouched. Kept in ``analysis`` (agent-prefixed), taken at
        ``analysis_updates``."""
        buf = self.buffers[RL_BUFFER] if len(self.buffers[RL_BUFFER]) else self.buffers[DEMO_BUFFER]
        valid = buf.valid_indices()
        if valid.size == 0:
            return {}
        rng = np.random.default_rng((self.config.seed, self.updates))
        idx = np.sort(rng.choice(valid, size=min(observations, valid.size), replace=False))
        obs = to_batch(buf.gather(idx), None if self.device.type == "cpu" else self.device).observations
        if self.config.storage == "images" and self.encoder is not None:
            # no random shift: the same view of the same observations each time
            obs = {(FEATURE_PREFIX + k[len(IMAGE_PREFIX):] if k.startswith(IMAGE_PREFIX) else k):
                   (self._encode(v, shift=False) if k.startswith(IMAGE_PREFIX) else v) for k, v in obs.items()}
        out: Dict[str, float] = {}
        for name, agent in self.agents.items():
            if hasattr(agent, "action_analysis"):
                values = agent.action_analysis(obs, seed=self.config.seed + self.updates)
                out.update({f"{name}/{k}": v for k, v in values.items()})
        self.analysis, self.analysis_updates = out, self.updates
        return out

    def encode_images(self, batch: Batch) -> Batch:
        """The batch with each camera's ``image/<cam>`` replaced by ``feature/<cam>``: the images of
        observations and next observations, each shifted by ``augment`` (when given), through the
        frozen encoder in one pass on the batch's device, as float16 (feature storage's dtype)."""
        obs, nxt = dict(batch.observations), dict(batch.next_observations)
        for key in [k for k in obs if k.startswith(IMAGE_PREFIX)]:
            features = self._encode(torch.cat([obs.pop(key), nxt.pop(key)]), shift=True)
            cam = key[len(IMAGE_PREFIX):]
            obs[FEATURE_PREFIX + cam], nxt[FEATURE_PREFIX + cam] = features.split(len(features) // 2)
        return dataclasses.replace(batch, observations=obs, next_observations=nxt)

    def _encode(self, images: torch.Tensor, shift: bool) -> torch.Tensor:
        """uint8 images through the frozen encoder as float16 features (feature storage's dtype),
        after ``augment`` when ``shift`` (and one is given)."""
        with torch.no_grad():
            if shift and self.augment is not None:
                images = self.augment(images)
            return self.encoder(images).to(torch.float16)

    # -- weights out ---------------------------------------------------------------------
    def policy_weights(self) -> Tuple[Dict[str, torch.Tensor], int]:
        """Trainable policy parameters of every agent (names prefixed by agent) and a new version,
        above every version handed out before (recorded first in ``version_record`` if there is
        one: if that write fails, OSError and no version is handed out)."""
        state: Dict[str, torch.Tensor] = {}
        for name, agent in self.agents.items():
            state.update({f"{name}/{k}": v for k, v in agent.policy_state_dict().items()})
        version = max(self.weights_version, self._highest_version) + 1
        if self.version_record is not None:
            write_weights_version(self.version_record, version)  # durable before anyone sees the version
        self.weights_version = self._highest_version = version
        return state, version

    def record_versions_in(self, root: "str | Path") -> None:
        """Keep the highest weights version in ``root/weights_version.json`` from now on, and go on
        above the version recorded there (ValueError naming the file if it is unreadable)."""
        path = Path(root) / WEIGHTS_VERSION_FILE
        self._highest_version = max(self._highest_version, read_weights_version(path))
        self.weights_version = max(self.weights_version, self._highest_version)
        self.version_record = path

    # -- checkpoints ---------------------------------------------------------------------
    def counters(self) -> Dict[str, int]:
        return {
            "transitions_received": self.transitions_received,
            "interventions_received": self.interventions_received,
            "demos_added": self.demos_added,
            "updates": self.updates,
            "weights_version": self.weights_version,
        }

    def progress(self) -> Tuple[int, int, int]:
        """(updates, transitions received, demos added): what a checkpoint must capture. It
        names the checkpoint; when it has not changed since the last save, nothing is lost."""
        return self.updates, self.transitions_received, self.demos_added

    def save_checkpoint(self, root: "str | Path") -> Path:
        """Write agents + buffers + counters as ``root/ckpt_<updates>_<transitions>_<demos>``.

        Everything goes into a temporary directory first; every file in it and the directory
        itself are fsynced before the rename, and ``root`` after it, so after a crash or a
        power cut the checkpoint is there whole or not at all. Then checkpoints older than
        this one are pruned down to ``keep_checkpoints``."""
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        final = root / (CHECKPOINT_PREFIX + "_".join(f"{v:09d}" for v in self.progress()))
        tmp = root / f".tmp_{final.name}_{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for name, agent in self.agents.items():
            agent.save(tmp / name)
        for name, buf in self.buffers.items():
            buf.save(tmp / f"{name}_buffer.safetensors")
        meta = {"format": CHECKPOINT_FORMAT, "saved_unix_s": time.time(), "agents": sorted(self.agents), **self.counters(),
                "delivery": self.delivery_state}
        encoder_id = self._encoder_identity()
        if encoder_id is not None:  # the buffers hold this encoder's features
            meta["encoder"] = encoder_id
        with open(tmp / "learner.json", "w") as f:
            f.write(json.dumps(meta, indent=2))
        _fsync_tree(tmp)  # the data is on disk before the rename publishes it
        old = None
        if final.resolve() in self._unloadable:  # a damaged checkpoint of the same progress: kept aside, not replaced
            aside = root / f"{final.name}.damaged"
            shutil.rmtree(aside, ignore_errors=True)
            os.replace(final, aside)
            self._unloadable.discard(final.resolve())
        elif final.exists():  # the same progress saved again: swap, never a moment without it
            old = root / f".old_{final.name}_{os.getpid()}"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
        os.replace(tmp, final)  # the checkpoint appears whole or not at all
        fsync_dir(root)  # the rename itself is durable
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self._prune(root, final)
        return final

    def _prune(self, root: Path, written: Path) -> None:
        """Keep ``written`` and the ``keep_checkpoints - 1`` newest checkpoints older than it. Newer
        ones (a damaged one resume skipped, or another writer's) and ones known not to load stay, and
        do not count: a damaged checkpoint never takes the place of a good one."""
        key = _checkpoint_key(written)
        older = [p for p in checkpoints(root) if _checkpoint_key(p) < key and p.resolve() not in self._unloadable]
        for stale in older[max(0, self.config.keep_checkpoints - 1):]:
            shutil.rmtree(stale, ignore_errors=True)

    def load_checkpoint(self, path: "str | Path") -> None:
        """Restore a checkpoint written by ``save_checkpoint``. Everything is read and checked
        before the learner changes; agents are restored from a snapshot if one fails midway.
        CheckpointError (with the cause) when it cannot be loaded: the learner is unchanged."""
        path = Path(path)
        reading = path / "learner.json"  # the file being read, for the error
        try:
            meta = json.loads(reading.read_text())
            if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
                got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
                raise ValueError(f"not a learner checkpoint (format {got!r})")
            if sorted(meta["agents"]) != sorted(self.agents):
                raise ValueError(f"holds agents {meta['agents']}, this learner has {sorted(self.agents)}")
            encoder_id = self._encoder_identity()
            warning = compare_encoder_identity(meta.get("encoder"), encoder_id, f"checkpoint {path}",
                                               "set checkpoint_dir to a new directory") if encoder_id else ""
            counters = {k: int(meta[k]) for k in ("transitions_received", "interventions_received", "updates", "weights_version")}
            counters["demos_added"] = int(meta.get("demos_added", 0))  # older checkpoints did not count demos
            delivery = meta.get("delivery") or {}
            if not isinstance(delivery, dict):
                raise ValueError(f"'delivery' must be an object, got {type(delivery).__name__}")
            buffers = {}
            for name, current in self.buffers.items():
                reading = path / f"{name}_buffer.safetensors"
                buf = ReplayBuffer.load(reading)
                if buf.observation_spec != current.observation_spec or buf.action_dim != current.action_dim:
                    raise ValueError(
                        f"{name} buffer stores {sorted(buf.observation_spec)} with {buf.action_dim}-D actions, "
                        f"this learner {sorted(current.observation_spec)} with {current.action_dim}-D actions")
                buffers[name] = buf
            reading = path
            self._load_agents(path)
        except (CheckpointError, EncoderMismatch):  # a mismatch is not damage: resume must not skip it
            raise
        except _AgentLoadError as exc:  # the file an agent failed on, and why
            cause = exc.__cause__
            reason = str(cause) if isinstance(cause, AgentFileError) else _file_reason(exc.file, cause)
            raise CheckpointError(reason, exc.file) from cause
        except Exception as exc:  # noqa: BLE001 - whatever a damaged file raises, the answer is the same
            raise CheckpointError(_file_reason(reading, exc), reading) from exc
        # nothing below can fail: the learner switches to the checkpoint in one go
        self.buffers = buffers
        self.sampler = MixedSampler(self.buffers[DEMO_BUFFER], self.buffers[RL_BUFFER], self.demo_share)
        for key, value in counters.items():
            setattr(self, key, value)
        self.weights_version = max(self.weights_version, self._highest_version)  # an older checkpoint: never a repeat
        self.checkpoint_warnings = [warning] if warning else []
        self.delivery_state = delivery

    def _encoder_identity(self) -> Optional[Dict[str, str]]:
        """The identity of the encoder whose features the buffers store (feature storage only)."""
        if self.config.storage != "features" or self.encoder is None or not hasattr(self.encoder, "identity"):
            return None
        return self.encoder.identity()

    def _load_agents(self, path: Path) -> None:
        """Load every agent from ``path``; if one fails, put all of them back as they were."""
        with tempfile.TemporaryDirectory(prefix="hilserl_agents_") as snap:
            for name, agent in self.agents.items():
                agent.save(Path(snap) / name)
            try:
                for name, agent in self.agents.items():
                    try:
                        agent.load_state(path / name)
                    except Exception as exc:  # noqa: BLE001 - named by its file below
                        file = exc.file if isinstance(exc, AgentFileError) else _agent_file(path / name)
                        raise _AgentLoadError(file) from exc
            except BaseException:
                for name, agent in self.agents.items():
                    agent.load_state(Path(snap) / name)
                raise

    def resume(self, root: "str | Path") -> Tuple[Optional[Path], List[Tuple[Path, str]]]:
        """Load the newest checkpoint under ``root`` that loads. Returns its path (None when
        none did: the learner stays as it was) and the newer ones that failed, each with why,
        the reason naming the file that did not load. Nothing is deleted, and the failed ones are
        never pruned later (``save_checkpoint``). ``EncoderMismatch`` is raised, not skipped: the
        checkpoints are sound, the configuration is not the one they were made with.

        The weights-version record of ``root`` is taken up first (``record_versions_in``): versions
        go on above every version published from ``root``, whichever checkpoint loads."""
        self.record_versions_in(root)
        skipped: List[Tuple[Path, str]] = []
        for path in checkpoints(root):
            try:
                self.load_checkpoint(path)
            except CheckpointError as exc:
                skipped.append((path, str(exc)))
                self._unloadable.add(path.resolve())
                continue
            return path, skipped
        return None, skipped


class _AgentLoadError(Exception):
    """An agent's files did not load (``file``: the agent's file, the cause chained)."""

    def __init__(self, file: Path) -> None:
        super().__init__(str(file))
        self.file = file


def _agent_file(directory: Path) -> Path:
    """The tensor file of the agent saved in ``directory`` (the directory if it holds not exactly one)."""
    found = sorted(directory.glob("*.safetensors")) if directory.is_dir() else []
    return found[0] if len(found) == 1 else directory


def _file_reason(file: Path, exc: Optional[BaseException]) -> str:
    """One line: the file, the exception type and its text (the file named once)."""
    text = " ".join(str(exc).split())
    kind = type(exc).__name__ if exc is not None else "error"
    if text.startswith(f"{file}: "):  # the message named it already
        text = text[len(f"{file}: "):]
    return f"{file}: {kind}: {text}"


def read_weights_version(path: "str | Path") -> int:
    """The version recorded by ``write_weights_version`` (0 if there is no record). ValueError
    naming the file when it is unreadable: guessing could hand out a version twice."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return 0
    try:
        meta = json.loads(text)
        if not isinstance(meta, dict) or meta.get("format") != WEIGHTS_VERSION_FORMAT:
            raise ValueError(f"not a weights-version record (format {meta.get('format') if isinstance(meta, dict) else None!r})")
        version = meta["version"]
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise ValueError(f"version {version!r} is not a non-negative integer")
        return version
    except (ValueError, KeyError) as exc:
        raise ValueError(f"{path}: unreadable weights-version record ({type(exc).__name__}: {exc}); it holds the highest "
                         "policy weights version published from this checkpoint_dir: remove it only if no actor holds "
                         "weights of this run (else versions can repeat)") from exc


def write_weights_version(path: "str | Path", version: int) -> None:
    """Record ``version`` in ``path``: a temporary file, fsynced, renamed over it, the directory
    fsynced, so after a crash or a power cut the old record or the new one is there, whole."""
    record = {"format": WEIGHTS_VERSION_FORMAT, "version": int(version), "written_unix_s": time.time()}
    write_atomically(path, lambda f: f.write(json.dumps(record).encode()))


def _checkpoint_key(path: Path) -> Tuple[int, ...]:
    match = _CHECKPOINT_NAME.fullmatch(path.name)
    return tuple(int(v) for v in match.group(1).split("_")) if match else ()


def checkpoints(root: "str | Path") -> List[Path]:
    """Checkpoint directories under ``root``, newest (most progress) first; temporary
    directories of a save in progress are not checkpoints. Whether each loads is not checked."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _CHECKPOINT_NAME.fullmatch(p.name)]
    return sorted(found, key=_checkpoint_key, reverse=True)


def fewest_log_records_held(root: "str | Path") -> int:
    """The fewest transition-log records any checkpoint under ``root`` holds (its ``delivery``
    state; 0 when one is unreadable): the log must keep the records from there on."""
    lowest = None
    for path in checkpoints(root):
        try:
            applied = int(json.loads((path / "learner.json").read_text()).get("delivery", {}).get("applied", 0))
        except (OSError, ValueError, AttributeError, TypeError):
            applied = 0
        lowest = applied if lowest is None else min(lowest, applied)
    return lowest or 0


def latest_checkpoint(root: "str | Path") -> Optional[Path]:
    """Newest checkpoint under ``root`` that has its ``learner.json`` (see ``Learner.resume``
    for the one that actually loads)."""
    return next((p for p in checkpoints(root) if (p / "learner.json").is_file()), None)


def _fsync_tree(root: Path) -> None:
    """fsync every file under ``root``, then every directory (deepest first)."""
    dirs = []
    for dirpath, _, filenames in os.walk(root):
        dirs.append(dirpath)
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    for d in reversed(dirs):
        fsync_dir(Path(d))


class UpdatePacer:
    """The training loop's pacing (``LearnerConfig``): how long to pause after an update so the
    rate stays under ``max_updates_per_s``, when weights are due (``weights_period_s``) and when a
    checkpoint is: something changed since the last one written (or loaded), and either
    ``checkpoint_period_updates`` updates or ``checkpoint_period_s`` seconds have passed since it
    (the seconds count also with no updates at all: data collection keeps what it received)."""

    def __init__(self, checkpoint_progress: Tuple[int, int, int], now_s: Optional[float] = None) -> None:
        self.last_weights_s = float("-inf")  # never published yet
        self.last_checkpoint = checkpoint_progress  # Learner.progress() when the last checkpoint was written (or loaded)
        self.last_checkpoint_s = time.monotonic() if now_s is None else now_s  # when (the clock of now_s)

    @staticmethod
    def pause_s(config: LearnerConfig, update_started_s: float, now_s: float) -> float:
        return max(0.0, 1.0 / config.max_updates_per_s - (now_s - update_started_s))

    def weights_due(self, config: LearnerConfig, now_s: float) -> bool:
        return now_s - self.last_weights_s >= config.weights_period_s

    def weights_published(self, now_s: float) -> None:
        self.last_weights_s = now_s

    def checkpoint_due(self, config: LearnerConfig, progress: Tuple[int, int, int], now_s: float) -> bool:
        """A checkpoint is due at ``progress`` (``Learner.progress()``) and ``now_s`` (monotonic)."""
        if not self.changed_since_checkpoint(progress):
            return False
        every, period_s = config.checkpoint_period_updates, config.checkpoint_period_s
        return ((bool(every) and progress[0] - self.last_checkpoint[0] >= every)
                or (period_s > 0 and now_s - self.last_checkpoint_s >= period_s))

    def changed_since_checkpoint(self, progress: Tuple[int, int, int]) -> bool:
        return progress != self.last_checkpoint

    def checkpointed(self, progress: Tuple[int, int, int], now_s: Optional[float] = None) -> None:
        self.last_checkpoint = progress
        self.last_checkpoint_s = time.monotonic() if now_s is None else now_s


# What a person watching the console wants per line, in this order (agent/metric names).
PROGRESS_METRICS = ("rlpd/critic_loss", "rlpd/actor_loss", "rlpd/temperature", "grasp/grasp_critic_loss",
                    "rlpd/q_action_variance", "rlpd/policy_std")


def progress_line(
    counters: Mapping[str, int],
    before: Mapping[str, int],
    elapsed_s: float,
    buffer_sizes: Mapping[str, int],
    metrics: Mapping[str, float],
) -> str:
    """One console line of training progress: totals, rates since ``before`` (``counters()``
    ``elapsed_s`` ago), buffer fill and the latest losses."""
    def rate(key: str) -> float:
        return (counters[key] - before.get(key, 0)) / elapsed_s if elapsed_s > 0 else 0.0

    parts = [
        f"updates {counters['updates']} ({rate('updates'):.1f}/s)",
        f"transitions {counters['transitions_received']} ({rate('transitions_received'):.1f}/s, "
        f"{counters['interventions_received']} intervened)",
        "buffers " + " / ".join(f"{name} {size}" for name, size in buffer_sizes.items()),
        f"weights v{counters['weights_version']}",
    ]
    losses = [f"{key.split('/', 1)[1]} {metrics[key]:.4g}" for key in PROGRESS_METRICS if key in metrics]
    return ", ".join(parts + ([" ".join(losses)] if losses else []))
