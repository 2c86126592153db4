"""What the learner node builds from its parameters: the agents, the buffers and the learner."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Sequence, Tuple

import torch

from ..formats import config as cfg
from ..formats.config import ConfigError, param
from ..formats.types import camera_key
from ..robot import frames
from ..vision.augment import random_shift
from ..vision.encoders import ENCODER_DTYPE_HELP, ENCODER_DTYPES, load_frozen_encoder
from .grasp_dqn import GraspDQNAgent, GraspDQNConfig
from .learner import Learner, LearnerConfig
from .replay import ReplayBuffer
from .rlpd import RLPDAgent, RLPDConfig

__all__ = ["LearnerNodeConfig", "dims", "build_learner", "build_learner_for", "resolve_device", "DEVICE_HELP"]

DEVICE_HELP = ("where the agents, the frozen encoder and each sampled batch live: auto (the first CUDA GPU when torch "
               "sees one, else the CPU), cpu, cuda or cuda:N; the replay buffers stay in host memory")
_DEVICE_SETTING = re.compile(r"auto|cpu|cuda(?::\d+)?")
AUGMENT_PAD = 4  # pixels of the random shift with image storage (HIL-SERL: random crop, pad 4)


def _check_device_setting(setting: str) -> None:
    if not isinstance(setting, str) or not _DEVICE_SETTING.fullmatch(setting):
        raise ConfigError(f"device = {setting!r} is not allowed; one of auto, cpu, cuda, cuda:N ({DEVICE_HELP})")


def resolve_device(setting: str) -> torch.device:
    """The torch device a ``device`` setting means on this machine: ``auto`` is ``cuda:0`` when
    ``torch.cuda.is_available()``, else ``cpu``; ``cuda`` is ``cuda:0``. ConfigError (one line naming
    the parameter) for a setting of another form, and for a CUDA device this machine does not have."""
    _check_device_setting(setting)
    if setting == "cpu":
        return torch.device("cpu")
    available = torch.cuda.is_available()
    if setting == "auto":
        return torch.device("cuda", 0) if available else torch.device("cpu")
    if not available:
        why = (f"this torch ({torch.__version__}) is built without CUDA" if torch.version.cuda is None
               else "torch sees no CUDA GPU (driver, CUDA_VISIBLE_DEVICES?)")
        raise ConfigError(f"device = {setting!r}, but {why}; use device:=auto or device:=cpu")
    index = int(setting.split(":")[1]) if ":" in setting else 0
    count = torch.cuda.device_count()
    if index >= count:
        raise ConfigError(f"device = {setting!r}, but torch sees {count} CUDA GPU(s) (cuda:0 to cuda:{count - 1})")
    return torch.device("cuda", index)


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
    final_checkpoint: bool = param(True, "write a checkpoint on a clean shutdown when anything changed since the last one "
                                   "(hilserl eval sets false: its learner only serves a copy of the run's checkpoint)")
    demo_paths: Tuple[str, ...] = param((), "demo files (hilserl bag2demos) that fill the demo buffer at start; not re-added when resuming from a checkpoint, which holds them")
    use_grasp_critic: bool = param(True, "train the grasp critic (DQN over open/stay/close per gripper)")
    torch_threads: int = param(1, "torch CPU threads for training (raise it on a learner host with idle cores; on a shared machine 1 avoids OpenMP threads waiting on busy cores)", low=1, high=256)
    log_period_s: float = param(30.0, "seconds between training-progress lines on the console (updates, rates, buffers, losses); 0 = none", units="s", low=0.0, high=3600.0, live=True)
    weights_dtype: str = param("float16", "float type of the broadcast policy weights (float16 halves the message; training stays float32)", choices=("float16", "float32"))
    device: str = param("auto", DEVICE_HELP)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    agent: RLPDConfig = field(default_factory=RLPDConfig)
    grasp: GraspDQNConfig = field(default_factory=GraspDQNConfig)

    def __post_init__(self) -> None:
        _check_device_setting(self.device)  # its form; whether this machine has it: resolve_device


def dims(conf: LearnerNodeConfig) -> Tuple[int, int]:
    """(proprio_dim, action_dim) of the egocentric observation and twist action over all arms."""
    return frames.proprio_size(1) * len(conf.arms), 6 * len(conf.arms)


def build_learner(conf: LearnerNodeConfig) -> Learner:
    """The learner of ``conf`` on its device (``resolve_device``): agents and frozen encoder there,
    buffers in host memory. Feature storage featurizes each transition as it arrives; image storage
    keeps uint8 images and has the learner shift (``random_shift``, pad 4) and encode each batch."""
    proprio_dim, action_dim = dims(conf)
    cams = tuple(camera_key(e) for e in conf.cameras)
    return build_learner_for(conf, cams, proprio_dim, action_dim, len(conf.arms) if conf.use_grasp_critic else 0)


def build_learner_for(conf: LearnerNodeConfig, cams: Sequence[str], proprio_dim: int, action_dim: int,
                      n_grippers: int) -> Learner:
    """:func:`build_learner` for given observation keys (camera names), proprio and action sizes, and
    grippers for the grasp critic (0 = none): what the arms decide in the graph, an env's spaces in
    the Gymnasium bridge (``hilserl.gym_bridge``)."""
    cams = tuple(cams)
    device = resolve_device(conf.device)
    if device.type != "cpu" and conf.encoder_dtype == "int8":
        raise ConfigError(f"encoder_dtype = 'int8' runs on x86 CPUs only, and the learner's device is {device}; "
                          "use encoder_dtype:=auto (bfloat16 where the GPU has it)")
    encoder = load_frozen_encoder(conf.encoder_weights, conf.encoder_dtype)
    if device.type != "cpu":
        encoder.to(device)  # re-resolves an "auto" precision for the device (encoders.ResNet10Encoder._apply)
    images = conf.learner.storage == "images"
    agents = {"rlpd": RLPDAgent(conf.agent, action_dim, cams, proprio_dim, device=device)}
    if n_grippers:
        grasp = cfg.replace(conf.grasp, n_grippers=n_grippers)
        agents["grasp"] = GraspDQNAgent(grasp, cams, proprio_dim, device=device)
    bufs = [ReplayBuffer.for_cameras(cap, cams, proprio_dim, action_dim, "image" if images else "feature")
            for cap in (conf.learner.demo_capacity, conf.learner.rl_capacity)]
    augment = None
    if images:  # the shifts from a generator on the device, seeded: reproducible, no host round trip
        generator = torch.Generator(device=device).manual_seed(conf.learner.seed)
        augment = functools.partial(random_shift, pad=AUGMENT_PAD, generator=generator)
    return Learner(conf.learner, agents, bufs[0], bufs[1], conf.agent.batch_size, encoder=encoder, augment=augment,
                   device=device)
