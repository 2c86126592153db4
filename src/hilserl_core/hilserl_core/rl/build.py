"""What the learner node builds from its parameters: the agents, the buffers and the learner."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Tuple

from ..formats import config as cfg
from ..formats.config import param
from ..formats.types import camera_key
from ..robot import frames
from ..vision.encoders import ENCODER_DTYPE_HELP, ENCODER_DTYPES, load_frozen_encoder
from .grasp_dqn import GraspDQNAgent, GraspDQNConfig
from .learner import Learner, LearnerConfig
from .replay import ReplayBuffer
from .rlpd import RLPDAgent, RLPDConfig

__all__ = ["LearnerNodeConfig", "dims", "build_learner"]


@dataclass(frozen=True)
class LearnerNodeConfig:
    """The learner node's parameters (``config/params/learner.yaml``)."""

    arms: Tuple[str, ...] = param(("left",), "arm namespaces, in action order")
    cameras: Tuple[str, ...] = param(("left/wrist", "left/side"), "cameras as <arm>/<camera> (observation keys <arm>_<camera>)")
    encoder_weights: str = param("", "frozen ResNet-10 weights (safetensors); empty = random weights (tests/smoke runs only)")
    encoder_dtype: str = param("auto", ENCODER_DTYPE_HELP, choices=ENCODER_DTYPES)
    checkpoint_dir: str = param("", "where checkpoints go and resume comes from (and weights_version.json, the highest "
                                "policy weights version published, so versions never repeat across restarts); empty = "
                                "no checkpoints")
    start_fresh: bool = param(False, "when checkpoint_dir holds checkpoints but none of them loads: false refuses to start "
                              "(a configuration error naming each one and why), true starts training from zero and leaves "
                              "them on disk (a WARN names them); a checkpoint that loads is resumed either way")
    demo_paths: Tuple[str, ...] = param((), "demo files (hilserl bag2demos) that fill the demo buffer at start; not re-added when resuming from a checkpoint, which holds them")
    use_grasp_critic: bool = param(True, "train the grasp critic (DQN over open/stay/close per gripper)")
    torch_threads: int = param(1, "torch CPU threads for training (raise it on a learner host with idle cores; on a shared machine 1 avoids OpenMP threads waiting on busy cores)", low=1, high=256)
    log_period_s: float = param(30.0, "seconds between training-progress lines on the console (updates, rates, buffers, losses); 0 = none", units="s", low=0.0, high=3600.0, live=True)
    weights_dtype: str = param("float16", "float type of the broadcast policy weights (float16 halves the message; training stays float32)", choices=("float16", "float32"))
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    agent: RLPDConfig = field(default_factory=RLPDConfig)
    grasp: GraspDQNConfig = field(default_factory=GraspDQNConfig)


def dims(conf: LearnerNodeConfig) -> Tuple[int, int]:
    """(proprio_dim, action_dim) of the egocentric observation and twist action over all arms."""
    return frames.proprio_size(1) * len(conf.arms), 6 * len(conf.arms)


def build_learner(conf: LearnerNodeConfig) -> Learner:
    proprio_dim, action_dim = dims(conf)
    cams = tuple(camera_key(e) for e in conf.cameras)
    encoder = load_frozen_encoder(conf.encoder_weights, conf.encoder_dtype)
    mode = "feature" if conf.learner.storage == "features" else "image"
    image_encoder = None if mode == "feature" else encoder
    agents = {"rlpd": RLPDAgent(conf.agent, action_dim, cams, proprio_dim, image_encoder=image_encoder)}
    if conf.use_grasp_critic:
        grasp = cfg.replace(conf.grasp, n_grippers=len(conf.arms))
        agents["grasp"] = GraspDQNAgent(grasp, cams, proprio_dim, image_encoder=image_encoder)
    bufs = [ReplayBuffer.for_cameras(cap, cams, proprio_dim, action_dim, mode)
            for cap in (conf.learner.demo_capacity, conf.learner.rl_capacity)]
    return Learner(conf.learner, agents, bufs[0], bufs[1], conf.agent.batch_size,
                   encoder=encoder if mode == "feature" else None)
