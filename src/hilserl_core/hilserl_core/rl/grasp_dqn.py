"""Grasp critic: Double DQN over the discrete gripper actions (HIL-SERL Sec. "Policy learning").

Each gripper has 3 actions (0 = open, 1 = stay, 2 = close); with ``n`` grippers
the critic scores the ``3 ** n`` joint actions, indexed by base-3 digits with
gripper 0 as the least significant digit (the convention of ``actor.py``). The
reward is the environment reward plus ``Batch.grasp_penalties`` (the actor's
-0.02 per gripper state change), and, as in the continuous learner, only
``terminated`` stops bootstrapping: a time limit is not terminal.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ..accel.precision import COMPUTE_DTYPES, autocast, resolve_compute_dtype
from ..formats import config as cfg
from ..formats.config import param
from ..formats.types import FEATURE_SHAPE_128, Batch, Observation
from .checkpoints import load_optimizer, read_agent_files, read_agent_meta, save_optimizer, strip_prefix, write_agent_files
from .networks import GraspCritic, load_trainable_state_dict, trainable_state_dict
from .rlpd import _obs_to_tensors, observation_encoder, polyak_update, scalars

__all__ = [
    "GRIPPER_OPEN",
    "GRIPPER_STAY",
    "GRIPPER_CLOSE",
    "GraspDQNConfig",
    "GraspDQNAgent",
    "GraspPolicy",
    "joint_index_to_gripper_actions",
    "gripper_actions_to_joint_index",
]

GRIPPER_OPEN, GRIPPER_STAY, GRIPPER_CLOSE = 0, 1, 2
FORMAT = "hilserl.grasp_dqn/1"


def joint_index_to_gripper_actions(index: int, n_grippers: int) -> np.ndarray:
    """Joint action index -> per-gripper actions ``[n]`` (base-3 digits, gripper 0 first)."""
    if not 0 <= int(index) < 3**n_grippers:
        raise ValueError(f"joint grasp action {index} is outside [0, {3 ** n_grippers}) for {n_grippers} gripper(s)")
    digits, rest = [], int(index)
    for _ in range(n_grippers):
        digits.append(rest % 3)
        rest //= 3
    return np.asarray(digits, dtype=np.int64)


def gripper_actions_to_joint_index(actions: Sequence[int]) -> int:
    """Per-gripper actions (each 0/1/2, gripper 0 first) -> joint action index."""
    index = 0
    for g, a in enumerate(actions):
        if int(a) not in (GRIPPER_OPEN, GRIPPER_STAY, GRIPPER_CLOSE):
            raise ValueError(f"gripper {g}: action {a} is not 0 (open), 1 (stay) or 2 (close)")
        index += int(a) * 3**g
    return index


@dataclass
class GraspDQNConfig:
    """Grasp-critic hyper-parameters (defaults: the published HIL-SERL implementation)."""

    n_grippers: int = param(1, "number of grippers; the critic scores 3**n joint actions", low=1, high=4)
    discount: float = param(0.97, "discount factor gamma", low=0.0, high=1.0)
    lr: float = param(3e-4, "Adam learning rate", low=0.0, high=1.0)
    tau: float = param(0.005, "Polyak rate of the target network per step", low=0.0, high=1.0)
    hidden_dims: Tuple[int, ...] = param((256, 256), "grasp critic MLP widths", low=1, high=8192)
    layer_norm: bool = param(True, "LayerNorm in the grasp critic MLP")
    num_spatial_kernels: int = param(1, "learned spatial maps per ResNet channel (paper: 8)", low=1, high=64)
    image_bottleneck_dim: int = param(256, "image head output width per camera", low=1, high=4096)
    proprio_latent_dim: int = param(64, "proprio encoder width", low=1, high=4096)
    image_dropout: float = param(0.1, "dropout on the spatial embedding", low=0.0, high=0.99)
    # float32, not auto: in bfloat16 the critic learned the grasp timing task less reliably
    # (tests/core/test_grasp_dqn.py) for a small gain in update speed.
    compute_dtype: str = param(
        "float32", "dtype of the matrix products in updates (see RLPDConfig.compute_dtype; bfloat16 learned less reliably)",
        choices=COMPUTE_DTYPES,
    )
    seed: int = param(0, "seed of the agent's random generator (exploration)", low=0)

    def __post_init__(self) -> None:
        cfg.validate(self, "GraspDQNConfig")


def grasp_network(
    config: GraspDQNConfig,
    camera_names: Sequence[str],
    proprio_dim: int,
    feature_shape: Sequence[int],
    image_encoder: Optional[nn.Module] = None,
    augment: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
) -> nn.ModuleDict:
    """Observation encoder + Q-head over the ``3 ** n`` joint gripper actions."""
    encoder = observation_encoder(config, camera_names, proprio_dim, feature_shape, image_encoder, augment)
    head = GraspCritic(encoder.out_dim, config.n_grippers, config.hidden_dims, config.layer_norm)
    return nn.ModuleDict({"encoder": encoder, "critic": head})


class _EpsilonGreedy:
    """Greedy joint gripper actions, uniform with probability epsilon (seeded)."""

    def _explore(self, epsilon: float) -> Optional[int]:
        """A uniform joint action with probability ``epsilon``, else None (act greedily)."""
        if epsilon > 0 and self.rng.random() < epsilon:
            return int(self.rng.integers(self.num_actions))
        return None

    @staticmethod
    def _q(network: nn.ModuleDict, obs: Mapping[str, torch.Tensor], augment: bool = False) -> torch.Tensor:
        return network["critic"](network["encoder"](obs, augment=augment))

    def q_values(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Q(s, .) ``[B, 3**n]`` of the online network (eval mode, no gradient)."""
        self.network.eval()
        with torch.no_grad():
            return self._q(self.network, obs)

    def act(self, observation: Observation, epsilon: float = 0.0) -> int:
        """Greedy joint gripper action for one observation; uniform with probability ``epsilon``."""
        explore = self._explore(epsilon)
        if explore is not None:
            return explore
        return int(self.q_values(_obs_to_tensors(observation, self.device))[0].argmax())

    def act_from_features(self, features: torch.Tensor, epsilon: float = 0.0) -> int:
        """:meth:`act` from the encoder's output ``[1, out_dim]`` (``network["encoder"]``), same
        random stream: the fused actor path (``accel/fused_heads.py``) computes the features itself."""
        explore = self._explore(epsilon)
        if explore is not None:
            return explore
        with torch.no_grad():
            return int(self.network["critic"](features)[0].argmax())

    def policy_state_dict(self) -> Dict[str, torch.Tensor]:
        """Trainable weights the actor node needs (never the frozen ResNet)."""
        return trainable_state_dict(self.network)

    def load_policy_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        load_trainable_state_dict(self.network, state)


class GraspPolicy(_EpsilonGreedy):
    """The acting half of :class:`GraspDQNAgent`: the online network only (no target network,
    no optimizer); the learner's weights load into it by the agent's names."""

    def __init__(
        self,
        config: GraspDQNConfig,
        camera_names: Sequence[str] = (),
        proprio_dim: int = 0,
        feature_shape: Sequence[int] = FEATURE_SHAPE_128,
        device: str | torch.device = "cpu",
    ) -> None:
        self.config = config
        self.device = torch.device(device)
        self.num_actions = 3**config.n_grippers
        self.rng = np.random.default_rng(config.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.network = grasp_network(config, camera_names, proprio_dim, tuple(feature_shape)).to(self.device)
        self.network.eval()


class GraspDQNAgent(_EpsilonGreedy):
    """Observation encoder + Q-network over joint gripper actions, with a Polyak target copy."""

    def __init__(
        self,
        config: GraspDQNConfig,
        camera_names: Sequence[str] = (),
        proprio_dim: int = 0,
        feature_shape: Sequence[int] = FEATURE_SHAPE_128,
        image_encoder: Optional[nn.Module] = None,
        augment: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.config = config
        self.camera_names = tuple(camera_names)
        self.proprio_dim = int(proprio_dim)
        self.feature_shape = tuple(int(v) for v in feature_shape)
        self.device = torch.device(device)
        self.compute_dtype = resolve_compute_dtype(config.compute_dtype, self.device)
        self.num_actions = 3**config.n_grippers
        self.step = 0
        self.rng = np.random.default_rng(config.seed)
        with torch.random.fork_rng(devices=[]):  # seeded init, caller's RNG stream untouched
            torch.manual_seed(config.seed)
            self.network = grasp_network(config, self.camera_names, self.proprio_dim, self.feature_shape, image_encoder,
                                         augment).to(self.device)
        # The target shares the frozen ResNet (deepcopy memo) instead of holding a second copy.
        memo = {id(image_encoder): image_encoder} if image_encoder is not None else {}
        self.target_network = copy.deepcopy(self.network, memo).requires_grad_(False)
        self.params = [p for p in self.network.parameters() if p.requires_grad]
        target_by_name = dict(self.target_network.named_parameters())
        self._target_params = [target_by_name[n] for n, p in self.network.named_parameters() if p.requires_grad]
        fused = dict(fused=True) if self.device.type in ("cpu", "cuda") else {}
        self.optimizer = torch.optim.Adam(self.params, lr=config.lr, **fused)

    @torch.no_grad()
    def td_target(self, batch: Batch) -> torch.Tensor:
        """Double DQN: y = r + penalty + gamma (1 - terminated) Q'(s', argmax_a Q(s', a))."""
        self.network.eval()
        self.target_network.eval()
        best = self._q(self.network, batch.next_observations, augment=True).argmax(dim=-1, keepdim=True)
        next_q = self._q(self.target_network, batch.next_observations, augment=True).gather(-1, best).squeeze(-1)
        reward = batch.rewards.float() + batch.grasp_penalties.float()
        # Truncation is not in ``terminated``: a time limit still bootstraps (types.py).
        return reward + self.config.discount * (1.0 - batch.terminated.float()) * next_q

    def update(self, batch: Batch) -> Dict[str, float]:
        with autocast(self.device, self.compute_dtype):  # Q outputs and the loss stay float32 (networks.py)
            target = self.td_target(batch)
            self.network.train()
            q_all = self._q(self.network, batch.observations, augment=True)
            q = q_all.gather(-1, batch.grasp_actions.long().unsqueeze(-1)).squeeze(-1)
            loss = ((q - target) ** 2).mean()  # DQN squared TD error (Mnih et al. 2015, Eq. 2), Double-DQN target
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        polyak_update(self._target_params, self.params, self.config.tau)
        self.step += 1
        return scalars({"grasp_critic_loss": loss, "grasp_q_mean": q.detach().mean()})

    def bc_update(self, batch: Batch) -> Dict[str, float]:
        """Behaviour cloning of the gripper (BC and HG-DAgger baselines): cross-entropy of the
        batch's grasp actions over the network's outputs read as logits."""
        with autocast(self.device, self.compute_dtype):
            self.network.train()
            logits = self._q(self.network, batch.observations, augment=True)
            loss = torch.nn.functional.cross_entropy(logits.float(), batch.grasp_actions.long())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        return {"grasp_bc_loss": float(loss.detach())}

    # -------------------------------------------------------------- weights io
    def save(self, directory: str | Path) -> None:
        """Write ``grasp_dqn.safetensors`` and ``grasp_dqn.json`` (see ``checkpoints.write_agent_files``)."""
        tensors = {f"network/{k}": v for k, v in trainable_state_dict(self.network).items()}
        tensors.update({f"target/{k}": v for k, v in trainable_state_dict(self.target_network).items()})
        opt_tensors, groups = save_optimizer(self.optimizer)
        tensors.update({f"optim/{k}": v for k, v in opt_tensors.items()})
        meta = {
            "format": FORMAT,
            "config": cfg.to_dict(self.config),
            "step": self.step,
            "camera_names": list(self.camera_names),
            "proprio_dim": self.proprio_dim,
            "feature_shape": list(self.feature_shape),
            "optimizer_param_groups": groups,
            "rng_state": self.rng.bit_generator.state,
        }
        write_agent_files(directory, "grasp_dqn", tensors, meta)

    def load_state(self, directory: str | Path) -> None:
        tensors, meta = read_agent_files(directory, "grasp_dqn", FORMAT)
        load_trainable_state_dict(self.network, strip_prefix(tensors, "network/"))
        load_trainable_state_dict(self.target_network, strip_prefix(tensors, "target/"))
        load_optimizer(self.optimizer, strip_prefix(tensors, "optim/"), meta["optimizer_param_groups"])
        self.rng.bit_generator.state = meta["rng_state"]
        self.step = int(meta["step"])

    @classmethod
    def load(
        cls,
        directory: str | Path,
        image_encoder: Optional[nn.Module] = None,
        augment: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        device: str | torch.device = "cpu",
    ) -> "GraspDQNAgent":
        meta, where = read_agent_meta(directory, "grasp_dqn")
        config = cfg.from_mapping(GraspDQNConfig, meta["config"], where)
        agent = cls(config, meta["camera_names"], meta["proprio_dim"], meta["feature_shape"], image_encoder, augment, device)
        agent.load_state(directory)
        return agent

