"""Without a device the SpaceMouse driver stops with an error that says what to do."""

import pytest

from hilserl_core.config import ConfigError
from hilserl_teleop import spacemouse_node


def test_no_device_is_a_clear_configuration_error(ros_context):
    hid = pytest.importorskip("hid", reason="hidapi not installed")
    if any((d["vendor_id"], d["product_id"]) in spacemouse_node.KNOWN_DEVICES for d in hid.enumerate()):
        pytest.skip("a real SpaceMouse is plugged in")
    with pytest.raises(ConfigError, match="0 SpaceMouse device\\(s\\) found.*udev rule"):
        spacemouse_node.SpaceMouseNode(context=ros_context)
