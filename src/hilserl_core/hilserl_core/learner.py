"""The learner without ROS: buffers, routing, update schedule, weights, checkpoints.

Separate from the update rules (``rlpd.py``, ``grasp_dqn.py``) and from the node
that feeds it (``hilserl_learner``), as a loop that reads top to bottom:

- ``add(transition)``: cache the frozen encoder's features (if the buffers store
  features), then route: intervention transitions into BOTH the demo and the RL
  buffer, policy transitions only into the RL buffer (paper Sec. on
  interventions); offline demos go to the demo buffer with ``add_demo``.
- ``updates_due()``: the update-to-data schedule: after ``learning_starts``
  transitions, keep ``updates / transitions`` at ``updates_per_transition``
  (so the learner neither idles while data flows nor overfits when it stops).
- ``train_step()``: one mixed batch (50% demo / 50% online), one update of every agent.
- ``policy_weights()``: trainable policy parameters only (never the frozen
  ResNet), with a version that increases on every call.
- ``save_checkpoint`` / ``load_checkpoint``: agents + buffers + counters written to
  a temporary directory and renamed into place, so a crash mid-save leaves the
  previous checkpoint intact; ``latest_checkpoint`` finds it on restart.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np
import torch

from .config import param
from .encoders import CachedFeaturizer
from .replay import DEMO_BUFFER, RL_BUFFER, MixedSampler, ReplayBuffer, route_transition
from .types import Transition

__all__ = ["LearnerConfig", "Learner", "latest_checkpoint", "progress_line"]

CHECKPOINT_FORMAT = "hilserl.learner_checkpoint/1"


@dataclass(frozen=True)
class LearnerConfig:
    rl_capacity: int = param(200_000, "RL (online) replay buffer capacity", units="transitions", low=10, high=10_000_000)
    demo_capacity: int = param(50_000, "demo replay buffer capacity", units="transitions", low=10, high=10_000_000)
    storage: str = param("features", "store frozen-encoder features (CPU learner) or uint8 images (GPU learner, augmentation)", choices=("features", "images"))
    learning_starts: int = param(100, "transitions received before the first update", low=1, high=1_000_000)
    demo_fraction: float = param(0.5, "share of each batch drawn from the demo buffer", low=0.0, high=1.0)
    updates_per_transition: float = param(1.0, "update-to-data ratio: gradient steps per transition received", low=0.0, high=64.0, live=True)
    max_updates_per_s: float = param(1000.0, "cap on the update rate (keeps a shared machine responsive)", units="1/s", low=0.1, high=100_000.0, live=True)
    weights_period_s: float = param(2.0, "minimum time between policy weight broadcasts", units="s", low=0.05, high=3600.0, live=True)
    checkpoint_period_updates: int = param(2000, "updates between checkpoints (0 = never)", low=0, high=10_000_000)
    keep_checkpoints: int = param(2, "checkpoints kept on disk", low=1, high=100)
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
    ):
        if "rlpd" not in agents:
            raise ValueError("the learner needs an 'rlpd' agent (the continuous policy)")
        self.config = config
        self.agents = dict(agents)
        self.buffers = {DEMO_BUFFER: demo_buffer, RL_BUFFER: rl_buffer}
        self.sampler = MixedSampler(demo_buffer, rl_buffer, config.demo_fraction)
        self.batch_size = int(batch_size)
        self.encoder = encoder
        # Reuses the features of the previous next_observation: half the encoder work, and the
        # byte-identical features the buffer needs to store a chained observation once.
        self._featurize = CachedFeaturizer(encoder) if encoder is not None else None
        self.rng = np.random.default_rng(config.seed)
        self.transitions_received = 0
        self.interventions_received = 0
        self.updates = 0
        self.weights_version = 0
        self.last_metrics: Dict[str, float] = {}  # latest value of every update metric

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

    def add(self, t: Transition) -> Tuple[str, ...]:
        """Store an online transition; returns the buffers it went into."""
        prepared = self._prepare(t)
        targets = route_transition(t)
        for name in targets:
            self.buffers[name].add(prepared)
        self.transitions_received += 1
        self.interventions_received += int(t.intervened)
        return targets

    def add_demo(self, t: Transition) -> None:
        """An offline demonstration transition (recorded demos seed the demo buffer)."""
        self.buffers[DEMO_BUFFER].add(self._prepare(t))

    # -- schedule and updates -------------------------------------------------------------
    def ready(self) -> bool:
        return self.transitions_received >= self.config.learning_starts and all(
            len(b) > 0 for name, b in self.buffers.items() if self._needs(name)
        )

    def _needs(self, name: str) -> bool:
        demo_share = self.config.demo_fraction
        return (name == DEMO_BUFFER and demo_share > 0) or (name == RL_BUFFER and demo_share < 1)

    def updates_due(self) -> int:
        """How many updates the update-to-data ratio allows now."""
        if not self.ready():
            return 0
        allowed = int(self.config.updates_per_transition * (self.transitions_received - self.config.learning_starts + 1))
        return max(0, allowed - self.updates)

    def train_step(self) -> Dict[str, float]:
        batch = self.sampler.sample(self.batch_size, self.rng)
        metrics: Dict[str, float] = {}
        for name, agent in self.agents.items():
            info = agent.update(batch)
            metrics.update({f"{name}/{k}": float(v) for k, v in info.items()})
        self.updates += 1
        self.last_metrics.update(metrics)  # the actor's losses stay visible between actor steps
        return metrics

    # -- weights out ---------------------------------------------------------------------
    def policy_weights(self) -> Tuple[Dict[str, torch.Tensor], int]:
        """Trainable policy parameters of every agent (names prefixed by agent) and a new version."""
        state: Dict[str, torch.Tensor] = {}
        for name, agent in self.agents.items():
            state.update({f"{name}/{k}": v for k, v in agent.policy_state_dict().items()})
        self.weights_version += 1
        return state, self.weights_version

    # -- checkpoints ---------------------------------------------------------------------
    def counters(self) -> Dict[str, int]:
        return {
            "transitions_received": self.transitions_received,
            "interventions_received": self.interventions_received,
            "updates": self.updates,
            "weights_version": self.weights_version,
        }

    def save_checkpoint(self, root: "str | Path") -> Path:
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        final = root / f"ckpt_{self.updates:09d}"
        tmp = root / f".tmp_{final.name}_{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for name, agent in self.agents.items():
            agent.save(tmp / name)
        for name, buf in self.buffers.items():
            buf.save(tmp / f"{name}_buffer.safetensors")
        meta = {"format": CHECKPOINT_FORMAT, "saved_unix_s": time.time(), "agents": sorted(self.agents), **self.counters()}
        (tmp / "learner.json").write_text(json.dumps(meta, indent=2))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)  # the checkpoint appears whole or not at all
        for old in sorted(root.glob("ckpt_*"))[: -self.config.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def load_checkpoint(self, path: "str | Path") -> None:
        path = Path(path)
        meta = json.loads((path / "learner.json").read_text())
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path}: not a learner checkpoint (format {meta.get('format')!r})")
        if sorted(meta["agents"]) != sorted(self.agents):
            raise ValueError(f"{path}: holds agents {meta['agents']}, this learner has {sorted(self.agents)}")
        for name, agent in self.agents.items():
            agent.load_state(path / name)
        for name in list(self.buffers):
            self.buffers[name] = ReplayBuffer.load(path / f"{name}_buffer.safetensors")
        self.sampler = MixedSampler(self.buffers[DEMO_BUFFER], self.buffers[RL_BUFFER], self.config.demo_fraction)
        self.transitions_received = int(meta["transitions_received"])
        self.interventions_received = int(meta["interventions_received"])
        self.updates = int(meta["updates"])
        self.weights_version = int(meta["weights_version"])


def latest_checkpoint(root: "str | Path") -> Optional[Path]:
    """Newest complete checkpoint under ``root`` (temporary directories are ignored)."""
    root = Path(root)
    if not root.is_dir():
        return None
    done = sorted(p for p in root.glob("ckpt_*") if (p / "learner.json").is_file())
    return done[-1] if done else None


# What a person watching the console wants per line, in this order (agent/metric names).
PROGRESS_METRICS = ("rlpd/critic_loss", "rlpd/actor_loss", "rlpd/temperature", "grasp/grasp_critic_loss")


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
