"""3Dconnexion SpaceMouse HID reports -> normalised 6-axis twist and buttons.

The devices send small HID input reports:

- report 1: translation x, y, z as little-endian int16 (6 bytes); devices that
  send all six axes at once (SpaceMouse Compact/Wireless and newer) append
  rotation rx, ry, rz in the same report (12 bytes);
- report 2: rotation rx, ry, rz (older devices);
- report 3: button bitmask (bit i = button i).

Raw counts reach about +-350 at full deflection; ``full_scale`` maps that to 1.

Axes. The raw report's frame, seen by a person sitting behind the device, is
x right, y toward the person, z down (rx, ry, rz: right-hand rotations about
those axes). ``axis_map`` says, for each output axis vx vy vz wx wy wz, which raw
axis feeds it and with what sign ("-y": minus raw y). Its default gives exactly
the convention of the ROS ``spacenav`` package's ``spacenav/twist`` (pyspacemouse,
robosuite and serl likewise swap raw x and y): +x away from the person (forward), +y left,
+z up, and rotations by the right-hand rule about those axes, i.e.
forward = -y, left = -x, up = -z, and likewise for rx, ry, rz. So this driver and
``spacenav_node`` are interchangeable. The mux reads that twist in its
``operator_frame`` (``base``: the arm's base axes, so the person should stand
facing the base's +x); check once per setup with ``ros2 topic echo spacenav/twist``.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass, field
from typing import Any, Iterable, List, Mapping, Sequence, Tuple

import numpy as np

from ..formats.config import ConfigError, param

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


# raw report order: index of each raw axis in SpaceMouseState.raw
RAW_AXES = ("x", "y", "z", "rx", "ry", "rz")
OUTPUT_AXES = ("vx", "vy", "vz", "wx", "wy", "wz")
# spacenav_node's convention (forward, left, up) from the raw frame (right, toward the person, down)
SPACENAV_AXIS_MAP = ("-y", "-x", "-z", "-ry", "-rx", "-rz")


def parse_axis_map(entries: Sequence[str], where: str = "axis_map") -> Tuple[np.ndarray, np.ndarray]:
    """``axis_map`` -> (raw index, sign) per output axis; ConfigError naming the bad entry.

    Six entries ``[+|-]<raw axis>``: the first three take each of x, y, z once, the
    last three each of rx, ry, rz once (a permutation with signs, nothing mixed).
    """
    entries = tuple(entries)
    expected = "six entries like [-y, -x, -z, -ry, -rx, -rz] (output vx vy vz wx wy wz <- [+|-] raw axis)"
    if len(entries) != 6:
        raise ConfigError(f"{where}: {len(entries)} entries; needs {expected}")
    index, sign = np.zeros(6, dtype=int), np.ones(6)
    for half, names in ((slice(0, 3), RAW_AXES[:3]), (slice(3, 6), RAW_AXES[3:])):
        used = {}
        for i in range(6)[half]:
            entry = entries[i]
            text = entry.strip().lower() if isinstance(entry, str) else ""
            s = -1.0 if text.startswith("-") else 1.0
            name = text[1:] if text.startswith(("+", "-")) else text
            if name not in names:
                raise ConfigError(
                    f"{where}[{i}] ({OUTPUT_AXES[i]}) = {entry!r}: must be one of "
                    f"{', '.join(names)} with an optional sign (+ or -); {expected}"
                )
            if name in used:
                raise ConfigError(
                    f"{where}: raw axis {name} feeds both {OUTPUT_AXES[used[name]]} and {OUTPUT_AXES[i]}; "
                    f"each of {', '.join(names)} must be used exactly once"
                )
            used[name] = i
            index[i], sign[i] = RAW_AXES.index(name), s
    return index, sign


@functools.lru_cache(maxsize=16)
def _parsed_axis_map(entries: Tuple[str, ...]) -> Tuple[np.ndarray, np.ndarray]:
    """:func:`parse_axis_map` once per map (``twist`` runs at the publish rate); read-only arrays."""
    index, sign = parse_axis_map(entries)
    index.flags.writeable = sign.flags.writeable = False
    return index, sign


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return "" if value is None else str(value).strip()


def _path_key(record: Mapping[str, Any]) -> str:
    return _text(record.get("path"))


def known_spacemice(records: Iterable[Mapping[str, Any]]) -> List[Mapping[str, Any]]:
    """The 3Dconnexion devices among HID enumeration records (``hid.enumerate()`` dicts:
    ``path``, ``vendor_id``, ``product_id``, ``serial_number``, ...), sorted by HID path.
    A device that shows several HID interfaces appears once per interface."""
    found = [r for r in records if (r.get("vendor_id"), r.get("product_id")) in KNOWN_DEVICES]
    return sorted(found, key=_path_key)


def describe_device(record: Mapping[str, Any]) -> str:
    """One line for a device list: model, serial number and HID path."""
    model = KNOWN_DEVICES.get((record.get("vendor_id"), record.get("product_id")), "unknown device")
    serial = _text(record.get("serial_number")) or "(no serial number)"
    return f"{model} serial {serial} at {_path_key(record)}"


def select_device(records: Iterable[Mapping[str, Any]], serial: str = "", index: int = 0) -> Mapping[str, Any]:
    """The enumeration record of the SpaceMouse to open.

    ``serial`` non-empty: the device whose HID serial number string equals it (surrounding
    blanks and letter case ignored), whatever its place in the enumeration; when a device shows
    several HID interfaces with that serial, the first by path. Empty: the ``index``-th
    known device by HID path (the order can change after a replug). ConfigError otherwise,
    listing the devices found."""
    devices = known_spacemice(records)
    listing = "; ".join(describe_device(d) for d in devices) or "none"
    serial = _text(serial)
    if serial:
        match = [d for d in devices if _text(d.get("serial_number")).lower() == serial.lower()]
        if not match:
            raise ConfigError(
                f"serial {serial!r}: no SpaceMouse with that serial number; found {len(devices)}: {listing}. "
                "Check the serial (ros2 run hilserl_teleop spacemouse_node --list) and that the user may read "
                "the device's /dev/hidraw* node (udev rule, docs/real_robot.md)")
        return match[0]
    if index < 0 or index >= len(devices):
        raise ConfigError(
            f"device_index {index}: {len(devices)} SpaceMouse device(s) found ({listing}); plug one in and give the user "
            "read access to its /dev/hidraw* node (udev rule, docs/real_robot.md), or use the ROS spacenav package")
    return devices[index]


@dataclass(frozen=True)
class SpaceMouseConfig:
    device_index: int = param(0, "which SpaceMouse when several are plugged in and no serial is given (0 = first by HID path; "
                                 "the order can change after a replug)", low=0, high=16)
    serial: str = param("", "HID serial number string of the SpaceMouse to open (spacemouse_node --list); "
                            "empty = pick by device_index")
    full_scale: float = param(350.0, "raw axis count at full deflection", low=1.0, high=2000.0)
    axis_map: Tuple[str, ...] = param(
        SPACENAV_AXIS_MAP,
        "source of output vx vy vz wx wy wz: [+|-] raw axis (raw: x right, y toward the person, z down); "
        "the default is spacenav_node's convention: +x forward, +y left, +z up",
    )
    publish_rate_hz: float = param(50.0, "rate of spacenav/twist and spacenav/joy", units="Hz", low=1.0, high=500.0)

    def __post_init__(self) -> None:
        parse_axis_map(self.axis_map, "SpaceMouseConfig.axis_map")


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
        """Normalised [vx, vy, vz, wx, wy, wz] in [-1, 1], axes as ``config.axis_map`` says."""
        index, sign = _parsed_axis_map(tuple(config.axis_map))
        return np.clip(self.raw[index] * sign / config.full_scale, -1.0, 1.0)
