"""Where the operator's episode marks come from: SpaceMouse buttons mapped to marks and the
keyboard node publish /episode/success, /episode/failure and /episode/reset (std_msgs/Empty)."""

import os
import struct

import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from std_msgs.msg import Empty

from hilserl_core.formats.config import ConfigError
from hilserl_core.robot import episode_marks as em
from hilserl_interfaces import qos
from hilserl_teleop import episode_keys_node, spacemouse_node

pytestmark = pytest.mark.ros


class FakeDevice:
    def __init__(self, reports):
        self.reports = list(reports)

    def read(self, size):
        return self.reports.pop(0) if self.reports else []

    def close(self):
        pass


def _listener(ctx):
    peer = rclpy.create_node("mark_listener", context=ctx)
    got = []
    for topic, kind in em.MARK_TOPICS.items():
        peer.create_subscription(Empty, topic, lambda _m, k=kind: got.append(k), qos.EVENTS)
    return peer, got


def test_spacemouse_mark_buttons_publish_one_mark_per_press(ros_context, spin_until, monkeypatch):
    zero = [1] + list(struct.pack("<6h", 0, 0, 0, 0, 0, 0))
    # button 2 pressed and held for two reports, released, then button 3 pressed
    reports = [zero, [3, 0b100], [3, 0b100], [3, 0b000], [3, 0b1000]]
    monkeypatch.setattr(spacemouse_node, "open_device", lambda index: (FakeDevice(reports), "SpaceMouse Pro"))
    node = spacemouse_node.SpaceMouseNode(context=ros_context, namespace="/left", parameter_overrides=[
        Parameter("marks.success", value=2), Parameter("marks.reset", value=3), Parameter("publish_rate_hz", value=100.0)])
    peer, got = _listener(ros_context)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(node)
    ex.add_node(peer)
    assert spin_until(ex, lambda: len(got) >= 2, 10)
    spin_until(ex, lambda: False, 0.3)
    assert got == [em.SUCCESS, em.RESET]
    ex.shutdown()
    node.destroy_node()
    peer.destroy_node()


def test_gripper_buttons_cannot_be_mark_buttons(ros_context, monkeypatch):
    monkeypatch.setattr(spacemouse_node, "open_device", lambda index: (FakeDevice([]), "SpaceMouse Pro"))
    with pytest.raises(ConfigError, match="buttons 0 and 1 drive the gripper"):
        spacemouse_node.SpaceMouseNode(context=ros_context, parameter_overrides=[Parameter("marks.failure", value=1)])


def test_keyboard_node_publishes_the_marks_of_its_keys(ros_context, spin_until):
    master, slave = os.openpty()
    stdin = os.fdopen(slave, "r")
    try:
        node = episode_keys_node.EpisodeKeysNode(stdin=stdin, context=ros_context)
        peer, got = _listener(ros_context)
        ex = SingleThreadedExecutor(context=ros_context)
        ex.add_node(node)
        ex.add_node(peer)
        assert spin_until(ex, lambda: all(p.get_subscription_count() > 0 for p in node._pubs.values()), 10)
        os.write(master, b"sxFr")  # x is no key; F works as f
        assert spin_until(ex, lambda: len(got) >= 3, 10)
        assert got == [em.SUCCESS, em.FAILURE, em.RESET]
        node.close()
        ex.shutdown()
        node.destroy_node()
        peer.destroy_node()
    finally:
        stdin.close()
        os.close(master)


def test_keyboard_node_without_a_terminal_is_a_clear_error(ros_context, tmp_path):
    with open(tmp_path / "f", "w+") as f, pytest.raises(ConfigError, match="reads single keys from a terminal"):
        episode_keys_node.EpisodeKeysNode(stdin=f, context=ros_context)
