"""Frozen ImageNet ResNet-10 image encoder (HIL-SERL Sec. "Policy architecture").

The actor, learner and reward classifier share one pretrained ResNet-10 that is
never trained: images pass through it once and only the small heads on top of
its ``[4, 4, 512]`` pre-pooling feature map (channel-last) learn. Because it is frozen, the
learner can cache its output in the replay buffer (``feature/<cam>`` keys, see
``types.py``) instead of re-running it on every update.

Architecture (same as the flax ``resnetv1-10`` of SERL/hil-serl, so its published
weights load unchanged): 7x7/2 conv stem -> GroupNorm(4) -> ReLU -> 3x3/2 max
pool -> four BasicBlock stages (one block each, widths 64-128-256-512, stride 2
from stage 2 on, 1x1 projection on the shortcut when the shape changes). All
convs are bias-free; every norm is ``GroupNorm(4 groups, eps 1e-5)``. The stem
pads 3 pixels on every side (flax ``padding=[(3, 3), (3, 3)]``, as the published
network does); the 3x3 convs and the max pool use TensorFlow/flax "SAME" padding
(asymmetric for strided ones: the extra row/column goes at the bottom/right).
Any other padding would make converted weights see shifted inputs (a one-pixel
shift of the stem changed the features by 9-36%).

Weights file (safetensors, written by :meth:`ResNet10Encoder.save_weights`)
holds exactly these float32 tensors (PyTorch layout, conv ``[out, in, kh, kw]``)::

    stem_conv.weight                  [64, 3, 7, 7]
    stem_norm.weight, stem_norm.bias  [64]
    blocks.{i}.conv1.weight           [w_i, w_{i-1}, 3, 3]    (w = 64, 128, 256, 512; w_{-1} = 64)
    blocks.{i}.norm1.weight/.bias     [w_i]
    blocks.{i}.conv2.weight           [w_i, w_i, 3, 3]
    blocks.{i}.norm2.weight/.bias     [w_i]
    blocks.{i}.proj_conv.weight       [w_i, w_{i-1}, 1, 1]    (i = 1, 2, 3 only)
    blocks.{i}.proj_norm.weight/.bias [w_i]                   (i = 1, 2, 3 only)

Converting the published weights (``resnet10_params.pkl`` from the SERL /
hil-serl releases, a pickled flax parameter dict): ``hilserl convert-weights
resnet10_params.pkl -o resnet10.safetensors`` reads the pickle's opcodes without
executing any of it (``formats/flax_pickle.py``, arrays and containers only) and
checks every tensor against this architecture. A tree already flattened to an
``.npz`` of '/'-joined flax paths converts with
``python -m hilserl_core.vision.encoders convert resnet10_params.npz resnet10.safetensors``.
Expected names (a common leading prefix such as ``params/`` or
``pretrained_encoder/`` is stripped; other entries, e.g. a classifier head, are
ignored and listed)::

    conv_init/kernel                              [7, 7, 3, 64]   (flax HWIO)
    norm_init/scale, norm_init/bias               [64]
    ResNetBlock_{i}/Conv_0/kernel                 [3, 3, in, w_i]
    ResNetBlock_{i}/MyGroupNorm_0/scale|bias      [w_i]
    ResNetBlock_{i}/Conv_1/kernel                 [3, 3, w_i, w_i]
    ResNetBlock_{i}/MyGroupNorm_1/scale|bias      [w_i]
    ResNetBlock_{i}/conv_proj/kernel              [1, 1, in, w_i]  (i = 1, 2, 3)
    ResNetBlock_{i}/norm_proj/scale|bias          [w_i]            (i = 1, 2, 3)
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Protocol, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..accel import int8_encoder
from ..accel.conv_paths import ConvPaths
from ..accel.int8_encoder import int8_available
from ..accel.paths import encoder_paths
from ..accel.precision import COMPUTE_DTYPES, cpu_has_int8_dot, forced_auto, resolve_compute_dtype
from ..formats import tensorio
from ..formats.types import FEATURE_PREFIX, IMAGE_PREFIX, Observation

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
STAGE_WIDTHS = (64, 128, 256, 512)
NUM_GROUPS = 4
GN_EPS = 1e-5
WEIGHTS_KIND = "hilserl.resnet10_encoder"
# the encoder's compute_dtype: precision.COMPUTE_DTYPES, or int8 convolutions (see ResNet10Encoder)
ENCODER_DTYPES = COMPUTE_DTYPES + ("int8",)
FORCE_ENCODER_DTYPE = "HILSERL_ENCODER_DTYPE"  # environment: what an "auto" encoder precision means
ENCODER_DTYPE_HELP = (
    "frozen ResNet-10 precision: auto (int8 on x86 CPUs with int8 dot products (VNNI), else bfloat16 where the "
    "CPU/GPU has it, else float32), float32, bfloat16, or int8 (int8 convolutions, x86 CPUs only: faster than "
    "bfloat16, features within about 2% of float32 and the same for an image in any batch); actor, learner and reward "
    "classifier must use the same, and features cached at one setting must not be mixed with another's"
)


def resolve_encoder_dtype(setting: str, device: "str | torch.device" = "cpu") -> str:
    """The precision an ``encoder_dtype`` setting means on ``device``: ``"auto"`` is ``"int8"`` on
    x86 CPUs with int8 dot products (``precision.cpu_has_int8_dot``) where torch has oneDNN int8
    convolutions (:func:`int8_available`): faster than bfloat16 there (docs/BENCHMARKS.md),
    features within about 2% of float32 and the same for an image in any batch (bfloat16's vary in the last bits with the batch's timed conv path). Elsewhere the
    ``precision.resolve_compute_dtype`` rule: bfloat16 where the hardware has it, else float32.
    ``HILSERL_ENCODER_DTYPE`` (:data:`FORCE_ENCODER_DTYPE`) forces what ``"auto"`` means, as on
    another kind of CPU. Other settings are returned as they are."""
    if setting not in ENCODER_DTYPES:
        raise ValueError(f"encoder compute_dtype must be one of {ENCODER_DTYPES}, got {setting!r}")
    if setting != "auto":
        return setting
    forced = forced_auto(FORCE_ENCODER_DTYPE, ENCODER_DTYPES[1:])
    if forced == "int8" and not int8_available()[0]:
        raise RuntimeError(f"{FORCE_ENCODER_DTYPE}=int8, but this torch has no int8 encoder: {int8_available()[1]}")
    if forced is not None:
        return forced
    device = torch.device(device)
    if device.type == "cpu" and cpu_has_int8_dot() and int8_available()[0]:
        return "int8"
    return str(resolve_compute_dtype("auto", device)).replace("torch.", "")


def _weights_dtype(compute_dtype: str, device) -> torch.dtype:
    """The dtype the encoder keeps its weights in: the compute dtype, float32 for int8 (quantised from it)."""
    return torch.float32 if compute_dtype == "int8" else resolve_compute_dtype(compute_dtype, device)


def _same_pads(size: int, kernel: int, stride: int) -> Tuple[int, int]:
    """TF/flax "SAME" padding (before, after) for one spatial dimension."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """Bias-free conv with flax "SAME" padding computed per input size, or with an explicit
    symmetric ``pad`` (flax ``padding=[(pad, pad), (pad, pad)]``)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, pad: Optional[int] = None):
        super().__init__(in_ch, out_ch, kernel, stride=stride, padding=0, bias=False)
        self.explicit_pad = pad
        self.paths: Optional[ConvPaths] = None  # set by the encoder (accel.conv_paths); None: the direct kernel
        self._patch_weight: Optional[torch.Tensor] = None  # accel.conv_paths.patch_gemm's weight layout
        self._patch_key: Optional[Tuple[int, int]] = None

    def same_padding(self, h: int, w: int) -> Tuple[Tuple[int, int, int, int], Tuple[int, int]]:
        """For an ``h x w`` input: the paddings ``(top, bottom, left, right)`` and the output size."""
        k, s = self.kernel_size[0], self.stride[0]
        if self.explicit_pad is not None:
            pads = (self.explicit_pad,) * 4
        else:
            pads = _same_pads(h, k, s) + _same_pads(w, k, s)
        top, bottom, left, right = pads
        return pads, ((h + top + bottom - k) // s + 1, (w + left + right - k) // s + 1)


    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads, out_hw = self.same_padding(x.shape[-2], x.shape[-1])
        if self.paths is not None and self.paths.applies(self, x, out_hw):
            return self.paths(self, x, lambda: self._pad(x, pads), lambda: self._direct(x, pads), out_hw)
        return self._direct(x, pads)

    @staticmethod
    def _pad(x: torch.Tensor, pads: Tuple[int, int, int, int]) -> torch.Tensor:
        top, bottom, left, right = pads
        return F.pad(x, (left, right, top, bottom)) if any(pads) else x

    def _direct(self, x: torch.Tensor, pads: Tuple[int, int, int, int]) -> torch.Tensor:
        top, bottom, left, right = pads
        if top == bottom and left == right:  # symmetric: the conv pads, no padded copy
            return F.conv2d(x, self.weight, None, self.stride, (top, left))
        return F.conv2d(self._pad(x, pads), self.weight, None, self.stride)


def same_max_pool(x: torch.Tensor, kernel: int = 3, stride: int = 2) -> torch.Tensor:
    """Max pool with flax "SAME" padding (padding never wins the max).

    When all the padding goes after (bottom/right, as for the stem's 64 -> 32 map),
    PyTorch's ``ceil_mode`` windows, clipped at the edge, are exactly these windows:
    no padded copy of the map is made.
    """
    top, bottom = _same_pads(x.shape[-2], kernel, stride)
    left, right = _same_pads(x.shape[-1], kernel, stride)
    if top == 0 and left == 0 and bottom < kernel and right < kernel:
        return F.max_pool2d(x, kernel, stride, ceil_mode=True)
    x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
    return F.max_pool2d(x, kernel, stride)


class NormAct(Protocol):
    """A faster ``relu(norm(x) + shortcut)`` for some inputs (``accel.norm_act.NativeNormAct``)."""

    def applies(self, x: torch.Tensor, norm: nn.GroupNorm, residual: Optional[torch.Tensor] = None) -> bool:
        """Whether it computes this input."""

    def __call__(self, x: torch.Tensor, norm: nn.GroupNorm, residual: Optional[torch.Tensor] = None,
                 residual_norm: Optional[nn.GroupNorm] = None) -> torch.Tensor:
        """The same as :func:`norm_relu`."""


def norm_relu(
    x: torch.Tensor, norm: nn.GroupNorm, residual: Optional[torch.Tensor] = None, residual_norm: Optional[nn.GroupNorm] = None,
    fast: Optional[NormAct] = None,
) -> torch.Tensor:
    """``relu(norm(x) + shortcut)``, shortcut = 0, ``residual`` or ``residual_norm(residual)``;
    by ``fast`` where it applies (the encoder's ``paths.norm_act``), else these torch ops."""
    if fast is not None and fast.applies(x, norm, residual):
        return fast(x, norm, residual, residual_norm)
    y = norm(x)
    if residual is not None:
        y = y + (residual_norm(residual) if residual_norm is not None else residual)
    return F.relu(y)


class BasicBlock(nn.Module):
    """Two 3x3 convs + GroupNorm with a (projected when needed) identity shortcut.

    ``norm_act``: the faster norm + shortcut + ReLU the encoder chose (None: torch ops)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, norm_act: Optional[NormAct] = None):
        super().__init__()
        self.conv1 = SameConv2d(in_ch, out_ch, 3, stride)
        self.norm1 = nn.GroupNorm(NUM_GROUPS, out_ch, eps=GN_EPS)
        self.conv2 = SameConv2d(out_ch, out_ch, 3, 1)
        self.norm2 = nn.GroupNorm(NUM_GROUPS, out_ch, eps=GN_EPS)
        self.has_proj = in_ch != out_ch or stride != 1
        if self.has_proj:
            self.proj_conv = SameConv2d(in_ch, out_ch, 1, stride)
            self.proj_norm = nn.GroupNorm(NUM_GROUPS, out_ch, eps=GN_EPS)
        self.norm_act = norm_act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = norm_relu(self.conv1(x), self.norm1, fast=self.norm_act)
        if self.has_proj:
            return norm_relu(self.conv2(y), self.norm2, self.proj_conv(x), self.proj_norm, fast=self.norm_act)
        return norm_relu(self.conv2(y), self.norm2, x, fast=self.norm_act)


class ResNet10Encoder(nn.Module):
    """Frozen ResNet-10: uint8 ``[B, H, W, 3]`` RGB -> float32 ``[B, H/32, W/32, 512]`` (channel-last).

    It computes in channels-last memory order, so the channel-last output (the
    feature-cache layout, ``types.FEATURE_SHAPE_128``) costs no copy.
    ``compute_dtype``: ``"bfloat16"`` holds the weights and runs the convolutions in
    bfloat16 (where the CPU/GPU has native bfloat16; features within 1% of float32),
    ``"float32"`` for exact float32, ``"auto"`` the fastest of these the device
    runs well (:func:`resolve_encoder_dtype`: int8 on x86 CPUs with VNNI; ``compute_dtype``
    then holds what it resolved to, ``dtype_setting`` the setting). ``"int8"`` (x86 CPUs with
    torch's oneDNN, :func:`int8_available`) runs every convolution in int8: weights
    quantised per output channel from the float32 ones, each activation map quantised to
    uint8 with its own per-image scale, which the GroupNorm after every convolution
    cancels, and the stem on the raw pixels with the normalisation folded in
    (``accel/int8_encoder.py``): faster than bfloat16 on CPUs with VNNI, features within
    about 2% of float32, and bit-identical for an image in any batch (DESIGN.md, "The int8
    frozen encoder"). Weight files are float32 either way.

    Speed paths, each with an off switch (constructor arguments, resolved into ``self.paths`` by
    ``accel.paths.encoder_paths``): ``native_kernels`` (None: GroupNorm + shortcut + ReLU, and
    the int8 forward's quantisations and max pool, in native kernels where they are built;
    False: torch ops; True: require them), ``int8_operator`` (None: the int8 forward as one torch
    operator where it is built; False: the Python int8 forward; True: require the operator) and
    ``patch_gemm`` (None: small convolutions take the faster of a patch-matrix product and the
    direct kernel, timed per shape; True/False: always that one). The float forward below is
    plain torch but for these.

    Frozen means: parameters have ``requires_grad=False``, the module is always in
    eval mode (``train()`` is a no-op), and ``forward`` runs under ``no_grad`` so
    no gradient reaches these weights even if a parent module re-enables
    ``requires_grad``. Load real weights with :meth:`load_pretrained`; a fresh
    instance has random (Kaiming) weights, which tests use.
    """

    def __init__(self, seed: Optional[int] = None, compute_dtype: str = "auto", *,
                 int8_operator: Optional[bool] = None, patch_gemm: Optional[bool] = None,
                 native_kernels: Optional[bool] = None):
        super().__init__()
        if compute_dtype not in ENCODER_DTYPES:
            raise ValueError(f"encoder compute_dtype must be one of {ENCODER_DTYPES}, got {compute_dtype!r}")
        if compute_dtype == "int8" and not int8_available()[0]:
            raise ValueError(f"compute_dtype 'int8': {int8_available()[1]}; use 'auto'")
        self.dtype_setting = compute_dtype  # as asked; compute_dtype: what it means on this device
        self.compute_dtype = resolve_encoder_dtype(compute_dtype, "cpu")
        self._dtype = _weights_dtype(self.compute_dtype, "cpu")
        self.paths = encoder_paths(int8_operator=int8_operator, patch_gemm=patch_gemm, native_kernels=native_kernels)
        with torch.random.fork_rng(enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            self.stem_conv = SameConv2d(3, STAGE_WIDTHS[0], 7, 2, pad=3)  # flax padding=[(3, 3), (3, 3)], not SAME
            self.stem_norm = nn.GroupNorm(NUM_GROUPS, STAGE_WIDTHS[0], eps=GN_EPS)
            blocks: List[BasicBlock] = []
            in_ch = STAGE_WIDTHS[0]
            for i, width in enumerate(STAGE_WIDTHS):
                blocks.append(BasicBlock(in_ch, width, stride=1 if i == 0 else 2, norm_act=self.paths.norm_act))
                in_ch = width
            self.blocks = nn.ModuleList(blocks)
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        # Normalisation constants are buffers that are not part of the weights file.
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        super().train(False)
        self.to(memory_format=torch.channels_last)
        for m in self.modules():
            if isinstance(m, SameConv2d):
                m.paths = self.paths.conv  # one choice table for the encoder

    def _apply(self, fn, *args, **kwargs):
        """After ``.to(device)`` and friends: re-resolve ``"auto"`` for the device and keep the
        weights in the compute dtype (a frozen encoder's weights are cast once, not per call as
        autocast would) and the normalisation constants in float32."""
        out = super()._apply(fn, *args, **kwargs)
        if hasattr(self, "_dtype"):
            self.compute_dtype = resolve_encoder_dtype(self.dtype_setting, self.mean.device)
            self._dtype = _weights_dtype(self.compute_dtype, self.mean.device)
            with torch.no_grad():
                for p in self.parameters(recurse=True):
                    if p.dtype != self._dtype:
                        p.data = p.data.to(self._dtype)
                for name in ("mean", "std"):
                    setattr(self, name, getattr(self, name).float())
        return out

    out_channels = STAGE_WIDTHS[-1]

    def train(self, mode: bool = True) -> "ResNet10Encoder":
        """Always eval: a frozen encoder has no training mode (GroupNorm has no stats anyway)."""
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8:
            raise TypeError(
                f"ResNet10Encoder expects uint8 HWC images, got {images.dtype}; "
                "keep images uint8 end to end (normalisation happens inside)"
            )
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected images of shape [B, H, W, 3], got {tuple(images.shape)}")
        if self.compute_dtype == "int8":
            return int8_encoder.forward(self, images, self.paths)
        with torch.no_grad():
            # [B, H, W, 3] viewed as NCHW is already channels-last in memory
            # (x / 255 - mean) / std as one multiply-add over the contiguous channel-last pixels
            scale, shift = 1.0 / (255.0 * self.std.view(3)), -(self.mean / self.std).view(3)
            x = torch.addcmul(shift, images.float(), scale).to(self.stem_conv.weight.dtype).permute(0, 3, 1, 2)
            x = norm_relu(self.stem_conv(x), self.stem_norm, fast=self.paths.norm_act)
            x = same_max_pool(x, 3, 2)
            for block in self.blocks:
                x = block(x)
            return x.permute(0, 2, 3, 1).float().contiguous()


    def forward_path(self) -> str:
        """How a forward pass runs here, for logs: the precision and, for int8, whether as one
        torch operator (without the GIL) or as the Python forward, and why."""
        if self.compute_dtype != "int8":
            return f"{self._dtype}".replace("torch.", "")
        return int8_encoder.describe(self.paths)


    # ---------------------------------------------------------------- weights
    def expected_tensors(self) -> Dict[str, Tuple[Tuple[int, ...], np.dtype]]:
        return {k: (tuple(v.shape), np.dtype(np.float32)) for k, v in self.state_dict().items()}

    def save_weights(self, path: Union[str, Path]) -> Path:
        """Write the weights (names in the module docstring) as a safetensors file."""
        arrays = {k: v.detach().cpu().float().numpy() for k, v in self.state_dict().items()}  # float32 on disk
        return tensorio.save_file(path, arrays, {"kind": WEIGHTS_KIND, "architecture": "resnet10"})

    def load_pretrained(self, path: Union[str, Path]) -> "ResNet10Encoder":
        """Load weights strictly: every tensor present, right shape, nothing extra.

        Raises ``tensorio.TensorIOError`` naming the file and the offending key.
        """
        arrays, meta = tensorio.load_file(path)
        kind = meta.get("kind")
        if kind is not None and kind != WEIGHTS_KIND:
            raise tensorio.TensorIOError(
                f"{path}: holds {kind!r}, not ResNet-10 encoder weights ({WEIGHTS_KIND!r})"
            )
        expected = {k: (shape, None) for k, (shape, _) in self.expected_tensors().items()}
        tensorio.check_arrays(arrays, expected, str(path))
        state = {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in arrays.items()}
        self.load_state_dict(state, strict=True)
        return self

    def identity(self) -> Dict[str, str]:
        """What made this encoder's features, for files that store them (learner checkpoints'
        replay buffers, reward classifiers): the architecture, the weights and the precision
        it computes in. The weights are named by a digest of their values rounded to
        bfloat16, the coarsest precision they are held in, so one set of weights has one name
        whether it came from a file or a seed and whichever precision holds it.
        Same weights in another precision give features within about 2% (int8) or 1%
        (bfloat16) of each other; other weights give unrelated features."""
        digest = hashlib.sha256()
        with torch.no_grad():
            for k, v in sorted(self.state_dict().items()):
                raw = v.detach().cpu().to(torch.bfloat16).contiguous().view(torch.int16).numpy()
                digest.update(k.encode() + b"\0" + raw.tobytes())
        return {"architecture": "resnet10", "weights": "bf16-sha256:" + digest.hexdigest()[:16],
                "compute_dtype": "int8" if self.compute_dtype == "int8" else str(self._dtype).replace("torch.", "")}


class EncoderMismatch(ValueError):
    """Stored features come from an encoder with other weights (or architecture) than the one
    running: mixing them would train (or judge) on unrelated features."""


def compare_encoder_identity(recorded: Optional[Mapping[str, Any]], current: Mapping[str, str], what: str,
                             remedy: str = "start from a fresh file") -> str:
    """Check the encoder identity a file recorded against the running encoder's.

    Raises :class:`EncoderMismatch` when the architecture or the weights differ. Returns a
    warning text when only the precision differs (features within a few percent: usable, but
    the user should know), "" when they match or the file recorded none (older files)."""
    if not recorded:
        return ""
    if not isinstance(recorded, Mapping):
        raise EncoderMismatch(f"{what}: its encoder identity is not a mapping ({type(recorded).__name__})")
    for key in ("architecture", "weights"):
        if recorded.get(key) != current.get(key):
            raise EncoderMismatch(
                f"{what} holds features of a frozen encoder with {key} {recorded.get(key)!r}; this node runs "
                f"{current.get(key)!r} (encoder_weights). Use the encoder it was made with, or {remedy}")
    if recorded.get("compute_dtype") != current.get("compute_dtype"):
        return (f"{what} holds features computed in {recorded.get('compute_dtype')}; this node computes in "
                f"{current.get('compute_dtype')} (encoder_dtype): same weights, features within a few percent")
    return ""


# -------------------------------------------------------------- feature cache
def _device_of(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def encode_features(
    encoder: ResNet10Encoder,
    images_uint8: Union[np.ndarray, torch.Tensor],
    batch_size: int = 256,
) -> Union[np.ndarray, torch.Tensor]:
    """Run the frozen encoder over ``[N, H, W, 3]`` uint8 images in chunks.

    Returns float16 channel-last ``[N, h, w, 512]`` features (the buffer's feature-mode dtype):
    a numpy array for numpy input, a CPU torch tensor for torch input.
    """
    as_numpy = isinstance(images_uint8, np.ndarray)
    images = torch.from_numpy(images_uint8) if as_numpy else images_uint8
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    device = _device_of(encoder)
    chunks = []
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            chunk = images[start : start + batch_size].to(device)
            chunks.append(encoder(chunk).to(torch.float16).cpu())
    if chunks:
        out = torch.cat(chunks)
    else:
        h, w = images.shape[1:3] if images.ndim == 4 else (128, 128)
        out = torch.zeros((0, math.ceil(h / 32), math.ceil(w / 32), encoder.out_channels), dtype=torch.float16)
    return out.numpy() if as_numpy else out




def featurize_observation(
    observation: Observation, encoder: ResNet10Encoder, cameras: Optional[Iterable[str]] = None,
    encode: Optional[Callable[[np.ndarray], np.ndarray]] = None,
) -> Observation:
    """Replace ``image/<cam>`` entries of one observation by cached ``feature/<cam>``.

    ``cameras`` limits which cameras are converted (default: all images present).
    Other keys are passed through unchanged. All cameras go through the encoder as
    one batch (a batched pass costs less than one per image; docs/BENCHMARKS.md),
    or through ``encode`` (e.g. an ``accel.threaded_encoder.ThreadedEncoder`` of ``encoder``) when given.
    """
    wanted = None if cameras is None else set(cameras)
    keys = [k for k in observation if k.startswith(IMAGE_PREFIX) and (wanted is None or k[len(IMAGE_PREFIX):] in wanted)]
    out: Observation = {k: v for k, v in observation.items() if k not in keys}
    if keys:
        stacked = np.stack([np.asarray(observation[k]) for k in keys])
        feats = encode(stacked) if encode is not None else encode_features(encoder, stacked)
        for i, key in enumerate(keys):
            out[FEATURE_PREFIX + key[len(IMAGE_PREFIX):]] = feats[i]
    return out


def load_frozen_encoder(weights_path: str = "", compute_dtype: str = "auto", *, int8_operator: Optional[bool] = None,
                        patch_gemm: Optional[bool] = None, native_kernels: Optional[bool] = None) -> ResNet10Encoder:
    """The frozen ResNet-10 the nodes run, from a safetensors file; an empty path gives seeded
    random weights (tests and smoke runs only: callers should say so in their diagnostics).
    ``compute_dtype`` and the speed paths as in :class:`ResNet10Encoder`."""
    encoder = ResNet10Encoder(seed=0, compute_dtype=compute_dtype, int8_operator=int8_operator, patch_gemm=patch_gemm,
                              native_kernels=native_kernels)
    if weights_path:
        encoder.load_pretrained(weights_path)
    return encoder


class CachedFeaturizer:
    """:func:`featurize_observation` that remembers the last image per camera.

    A learner in feature mode featurizes ``observation`` and ``next_observation``
    of every transition; the next transition's observation is the same image.
    Reusing the remembered features halves the encoder work and guarantees the
    byte-identical features the replay buffer needs to store that observation
    only once (a GPU or a different batch size can change the last bits). The
    images it has not seen go through the encoder together, one batch per call (a batched
    pass costs less than one per image).
    """

    def __init__(self, encoder: ResNet10Encoder, cameras: Optional[Iterable[str]] = None):
        self.encoder = encoder
        self.cameras = None if cameras is None else set(cameras)
        self._last: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}
        self.hits = 0
        self.misses = 0

    def __call__(self, observation: Observation) -> Observation:
        out: Observation = {}
        misses: Dict[tuple, List[Tuple[str, np.ndarray]]] = {}  # image shape -> (camera, image)
        for key, value in observation.items():
            cam = key[len(IMAGE_PREFIX):] if key.startswith(IMAGE_PREFIX) else None
            if cam is None or (self.cameras is not None and cam not in self.cameras):
                out[key] = value
                continue
            image = np.asarray(value)
            last = self._last.get(cam)
            if last is not None and np.array_equal(last[0], image):
                self.hits += 1
                out[FEATURE_PREFIX + cam] = last[1]
            else:
                out[FEATURE_PREFIX + cam] = None  # keeps the observation's key order
                misses.setdefault(image.shape, []).append((cam, image))
        # The new images of all cameras go through the encoder as one batch (cheaper than one by one)
        for group in misses.values():
            self.misses += len(group)
            feats = encode_features(self.encoder, np.stack([image for _, image in group]))
            for (cam, image), f in zip(group, feats):
                self._last[cam] = (image.copy(), f)
                out[FEATURE_PREFIX + cam] = f
        return out


# ------------------------------------------------------- flax weight converter
def _flax_to_torch_names() -> Dict[str, Tuple[str, str]]:
    """torch name -> (flax '/' path, kind) with kind 'conv' or 'vec'."""
    table: Dict[str, Tuple[str, str]] = {
        "stem_conv.weight": ("conv_init/kernel", "conv"),
        "stem_norm.weight": ("norm_init/scale", "vec"),
        "stem_norm.bias": ("norm_init/bias", "vec"),
    }
    for i in range(len(STAGE_WIDTHS)):
        fb, tb = f"ResNetBlock_{i}", f"blocks.{i}"
        table[f"{tb}.conv1.weight"] = (f"{fb}/Conv_0/kernel", "conv")
        table[f"{tb}.norm1.weight"] = (f"{fb}/MyGroupNorm_0/scale", "vec")
        table[f"{tb}.norm1.bias"] = (f"{fb}/MyGroupNorm_0/bias", "vec")
        table[f"{tb}.conv2.weight"] = (f"{fb}/Conv_1/kernel", "conv")
        table[f"{tb}.norm2.weight"] = (f"{fb}/MyGroupNorm_1/scale", "vec")
        table[f"{tb}.norm2.bias"] = (f"{fb}/MyGroupNorm_1/bias", "vec")
        if i > 0:
            table[f"{tb}.proj_conv.weight"] = (f"{fb}/conv_proj/kernel", "conv")
            table[f"{tb}.proj_norm.weight"] = (f"{fb}/norm_proj/scale", "vec")
            table[f"{tb}.proj_norm.bias"] = (f"{fb}/norm_proj/bias", "vec")
    return table


def _strip_prefix(flat: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Drop a leading path prefix so that 'conv_init/kernel' is at the root."""
    for key in flat:
        if key.endswith("conv_init/kernel"):
            prefix = key[: -len("conv_init/kernel")]
            return {k[len(prefix):]: v for k, v in flat.items() if k.startswith(prefix)}
    return dict(flat)


def convert_flax_resnet10(flat_params: Mapping[str, np.ndarray], where: str = "<params>") -> Tuple[Dict[str, np.ndarray], List[str]]:
    """Map a flattened flax ResNet-10 tree to this module's tensor names.

    Returns (torch-named float32 arrays, ignored flax keys). Conv kernels go from
    flax HWIO to torch OIHW. Raises ``TensorIOError`` naming the missing or
    mis-shaped flax key.
    """
    flat = _strip_prefix(flat_params)
    expected = ResNet10Encoder().expected_tensors()
    out: Dict[str, np.ndarray] = {}
    used = set()
    for torch_name, (flax_name, kind) in _flax_to_torch_names().items():
        if flax_name not in flat:
            raise tensorio.TensorIOError(
                f"{where}: missing flax parameter {flax_name!r} (needed for {torch_name}); "
                "is this the SERL/hil-serl resnetv1-10 tree flattened with sep='/'?"
            )
        value = np.asarray(flat[flax_name], dtype=np.float32)
        if kind == "conv":
            value = value.transpose(3, 2, 0, 1)
        shape = expected[torch_name][0]
        if value.shape != shape:
            raise tensorio.TensorIOError(
                f"{where}: flax parameter {flax_name!r} has shape {tuple(np.shape(flat[flax_name]))}, "
                f"which does not give {torch_name} {shape}"
            )
        out[torch_name] = np.ascontiguousarray(value)
        used.add(flax_name)
    return out, sorted(set(flat) - used)


def convert_npz(npz_path: Union[str, Path], out_path: Union[str, Path]) -> List[str]:
    """Convert a flattened flax ``.npz`` (see module docstring) into a weights file.

    Returns the ignored flax keys. The result loads with :meth:`ResNet10Encoder.load_pretrained`.
    """
    with np.load(npz_path, allow_pickle=False) as data:
        flat = {k: data[k] for k in data.files}
    arrays, ignored = convert_flax_resnet10(flat, str(npz_path))
    tensorio.save_file(
        out_path,
        arrays,
        {"kind": WEIGHTS_KIND, "architecture": "resnet10", "converted_from": Path(npz_path).name},
    )
    return ignored


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hilserl_core.vision.encoders", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    conv = sub.add_parser("convert", help="flattened flax ResNet-10 .npz -> hilserl safetensors weights")
    conv.add_argument("npz", help="npz of '/'-joined flax paths (see the module docstring)")
    conv.add_argument("out", help="output .safetensors file")
    args = parser.parse_args(argv)
    try:
        ignored = convert_npz(args.npz, args.out)
    except (tensorio.TensorIOError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if ignored:
        print(f"ignored {len(ignored)} flax entries not in the encoder: {', '.join(ignored[:8])}"
              + (" ..." if len(ignored) > 8 else ""))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
