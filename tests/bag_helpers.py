"""Synthetic recordings for the bag, frames and reward-classifier tests, written by two writers:

- ``write_rosbags``: hilserl's own ``formats.bags.BagWriter`` (rosbags);
- ``write_mcap_ros2``: the ``mcap-ros2-support`` library, with message definitions read from
  the installed ``.msg`` files (as ``ros2 bag record`` takes them), into a rosbag2 directory
  (``<name>_0.mcap`` + a Jazzy-style ``metadata.yaml``) or a bare ``.mcap`` file.

A recording is a list of events ``(topic, msgtype, log_time_ns, fields)`` with ``fields`` a
plain dict. Images are 16x16 (small and fast): bright for success frames, dark for the rest,
with noise, so a classifier can learn them.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

Event = Tuple[str, str, int, dict]
SIZE = 16
PERIOD_NS = 100_000_000  # 10 Hz
T0_NS = 1_700_000_000 * 10**9


def image_fields(stamp_ns: int, rgb: np.ndarray) -> dict:
    h, w, _ = rgb.shape
    return {"header": {"stamp": {"sec": stamp_ns // 10**9, "nanosec": stamp_ns % 10**9}, "frame_id": "cam"},
            "height": h, "width": w, "encoding": "rgb8", "is_bigendian": 0, "step": 3 * w, "data": rgb.tobytes()}


def synthetic_recording(outcomes: Sequence[str], cameras: Sequence[str] = ("left/wrist", "left/front"),
                        frames_before: int = 12, frames_after: int = 8, seed: int = 0, sim: bool = True,
                        start_reset: bool = True) -> List[Event]:
    """Episodes with the given outcomes ("success" / "failure" / "unmarked"), each started by a
    reset mark; a success episode shows success from frame ``frames_before`` on and is marked
    then; a failure one is marked after ``frames_before + frames_after`` frames."""
    rng = np.random.default_rng(seed)
    events: List[Event] = []
    t = T0_NS
    for ep, outcome in enumerate(outcomes):
        if start_reset or ep > 0:
            events.append(("/episode/reset", "std_msgs/msg/Empty", t, {}))
        t += PERIOD_NS // 2
        for i in range(frames_before + frames_after):
            success_now = outcome == "success" and i >= frames_before
            for k, cam in enumerate(cameras):
                arm, name = cam.split("/")
                level = 200 if success_now else 50
                rgb = np.clip(rng.normal(level, 20, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
                events.append((f"/{arm}/cameras/{name}/image_cropped", "sensor_msgs/msg/Image", t + 1000 * (k + 1),
                               image_fields(t, rgb)))
            if sim:
                events.append(("/sim/success", "std_msgs/msg/Bool", t, {"data": bool(success_now)}))
            if outcome == "success" and i == frames_before:
                events.append(("/episode/success", "std_msgs/msg/Empty", t + 5_000_000, {}))
            if outcome == "failure" and i == frames_before + frames_after - 1:
                events.append(("/episode/failure", "std_msgs/msg/Empty", t + 5_000_000, {}))
            events.append(("/left/current_pose", "geometry_msgs/msg/PoseStamped", t + 200, {
                "header": {"stamp": {"sec": t // 10**9, "nanosec": t % 10**9}, "frame_id": "left_base"},
                "pose": {"position": {"x": 0.1 * i, "y": 0.0, "z": 0.3}, "orientation": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0}}}))
            t += PERIOD_NS
    return sorted(events, key=lambda e: e[2])


# ------------------------------------------------------------------------- hilserl's writer (rosbags)
def _rosbags_message(store, msgtype: str, fields: dict):
    """Build a rosbags message from a dict (nested dicts for nested messages)."""
    cls = store.types[msgtype]
    kwargs = {}
    for name, (kind, spec) in store.fielddefs[msgtype][1]:
        if name == "structure_needs_at_least_one_member":  # std_msgs/Empty as rosbags defines it
            kwargs[name] = 0
            continue
        value = fields[name]
        if kind == 2:  # a nested message: spec is its type name
            kwargs[name] = _rosbags_message(store, spec, value)
        elif isinstance(value, (bytes, bytearray)):
            kwargs[name] = np.frombuffer(value, dtype=np.uint8).copy()
        else:
            kwargs[name] = value
    return cls(**kwargs)


def write_rosbags(path, events: Sequence[Event], topics=None, custom_data: Dict[str, str] = None) -> Path:
    from hilserl_core.formats import bags

    store = bags._typestore()
    if topics is None:
        seen: Dict[str, str] = {}
        for topic, msgtype, _, _ in events:
            seen.setdefault(topic, msgtype)
        topics = [bags.TopicSpec(t, m, True) for t, m in seen.items()]
    with bags.BagWriter(path, topics, custom_data or {}) as w:
        for topic, msgtype, t, fields in events:
            w.write(topic, bags.serialize(_rosbags_message(store, msgtype, fields), msgtype), t)
    return Path(path)


# ------------------------------------------------------------------------- another writer (mcap-ros2)
_BUILTIN = {"bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32", "uint32",
            "int64", "uint64", "string", "wstring"}


def _msg_text(share: Path, msgtype: str) -> str:
    package, _, name = msgtype.split("/")
    return (share / package / "msg" / f"{name}.msg").read_text()


def ros2msg_definition(msgtype: str) -> str:
    """The concatenated ``ros2msg`` schema of ``msgtype`` from the installed .msg files (as rosbag2 builds it)."""
    share = Path(os.environ.get("VIRTUAL_ENV", ".venv")) / "share"
    main = _msg_text(share, msgtype)
    out, seen, todo = [main], set(), [(msgtype.split("/")[0], main)]
    while todo:
        package, text = todo.pop()
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if not line or "=" in line.split()[0]:
                continue
            ftype = re.sub(r"\[.*\]$", "", line.split()[0])
            ftype = re.sub(r"<=\d+$", "", ftype)
            if ftype in _BUILTIN or ftype.startswith(("string<", "wstring<")) or len(line.split()) < 2 or "=" in line:
                continue
            full = ftype if "/" in ftype else f"{package}/{ftype}"
            if full == "Header":
                full = "std_msgs/Header"
            if full in seen:
                continue
            seen.add(full)
            pkg, name = full.split("/")
            sub = _msg_text(share, f"{pkg}/msg/{name}")
            out.append("=" * 80 + f"\nMSG: {full}\n" + sub)
            todo.append((pkg, sub))
    return "\n".join(out)


def _jazzy_metadata(name: str, events: Sequence[Event], custom_data: Dict[str, str]) -> str:
    counts: Dict[str, Tuple[str, int]] = {}
    for topic, msgtype, _, _ in events:
        counts[topic] = (msgtype, counts.get(topic, (msgtype, 0))[1] + 1)
    start = min(e[2] for e in events)
    duration = max(e[2] for e in events) - start
    doc = {"rosbag2_bagfile_information": {
        "version": 9, "storage_identifier": "mcap", "duration": {"nanoseconds": duration},
        "starting_time": {"nanoseconds_since_epoch": start}, "message_count": len(events),
        "topics_with_message_count": [
            {"topic_metadata": {"name": t, "type": m, "serialization_format": "cdr", "offered_qos_profiles": [],
                                "type_description_hash": ""}, "message_count": n} for t, (m, n) in counts.items()],
        "compression_format": "", "compression_mode": "", "relative_file_paths": [f"{name}_0.mcap"],
        "files": [{"path": f"{name}_0.mcap", "starting_time": {"nanoseconds_since_epoch": start},
                   "duration": {"nanoseconds": duration}, "message_count": len(events)}],
        "custom_data": dict(custom_data), "ros_distro": "jazzy"}}
    return json.dumps(doc, indent=1)  # JSON is YAML


def write_mcap_ros2(path, events: Sequence[Event], custom_data: Dict[str, str] = None, bare: bool = False) -> Path:
    """A rosbag2 directory as ``ros2 bag record -s mcap`` lays it out, or (``bare``) one .mcap file."""
    from mcap_ros2.writer import Writer

    path = Path(path)
    if bare:
        file = path
    else:
        path.mkdir()
        file = path / f"{path.name}_0.mcap"
    schemas = {}
    with open(file, "wb") as f:
        w = Writer(f)
        for seq, (topic, msgtype, t, fields) in enumerate(events):
            if msgtype not in schemas:
                schemas[msgtype] = w.register_msgdef(msgtype, ros2msg_definition(msgtype))
            w.write_message(topic, schemas[msgtype], fields, log_time=t, publish_time=t, sequence=seq)
        w.finish()
    if not bare:
        (path / "metadata.yaml").write_text(_jazzy_metadata(path.name, events, custom_data or {}))
    return path
