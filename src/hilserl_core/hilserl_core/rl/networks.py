"""Trainable networks of the HIL-SERL learner (torch, no ROS).

Layout (HIL-SERL Sec. "Policy learning"; SERL's encoder wrapper):

- ``ImageHead``: the frozen ResNet-10 spatial map ``[B, 4, 4, 512]`` (channel-last) ->
  learned spatial embedding (``k`` learned weight maps per channel) -> dropout
  -> Dense(bottleneck) -> LayerNorm -> tanh.
- ``ProprioEncoder``: Dense(64) -> LayerNorm -> tanh.
- ``ObservationEncoder``: one image head per camera + the proprio encoder,
  concatenated. It reads cached ``feature/<cam>`` maps when the batch has them,
  else runs ``image/<cam>`` uint8 frames through the supplied frozen encoder.
- ``TanhGaussianActor``: MLP -> tanh-squashed diagonal Gaussian.
- ``CriticEnsemble``: N Q-MLPs with LayerNorm evaluated as one batched matmul
  chain over the ensemble dimension (no Python loop over critics).
- ``GraspCritic``: MLP -> ``3 ** n_grippers`` Q-values.

Every forward here is plain torch. The spatial embedding takes a faster path for
the same arithmetic as a constructor argument (``spatial_fast_path``), which the
agents choose in ``accel/paths.py``; without one the plain path runs.

``trainable_state_dict`` exports only what the learner trains, never the frozen
ResNet (docs/ARCHITECTURE.md anchor defect: "the frozen encoder shipped with every
weight update").
"""

from __future__ import annotations

import math
from typing import Callable, Dict, List, Mapping, Optional, Protocol, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..accel.precision import full_precision
from ..formats.types import FEATURE_SHAPE_128, PROPRIO_KEY, feature_key, image_key

__all__ = [
    "SpatialFastPath",
    "SpatialLearnedEmbedding",
    "FastDropout",
    "fast_dropout",
    "ImageHead",
    "ProprioEncoder",
    "ObservationEncoder",
    "mlp",
    "TanhGaussianActor",
    "tanh_gaussian_log_prob",
    "CriticEnsemble",
    "GraspCritic",
    "frozen_module_prefixes",
    "trainable_state_dict",
    "load_trainable_state_dict",
]


def _uniform_fan_in_(t: torch.Tensor, fan_in: int) -> torch.Tensor:
    """torch.nn.Linear's default initialisation, usable on stacked ensemble weights."""
    bound = 1.0 / math.sqrt(max(fan_in, 1))
    with torch.no_grad():
        return t.uniform_(-bound, bound)


def fast_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Inverted dropout with a mask of 16-bit lanes (see ``FastDropout``); ``p = 0`` returns ``x``."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    if p == 0.0:
        return x
    n = x.numel()
    threshold = round(p * 65536) - 32768  # int16 lanes are uniform on [-32768, 32767]
    words = torch.randint(-(2**63), 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64, device=x.device)
    keep = words.view(torch.int16)[:n].reshape(x.shape) >= threshold
    return (x * keep).mul_(1.0 / (1.0 - p))


class SpatialFastPath(Protocol):
    """A faster computation of the spatial embedding and its dropout for some inputs
    (``accel.spatial_embedding.SpatialEmbeddingK1``, chosen by ``accel.paths.spatial_fast_path``)."""

    def applies(self, x: torch.Tensor, num_kernels: int) -> bool:
        """Whether it computes features ``x [B, h*w, C]`` with ``num_kernels`` kernels per channel."""

    def __call__(self, x: torch.Tensor, kernel: torch.Tensor, dropout: float) -> torch.Tensor:
        """The embedding ``[B, C*k]`` of ``x`` with the weights ``kernel [h*w, C, k]``, after dropout."""


class SpatialLearnedEmbedding(nn.Module):
    """Per channel, ``k`` learned weight maps over the ``h*w`` grid: ``[B, h, w, C] -> [B, C*k]``.

    Keeps *where* a feature fired (unlike global pooling) at ``k`` numbers per
    channel instead of ``h*w`` (SERL's ``SpatialLearnedEmbeddings``). Features
    are channel-last, the layout of the feature cache (``encoders``). Accepts
    float16 cached features directly; the output is float32. ``forward(x,
    dropout=p)`` applies inverted dropout to the output. ``fast_path`` computes
    both where it applies (the agents pass ``accel.paths.spatial_fast_path()``);
    without it the plain ``einsum`` below runs.
    """

    def __init__(self, height: int, width: int, channels: int, num_kernels: int,
                 fast_path: Optional[SpatialFastPath] = None) -> None:
        super().__init__()
        if num_kernels < 1:
            raise ValueError(f"num_spatial_kernels must be >= 1, got {num_kernels}")
        self.height, self.width, self.channels, self.num_kernels = height, width, channels, num_kernels
        # Kernel stored [h*w, C, k]; LeCun-normal over the spatial fan-in.
        self.kernel = nn.Parameter(torch.randn(height * width, channels, num_kernels) / math.sqrt(height * width))
        self.fast_path = fast_path

    @property
    def out_dim(self) -> int:
        return self.channels * self.num_kernels

    def forward(self, features: torch.Tensor, dropout: float = 0.0) -> torch.Tensor:
        b = features.shape[0]
        if tuple(features.shape[1:]) != (self.height, self.width, self.channels):
            raise ValueError(
                f"spatial embedding expects channel-last features [B, {self.height}, {self.width}, {self.channels}], "
                f"got {tuple(features.shape)}"
            )
        x = features.reshape(b, self.height * self.width, self.channels)
        with full_precision(features):  # a reduction: keep float32 accumulation
            if self.fast_path is not None and self.fast_path.applies(x, self.num_kernels):
                return self.fast_path(x, self.kernel, dropout)
            out = torch.einsum("bpc,pck->bck", x.to(self.kernel.dtype), self.kernel).reshape(b, self.out_dim)
            return fast_dropout(out, dropout)

    def extra_repr(self) -> str:
        return f"fast_path={self.fast_path!r}" if self.fast_path is not None else ""


class FastDropout(nn.Module):
    """Inverted dropout whose mask costs a quarter of ``nn.Dropout``'s random draws.

    ``torch.bernoulli_`` draws one 32-bit random number per element. This mask reads four
    16-bit lanes out of each 64-bit draw and keeps an element when its lane is at
    or above ``round(p * 65536)``: the drop probability is ``p`` to within 2e-5.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fast_dropout(x, self.p) if self.training else x

    def extra_repr(self) -> str:
        return f"p={self.p}"


class ImageHead(nn.Module):
    """Channel-last spatial map of one camera ``[B, h, w, C]`` -> ``bottleneck_dim`` features in (-1, 1).

    Dropout (rate ``dropout``) acts on the spatial embedding in training mode.
    ``spatial_fast_path``: see :class:`SpatialLearnedEmbedding` (None: the plain path).
    """

    def __init__(
        self,
        feature_shape: Sequence[int] = FEATURE_SHAPE_128,
        num_spatial_kernels: int = 8,
        bottleneck_dim: int = 256,
        dropout: float = 0.1,
        *,
        spatial_fast_path: Optional[SpatialFastPath] = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {dropout}")
        h, w, c = (int(v) for v in feature_shape)
        self.spatial = SpatialLearnedEmbedding(h, w, c, num_spatial_kernels, spatial_fast_path)
        self.dropout_p = float(dropout)
        self.dense = nn.Linear(self.spatial.out_dim, bottleneck_dim)
        self.norm = nn.LayerNorm(bottleneck_dim)
        self.out_dim = bottleneck_dim

    def forward(self, features: torch.Tensor, dropout: Optional[bool] = None) -> torch.Tensor:
        """``dropout``: None follows ``self.training``; True/False force it on/off."""
        active = self.training if dropout is None else dropout
        x = self.spatial(features, self.dropout_p if active else 0.0)
        return self.norm(self.dense(x)).tanh_()  # in place: LayerNorm's backward keeps its input

    def extra_repr(self) -> str:
        return f"dropout={self.dropout_p}"


class ProprioEncoder(nn.Module):
    """Dense(64) -> LayerNorm -> tanh (HIL-SERL's proprio encoder)."""

    def __init__(self, proprio_dim: int, latent_dim: int = 64) -> None:
        super().__init__()
        self.dense = nn.Linear(proprio_dim, latent_dim)
        self.norm = nn.LayerNorm(latent_dim)
        self.out_dim = latent_dim

    def forward(self, proprio: torch.Tensor) -> torch.Tensor:
        return self.norm(self.dense(proprio.float())).tanh_()


class ObservationEncoder(nn.Module):
    """All cameras + proprio -> one flat feature vector ``[B, out_dim]``.

    ``image_encoder`` is the frozen ResNet (``encoders.ResNet10Encoder``); it is
    only needed for batches that carry ``image/<cam>`` instead of cached
    ``feature/<cam>``. It is frozen here (requires_grad False, eval mode) and
    excluded from ``trainable_state_dict``. ``augment`` (e.g.
    ``augment.random_shift``) is applied to uint8 images before the frozen
    encoder when ``forward(..., augment=True)``. ``spatial_fast_path`` goes to every
    image head (:class:`SpatialLearnedEmbedding`; None: the plain path).
    """

    def __init__(
        self,
        camera_names: Sequence[str],
        proprio_dim: int,
        *,
        feature_shape: Sequence[int] = FEATURE_SHAPE_128,
        num_spatial_kernels: int = 8,
        bottleneck_dim: int = 256,
        proprio_latent_dim: int = 64,
        dropout: float = 0.1,
        image_encoder: Optional[nn.Module] = None,
        augment: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        spatial_fast_path: Optional[SpatialFastPath] = None,
    ) -> None:
        super().__init__()
        self.camera_names: Tuple[str, ...] = tuple(camera_names)
        self.proprio_dim = int(proprio_dim)
        if not self.camera_names and self.proprio_dim <= 0:
            raise ValueError("ObservationEncoder needs at least one camera or proprio_dim > 0")
        # ModuleDict keys may not contain '.', camera names are plain identifiers in config.
        self.image_heads = nn.ModuleDict(
            {
                cam: ImageHead(feature_shape, num_spatial_kernels, bottleneck_dim, dropout, spatial_fast_path=spatial_fast_path)
                for cam in self.camera_names
            }
        )
        self.proprio = ProprioEncoder(self.proprio_dim, proprio_latent_dim) if self.proprio_dim > 0 else None
        self.image_encoder = image_encoder
        if image_encoder is not None:
            image_encoder.requires_grad_(False)
            image_encoder.eval()
        self.augment = augment
        self.out_dim = len(self.camera_names) * bottleneck_dim + (proprio_latent_dim if self.proprio else 0)

    def train(self, mode: bool = True) -> "ObservationEncoder":
        super().train(mode)
        if self.image_encoder is not None:
            self.image_encoder.eval()  # frozen: never switch normalisation statistics to training
        return self

    def camera_features(self, obs: Mapping[str, torch.Tensor], cam: str, augment: bool = False) -> torch.Tensor:
        """Spatial map ``[B, h, w, C]`` (channel-last) of one camera: cached, or computed by the frozen encoder."""
        key = feature_key(cam)
        if key in obs:
            return obs[key]
        key = image_key(cam)
        if key not in obs:
            raise KeyError(f"observation has neither {feature_key(cam)!r} nor {image_key(cam)!r}; keys: {sorted(obs)}")
        if self.image_encoder is None:
            raise ValueError(
                f"batch carries raw {key!r} but no frozen image_encoder was given to ObservationEncoder; "
                "pass encoders.ResNet10Encoder or store features in the replay buffer"
            )
        images = obs[key]
        if augment and self.augment is not None:
            images = self.augment(images)
        with torch.no_grad():
            return self.image_encoder(images)

    def forward(
        self, obs: Mapping[str, torch.Tensor], augment: bool = False, dropout: Optional[bool] = None
    ) -> torch.Tensor:
        """``dropout``: None follows the training mode; True/False force image-head dropout on/off."""
        parts: List[torch.Tensor] = [
            self.image_heads[cam](self.camera_features(obs, cam, augment), dropout) for cam in self.camera_names
        ]
        if self.proprio is not None:
            parts.append(self.proprio(obs[PROPRIO_KEY]))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)


def mlp(in_dim: int, hidden_dims: Sequence[int], use_layer_norm: bool, activation=nn.ReLU) -> nn.Sequential:
    """Dense (-> LayerNorm) -> activation, per hidden layer; no output layer."""
    layers: List[nn.Module] = []
    d = in_dim
    for h in hidden_dims:
        layers.append(nn.Linear(d, h))
        if use_layer_norm:
            layers.append(nn.LayerNorm(h))
        # in place: neither Linear's nor LayerNorm's backward needs its own output
        layers.append(activation(inplace=True) if activation is nn.ReLU else activation())
        d = h
    return nn.Sequential(*layers)


_LOG2 = math.log(2.0)


def tanh_gaussian_log_prob(pre_tanh: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log pi(a) for a = tanh(u), u ~ N(mean, std): Gaussian log-density minus log|det da/du|.

    log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), which stays finite for large |u|.
    """
    var_term = ((pre_tanh - mean) * torch.exp(-log_std)) ** 2
    gaussian = -0.5 * var_term - log_std - 0.5 * math.log(2 * math.pi)
    log_det = 2.0 * (_LOG2 - pre_tanh - F.softplus(-2.0 * pre_tanh))
    return (gaussian - log_det).sum(dim=-1)


class TanhGaussianActor(nn.Module):
    """pi(a|s) = tanh(N(mu(s), diag sigma(s)^2)) over the continuous action dims."""

    def __init__(
        self,
        in_dim: int,
        action_dim: int,
        hidden_dims: Sequence[int] = (256, 256),
        use_layer_norm: bool = True,
        log_std_min: float = -5.0,
        log_std_max: float = 2.0,
    ) -> None:
        super().__init__()
        self.trunk = mlp(in_dim, hidden_dims, use_layer_norm)
        last = hidden_dims[-1] if hidden_dims else in_dim
        self.mean = nn.Linear(last, action_dim)
        self.log_std = nn.Linear(last, action_dim)
        self.action_dim = action_dim
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def distribution_params(self, features: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(features)
        with full_precision(h):  # output layers in float32 under mixed precision (precision.py)
            h = h.float()
            # Squash log-std smoothly into [min, max] (no dead gradient as with clamp).
            raw = torch.tanh(self.log_std(h))
            log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (raw + 1.0)
            return self.mean(h), log_std

    def sample(
        self,
        features: torch.Tensor,
        generator: Optional[torch.Generator] = None,
        noise: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised sample ``a`` in (-1, 1) and its log-probability ``[B]``.

        ``noise`` (standard normal ``[B, A]``) is drawn from ``generator`` unless given.
        """
        mean, log_std = self.distribution_params(features)
        if noise is None:
            noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        pre_tanh = mean + torch.exp(log_std) * noise
        return torch.tanh(pre_tanh), tanh_gaussian_log_prob(pre_tanh, mean, log_std)

    def log_prob(self, features: torch.Tensor, actions: torch.Tensor, bound: float = 0.999) -> torch.Tensor:
        """log pi(a|s) of given actions (clamped inside (-1, 1), where tanh is invertible): what
        behaviour cloning maximises."""
        mean, log_std = self.distribution_params(features)
        pre_tanh = torch.atanh(actions.clamp(-bound, bound))
        return tanh_gaussian_log_prob(pre_tanh, mean, log_std)

    def mode(self, features: torch.Tensor) -> torch.Tensor:
        """Deterministic action for evaluation: tanh of the Gaussian mean."""
        mean, _ = self.distribution_params(features)
        return torch.tanh(mean)

    def forward(self, features: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        return self.mode(features) if deterministic else self.sample(features)[0]


class CriticEnsemble(nn.Module):
    """N independent Q(s, a) MLPs (Dense -> LayerNorm -> ReLU per layer), batched.

    The first layer is stored as two parameters: ``obs_weight [F, N, h]`` (so the
    observation part of the whole ensemble is one ``[B, F] x [F, N*h]`` GEMM on
    a view, no copy) and ``act_weight [N, A, h]``. Slicing one stacked
    ``[N, F+A, h]`` weight instead costs a zero-filled full-size gradient per
    slice in every backward. Later
    layers are stacked ``[N, in, out]``, one ``bmm`` each. ``forward(x, a,
    members)`` evaluates only the listed members (RLPD's random target subset),
    so a 10-critic target costs what a 2-critic one does.
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        num_critics: int,
        hidden_dims: Sequence[int] = (256, 256),
        use_layer_norm: bool = True,
    ) -> None:
        super().__init__()
        if num_critics < 1:
            raise ValueError(f"num_critics must be >= 1, got {num_critics}")
        if not hidden_dims:
            raise ValueError("CriticEnsemble needs at least one hidden layer")
        if obs_dim < 1 or action_dim < 1:
            raise ValueError(f"CriticEnsemble needs obs_dim and action_dim >= 1, got {obs_dim}, {action_dim}")
        self.num_critics, self.use_layer_norm = num_critics, use_layer_norm
        self.obs_dim, self.action_dim = obs_dim, action_dim
        fan_in = obs_dim + action_dim  # initialised like one Dense over the concatenated [s, a]
        h0 = hidden_dims[0]
        self.obs_weight = nn.Parameter(_uniform_fan_in_(torch.empty(obs_dim, num_critics, h0), fan_in))
        self.act_weight = nn.Parameter(_uniform_fan_in_(torch.empty(num_critics, action_dim, h0), fan_in))
        dims = [*hidden_dims, 1]
        self.weights = nn.ParameterList()  # layers after the first: [N, in, out]
        self.biases = nn.ParameterList([nn.Parameter(_uniform_fan_in_(torch.empty(num_critics, 1, h0), fan_in))])
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            self.weights.append(nn.Parameter(_uniform_fan_in_(torch.empty(num_critics, d_in, d_out), d_in)))
            self.biases.append(nn.Parameter(_uniform_fan_in_(torch.empty(num_critics, 1, d_out), d_in)))
        if use_layer_norm:
            self.ln_weights = nn.ParameterList([nn.Parameter(torch.ones(num_critics, 1, h)) for h in hidden_dims])
            self.ln_biases = nn.ParameterList([nn.Parameter(torch.zeros(num_critics, 1, h)) for h in hidden_dims])

    def member_first_layer(self, i: int) -> torch.Tensor:
        """Member ``i``'s first-layer weight ``[F + A, h]`` over the concatenated ``[s, a]`` (for inspection)."""
        return torch.cat([self.obs_weight[:, i], self.act_weight[i]])

    def input_projection(self, features: torch.Tensor, members: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Observation part of the first layer, ``[M, B, h]``: one ``[B, F] x [F, M*h]`` GEMM.

        Split from the action part so the actor loss can reuse the critic loss's
        projection of the same observations (the widest GEMM of the critic).
        """
        w = self.obs_weight if members is None else self.obs_weight.index_select(1, members)
        f, m, h = w.shape
        return (features @ w.reshape(f, m * h)).reshape(-1, m, h).transpose(0, 1)

    def forward_from_projection(
        self,
        projection: torch.Tensor,
        actions: torch.Tensor,
        members: Optional[torch.Tensor] = None,
        detach_params: bool = False,
    ) -> torch.Tensor:
        """Q ``[M, B]`` from ``input_projection`` and the actions ``[B, A]``.

        ``detach_params``: the critic's own parameters get no gradient (the actor
        loss differentiates Q through the actions only).
        """
        def take(p: torch.Tensor) -> torch.Tensor:
            p = p.detach() if detach_params else p
            return p if members is None else p.index_select(0, members)

        h = torch.baddbmm(take(self.biases[0]), actions.unsqueeze(0).expand(projection.shape[0], -1, -1),
                          take(self.act_weight)).add_(projection)
        for i in range(len(self.weights)):
            if i > 0:
                h = torch.baddbmm(take(self.biases[i]), h, take(self.weights[i - 1]))
            if self.use_layer_norm:
                # Per-member affine in one fused op (F.layer_norm's affine is shared across members).
                h = torch.addcmul(take(self.ln_biases[i]), F.layer_norm(h, h.shape[-1:]), take(self.ln_weights[i]))
                h = h.relu_()  # in place on the fresh affine output: one buffer less per layer
            else:
                h = F.relu(h)
        with full_precision(h):  # Q values in float32: bfloat16 would round TD errors of ~1e-2 away
            return torch.baddbmm(take(self.biases[-1]), h.float(), take(self.weights[-1])).squeeze(-1)

    def forward(
        self, features: torch.Tensor, actions: torch.Tensor, members: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Q(s, a) of every member (or of ``members``): ``[B, F]``, ``[B, A]`` -> ``[M, B]``."""
        return self.forward_from_projection(self.input_projection(features, members), actions, members)


class GraspCritic(nn.Module):
    """Q(s, .) over the joint discrete gripper action: MLP -> ``3 ** n_grippers`` values."""

    def __init__(
        self, in_dim: int, n_grippers: int = 1, hidden_dims: Sequence[int] = (256, 256), use_layer_norm: bool = True
    ) -> None:
        super().__init__()
        if n_grippers < 1:
            raise ValueError(f"n_grippers must be >= 1, got {n_grippers}")
        self.n_grippers = n_grippers
        self.num_actions = 3**n_grippers
        self.trunk = mlp(in_dim, hidden_dims, use_layer_norm)
        self.head = nn.Linear(hidden_dims[-1] if hidden_dims else in_dim, self.num_actions)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        h = self.trunk(features)
        with full_precision(h):
            return self.head(h.float())


def _is_frozen_encoder(module: nn.Module) -> bool:
    if getattr(module, "frozen", False):
        return True
    try:  # local import: encoders.py is optional for feature-only learners
        from ..vision.encoders import ResNet10Encoder
    except ImportError:  # pragma: no cover
        return False
    return isinstance(module, ResNet10Encoder)


def frozen_module_prefixes(module: nn.Module) -> List[str]:
    """Names (``a.b.``) of the frozen image encoders inside ``module``.

    A frozen encoder is any ``ObservationEncoder.image_encoder``, a
    ``ResNet10Encoder``, or a module flagged ``frozen = True``. Target networks
    (``requires_grad`` off, but trained by Polyak averaging) are not frozen.
    """
    prefixes: List[str] = []
    for name, sub in module.named_modules():
        if name and any(name.startswith(p) for p in prefixes):
            continue
        if isinstance(sub, ObservationEncoder) and sub.image_encoder is not None:
            prefixes.append(f"{name}.image_encoder." if name else "image_encoder.")
        elif name and _is_frozen_encoder(sub):
            prefixes.append(name + ".")
    return prefixes


def trainable_state_dict(module: nn.Module) -> Dict[str, torch.Tensor]:
    """Every parameter and buffer the learner changes; frozen image encoders (the ResNet) excluded.

    Tensors are detached contiguous CPU copies, ready for ``safetensors``.
    """
    frozen = tuple(frozen_module_prefixes(module))
    out: Dict[str, torch.Tensor] = {}
    for name, t in [*module.named_parameters(), *module.named_buffers()]:
        if not (frozen and name.startswith(frozen)):
            out[name] = t.detach().to("cpu", copy=True).contiguous()
    return out


def load_trainable_state_dict(module: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Copy a ``trainable_state_dict`` into ``module``; the key sets must match exactly."""
    expected = trainable_state_dict(module).keys()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise KeyError(f"trainable weights do not match the network: missing {missing}, unexpected {unexpected}")
    targets = dict(module.named_parameters())
    targets.update(dict(module.named_buffers()))
    with torch.no_grad():
        for name, value in state.items():
            dst = targets[name]
            if dst.shape != value.shape:
                raise ValueError(f"trainable weight {name!r}: shape {tuple(value.shape)} != network {tuple(dst.shape)}")
            dst.copy_(value.to(dst.device, dst.dtype))
