"""rosbag2 bags in MCAP: the topics a recording holds, writing them, reading them back (no rclpy).

One list of topics (:func:`recorded_topics`) is what both recorders take: ``hilserl record``
(here, writing with :class:`BagWriter`) and ``record_demos.launch.py`` (a full ROS 2
install, ``ros2 bag record -s mcap``). Per arm ``/<arm>/...`` and per camera of the setup:

=====================================  ===============================  =========================
topic                                  type                             why
=====================================  ===============================  =========================
``cameras/<cam>/image_cropped``        sensor_msgs/Image (128x128 rgb8)  observations, classifier
``current_pose``                       geometry_msgs/PoseStamped         proprioception
``current_twist``                      geometry_msgs/TwistStamped        proprioception
``external_wrench``                    geometry_msgs/WrenchStamped       proprioception
``gripper/joint_states``               sensor_msgs/JointState            gripper state
``mux/executed``                       sensor_msgs/Joy                   executed action + source
``spacenav/twist``, ``spacenav/joy``   Twist, Joy                        operator input
``target_pose``, ``target_wrench``     PoseStamped, WrenchStamped        controller targets
``gripper/command``                    std_msgs/Float64                  gripper target
=====================================  ===============================  =========================

and globally the operator's episode marks ``/episode/success``, ``/episode/failure``,
``/episode/reset`` (std_msgs/Empty, :mod:`hilserl_core.robot.episode_marks`),
``/reward/success`` (sensor_msgs/Joy: the success verdict stamped with the frame it judged,
``hilserl_interfaces.topics``), ``/diagnostics``, and in simulation the ground truth
``/sim/success`` (std_msgs/Bool, published with every camera frame).

Bags are rosbag2 directories (``metadata.yaml`` + ``<name>.mcap``, metadata version 9 as
Jazzy and newer write it), so ``ros2 bag info`` and ``ros2 bag play`` read them. The
``custom_data`` map of ``metadata.yaml`` carries what the recording was (``hilserl.setup``,
``hilserl.arms``, ``hilserl.cameras``, ``hilserl.crops``: JSON strings);
``ros2 bag record --custom-data`` writes the same keys. :class:`BagReader` reads any rosbag2
MCAP directory, or a bare ``.mcap`` file as other MCAP tools write it.

Errors (:class:`BagError`) are one line naming the bag and the problem: not a bag, truncated
or corrupt, missing topics, a bag of another setup. :class:`BagWriter` writes into a hidden
sibling directory and moves it to its name only when closed, so a bag under the given name is
always complete, and an existing path is never touched.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import yaml

from ..robot.episode_marks import FAILURE_TOPIC, MARK_TYPE, RESET_TOPIC, SUCCESS_TOPIC

__all__ = [
    "BagError",
    "TopicSpec",
    "recorded_topics",
    "SIM_SUCCESS_TOPIC",
    "REWARD_SUCCESS_TOPIC",
    "cropped_image_topic",
    "BagWriter",
    "BagReader",
    "BagMessage",
    "serialize",
    "KEY_SETUP",
    "KEY_ARMS",
    "KEY_CAMERAS",
    "KEY_CROPS",
]

BAG_VERSION = 9  # rosbag2 metadata version of Jazzy and newer
SIM_SUCCESS_TOPIC = "/sim/success"
REWARD_SUCCESS_TOPIC = "/reward/success"
DIAGNOSTICS_TOPIC = "/diagnostics"

KEY_SETUP, KEY_ARMS, KEY_CAMERAS, KEY_CROPS = "hilserl.setup", "hilserl.arms", "hilserl.cameras", "hilserl.crops"

PathLike = Union[str, os.PathLike]


class BagError(ValueError):
    """A bag could not be written or read; the message is one line naming the bag and the problem."""


@dataclass(frozen=True)
class TopicSpec:
    name: str  # absolute topic name
    msgtype: str  # e.g. "sensor_msgs/msg/Image"
    reliable: bool  # the publisher is reliable (events, commands); else best effort (sensor streams)


# per arm: (relative name, type, reliable publisher)
_PER_ARM: Tuple[Tuple[str, str, bool], ...] = (
    ("current_pose", "geometry_msgs/msg/PoseStamped", False),
    ("current_twist", "geometry_msgs/msg/TwistStamped", False),
    ("external_wrench", "geometry_msgs/msg/WrenchStamped", False),
    ("gripper/joint_states", "sensor_msgs/msg/JointState", False),
    ("mux/executed", "sensor_msgs/msg/Joy", True),
    ("spacenav/twist", "geometry_msgs/msg/Twist", True),
    ("spacenav/joy", "sensor_msgs/msg/Joy", True),
    ("target_pose", "geometry_msgs/msg/PoseStamped", True),
    ("target_wrench", "geometry_msgs/msg/WrenchStamped", True),
    ("gripper/command", "std_msgs/msg/Float64", True),
)
_GLOBAL: Tuple[Tuple[str, str, bool], ...] = (
    (SUCCESS_TOPIC, MARK_TYPE, True),
    (FAILURE_TOPIC, MARK_TYPE, True),
    (RESET_TOPIC, MARK_TYPE, True),
    (REWARD_SUCCESS_TOPIC, "sensor_msgs/msg/Joy", True),
    (DIAGNOSTICS_TOPIC, "diagnostic_msgs/msg/DiagnosticArray", True),
)


def cropped_image_topic(arm: str, camera: str) -> str:
    return f"/{arm}/cameras/{camera}/image_cropped"


def recorded_topics(arms: Sequence[str], cameras: Sequence[str], sim: bool = False) -> List[TopicSpec]:
    """Every topic a recording of a setup holds (the one list; see the module doc)."""
    out: List[TopicSpec] = []
    for arm in arms:
        out += [TopicSpec(cropped_image_topic(arm, cam), "sensor_msgs/msg/Image", False) for cam in cameras]
        out += [TopicSpec(f"/{arm}/{name}", msgtype, rel) for name, msgtype, rel in _PER_ARM]
    out += [TopicSpec(name, msgtype, rel) for name, msgtype, rel in _GLOBAL]
    if sim:
        out.append(TopicSpec(SIM_SUCCESS_TOPIC, "std_msgs/msg/Bool", True))
    return out


def _typestore():
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


# ------------------------------------------------------------------------------------ writing
class BagWriter:
    """A rosbag2 MCAP bag under construction; use as a context manager.

    ``write(topic, raw_cdr, log_time_ns)`` takes serialized messages as they come off the wire
    (an rclpy ``raw=True`` subscription), so recording costs no (de)serialization. The bag is
    built in ``.<name>.partial-<pid>/`` beside ``path`` and moved to ``path`` by :meth:`close`;
    :meth:`abort` (or an exception in the ``with`` block) removes it.
    """

    def __init__(self, path: PathLike, topics: Sequence[TopicSpec], custom_data: Optional[Mapping[str, str]] = None):
        from rosbags.rosbag2 import StoragePlugin, Writer

        self.path = Path(path)
        if self.path.exists() or self.path.is_symlink():
            raise BagError(f"{self.path}: already exists; choose another bag name (nothing was written)")
        if not self.path.parent.is_dir():
            raise BagError(f"{self.path}: the directory {self.path.parent} does not exist")
        self._tmp_parent = self.path.parent / f".{self.path.name}.partial-{os.getpid()}"
        shutil.rmtree(self._tmp_parent, ignore_errors=True)
        self._tmp_parent.mkdir()
        self._tmp = self._tmp_parent / self.path.name  # the bag's own name, so its files are named as ros2 bag names them
        self._writer = Writer(self._tmp, version=BAG_VERSION, storage_plugin=StoragePlugin.MCAP)
        for key, value in (custom_data or {}).items():
            self._writer.set_custom_data(str(key), str(value))
        self._writer.open()
        store = _typestore()
        self._connections = {}
        for spec in topics:
            if spec.name in self._connections:
                raise BagError(f"{self.path}: topic {spec.name} listed twice")
            self._connections[spec.name] = self._writer.add_connection(spec.name, spec.msgtype, typestore=store)
        self.counts: Dict[str, int] = {spec.name: 0 for spec in topics}
        self._closed = False

    def write(self, topic: str, raw_cdr: bytes, log_time_ns: int) -> None:
        self._writer.write(self._connections[topic], int(log_time_ns), raw_cdr)
        self.counts[topic] += 1

    def close(self) -> Path:
        """Finish the bag (index, metadata.yaml) and move it to its name."""
        if self._closed:
            return self.path
        self._closed = True
        self._writer.close()
        if self.path.exists():
            raise BagError(f"{self.path}: appeared while recording; the recording is left in {self._tmp}")
        os.replace(self._tmp, self.path)
        shutil.rmtree(self._tmp_parent, ignore_errors=True)
        return self.path

    def abort(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._writer.storage.abort() if self._writer.storage else None
        finally:
            shutil.rmtree(self._tmp_parent, ignore_errors=True)

    def __enter__(self) -> "BagWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def serialize(msg: Any, msgtype: str) -> bytes:
    """A rosbags message object as CDR bytes (tests and tools that build messages without rclpy)."""
    return bytes(_typestore().serialize_cdr(msg, msgtype))


# ------------------------------------------------------------------------------------ reading
@dataclass(frozen=True)
class BagMessage:
    topic: str
    msgtype: str
    log_time_ns: int
    msg: Any  # rosbags message object: the same field names as the rclpy message

    @property
    def time_s(self) -> float:
        return self.log_time_ns * 1e-9


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) < 200 else text[:197] + "..."


class BagReader:
    """Read a rosbag2 MCAP bag directory (or a bare ``.mcap`` file); use as a context manager.

    Opening checks that the bag is readable (metadata, MCAP index); :meth:`messages` turns a
    fault found later (a damaged chunk) into :class:`BagError` as well.
    """

    def __init__(self, path: PathLike):
        from rosbags.highlevel import AnyReader

        self.path = Path(path)
        if not self.path.exists():
            raise BagError(f"{self.path}: no such bag")
        if self.path.is_dir() and not (self.path / "metadata.yaml").is_file():
            mcaps = sorted(self.path.glob("*.mcap"))
            if not mcaps:
                raise BagError(f"{self.path}: not a rosbag2 bag (no metadata.yaml and no .mcap file)")
            raise BagError(f"{self.path}: no metadata.yaml (an interrupted recording?); "
                           f"run `ros2 bag reindex {self.path}` or read the file {mcaps[0]} itself")
        self.custom_data: Dict[str, str] = self._read_custom_data()
        self._reader = AnyReader([self.path], default_typestore=_typestore())
        try:
            self._reader.open()
        except Exception as exc:  # rosbags raises several kinds (reader, storage, yaml, struct) for damaged files
            raise BagError(f"{self.path}: truncated or corrupt bag, cannot be opened ({_one_line(exc)})") from None
        self.topics: Dict[str, str] = {}
        self.counts: Dict[str, int] = {}
        for conn in self._reader.connections:
            self.topics[conn.topic] = conn.msgtype
            self.counts[conn.topic] = self.counts.get(conn.topic, 0) + int(conn.msgcount or 0)

    def _read_custom_data(self) -> Dict[str, str]:
        meta = self.path / "metadata.yaml"
        if not meta.is_file():
            return {}
        try:
            doc = yaml.safe_load(meta.read_text())
            info = doc["rosbag2_bagfile_information"]
        except Exception as exc:
            raise BagError(f"{meta}: not a rosbag2 metadata file ({_one_line(exc)})") from None
        data = info.get("custom_data") or {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    # -- what the bag is
    def json_value(self, key: str, default: Any = None) -> Any:
        """A ``custom_data`` entry that holds JSON (``hilserl.*``), or ``default`` when absent."""
        if key not in self.custom_data:
            return default
        try:
            return json.loads(self.custom_data[key])
        except ValueError:
            return self.custom_data[key]

    @property
    def setup(self) -> Optional[str]:
        return self.custom_data.get(KEY_SETUP) or None

    def cameras(self) -> List[str]:
        """``<arm>/<camera>`` of every cropped image topic in the bag (sorted)."""
        out = []
        for topic in self.topics:
            parts = topic.strip("/").split("/")
            if len(parts) == 4 and parts[1] == "cameras" and parts[3] == "image_cropped":
                out.append(f"{parts[0]}/{parts[2]}")
        return sorted(out)

    def require(self, topics: Iterable[str], why: str = "") -> None:
        """BagError naming the missing topics (and, where the bag holds other cameras or arms, those)."""
        missing = [t for t in topics if t not in self.topics]
        if not missing:
            return
        have = self.cameras()
        detail = f"; its cameras are {', '.join(have)}" if have else ""
        setup = f" (recorded from {self.setup})" if self.setup else ""
        need = f" ({why})" if why else ""
        raise BagError(f"{self.path}: missing topic(s) {', '.join(missing)}{need}{setup}{detail}")

    def check_setup(self, setup: str, arms: Sequence[str], cameras: Sequence[str]) -> None:
        """BagError when the bag was recorded from another setup, or lacks its camera topics."""
        if self.setup and self.setup != setup:
            raise BagError(f"{self.path}: recorded from setup {self.setup}, not {setup}")
        expected = [cropped_image_topic(a, c) for a in arms for c in cameras]
        missing = [t for t in expected if t not in self.topics]
        if missing:
            have = self.cameras()
            raise BagError(
                f"{self.path}: not a bag of setup {setup}: it has camera(s) {', '.join(have) or 'none'}, "
                f"the setup has {', '.join(f'{a}/{c}' for a in arms for c in cameras)}"
            )

    # -- messages
    def messages(self, topics: Optional[Iterable[str]] = None) -> Iterator[BagMessage]:
        """Messages of ``topics`` (all when None) in log-time order, deserialized."""
        wanted = None if topics is None else set(topics)
        conns = [c for c in self._reader.connections if wanted is None or c.topic in wanted]
        if not conns:
            return
        it = self._reader.messages(connections=conns)
        seen: Dict[int, int] = {}
        while True:
            try:
                conn, t_ns, raw = next(it)
            except StopIteration:
                break
            except Exception as exc:
                raise BagError(f"{self.path}: truncated or corrupt bag, reading failed ({_one_line(exc)})") from None
            try:
                msg = self._reader.deserialize(raw, conn.msgtype)
            except Exception as exc:
                raise BagError(f"{self.path}: corrupt message on {conn.topic} at {t_ns * 1e-9:.3f} s "
                               f"({_one_line(exc)})") from None
            seen[id(conn)] = seen.get(id(conn), 0) + 1
            yield BagMessage(conn.topic, conn.msgtype, int(t_ns), msg)
        # an unreadable chunk can vanish without an error from the storage reader: count against the index
        short = [(c.topic, seen.get(id(c), 0), int(c.msgcount)) for c in conns if seen.get(id(c), 0) < int(c.msgcount or 0)]
        if short:
            detail = ", ".join(f"{t} {n} of {m}" for t, n, m in short[:3])
            raise BagError(f"{self.path}: truncated or corrupt bag, messages missing against its index ({detail})")

    @property
    def start_ns(self) -> int:
        return int(self._reader.start_time)

    @property
    def end_ns(self) -> int:
        return int(self._reader.end_time)

    def close(self) -> None:
        try:
            self._reader.close()
        except Exception:  # closing a reader that failed half-way
            pass

    def __enter__(self) -> "BagReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
