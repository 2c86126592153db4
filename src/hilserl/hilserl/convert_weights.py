"""``hilserl convert-weights IN.pkl -o OUT.safetensors``: the published HIL-SERL ResNet-10
ImageNet weights (``resnet10_params.pkl``) as the safetensors file ``encoder_weights:=`` takes.

No flax, and nothing in the pickle is executed (``hilserl_core.formats.flax_pickle``);
every tensor is checked against the encoder's shapes before anything is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hilserl_core.formats.flax_pickle import UnsafePickleError
from hilserl_core.formats.tensorio import TensorIOError
from hilserl_core.vision.published_weights import PUBLISHED_URL, ConversionError, convert_published


def _cmd_convert_weights(args) -> int:
    if args.output.exists() and not args.force:
        print(f"hilserl convert-weights: {args.output} exists; pass --force to replace it", file=sys.stderr)
        return 2
    try:
        s = convert_published(args.source, args.output)
    except (UnsafePickleError, ConversionError, TensorIOError, OSError) as exc:
        print(f"hilserl convert-weights: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    print(f"read {s.source} (sha256 {s.source_sha256[:16]}), without unpickling; it names: "
          + (", ".join(s.globals_seen) or "no globals"))
    if s.ignored:
        print(f"ignored {len(s.ignored)} entries the encoder does not use: {', '.join(s.ignored[:8])}"
              + (" ..." if len(s.ignored) > 8 else ""))
    print(f"checked {s.tensors} tensors against the ResNet-10 architecture: {s.parameters:,} parameters")
    print(f"encoder identity: architecture {s.identity['architecture']}, weights {s.identity['weights']}")
    print(f"wrote {s.output}; use encoder_weights:={s.output.resolve()}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``convert-weights`` to the ``hilserl`` command."""
    p = sub.add_parser("convert-weights", help="published HIL-SERL ResNet-10 weights (resnet10_params.pkl) -> "
                                               "safetensors for encoder_weights:=",
                       description=f"Convert the published ResNet-10 ImageNet weights ({PUBLISHED_URL}) without "
                                   "flax and without unpickling; every tensor is checked against the encoder's "
                                   "shapes; the output is written atomically.")
    p.add_argument("source", type=Path, metavar="IN.pkl", help="resnet10_params.pkl")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.safetensors", help="weights file to write")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=_cmd_convert_weights)

