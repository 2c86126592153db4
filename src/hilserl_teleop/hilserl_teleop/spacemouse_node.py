"""SpaceMouse driver: publishes ``spacenav/twist`` and ``spacenav/joy`` (as the ROS
``spacenav`` package does) from a 3Dconnexion device over HID (hidapi).

One node per device; for two arms start two, in the ``/left`` and ``/right``
namespaces, each with the ``serial`` number of its SpaceMouse (``ros2 run hilserl_teleop
spacemouse_node --list`` prints them), or ``device_index`` 0 and 1 (HID enumeration order,
which can change after a replug). The twist follows ``spacenav_node``'s
axes (+x away from the person, +y left, +z up; ``axis_map`` in
hilserl_core.robot.spacemouse) and range ([-1, 1] at ``full_scale`` counts), so on a full
ROS install the ``spacenav`` package may be used instead (real_single_arm:
``spacemouse_driver:=spacenav``; spacenavd serves one device, so not for two arms).

Episode marks: a SpaceMouse with more than the two gripper buttons (0 closes, 1 opens, read
by the mux) can mark episodes too. ``marks.success``, ``marks.failure`` and ``marks.reset``
name a button index each (-1, the default: none); a press publishes std_msgs/Empty on
``/episode/success``, ``/episode/failure`` or ``/episode/reset`` (global topics,
``hilserl_core.robot.episode_marks``), which ``hilserl record`` / ``ros2 bag record`` record
and the actor reads (``/episode/reset``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from geometry_msgs.msg import Twist
from rclpy.node import Node
from sensor_msgs.msg import Joy
from std_msgs.msg import Empty

from hilserl_core.formats import msgconv
from hilserl_core.formats.config import ConfigError, param
from hilserl_core.robot import episode_marks
from hilserl_core.robot.spacemouse import (KNOWN_DEVICES, SpaceMouseConfig, SpaceMouseState, describe_device,  # noqa: F401
                                           known_spacemice, select_device)
from hilserl_interfaces import diagnostics, qos, topics
from hilserl_interfaces.node_main import run_node
from hilserl_interfaces.params import NodeConfig


def _hid():
    try:
        import hid  # hidapi
    except ImportError as exc:
        raise ConfigError("the SpaceMouse driver needs the 'hidapi' Python package (pip install hidapi), "
                          "or use the ROS spacenav package instead") from exc
    return hid


def open_device(index: int, serial: str = ""):
    """Open the SpaceMouse with HID serial number ``serial`` (when given) or else the index-th
    known 3Dconnexion device by HID path, non-blocking; ConfigError listing the devices found
    otherwise (``hilserl_core.robot.spacemouse.select_device``). Returns (device, description)."""
    hid = _hid()
    info = select_device(hid.enumerate(), serial, index)
    dev = hid.device()
    dev.open_path(info["path"])
    dev.set_nonblocking(True)
    return dev, describe_device(info)


def list_devices() -> int:
    """Print the SpaceMice hidapi sees (model, serial number, path): what ``serial`` takes."""
    devices = known_spacemice(_hid().enumerate())
    for d in devices:
        print(describe_device(d))
    if not devices:
        print("no SpaceMouse found (plugged in? readable /dev/hidraw* node? see docs/real_robot.md, SpaceMice)")
    return 0


@dataclass(frozen=True)
class MarkButtons:
    success: int = param(-1, "button that marks success on /episode/success (-1: none; 0 and 1 drive the gripper)", low=-1, high=31)
    failure: int = param(-1, "button that marks failure on /episode/failure (-1: none)", low=-1, high=31)
    reset: int = param(-1, "button that says the scene is reset, on /episode/reset (-1: none)", low=-1, high=31)


@dataclass(frozen=True)
class SpaceMouseNodeConfig(SpaceMouseConfig):
    marks: MarkButtons = field(default_factory=MarkButtons)


def mark_buttons(marks: MarkButtons) -> dict:
    """``{button index: mark kind}`` of the configured mark buttons; ConfigError for a gripper or repeated button."""
    out = {}
    for kind in (episode_marks.SUCCESS, episode_marks.FAILURE, episode_marks.RESET):
        b = getattr(marks, kind)
        if b < 0:
            continue
        if b in (0, 1):
            raise ConfigError(f"marks.{kind} = {b}: buttons 0 and 1 drive the gripper (the mux reads them); use another button")
        if b in out:
            raise ConfigError(f"marks.{kind} = {b}: button {b} already marks {out[b]}")
        out[b] = kind
    return out


class SpaceMouseNode(Node):
    def __init__(self, **node_kwargs):
        super().__init__("spacemouse", **node_kwargs)
        self.conf = NodeConfig(self, SpaceMouseNodeConfig)
        self._mark_buttons = mark_buttons(self.conf.value.marks)
        self.diag = diagnostics.Diagnostics(self)
        self.state = SpaceMouseState()
        c = self.conf.value
        self.device, model = open_device(c.device_index, serial=c.serial) if c.serial else open_device(c.device_index)
        how = f"serial {c.serial!r}" if c.serial else f"device_index {c.device_index} (HID enumeration order)"
        self.get_logger().info(f"reading {model} (chosen by {how})")
        self.diag.report("device", diagnostics.OK, f"reading {model}")
        self._twist_pub = self.create_publisher(Twist, topics.SPACENAV_TWIST, qos.COMMAND)
        self._joy_pub = self.create_publisher(Joy, topics.SPACENAV_JOY, qos.COMMAND)
        self._mark_pubs = {kind: self.create_publisher(Empty, topic, qos.EVENTS)
                           for topic, kind in episode_marks.MARK_TOPICS.items() if kind in self._mark_buttons.values()}
        self._buttons_before: list = []
        self.create_timer(1.0 / self.conf.value.publish_rate_hz, self._tick)

    def _tick(self) -> None:
        try:
            while True:  # drain every pending report; the newest state wins
                report = self.device.read(64)
                if not report:
                    break
                self.state.update(report)
                self._marks()  # per report: a short press between two ticks still counts
        except OSError as exc:
            self.diag.report("device", diagnostics.ERROR, f"read failed (unplugged?): {exc}")
            self.state.raw[:] = 0.0  # never keep driving the robot from a lost device
        v = self.state.twist(self.conf.value)
        self._twist_pub.publish(msgconv.fill_twist(Twist(), v))
        joy = Joy()
        joy.header.stamp = self.get_clock().now().to_msg()
        joy.axes = [float(x) for x in v]
        joy.buttons = list(self.state.buttons)
        self._joy_pub.publish(joy)

    def _marks(self) -> None:
        """A mark button's press (rising edge) publishes its mark once."""
        for b, kind in self._mark_buttons.items():
            now = b < len(self.state.buttons) and self.state.buttons[b]
            before = b < len(self._buttons_before) and self._buttons_before[b]
            if now and not before:
                self._mark_pubs[kind].publish(Empty())
                self.get_logger().info(f"episode mark: {kind}")
        self._buttons_before = list(self.state.buttons)

    def close(self) -> None:
        self.device.close()


# what `ros2 run` starts and what compose_nodes builds when this node shares a process
NODE_CLASS = SpaceMouseNode


def main(args=None) -> int:
    import sys

    if "--list" in (sys.argv[1:] if args is None else list(args)):  # ros2 run hilserl_teleop spacemouse_node --list
        return list_devices()
    return run_node(NODE_CLASS, args)


if __name__ == "__main__":
    raise SystemExit(main())
