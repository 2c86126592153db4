"""Named tensors + JSON metadata in a std_msgs/UInt8MultiArray (safetensors bytes).

Used for transitions (actor -> learner) and policy weights (learner -> actor).
The bytes are a hilserl_core.formats.tensorio container: plain safetensors with a format
version and a sha256 over the tensor table, metadata and data, so a receiver
rejects a corrupted or foreign payload instead of unpickling anything. ``decode``
raises only tensorio.TensorIOError for a malformed message, whatever its bytes.
"""

from __future__ import annotations

import array
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np
from std_msgs.msg import MultiArrayDimension, UInt8MultiArray

from hilserl_core.formats import tensorio

LABEL = "hilserl.safetensors"


def encode(arrays: Mapping[str, np.ndarray], metadata: Optional[Mapping[str, Any]] = None) -> UInt8MultiArray:
    data = tensorio.to_bytes(arrays, metadata or {})
    msg = UInt8MultiArray()
    msg.layout.dim = [MultiArrayDimension(label=LABEL, size=len(data), stride=len(data))]
    # array('B', bytes) is one memcpy; assigning bytes directly would go element by element.
    msg.data = array.array("B", data)
    return msg


def decode(msg: UInt8MultiArray) -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
    """Arrays and metadata of a payload message; raises tensorio.TensorIOError if it is not one."""
    if not msg.layout.dim or msg.layout.dim[0].label != LABEL:
        raise tensorio.TensorIOError(f"not a hilserl payload (layout label must be '{LABEL}')")
    return tensorio.from_bytes(raw_bytes(msg))


def raw_bytes(msg: UInt8MultiArray) -> bytes:
    """The payload's bytes as sent (what the learner's transition log keeps)."""
    return msg.data.tobytes() if hasattr(msg.data, "tobytes") else bytes(msg.data)


def payload_size(msg: UInt8MultiArray) -> int:
    return len(msg.data)
