"""Typed records passed between the actor, the replay buffers and the learner.

Observation keys (one flat namespace, the same on the wire, in buffers and in batches):

- ``"proprio"``: float32 ``[P]`` egocentric proprioception (see ``frames.py``).
- ``"image/<cam>"``: uint8 ``[H, W, 3]`` RGB, normally 128x128 after cropping.
- ``"feature/<cam>"``: float16 ``[h, w, C]`` output of the frozen image encoder,
  channel-last (``encoders.ResNet10Encoder``: ``[4, 4, 512]`` for 128x128 input,
  ``FEATURE_SHAPE_128``). A buffer in feature mode stores these instead of
  images so CPU learner updates never re-run the ResNet. Channel-last is the
  layout the learned spatial embedding reads fastest (``networks``) and the one
  of the flax encoders HIL-SERL's published weights come from.

Episode boundaries (HIL-SERL defect list: "time-limit truncation treated as terminal"):

- ``terminated``: the MDP really ended (task success, or an unrecoverable failure);
  the target does not bootstrap.
- ``truncated``: the episode was cut for a reason outside the MDP (time limit,
  operator reset); the target DOES bootstrap from ``next_observation``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict

import numpy as np

from .config import ConfigError

Observation = Dict[str, np.ndarray]

PROPRIO_KEY = "proprio"
IMAGE_PREFIX = "image/"
FEATURE_PREFIX = "feature/"
FEATURE_SHAPE_128 = (4, 4, 512)  # frozen ResNet-10 features of a 128x128 image, channel-last [h, w, C]


def image_key(camera: str) -> str:
    return IMAGE_PREFIX + camera


def feature_key(camera: str) -> str:
    return FEATURE_PREFIX + camera


def split_camera(entry: str) -> tuple:
    """A ``<arm>/<camera>`` parameter entry (e.g. ``left/wrist``) -> ``("left", "wrist")``."""
    arm, _, cam = entry.partition("/")
    if not arm or not cam or "/" in cam:
        raise ConfigError(f"camera entry '{entry}' must look like <arm>/<camera>, e.g. left/wrist")
    return arm, cam


def camera_key(entry: str) -> str:
    """``left/wrist`` -> ``left_wrist``: the camera's observation key suffix (``image/left_wrist``)."""
    return "_".join(split_camera(entry))


@dataclass
class Transition:
    """One environment step as the actor executed it.

    ``action`` is the continuous action actually executed (policy or operator),
    normalised to [-1, 1] per dimension, in the current end-effector frame.
    ``grasp_action`` indexes the joint discrete gripper action
    (``3 ** n_grippers`` choices; per gripper 0 = open, 1 = stay, 2 = close).
    ``grasp_penalty`` is the (non-positive) gripper-change penalty for this step,
    added to ``reward`` for the grasp critic only.
    """

    observation: Observation
    action: np.ndarray
    reward: float
    terminated: bool
    truncated: bool
    next_observation: Observation
    intervened: bool = False
    grasp_action: int = 1
    grasp_penalty: float = 0.0
    episode_id: int = 0
    step: int = 0
    info: Dict[str, float] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        """The episode ends after this step (for either reason)."""
        return bool(self.terminated or self.truncated)


@dataclass
class Batch:
    """A training batch of torch tensors (all on one device).

    ``observations``/``next_observations`` map the observation keys above to
    ``[B, ...]`` tensors (uint8 images, float16/float32 features, float32 proprio).
    ``terminated`` is float ``[B]`` (1.0 = no bootstrap); truncation is not in it.
    """

    observations: Dict[str, "torch.Tensor"]  # noqa: F821
    actions: "torch.Tensor"  # noqa: F821  float32 [B, A]
    rewards: "torch.Tensor"  # noqa: F821  float32 [B]
    terminated: "torch.Tensor"  # noqa: F821  float32 [B]
    next_observations: Dict[str, "torch.Tensor"]  # noqa: F821
    grasp_actions: "torch.Tensor"  # noqa: F821  int64 [B]
    grasp_penalties: "torch.Tensor"  # noqa: F821  float32 [B]
    intervened: "torch.Tensor"  # noqa: F821  bool [B]

    @property
    def size(self) -> int:
        return int(self.actions.shape[0])
