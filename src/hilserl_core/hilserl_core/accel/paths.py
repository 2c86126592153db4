"""Which speed path each network runs: the one place that chooses them (speed only).

The networks in ``rl/`` and ``vision/`` are the paper's, in plain torch. Each fast path is an
object handed to a constructor, and without one the plain path runs; this module builds those
objects from what the host can run and the environment switches:

=============================================  ==================================  ===========================
network (argument)                             fast path                           off
=============================================  ==================================  ===========================
``rl.networks.ObservationEncoder``,            :func:`spatial_fast_path`: the      ``spatial_fast_path=None``
``ImageHead`` (``spatial_fast_path``),         k = 1 embedding + dropout in the    (plain ``einsum``);
``SpatialLearnedEmbedding`` (``fast_path``)    native kernel, else in chunked      native kernel alone:
                                               torch (``spatial_embedding.py``)    ``HILSERL_NATIVE=0``
``vision.encoders.ResNet10Encoder``            :func:`encoder_paths`: fused        ``native_kernels=False``,
(``native_kernels``, ``int8_operator``,        GroupNorm + ReLU (``norm_act.py``,  ``int8_operator=False``,
``patch_gemm``)                                ``int8_encoder.py``), the int8      ``patch_gemm=False``;
                                               forward as one operator, the timed  ``HILSERL_NATIVE=0``,
                                               small-convolution path              ``HILSERL_INT8_OPERATOR=0``
                                               (``conv_paths.py``)
``fused_heads.FusedObservationEncoders``       the actor's image heads as one      ``enabled=False``,
(``enabled``)                                  product chain                       ``HILSERL_FUSED_HEADS=0``
=============================================  ==================================  ===========================

``HILSERL_NATIVE`` and ``HILSERL_INT8_OPERATOR`` are read where the native libraries are loaded
(``native.py``, once per process); ``HILSERL_FUSED_HEADS`` here. The agents build their
observation encoders with :func:`spatial_fast_path` (``rl.rlpd.observation_encoder``), the reward
classifier its heads, and ``ResNet10Encoder`` resolves its three switches with
:func:`encoder_paths`. Each fast path is tested against the plain one (tests/core/test_native.py,
test_encoders.py, test_fused_heads.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from . import native
from .conv_paths import ConvPaths
from .norm_act import NativeNormAct
from .spatial_embedding import SpatialEmbeddingK1

__all__ = ["FUSED_HEADS_ENV", "EncoderPaths", "encoder_paths", "fused_heads_enabled", "spatial_fast_path"]

FUSED_HEADS_ENV = "HILSERL_FUSED_HEADS"  # "0": the actor's image heads run module by module


def _require_native(what: str) -> None:
    if not native.in_use():
        raise RuntimeError(f"{what}=True, but {native.status()}")


def spatial_fast_path(native_kernel: Optional[bool] = None) -> SpatialEmbeddingK1:
    """The fast path of the learned spatial embedding (``SpatialLearnedEmbedding(fast_path=...)``).

    ``native_kernel``: None uses the native kernel where it is built (not with ``HILSERL_NATIVE=0``)
    and takes the features; False never (the chunked torch path); True requires it to be built.
    """
    if native_kernel:
        _require_native("native_kernel")
    return SpatialEmbeddingK1(native=native_kernel is not False)


@dataclass(frozen=True)
class EncoderPaths:
    """The frozen encoder's speed paths (:func:`encoder_paths`)."""

    conv: ConvPaths  # small convolutions: patch-matrix product or oneDNN's direct kernel
    norm_act: Optional[NativeNormAct]  # the float forward's GroupNorm + shortcut + ReLU in one pass (None: torch ops)
    native_kernels: bool  # the int8 Python forward's norms, quantisations and max pool in the native kernels
    int8_operator: Optional[bool]  # the int8 forward as one operator: None where built, True required, False never


def encoder_paths(int8_operator: Optional[bool] = None, patch_gemm: Optional[bool] = None,
                  native_kernels: Optional[bool] = None) -> EncoderPaths:
    """The speed paths of one ``ResNet10Encoder``, from its constructor's switches.

    ``native_kernels``: None uses the native GroupNorm, quantisation and max-pool kernels where
    they are built (not with ``HILSERL_NATIVE=0``) and take the map; False runs torch ops (and no
    int8 operator, which links the same kernels in); True requires them to be built.
    ``int8_operator``: None runs the int8 forward as one torch operator where it is built (not
    with ``HILSERL_INT8_OPERATOR=0``); False the Python forward; True requires the operator.
    ``patch_gemm``: None times the patch-matrix product against the direct kernel for each small
    convolution's shape (``conv_paths.ConvPaths``); True/False always takes that one.
    """
    if native_kernels:
        _require_native("native_kernels")
    if native_kernels is False:
        if int8_operator:
            raise ValueError("int8_operator=True needs the native kernels (the operator links them in), "
                             "but native_kernels=False")
        int8_operator = False
    use_native = native_kernels is not False
    return EncoderPaths(conv=ConvPaths(patch_gemm), norm_act=NativeNormAct() if use_native else None,
                        native_kernels=use_native, int8_operator=int8_operator)


def fused_heads_enabled() -> bool:
    """False when ``HILSERL_FUSED_HEADS=0`` turns the fused image heads off."""
    return os.environ.get(FUSED_HEADS_ENV, "1") != "0"
