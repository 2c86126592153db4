"""Conversions between ROS message fields and numpy, without importing ROS.

The functions read and write message *attributes* (duck typing), so they work on
real rclpy messages in the nodes and on plain objects in the unit tests, and
hilserl_core stays free of rclpy and message packages. Nodes construct the
message and call ``fill_*`` on it; ``*_to_array`` read one.

Image handling replaces cv_bridge for the encodings the cameras here produce
(rgb8, bgr8, rgba8, bgra8, mono8), honouring the row ``step`` (padding).
"""

from __future__ import annotations

from typing import Any, Tuple

import numpy as np

__all__ = [
    "SUPPORTED_ENCODINGS",
    "image_to_rgb",
    "rgb_to_image_fields",
    "fill_image",
    "pose_to_arrays",
    "fill_pose",
    "vector6_from_twist",
    "fill_twist",
    "vector6_from_wrench",
    "fill_wrench",
    "stamp_to_seconds",
    "seconds_to_stamp",
]

# encoding -> (channels, index order that turns the stored channels into RGB)
_ENCODINGS = {
    "rgb8": (3, (0, 1, 2)),
    "bgr8": (3, (2, 1, 0)),
    "rgba8": (4, (0, 1, 2)),
    "bgra8": (4, (2, 1, 0)),
    "mono8": (1, (0, 0, 0)),
    "8UC1": (1, (0, 0, 0)),
    "8UC3": (3, (0, 1, 2)),
}
SUPPORTED_ENCODINGS = tuple(_ENCODINGS)


def image_to_rgb(msg: Any) -> np.ndarray:
    """A sensor_msgs/Image (any supported 8-bit encoding) as uint8 RGB ``[H, W, 3]``.

    Raises ValueError naming the encoding or the size mismatch, so a camera
    driver misconfiguration shows up as a clear diagnostic rather than garbage.
    """
    enc = msg.encoding
    if enc not in _ENCODINGS:
        raise ValueError(f"unsupported image encoding '{enc}'; supported: {', '.join(SUPPORTED_ENCODINGS)}")
    channels, order = _ENCODINGS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    row = w * channels
    if step < row:
        raise ValueError(f"image step {step} is smaller than width*channels = {row} for {enc}")
    try:  # bytes, array.array('B') (what rclpy gives), memoryview: no copy
        buf = np.frombuffer(msg.data, dtype=np.uint8)
    except TypeError:  # a plain list of ints
        buf = np.asarray(msg.data, dtype=np.uint8)
    if buf.size < h * step:
        raise ValueError(f"image data has {buf.size} bytes, expected height*step = {h * step}")
    rows = buf[: h * step].reshape(h, step)[:, :row].reshape(h, w, channels)
    if channels == 1:
        return np.repeat(rows, 3, axis=2)
    # slices, not an index list: numpy's fancy indexing gathers byte by byte (0.3 ms for 128x128)
    return np.array(rows[:, :, 0:3] if order == (0, 1, 2) else rows[:, :, 2::-1], order="C")


def rgb_to_image_fields(rgb: np.ndarray, encoding: str = "rgb8") -> dict:
    """Fields of a sensor_msgs/Image holding ``rgb`` (uint8 [H, W, 3]) in ``encoding``."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected uint8 [H, W, 3] RGB, got {rgb.dtype} {rgb.shape}")
    if encoding not in _ENCODINGS:
        raise ValueError(f"unsupported image encoding '{encoding}'; supported: {', '.join(SUPPORTED_ENCODINGS)}")
    channels, order = _ENCODINGS[encoding]
    h, w, _ = rgb.shape
    if channels == 1:
        # ITU-R BT.601 luma, as camera drivers produce for mono8.
        out = np.rint(rgb @ np.array([0.299, 0.587, 0.114])).clip(0, 255).astype(np.uint8)[:, :, None]
    else:
        out = np.empty((h, w, channels), np.uint8)
        out[:, :, list(order)] = rgb
        if channels == 4:
            out[:, :, 3] = 255
    return {
        "height": h,
        "width": w,
        "encoding": encoding,
        "is_bigendian": 0,
        "step": w * channels,
        "data": out.tobytes(),
    }


def fill_image(msg: Any, rgb: np.ndarray, encoding: str = "rgb8") -> Any:
    """Write ``rgb`` into an existing Image message (header left to the caller)."""
    for key, value in rgb_to_image_fields(rgb, encoding).items():
        setattr(msg, key, value)
    return msg


def pose_to_arrays(pose: Any) -> Tuple[np.ndarray, np.ndarray]:
    """geometry_msgs/Pose (or the ``.pose`` of a PoseStamped) -> (position[3], quat_xyzw[4])."""
    p, q = pose.position, pose.orientation
    return np.array([p.x, p.y, p.z], dtype=float), np.array([q.x, q.y, q.z, q.w], dtype=float)


def fill_pose(pose: Any, position: np.ndarray, quat_xyzw: np.ndarray) -> Any:
    p, q = pose.position, pose.orientation
    p.x, p.y, p.z = (float(v) for v in position)
    q.x, q.y, q.z, q.w = (float(v) for v in quat_xyzw)
    return pose


def vector6_from_twist(twist: Any) -> np.ndarray:
    """geometry_msgs/Twist -> [vx, vy, vz, wx, wy, wz]."""
    lin, ang = twist.linear, twist.angular
    return np.array([lin.x, lin.y, lin.z, ang.x, ang.y, ang.z], dtype=float)


def fill_twist(twist: Any, v6: np.ndarray) -> Any:
    twist.linear.x, twist.linear.y, twist.linear.z = (float(v) for v in v6[:3])
    twist.angular.x, twist.angular.y, twist.angular.z = (float(v) for v in v6[3:6])
    return twist


def vector6_from_wrench(wrench: Any) -> np.ndarray:
    """geometry_msgs/Wrench -> [fx, fy, fz, tx, ty, tz]."""
    f, t = wrench.force, wrench.torque
    return np.array([f.x, f.y, f.z, t.x, t.y, t.z], dtype=float)


def fill_wrench(wrench: Any, w6: np.ndarray) -> Any:
    wrench.force.x, wrench.force.y, wrench.force.z = (float(v) for v in w6[:3])
    wrench.torque.x, wrench.torque.y, wrench.torque.z = (float(v) for v in w6[3:6])
    return wrench


def stamp_to_seconds(stamp: Any) -> float:
    """builtin_interfaces/Time -> float seconds."""
    return float(stamp.sec) + 1e-9 * float(stamp.nanosec)


def seconds_to_stamp(stamp: Any, seconds: float) -> Any:
    """Write float seconds into a builtin_interfaces/Time (nanosec kept in [0, 1e9))."""
    ns = int(round(seconds * 1e9))
    stamp.sec, stamp.nanosec = divmod(ns, 1_000_000_000)
    return stamp
