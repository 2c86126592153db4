"""Which SpaceMouse a driver opens: by HID serial number when one is configured, else by
place in the HID enumeration (sorted by path). The records are what ``hid.enumerate()``
returns (hidapi): dicts with path (bytes), vendor_id, product_id, serial_number, ..."""

import pytest

from hilserl_core.formats import config as cfg
from hilserl_core.formats.config import ConfigError
from hilserl_core.robot.spacemouse import SpaceMouseConfig, describe_device, known_spacemice, select_device


def rec(path, serial, vid=0x256F, pid=0xC635, interface=0):
    return {"path": path, "vendor_id": vid, "product_id": pid, "serial_number": serial, "release_number": 0x0437,
            "manufacturer_string": "3Dconnexion", "product_string": "SpaceMouse Compact", "usage_page": 1, "usage": 8,
            "interface_number": interface}


KEYBOARD = rec(b"/dev/hidraw0", "KB-1", vid=0x046D, pid=0xC31C)
COMPACT_A = rec(b"/dev/hidraw3", "A1B2C3D4")
COMPACT_B = rec(b"/dev/hidraw1", "0000F00D")
PRO = rec(b"/dev/hidraw2", "", vid=0x046D, pid=0xC62B)  # an older device without a serial number string


def test_serial_picks_its_device_wherever_it_is_enumerated():
    before = [KEYBOARD, COMPACT_A, COMPACT_B, PRO]
    after_replug = [COMPACT_B | {"path": b"/dev/hidraw5"}, KEYBOARD, PRO, COMPACT_A | {"path": b"/dev/hidraw4"}]
    for records in (before, after_replug, list(reversed(before))):
        assert select_device(records, serial="A1B2C3D4")["serial_number"] == "A1B2C3D4"
        assert select_device(records, serial="0000F00D")["serial_number"] == "0000F00D"
    # the index, by contrast, follows the paths: after the replug index 2 is another device
    assert [select_device(before, index=i)["serial_number"] for i in range(3)] == ["0000F00D", "", "A1B2C3D4"]
    assert [select_device(after_replug, index=i)["serial_number"] for i in range(3)] == ["", "A1B2C3D4", "0000F00D"]


def test_serial_ignores_blanks_and_case_and_takes_bytes_and_none():
    records = [rec(b"/dev/hidraw1", "  a1b2c3d4 "), rec(b"/dev/hidraw2", None), rec(b"/dev/hidraw3", b"BYTES9")]
    assert select_device(records, serial="A1B2C3D4")["path"] == b"/dev/hidraw1"
    assert select_device(records, serial=" bytes9")["path"] == b"/dev/hidraw3"


def test_serial_wins_over_the_index():
    assert select_device([COMPACT_A, COMPACT_B], serial="A1B2C3D4", index=0) is COMPACT_A


def test_a_device_with_several_interfaces_opens_its_first_path():
    records = [rec(b"/dev/hidraw7", "SAME", interface=1), rec(b"/dev/hidraw6", "SAME", interface=0)]
    assert select_device(records, serial="SAME")["path"] == b"/dev/hidraw6"


def test_no_match_lists_every_spacemouse_found_and_not_other_hid_devices():
    with pytest.raises(ConfigError) as err:
        select_device([KEYBOARD, COMPACT_A, PRO], serial="NOPE")
    text = str(err.value)
    assert "serial 'NOPE'" in text and "found 2:" in text
    assert "SpaceMouse Compact serial A1B2C3D4 at /dev/hidraw3" in text
    assert "SpaceMouse Pro serial (no serial number) at /dev/hidraw2" in text
    assert "KB-1" not in text and "udev" in text


def test_index_out_of_range_and_nothing_plugged_in():
    with pytest.raises(ConfigError, match=r"device_index 2: 2 SpaceMouse device\(s\) found \(SpaceMouse Compact serial 0000F00D"):
        select_device([COMPACT_A, COMPACT_B], index=2)
    with pytest.raises(ConfigError, match=r"device_index 0: 0 SpaceMouse device\(s\) found \(none\)"):
        select_device([KEYBOARD], index=0)
    with pytest.raises(ConfigError, match="no SpaceMouse with that serial number; found 0: none"):
        select_device([], serial="A1B2C3D4")


def test_known_spacemice_sorts_by_path_and_describes_them():
    assert [d["serial_number"] for d in known_spacemice([COMPACT_A, KEYBOARD, COMPACT_B])] == ["0000F00D", "A1B2C3D4"]
    assert describe_device(COMPACT_B) == "SpaceMouse Compact serial 0000F00D at /dev/hidraw1"


def test_serial_is_a_string_parameter_defaulting_to_enumeration_order():
    conf = cfg.from_mapping(SpaceMouseConfig, {"serial": "A1B2C3D4"})
    assert conf.serial == "A1B2C3D4" and conf.device_index == 0
    assert SpaceMouseConfig().serial == ""
    with pytest.raises(ConfigError, match="expected a string"):
        cfg.from_mapping(SpaceMouseConfig, {"serial": 12345})


class _FakeHid:
    """The two calls of hidapi the driver makes: enumerate() and device().open_path()."""

    def __init__(self, records):
        self.records, self.opened = records, []

    def enumerate(self):
        return list(self.records)

    def device(self):
        hid = self

        class Device:
            def open_path(self, path):
                hid.opened.append(path)

            def set_nonblocking(self, flag):
                pass

        return Device()


def test_the_driver_opens_the_selected_path_and_lists_devices(monkeypatch, capsys):
    import sys

    pytest.importorskip("rclpy")
    from hilserl_teleop import spacemouse_node

    fake = _FakeHid([KEYBOARD, COMPACT_A, COMPACT_B])
    monkeypatch.setitem(sys.modules, "hid", fake)
    _, what = spacemouse_node.open_device(0, serial="A1B2C3D4")
    assert fake.opened == [b"/dev/hidraw3"] and what == "SpaceMouse Compact serial A1B2C3D4 at /dev/hidraw3"
    spacemouse_node.open_device(0)
    assert fake.opened[-1] == b"/dev/hidraw1"
    with pytest.raises(ConfigError, match="serial 'ZZZ': no SpaceMouse with that serial number; found 2"):
        spacemouse_node.open_device(0, serial="ZZZ")
    assert spacemouse_node.main(["--list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["SpaceMouse Compact serial 0000F00D at /dev/hidraw1", "SpaceMouse Compact serial A1B2C3D4 at /dev/hidraw3"]
