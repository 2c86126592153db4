"""3Dconnexion SpaceMouse HID reports -> normalised 6-axis twist and buttons.

The devices send small HID input reports:

- report 1: translation x, y, z as little-endian int16 (6 bytes); devices that
  send all six axes at once (SpaceMouse Compact/Wireless and newer) append
  rotation rx, ry, rz in the same report (12 bytes);
- report 2: rotation rx, ry, rz (older devices);
- report 3: button bitmask (bit i = button i).

Raw counts reach about +-350 at full deflection; ``full_scale`` maps that to 1.
``axis_signs`` turns the device axes into the robot convention used by the mux
(operator frame ``base``: +x away from the person, +y left, +z up); check it
once per device model with ``ros2 topic echo spacenav/twist`` and flip signs in
config if needed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import List, Sequence, Tuple

import numpy as np

from .config import param

# (vendor id, product id) of 3Dconnexion devices: Logitech-era and 3Dconnexion-era ids.
KNOWN_DEVICES = {
    (0x046D, 0xC626): "SpaceNavigator",
    (0x046D, 0xC62B): "SpaceMouse Pro",
    (0x046D, 0xC627): "SpaceExplorer",
    (0x256F, 0xC635): "SpaceMouse Compact",
    (0x256F, 0xC62E): "SpaceMouse Wireless (cabled)",
    (0x256F, 0xC652): "SpaceMouse Wireless (receiver)",
    (0x256F, 0xC631): "SpaceMouse Pro Wireless (cabled)",
    (0x256F, 0xC632): "SpaceMouse Pro Wireless (receiver)",
}


@dataclass(frozen=True)
class SpaceMouseConfig:
    device_index: int = param(0, "which SpaceMouse when several are plugged in (0 = first by HID path); one per arm", low=0, high=16)
    full_scale: float = param(350.0, "raw axis count at full deflection", low=1.0, high=2000.0)
    axis_signs: Tuple[float, ...] = param((1.0, -1.0, -1.0, 1.0, -1.0, -1.0), "sign per axis x y z rx ry rz from device to robot convention", low=-1.0, high=1.0)
    publish_rate_hz: float = param(50.0, "rate of spacenav/twist and spacenav/joy", units="Hz", low=1.0, high=500.0)


@dataclass
class SpaceMouseState:
    """Latest device state; ``update`` consumes one raw report."""

    raw: np.ndarray = field(default_factory=lambda: np.zeros(6))
    buttons: List[int] = field(default_factory=lambda: [0, 0])

    def update(self, report: Sequence[int]) -> bool:
        """Apply one HID report (report id first); returns False for reports it does not know."""
        data = bytes(report)
        if not data:
            return False
        rid = data[0]
        if rid == 1 and len(data) >= 13:
            self.raw[:] = struct.unpack("<6h", data[1:13])
        elif rid == 1 and len(data) >= 7:
            self.raw[:3] = struct.unpack("<3h", data[1:7])
        elif rid == 2 and len(data) >= 7:
            self.raw[3:] = struct.unpack("<3h", data[1:7])
        elif rid == 3 and len(data) >= 2:
            mask = int.from_bytes(data[1:], "little")
            n = max(2, mask.bit_length())
            self.buttons = [(mask >> i) & 1 for i in range(n)]
        else:
            return False
        return True

    def twist(self, config: SpaceMouseConfig) -> np.ndarray:
        """Normalised [vx, vy, vz, wx, wy, wz] in [-1, 1] in the robot convention."""
        return np.clip(self.raw / config.full_scale * np.asarray(config.axis_signs), -1.0, 1.0)
