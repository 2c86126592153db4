"""RLPD learner: SAC with a LayerNorm critic ensemble (Ball et al. 2023; HIL-SERL learner).

One ``update(batch)`` is one gradient step of the critic. Every
``critic_actor_ratio``-th call also steps the actor and the temperature;
the other calls leave them untouched (docs/ARCHITECTURE.md anchor defect: "the actor
moved by the optimizer on critic-only steps"). The 50/50 demo/online mixing
happens in ``replay.MixedSampler``, before a batch reaches this module.

Encoder sharing: by default one ``ObservationEncoder`` (image heads + proprio
encoder) is trained by the critic loss only; the actor reads its features
*detached* (DrQ-v2 style), and the target critic is a Polyak copy of the
Q-ensemble that reads the online encoder's dropout-free features of
``next_obs``. SERL-style separate actor and critic encoders
(``actor_encoder="separate"``) cost an extra image-head forward on ``next_obs``
every step and a forward+backward on ``obs`` every actor step (slower).
On actor steps the three losses are taken at the same parameters
(SERL's joint update), so the actor reuses the critic's projection of ``obs``.

Precision: ``compute_dtype="auto"`` runs the matrix products in bfloat16 where the
hardware has native bfloat16 (``accel/precision.py``); parameters, losses and the Q and
policy output layers stay float32. Speed figures: docs/BENCHMARKS.md.

Spatial kernels: the paper uses k = 8 (a 4096 -> 256 Dense per camera); on a CPU learner
that is several times slower than k = 1, so ``num_spatial_kernels`` defaults to 1; set 8 on
a GPU learner. Checkpoint files: ``checkpoints.py``.
"""

from __future__ import annotations

import copy
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ..accel.paths import spatial_fast_path
from ..accel.precision import COMPUTE_DTYPES, autocast, resolve_compute_dtype
from ..formats import config as cfg
from ..formats.config import ConfigError, param
from ..formats.types import FEATURE_SHAPE_128, Batch, Observation
from .checkpoints import load_optimizer, read_agent_files, read_agent_meta, save_optimizer, strip_prefix, write_agent_files
from .networks import (
    CriticEnsemble,
    ObservationEncoder,
    TanhGaussianActor,
    load_trainable_state_dict,
    trainable_state_dict,
)

__all__ = ["RLPDConfig", "RLPDAgent", "RLPDPolicy", "polyak_update", "scalars", "restore_generator"]

FORMAT = "hilserl.rlpd/1"


@dataclass
class RLPDConfig:
    """RLPD/SAC hyper-parameters. Defaults: the published HIL-SERL implementation, except
    ``num_spatial_kernels`` (CPU default, see the field)."""

    batch_size: int = param(256, "transitions per gradient step (half demo, half online)", low=1, high=65536)
    discount: float = param(0.97, "discount factor gamma", low=0.0, high=1.0)
    actor_lr: float = param(3e-4, "Adam learning rate of the actor", low=0.0, high=1.0)
    critic_lr: float = param(3e-4, "Adam learning rate of the critic ensemble and encoder", low=0.0, high=1.0)
    temperature_lr: float = param(3e-4, "Adam learning rate of log(temperature)", low=0.0, high=1.0)
    tau: float = param(0.005, "Polyak rate of the target critic per critic step", low=0.0, high=1.0)
    init_temperature: float = param(0.01, "initial SAC temperature alpha", low=1e-8, high=100.0)
    num_critics: int = param(2, "critic ensemble size N (RLPD recommends 10)", low=1, high=64)
    num_min_critics: int = param(2, "random subset of target critics whose min forms the target", low=1, high=64)
    critic_actor_ratio: int = param(2, "critic steps per actor/temperature step", low=1, high=64)
    backup_entropy: bool = param(False, "subtract alpha*log pi(a'|s') in the TD target")
    target_entropy_per_dim: float = param(
        -0.5,
        "SAC target entropy per continuous action dimension (SAC's heuristic: -1; SERL/HIL-SERL: -1/2, "
        "where hil-serl also counts the gripper dimension: -(6 + 1)/2 for one arm)",
        low=-10.0,
        high=10.0,
    )
    actor_hidden_dims: Tuple[int, ...] = param((256, 256), "actor MLP widths", low=1, high=8192)
    critic_hidden_dims: Tuple[int, ...] = param((256, 256), "critic MLP widths", low=1, high=8192)
    actor_layer_norm: bool = param(True, "LayerNorm in the actor MLP")
    critic_layer_norm: bool = param(True, "LayerNorm in the critic MLP (RLPD: required for stability)")
    log_std_min: float = param(-5.0, "lower bound of the policy log-std", low=-20.0, high=0.0)
    log_std_max: float = param(2.0, "upper bound of the policy log-std", low=-5.0, high=5.0)
    num_spatial_kernels: int = param(
        1,
        "learned spatial maps per ResNet channel (paper: 8; 1 is the CPU default, "
        "see benchmarks/learner_throughput.py)",
        low=1,
        high=64,
    )
    image_bottleneck_dim: int = param(256, "image head output width per camera", low=1, high=4096)
    proprio_latent_dim: int = param(64, "proprio encoder width", low=1, high=4096)
    image_dropout: float = param(0.1, "dropout on the spatial embedding", low=0.0, high=0.99)
    actor_encoder: str = param(
        "shared_detached",
        "actor reads the critic's encoder features detached (DrQ-v2) or has its own encoder (SERL)",
        choices=("shared_detached", "separate"),
    )
    compute_dtype: str = param(
        "auto",
        "dtype of the matrix products in updates: auto = bfloat16 where the hardware has native "
        "bfloat16 (precision.py), else float32; parameters, losses and Q outputs stay float32",
        choices=COMPUTE_DTYPES,
    )
    seed: int = param(0, "seed of the agent's own random generator (noise, target subsets)", low=0)

    def __post_init__(self) -> None:
        cfg.validate(self, "RLPDConfig")
        if self.num_min_critics > self.num_critics:
            raise ConfigError(
                f"RLPDConfig: num_min_critics = {self.num_min_critics} exceeds num_critics = {self.num_critics}; "
                "the target takes the min over a subset of the ensemble"
            )
        if self.log_std_min >= self.log_std_max:
            raise ConfigError(f"RLPDConfig: log_std_min {self.log_std_min} must be < log_std_max {self.log_std_max}")


def polyak_update(target: Sequence[torch.Tensor], online: Sequence[torch.Tensor], tau: float) -> None:
    """theta' <- tau * theta + (1 - tau) * theta' (in place, all tensors at once)."""
    with torch.no_grad():
        torch._foreach_lerp_(list(target), list(online), tau)


def scalars(values: Mapping[str, torch.Tensor]) -> Dict[str, float]:
    """Python floats of 0-d tensors, copied to the host together: on a GPU one synchronisation
    per update instead of one per value."""
    if not values:
        return {}
    return dict(zip(values, torch.stack([v.detach().float() for v in values.values()]).tolist()))


def restore_generator(generator: torch.Generator, state: torch.Tensor, saved_on: str) -> None:
    """Put back a generator state that ``get_state`` gave on a device of type ``saved_on``. A CPU
    generator's state and a CUDA one's are different things (a checkpoint written on a GPU host and
    resumed on a CPU one, or back): then ``generator`` is seeded from a digest of the saved state,
    a new stream that the same checkpoint gives again."""
    if saved_on == generator.device.type:
        generator.set_state(state)
        return
    digest = hashlib.sha256(state.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes()).digest()
    generator.manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def _obs_to_tensors(obs: Mapping[str, np.ndarray], device: torch.device) -> Dict[str, torch.Tensor]:
    return {k: torch.as_tensor(np.asarray(v)).unsqueeze(0).to(device) for k, v in obs.items()}


def observation_encoder(
    config: "RLPDConfig",  # or a GraspDQNConfig: the same four fields
    camera_names: Sequence[str],
    proprio_dim: int,
    feature_shape: Sequence[int],
    image_encoder: Optional[nn.Module] = None,
    augment: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
) -> ObservationEncoder:
    """Image heads + proprio encoder (HIL-SERL: learned spatial embedding, bottleneck, Dense 64 + LayerNorm + tanh),
    sized by an agent config's ``num_spatial_kernels``, ``image_bottleneck_dim``, ``proprio_latent_dim``, ``image_dropout``.
    The spatial embedding's speed path is the one ``accel.paths`` chooses for this host."""
    return ObservationEncoder(
        camera_names,
        proprio_dim,
        feature_shape=feature_shape,
        num_spatial_kernels=config.num_spatial_kernels,
        bottleneck_dim=config.image_bottleneck_dim,
        proprio_latent_dim=config.proprio_latent_dim,
        dropout=config.image_dropout,
        image_encoder=image_encoder,
        augment=augment,
        spatial_fast_path=spatial_fast_path(),
    )


def tanh_gaussian_actor(config: RLPDConfig, feat_dim: int, action_dim: int) -> TanhGaussianActor:
    return TanhGaussianActor(
        feat_dim, action_dim, config.actor_hidden_dims, config.actor_layer_norm, config.log_std_min, config.log_std_max
    )


class _GaussianPolicy:
    """Acting from features and the policy weights the learner sends, shared by the agent and its
    acting half: ``actor``, ``generator`` and ``actor_observation_encoder`` come from either."""

    @torch.no_grad()
    def actions_from_features(self, features: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """Actions ``[B, A]`` in [-1, 1] from the actor encoder's output ``[B, out_dim]`` (``actor_observation_encoder``)."""
        return self.actor.mode(features) if deterministic else self.actor.sample(features, self.generator)[0]

    def policy_state_dict(self) -> Dict[str, torch.Tensor]:
        """What the actor node needs to act (trainable weights only, never the frozen ResNet)."""
        out = {f"encoder/{k}": v for k, v in trainable_state_dict(self.actor_observation_encoder).items()}
        out.update({f"actor/{k}": v for k, v in trainable_state_dict(self.actor).items()})
        return out

    def load_policy_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        load_trainable_state_dict(self.actor_observation_encoder, strip_prefix(state, "encoder/"))
        load_trainable_state_dict(self.actor, strip_prefix(state, "actor/"))


class RLPDPolicy(_GaussianPolicy):
    """The acting half of :class:`RLPDAgent`: the observation encoder the actor reads and the
    actor, nothing else (no critics, targets or optimizers). Its ``policy_state_dict`` has the
    agent's names, so the learner's weights load into it."""

    def __init__(
        self,
        config: RLPDConfig,
        action_dim: int,
        camera_names: Sequence[str] = (),
        proprio_dim: int = 0,
        feature_shape: Sequence[int] = FEATURE_SHAPE_128,
        device: str | torch.device = "cpu",
    ) -> None:
        self.config = config
        self.action_dim = int(action_dim)
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.encoder = observation_encoder(config, camera_names, proprio_dim, tuple(feature_shape)).to(self.device)
            self.actor = tanh_gaussian_actor(config, self.encoder.out_dim, self.action_dim).to(self.device)
        self.encoder.eval()
        self.actor.eval()

    @property
    def actor_observation_encoder(self) -> ObservationEncoder:
        return self.encoder

    @torch.no_grad()
    def act(self, observation: Observation, deterministic: bool = False) -> np.ndarray:
        """One observation (numpy dict) -> one action (numpy ``[A]``)."""
        features = self.encoder(_obs_to_tensors(observation, self.device))
        return self.actions_from_features(features, deterministic)[0].cpu().numpy()


class RLPDAgent(_GaussianPolicy):
    """Actor, critic ensemble, target critic, temperature and their optimizers."""

    def __init__(
        self,
        config: RLPDConfig,
        action_dim: int,
        camera_names: Sequence[str] = (),
        proprio_dim: int = 0,
        feature_shape: Sequence[int] = FEATURE_SHAPE_128,
        image_encoder: Optional[nn.Module] = None,
        augment: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        device: str | torch.device = "cpu",
    ) -> None:
        if action_dim < 1:
            raise ValueError(f"action_dim (continuous action dims) must be >= 1, got {action_dim}")
        self.config = config
        self.action_dim = int(action_dim)
        self.camera_names = tuple(camera_names)
        self.proprio_dim = int(proprio_dim)
        self.feature_shape = tuple(int(v) for v in feature_shape)
        self.device = torch.device(device)
        self.compute_dtype = resolve_compute_dtype(config.compute_dtype, self.device)
        self.step = 0  # update() calls so far
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed)
        # Seeded initialisation without touching the caller's global RNG stream.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self._build_networks(image_encoder, augment)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(config.init_temperature), device=self.device))
        # Over the continuous dims only; the gripper is the grasp critic's business.
        self.target_entropy = config.target_entropy_per_dim * self.action_dim

        self.critic_params = [p for p in self.encoder.parameters() if p.requires_grad] + list(self.critic.parameters())
        self.actor_params = list(self.actor.parameters())
        if self.actor_encoder is not None:
            self.actor_params = [p for p in self.actor_encoder.parameters() if p.requires_grad] + self.actor_params
        # fused Adam: one kernel for all parameters (the default on CPU is a per-tensor Python loop).
        fused = dict(fused=True) if self.device.type in ("cpu", "cuda") else {}
        self.critic_optimizer = torch.optim.Adam(self.critic_params, lr=config.critic_lr, **fused)
        self.actor_optimizer = torch.optim.Adam(self.actor_params, lr=config.actor_lr, **fused)
        self.temperature_optimizer = torch.optim.Adam([self.log_alpha], lr=config.temperature_lr, **fused)
        self._online_critic = list(self.critic.parameters())
        self._target_critic = list(self.target_critic.parameters())

    def _build_networks(self, image_encoder: Optional[nn.Module], augment) -> None:
        config = self.config
        shapes = (self.camera_names, self.proprio_dim, self.feature_shape)
        self.encoder = observation_encoder(config, *shapes, image_encoder, augment).to(self.device)
        separate = config.actor_encoder == "separate"
        self.actor_encoder = observation_encoder(config, *shapes, image_encoder, augment).to(self.device) if separate else None
        feat_dim = self.encoder.out_dim
        self.critic = CriticEnsemble(
            feat_dim, self.action_dim, config.num_critics, config.critic_hidden_dims, config.critic_layer_norm
        ).to(self.device)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor = tanh_gaussian_actor(config, feat_dim, self.action_dim).to(self.device)

    # ------------------------------------------------------------------ acting
    @property
    def temperature(self) -> float:
        return float(self.log_alpha.detach().exp())

    def _actor_features(
        self,
        obs: Mapping[str, torch.Tensor],
        critic_features: Optional[torch.Tensor] = None,
        augment: bool = False,
        dropout: Optional[bool] = None,
    ):
        """What the actor reads: the critic encoder's features detached (given or computed), or its own encoder's."""
        if self.actor_encoder is None:
            return (self.encoder(obs, augment, dropout) if critic_features is None else critic_features).detach()
        return self.actor_encoder(obs, augment, dropout)

    @torch.no_grad()
    def sample_actions(self, obs: Mapping[str, torch.Tensor], deterministic: bool = False) -> torch.Tensor:
        """Batched actions ``[B, A]`` in [-1, 1] from observation tensors."""
        was_training = self.encoder.training
        self.eval_mode()
        actions = self.actions_from_features(self._actor_features(obs), deterministic)
        self.train_mode(was_training)
        return actions

    @property
    def actor_observation_encoder(self) -> ObservationEncoder:
        """The observation encoder whose output the actor reads (its own, or the critic's detached)."""
        return self.actor_encoder if self.actor_encoder is not None else self.encoder

    def act(self, observation: Observation, deterministic: bool = False) -> np.ndarray:
        """One environment observation (numpy dict) -> one action (numpy ``[A]``)."""
        obs = _obs_to_tensors(observation, self.device)
        return self.sample_actions(obs, deterministic)[0].cpu().numpy()

    def eval_mode(self) -> None:
        self.train_mode(False)

    def train_mode(self, mode: bool = True) -> None:
        for m in (self.encoder, self.actor, self.critic, self.actor_encoder):
            if m is not None:
                m.train(mode)

    # ---------------------------------------------------------------- learning
    def target_members(self) -> torch.Tensor:
        """Random subset of ``num_min_critics`` target critics (RLPD: in-target minimisation)."""
        perm = torch.randperm(self.config.num_critics, generator=self.generator, device=self.device)
        return perm[: self.config.num_min_critics]

    @torch.no_grad()
    def td_target(
        self,
        rewards: torch.Tensor,
        terminated: torch.Tensor,
        next_features: torch.Tensor,
        next_actor_features: torch.Tensor,
        members: Optional[torch.Tensor] = None,
        next_noise: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """y = r + gamma * (1 - terminated) * (min_{i in subset} Q'_i(s', a') [- alpha log pi(a'|s')]).

        ``next_noise`` (the policy's standard-normal draw for a') and ``members``
        come from the agent's generator unless given.
        """
        next_actions, next_log_probs = self.actor.sample(next_actor_features, self.generator, next_noise)
        members = self.target_members() if members is None else members
        if members.numel() == self.config.num_critics:
            members = None  # the subset is the whole ensemble: skip gathering the weights
        next_q = self.target_critic(next_features, next_actions, members).min(dim=0).values
        if self.config.backup_entropy:
            next_q = next_q - self.log_alpha.exp() * next_log_probs  # soft value, SAC Eq. 3
        # Truncation is not in ``terminated``: a time limit still bootstraps (types.py).
        return rewards + self.config.discount * (1.0 - terminated) * next_q

    def _losses(
        self,
        obs: Mapping[str, torch.Tensor],
        next_obs: Mapping[str, torch.Tensor],
        actions: torch.Tensor,
        rewards: torch.Tensor,
        terminated: torch.Tensor,
        members: torch.Tensor,
        next_noise: torch.Tensor,
        noise: Optional[torch.Tensor],
        update_actor: bool,
    ) -> Dict[str, torch.Tensor]:
        """All losses of one update, from tensors and pre-drawn noise (a pure function of
        its arguments and the parameters: no generator use, no module mode switches).

        ``total`` is the sum of the critic loss and, on actor steps, the actor and
        temperature losses. One backward of it gives each parameter set exactly the
        gradient of its own loss: the actor loss sees the critic's parameters and the
        encoder's features detached, the temperature loss sees a detached entropy, and
        the TD target carries no gradient.
        """
        # Forward passes under mixed precision where configured (precision.py); the
        # backward follows outside, gradients land in the float32 parameters.
        with autocast(self.device, self.compute_dtype):
            # Encoder with gradient and dropout on s; s' without gradient and without dropout.
            features = self.encoder(obs, augment=True, dropout=True)
            with torch.no_grad():
                next_features = self.encoder(next_obs, augment=True, dropout=False)
                next_actor_features = self._actor_features(next_obs, next_features, augment=True, dropout=False)
            target = self.td_target(rewards, terminated, next_features, next_actor_features, members, next_noise)
            projection = self.critic.input_projection(features)
            q = self.critic.forward_from_projection(projection, actions)  # [N, B], float32
            critic_loss = ((q - target.unsqueeze(0)) ** 2).mean()  # SAC Eq. 5 (soft Bellman residual), every member
            out = {"total": critic_loss, "critic_loss": critic_loss, "q_mean": q.mean(), "target_mean": target.mean()}
            if update_actor:
                actor_features = self._actor_features(obs, features, augment=True, dropout=True)
                new_actions, log_probs = self.actor.sample(actor_features, noise=noise)
                # RLPD: ensemble mean; gradient through the actions only
                q_pi = self.critic.forward_from_projection(projection.detach(), new_actions, detach_params=True)
                alpha = self.log_alpha.detach().exp()
                actor_loss = (alpha * log_probs - q_pi.mean(dim=0)).mean()  # SAC Eq. 7 (reparameterised objective)
                entropy = -log_probs.detach().mean()
                temperature_loss = self.log_alpha.exp() * (entropy - self.target_entropy)  # SAC Eq. 18
                out.update(
                    total=critic_loss + actor_loss + temperature_loss,
                    actor_loss=actor_loss,
                    entropy=entropy,
                    temperature_loss=temperature_loss,
                )
        return out

    def update(self, batch: Batch, update_actor: Optional[bool] = None) -> Dict[str, float]:
        """One critic step; plus one actor and temperature step every ``critic_actor_ratio`` calls.

        On actor steps all three losses are taken at the same parameters (as in
        SERL/HIL-SERL's joint update), so the actor loss reuses the critic's
        projection of ``obs``. ``update_actor`` overrides the schedule.
        """
        if update_actor is None:
            update_actor = (self.step + 1) % self.config.critic_actor_ratio == 0
        # Random draws from the agent's generator, in a fixed order (reproducible by seed).
        shape = (batch.actions.shape[0], self.action_dim)
        next_noise = torch.randn(shape, generator=self.generator, device=self.device)
        members = self.target_members()
        noise = torch.randn(shape, generator=self.generator, device=self.device) if update_actor else None
        self.train_mode(True)
        losses = self._losses(
            batch.observations,
            batch.next_observations,
            batch.actions.float(),
            batch.rewards.float(),
            batch.terminated.float(),
            members,
            next_noise,
            noise,
            bool(update_actor),
        )

        self.critic_optimizer.zero_grad(set_to_none=True)
        if update_actor:
            self.actor_optimizer.zero_grad(set_to_none=True)
            self.temperature_optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        if update_actor:
            self.actor_optimizer.step()
            self.temperature_optimizer.step()
        self.critic_optimizer.step()
        polyak_update(self._target_critic, self._online_critic, self.config.tau)  # theta' <- tau theta + (1-tau) theta'
        # the losses as taken before the steps, the temperature after them: one copy to the host
        values = scalars({**{k: v for k, v in losses.items() if k != "total"}, "temperature": self.log_alpha.exp()})
        info = {k: v for k, v in values.items() if k != "temperature"}
        info["actor_updated"] = float(update_actor)
        info["temperature"] = values["temperature"]
        self.step += 1
        return info

    def bc_update(self, batch: Batch) -> Dict[str, float]:
        """Behaviour cloning, the paper's BC and HG-DAgger baselines: one step on the negative
        log-likelihood of the batch's actions under the policy (its image heads included; the
        critics are not trained)."""
        self.train_mode(True)
        with autocast(self.device, self.compute_dtype):
            encoder = self.actor_encoder if self.actor_encoder is not None else self.encoder
            features = encoder(batch.observations, augment=True, dropout=True)
            bc_loss = -self.actor.log_prob(features, batch.actions.float()).mean()
        self.actor_optimizer.zero_grad(set_to_none=True)
        self.critic_optimizer.zero_grad(set_to_none=True)  # holds the shared encoder's heads
        bc_loss.backward()
        self.actor_optimizer.step()
        self.critic_optimizer.step()  # parameters without a gradient (the critics) are left alone
        self.step += 1
        return {"bc_loss": float(bc_loss.detach())}

    # ---------------------------------------------------------------- analysis
    @torch.no_grad()
    def action_analysis(
        self, obs: Mapping[str, torch.Tensor], num_samples: int = 100, noise: float = 0.2, seed: int = 0
    ) -> Dict[str, float]:
        """The paper's training analysis on observations ``obs`` (a batch, no gradient, no dropout,
        float32; the agent's random streams untouched):

        - ``q_action_variance``: Eq. 1, Var_u[Q(s, a + u)] with a the policy's deterministic action
          and ``num_samples`` draws u ~ U[-noise, noise]^d (a + u clipped to [-1, 1]), averaged over
          the observations. Q is the ensemble mean, the value the actor maximises (SAC Eq. 7 here).
          A critic that ignores its action input gives 0; a sharp peak around a gives a large value.
        - ``policy_mean_abs``: mean |mu| of the Gaussian (before tanh) over dims and observations.
        - ``policy_std``: mean of the Gaussian's std over dims and observations.
        """
        was_training = self.encoder.training
        self.eval_mode()
        try:
            features = self.encoder(obs).float()
            mean, log_std = self.actor.distribution_params(self._actor_features(obs, features).float())
            action = torch.tanh(mean)  # the deterministic action (actor.mode)
            b, d = action.shape
            generator = torch.Generator(device=self.device).manual_seed(int(seed))
            u = torch.rand((b, num_samples, d), generator=generator, device=self.device) * (2 * noise) - noise
            perturbed = (action.unsqueeze(1) + u).clamp(-1.0, 1.0).reshape(b * num_samples, d)
            # the observation part of the first layer once per observation, repeated per sample
            projection = self.critic.input_projection(features).repeat_interleave(num_samples, dim=1)
            q = self.critic.forward_from_projection(projection, perturbed).mean(dim=0).reshape(b, num_samples)
            return scalars({
                "q_action_variance": q.var(dim=1, unbiased=False).mean(),  # Eq. 1
                "policy_mean_abs": mean.abs().mean(),
                "policy_std": log_std.exp().mean(),
            })
        finally:
            self.train_mode(was_training)

    # -------------------------------------------------------------- weights io
    def modules(self) -> Dict[str, nn.Module]:
        mods: Dict[str, nn.Module] = {
            "encoder": self.encoder,
            "actor": self.actor,
            "critic": self.critic,
            "target_critic": self.target_critic,
        }
        if self.actor_encoder is not None:
            mods["actor_encoder"] = self.actor_encoder
        return mods

    def _optimizers(self) -> Dict[str, torch.optim.Optimizer]:
        return {
            "critic": self.critic_optimizer,
            "actor": self.actor_optimizer,
            "temperature": self.temperature_optimizer,
        }

    def save(self, directory: str | Path) -> None:
        """Write ``agent.safetensors`` (all tensors) and ``agent.json`` (config, step, optimizer groups)."""
        tensors: Dict[str, torch.Tensor] = {}
        for name, mod in self.modules().items():
            tensors.update({f"{name}/{k}": v for k, v in trainable_state_dict(mod).items()})
        tensors["log_alpha"] = self.log_alpha.detach().cpu().clone()
        tensors["rng_state"] = self.generator.get_state().clone()  # a CPU tensor, also for a CUDA generator
        groups = {}
        for name, opt in self._optimizers().items():
            t, g = save_optimizer(opt)
            tensors.update({f"optim/{name}/{k}": v for k, v in t.items()})
            groups[name] = g
        meta = {
            "format": FORMAT,
            "config": cfg.to_dict(self.config),
            "step": self.step,
            "action_dim": self.action_dim,
            "camera_names": list(self.camera_names),
            "proprio_dim": self.proprio_dim,
            "feature_shape": list(self.feature_shape),
            "optimizer_param_groups": groups,
            "rng_device": self.generator.device.type,  # what rng_state is the state of (restore_generator)
        }
        write_agent_files(directory, "agent", tensors, meta)

    def load_state(self, directory: str | Path) -> None:
        """Restore everything ``save`` wrote into this (identically configured) agent, on its device
        whichever device wrote it (tensors are read to the host and copied into place)."""
        tensors, meta = read_agent_files(directory, "agent", FORMAT)
        for name, mod in self.modules().items():
            load_trainable_state_dict(mod, strip_prefix(tensors, f"{name}/"))
        with torch.no_grad():
            self.log_alpha.copy_(tensors["log_alpha"])
        restore_generator(self.generator, tensors["rng_state"], meta.get("rng_device", "cpu"))
        for name, opt in self._optimizers().items():
            load_optimizer(opt, strip_prefix(tensors, f"optim/{name}/"), meta["optimizer_param_groups"][name])
        self.step = int(meta["step"])

    @classmethod
    def load(
        cls,
        directory: str | Path,
        image_encoder: Optional[nn.Module] = None,
        augment: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        device: str | torch.device = "cpu",
    ) -> "RLPDAgent":
        meta, where = read_agent_meta(directory, "agent")
        # utd_ratio had no effect (the learner's updates_per_transition sets the update-to-data
        # ratio) and was removed; checkpoints written before still load
        config = cfg.from_mapping(RLPDConfig, {k: v for k, v in meta["config"].items() if k != "utd_ratio"}, where)
        agent = cls(
            config,
            meta["action_dim"],
            meta["camera_names"],
            meta["proprio_dim"],
            meta["feature_shape"],
            image_encoder=image_encoder,
            augment=augment,
            device=device,
        )
        agent.load_state(directory)
        return agent
