"""What the actor runs: frozen encoder -> RLPD policy (continuous) + grasp critic (gripper), the
acting halves of the agents only (``RLPDPolicy``, ``GraspPolicy``).

The ResNet runs once per observation and its features feed both agents, whose
image heads run as one batched product chain where their shapes allow
(``fused_heads.py``; else module by module, ``fused_why`` says why). Weights
from the learner replace the trainable parameters all at once: every name and
shape is checked before anything is copied, so a bad payload leaves the running
policy untouched (never half old, half new).
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from ..accel.fused_heads import FusedObservationEncoders
from ..accel.threaded_encoder import ThreadedEncoder
from ..formats.types import PROPRIO_KEY, Observation, feature_key, image_key
from ..vision.encoders import ResNet10Encoder, featurize_observation
from .grasp_dqn import GraspDQNConfig, GraspPolicy
from .rlpd import RLPDConfig, RLPDPolicy

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
        encoder_threads: int = 1,
    ):
        """``encoder_threads`` > 1 shares each step's camera frames out over that many threads
        (:class:`accel.threaded_encoder.ThreadedEncoder`): for a machine with a core to spare."""
        self.encoder = encoder
        self._encode = ThreadedEncoder(encoder, encoder_threads)
        self.camera_names = tuple(camera_names)
        # acting needs the policies only: no critics, target networks or optimizers
        self.rlpd = RLPDPolicy(rlpd_config, action_dim, camera_names, proprio_dim)
        self.grasp = GraspPolicy(grasp_config, camera_names, proprio_dim) if grasp_config is not None else None
        self.version = 0
        encoders = [self.rlpd.actor_observation_encoder] + ([self.grasp.network["encoder"]] if self.grasp is not None else [])
        self._fused = FusedObservationEncoders(encoders)
        self.use_fused = self._fused.supported  # False: the agents' own act (module by module)

    @property
    def encoder_threads(self) -> int:
        return self._encode.threads

    def close(self) -> None:
        """Stop the encoder's helper threads (if any)."""
        self._encode.close()

    @property
    def fused_why(self) -> str:
        """Why the image heads run module by module ("" when they are fused)."""
        return self._fused.why

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
        if not self.use_fused:
            feats = featurize_observation(observation, self.encoder, self.camera_names, encode=self._encode)
            action = self.rlpd.act(feats, deterministic=deterministic)
            grasp = self.grasp.act(feats, epsilon=grasp_epsilon) if self.grasp is not None else None
            return action, grasp
        outs = self._fused_outputs(observation)
        action = self.rlpd.actions_from_features(outs[0], deterministic)[0].numpy()
        grasp = self.grasp.act_from_features(outs[1], epsilon=grasp_epsilon) if self.grasp is not None else None
        return action, grasp

    def _fused_outputs(self, observation: Observation):
        """Both agents' observation-encoder outputs: each encoder thread runs the image heads of
        the cameras it encoded, so the heads share the threads too."""
        cams, fused = self.camera_names, self._fused
        fused.prepare()
        if all(image_key(c) in observation for c in cams):
            images = np.stack([np.asarray(observation[image_key(c)]) for c in cams])
            z = torch.cat(self._encode(images, then=lambda a, b, f: fused.heads(torch.from_numpy(f).unsqueeze(1), a, b)))
        else:  # cached features (some or all): encode what is missing, then every head at once
            feats = featurize_observation(observation, self.encoder, cams, encode=self._encode)
            z = fused.heads(torch.stack([torch.as_tensor(np.asarray(feats[feature_key(c)])).unsqueeze(0) for c in cams]))
        proprio = observation.get(PROPRIO_KEY)
        return fused.finish(z, torch.as_tensor(np.asarray(proprio)).unsqueeze(0) if proprio is not None else None)
