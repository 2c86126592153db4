"""SpaceMouse HID report parsing (byte-level vectors) and normalisation."""

import struct

import numpy as np

from hilserl_core.spacemouse import SpaceMouseConfig, SpaceMouseState


def test_split_translation_and_rotation_reports():
    s = SpaceMouseState()
    assert s.update([1] + list(struct.pack("<3h", 350, -175, 0)))
    assert s.update([2] + list(struct.pack("<3h", 0, 35, -350)))
    cfg = SpaceMouseConfig(axis_signs=(1, 1, 1, 1, 1, 1))
    assert np.allclose(s.twist(cfg), [1.0, -0.5, 0.0, 0.0, 0.1, -1.0])


def test_six_axis_report_signs_and_clipping():
    s = SpaceMouseState()
    assert s.update([1] + list(struct.pack("<6h", 700, 70, -70, 0, 0, 350)))
    t = s.twist(SpaceMouseConfig())  # default signs (1, -1, -1, 1, -1, -1)
    assert np.allclose(t, [1.0, -0.2, 0.2, 0.0, 0.0, -1.0])


def test_buttons_and_unknown_reports():
    s = SpaceMouseState()
    assert s.update([3, 0b10, 0])
    assert s.buttons[:2] == [0, 1]
    assert s.update([3, 0b01])
    assert s.buttons[:2] == [1, 0]
    assert not s.update([23, 1, 2])
    assert not s.update([])
