"""The SpaceMouse HID driver as a node: a clear error without a device, its axis map
declared and checked as a parameter, and a raw report published on spacenav/twist and
spacenav/joy in the ROS spacenav package's convention (+x away, +y left, +z up)."""

import struct

import numpy as np
import pytest
import rclpy
from geometry_msgs.msg import Twist
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from sensor_msgs.msg import Joy

from hilserl_core.formats import msgconv
from hilserl_core.formats.config import ConfigError
from hilserl_interfaces import qos
from hilserl_teleop import spacemouse_node


class FakeDevice:
    """hidapi device stand-in: hands out queued reports, then nothing."""

    def __init__(self, reports):
        self.reports = list(reports)
        self.closed = False

    def read(self, size):
        return self.reports.pop(0) if self.reports else []

    def close(self):
        self.closed = True


def test_no_device_is_a_clear_configuration_error(ros_context):
    hid = pytest.importorskip("hid", reason="hidapi not installed")
    if any((d["vendor_id"], d["product_id"]) in spacemouse_node.KNOWN_DEVICES for d in hid.enumerate()):
        pytest.skip("a real SpaceMouse is plugged in")
    with pytest.raises(ConfigError, match="0 SpaceMouse device\\(s\\) found.*udev rule"):
        spacemouse_node.SpaceMouseNode(context=ros_context)


def test_a_bad_axis_map_stops_the_node_before_it_opens_a_device(ros_context, monkeypatch):
    def must_not_open(index):
        raise AssertionError("the device was opened with a bad configuration")

    monkeypatch.setattr(spacemouse_node, "open_device", must_not_open)
    bad = Parameter("axis_map", Parameter.Type.STRING_ARRAY, ["-y", "-y", "-z", "-ry", "-rx", "-rz"])
    with pytest.raises(ConfigError, match="raw axis y feeds both vx and vy"):
        spacemouse_node.SpaceMouseNode(context=ros_context, parameter_overrides=[bad])


def test_a_forward_push_is_published_as_plus_x_like_spacenav_node(ros_context, spin_until, monkeypatch):
    # the operator pushes the cap away (raw y = -350) and twists it counter-clockwise
    # seen from above (raw rz = -175), holding button 0
    reports = [[1] + list(struct.pack("<6h", 0, -350, 0, 0, 0, -175)), [3, 0b01]]
    device = FakeDevice(reports)
    monkeypatch.setattr(spacemouse_node, "open_device", lambda index: (device, "SpaceMouse Compact"))
    node = spacemouse_node.SpaceMouseNode(context=ros_context, namespace="/left")
    peer = rclpy.create_node("mux_stand_in", namespace="/left", context=ros_context)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(node)
    ex.add_node(peer)
    twists, joys = [], []
    peer.create_subscription(Twist, "spacenav/twist", twists.append, qos.COMMAND)
    peer.create_subscription(Joy, "spacenav/joy", joys.append, qos.COMMAND)
    try:
        assert node.get_parameter("axis_map").value == ["-y", "-x", "-z", "-ry", "-rx", "-rz"]
        assert spin_until(ex, lambda: bool(twists) and bool(joys) and not device.reports, 10)
        assert spin_until(ex, lambda: np.allclose(msgconv.vector6_from_twist(twists[-1]), [1, 0, 0, 0, 0, 0.5]), 5)
        assert spin_until(ex, lambda: list(joys[-1].buttons[:2]) == [1, 0], 5)
        assert np.allclose(joys[-1].axes, [1, 0, 0, 0, 0, 0.5])
    finally:
        ex.shutdown()
        node.close()
        node.destroy_node()
        peer.destroy_node()
    assert device.closed
