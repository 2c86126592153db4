"""Convert the published HIL-SERL ResNet-10 ImageNet weights into an ``encoder_weights`` file.

The published file is ``resnet10_params.pkl`` of the ``resnet10`` release of
rail-berkeley/serl (https://github.com/rail-berkeley/serl/releases/download/resnet10/resnet10_params.pkl;
hil-serl's ``serl_launcher/utils/train_utils.py`` ``load_resnet10_params`` downloads the same
file to ``~/.serl/``). It is a pickled flax parameter tree whose top-level keys are the
``resnetv1-10`` module names (``conv_init``, ``norm_init``, ``ResNetBlock_0..3``; see
:mod:`hilserl_core.vision.encoders` for the full list and shapes). SERL copies those keys
into its ``pretrained_encoder``; other top-level keys, if any, are not part of it and are
ignored (and listed) here too.

:func:`convert_published` reads it with :mod:`hilserl_core.formats.flax_pickle` (no flax, no
unpickling: nothing in the file is executed), checks every tensor against the shapes of
:class:`~hilserl_core.vision.encoders.ResNet10Encoder`'s state dict, maps it with the
encoder's own flax -> torch table, loads it into an encoder to make sure it is complete,
and writes the safetensors file atomically. The result is what ``encoder_weights:=`` takes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Tuple, Union

import numpy as np
import torch

from ..formats import tensorio
from ..formats.flax_pickle import UnsafePickleError, read_flax_params
from . import encoders

PUBLISHED_URL = "https://github.com/rail-berkeley/serl/releases/download/resnet10/resnet10_params.pkl"


class ConversionError(ValueError):
    """The file is not the published ResNet-10 tree (missing, mis-shaped or non-finite tensor)."""


@dataclass
class ConversionSummary:
    source: Path
    source_sha256: str
    output: Path
    tensors: int
    parameters: int
    identity: Dict[str, str]
    ignored: List[str] = field(default_factory=list)
    globals_seen: List[str] = field(default_factory=list)


def _flax_shape(torch_shape: Tuple[int, ...], kind: str) -> Tuple[int, ...]:
    """The flax shape that gives a torch tensor of ``torch_shape`` (conv: HWIO from OIHW)."""
    if kind == "conv":
        o, i, h, w = torch_shape
        return (h, w, i, o)
    return tuple(torch_shape)


def check_against_architecture(flat: Mapping[str, np.ndarray], where: str) -> Dict[str, np.ndarray]:
    """Every tensor the encoder's state dict needs, present with its exact shape, numeric and
    finite; returns the tree with its leading prefix (e.g. ``params/``) stripped. Raises
    :class:`ConversionError` naming the first offending flax key."""
    flat = encoders._strip_prefix(flat)
    expected = encoders.ResNet10Encoder(compute_dtype="float32").expected_tensors()
    table = encoders._flax_to_torch_names()
    if set(table) != set(expected):  # the mapping and the module must agree before anything is checked
        raise ConversionError(f"encoder state dict and flax table differ: {sorted(set(table) ^ set(expected))}")
    for torch_name, (flax_name, kind) in table.items():
        need = _flax_shape(expected[torch_name][0], kind)
        if flax_name not in flat:
            raise ConversionError(f"{where}: missing {flax_name} {need} (for {torch_name}); "
                                  "is this the HIL-SERL/SERL resnet10_params.pkl?")
        value = flat[flax_name]
        if tuple(value.shape) != need:
            raise ConversionError(f"{where}: {flax_name} has shape {tuple(value.shape)}, the architecture needs "
                                  f"{need} (for {torch_name})")
        if value.dtype.kind != "f":
            raise ConversionError(f"{where}: {flax_name} holds {value.dtype}, not floating point")
        if not np.isfinite(value).all():
            raise ConversionError(f"{where}: {flax_name} holds non-finite values")
    return flat


def convert_published(source: Union[str, Path], output: Union[str, Path]) -> ConversionSummary:
    """Convert ``source`` (the published pickle) into the safetensors weights file ``output``.

    Raises :class:`~hilserl_core.formats.flax_pickle.UnsafePickleError` for a file that is
    not plain arrays and containers, :class:`ConversionError` for one that does not fit the
    architecture, ``tensorio.TensorIOError`` when writing fails. ``output`` is replaced
    atomically: never half-written."""
    source, output = Path(source), Path(output)
    where = source.name
    everything, seen = read_flax_params(source)
    flat = check_against_architecture(everything, where)
    try:
        arrays, _ = encoders.convert_flax_resnet10(flat, where)
    except tensorio.TensorIOError as exc:  # checked above; kept for a table that changes
        raise ConversionError(str(exc)) from None
    # everything else in the file, also what lies outside the stripped prefix (e.g. beside "params/")
    used = {flax_name for flax_name, _ in encoders._flax_to_torch_names().values()}
    prefix = next((k[: -len("conv_init/kernel")] for k in everything if k.endswith("conv_init/kernel")), "")
    ignored = sorted(set(everything) - {prefix + u for u in used})
    encoder = encoders.ResNet10Encoder(compute_dtype="float32")
    encoder.load_state_dict({k: torch.from_numpy(v) for k, v in arrays.items()}, strict=True)
    identity = encoder.identity()
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    tensorio.save_file(output, arrays, {
        "kind": encoders.WEIGHTS_KIND, "architecture": "resnet10", "converted_from": source.name,
        "source_sha256": digest, "weights": identity["weights"],
    })
    # read back through the loader the nodes use: the file is what encoder_weights:= will see
    loaded = encoders.load_frozen_encoder(str(output), "float32").identity()
    if loaded["weights"] != identity["weights"]:
        raise ConversionError(f"{output}: reads back as {loaded['weights']}, wrote {identity['weights']}")
    return ConversionSummary(
        source=source, source_sha256=digest, output=output, tensors=len(arrays),
        parameters=int(sum(v.size for v in arrays.values())), identity=loaded, ignored=ignored, globals_seen=seen,
    )


__all__ = ["ConversionError", "ConversionSummary", "PUBLISHED_URL", "UnsafePickleError", "check_against_architecture",
           "convert_published"]
