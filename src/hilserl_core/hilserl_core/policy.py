"""What the actor runs: frozen encoder -> RLPD actor (continuous) + grasp critic (gripper).

The ResNet runs once per observation and its features feed both heads. Weights
from the learner replace the trainable parameters all at once: every name and
shape is checked before anything is copied, so a bad payload leaves the running
policy untouched (never half old, half new).
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from .encoders import ResNet10Encoder, featurize_observation
from .grasp_dqn import GraspDQNAgent, GraspDQNConfig
from .rlpd import RLPDAgent, RLPDConfig
from .types import Observation

__all__ = ["PolicyRunner", "WeightsMismatch"]


class WeightsMismatch(ValueError):
    """A weights payload does not fit this policy (other architecture or config)."""


class PolicyRunner:
    def __init__(
        self,
        rlpd_config: RLPDConfig,
        action_dim: int,
        camera_names: Sequence[str],
        proprio_dim: int,
        encoder: ResNet10Encoder,
        grasp_config: Optional[GraspDQNConfig] = None,
    ):
        self.encoder = encoder
        self.camera_names = tuple(camera_names)
        self.rlpd = RLPDAgent(rlpd_config, action_dim, camera_names, proprio_dim)
        self.grasp = GraspDQNAgent(grasp_config, camera_names, proprio_dim) if grasp_config is not None else None
        self.rlpd.eval_mode()
        self.version = 0

    def agents(self) -> Dict[str, object]:
        return {"rlpd": self.rlpd, **({"grasp": self.grasp} if self.grasp is not None else {})}

    def expected_weights(self) -> Dict[str, Tuple[Tuple[int, ...], torch.dtype]]:
        out = {}
        for name, agent in self.agents().items():
            for k, v in agent.policy_state_dict().items():
                out[f"{name}/{k}"] = (tuple(v.shape), v.dtype)
        return out

    def load_weights(self, arrays: Mapping[str, np.ndarray], version: int) -> None:
        """Swap in new trainable weights (learner naming ``<agent>/<param>``), all or nothing."""
        expected = self.expected_weights()
        missing = sorted(set(expected) - set(arrays))
        unexpected = sorted(set(arrays) - set(expected))
        if missing or unexpected:
            raise WeightsMismatch(
                f"weights v{version} do not fit this policy: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''} (do actor and learner use the same agent config?)"
            )
        bad = [k for k, (shape, _) in expected.items() if tuple(np.shape(arrays[k])) != shape]
        if bad:
            raise WeightsMismatch(f"weights v{version}: shape mismatch for {bad[:5]}")
        non_float = [k for k, (_, dtype) in expected.items() if dtype.is_floating_point and not np.issubdtype(np.asarray(arrays[k]).dtype, np.floating)]
        if non_float:
            raise WeightsMismatch(f"weights v{version}: non-float values for float parameters {non_float[:5]}")
        for name, agent in self.agents().items():
            prefix = name + "/"
            # float16 on the wire is copied into the float32 parameters (load_trainable_state_dict converts)
            agent.load_policy_state_dict({k[len(prefix):]: torch.as_tensor(np.asarray(v)) for k, v in arrays.items() if k.startswith(prefix)})
        self.version = int(version)

    @torch.no_grad()
    def act(self, observation: Observation, deterministic: bool = False, grasp_epsilon: float = 0.0) -> Tuple[np.ndarray, Optional[int]]:
        """Continuous action ``[A]`` in [-1, 1] and the joint gripper action (None without a grasp critic)."""
        feats = featurize_observation(observation, self.encoder, self.camera_names)
        action = self.rlpd.act(feats, deterministic=deterministic)
        grasp = self.grasp.act(feats, epsilon=grasp_epsilon) if self.grasp is not None else None
        return action, grasp
