"""SpaceMouse HID report parsing (byte-level vectors), normalisation and axis mapping.

The golden reports below are what a 3Dconnexion device sends (report id, then
little-endian int16 counts) in its raw frame: x right, y toward the person, z down,
rx/ry/rz right-handed about those. The expected twists are in the ROS spacenav
package's convention (spacenav/twist): +x away from the person, +y left, +z up.
"""

import struct

import numpy as np
import pytest

from hilserl_core.formats import config as cfg
from hilserl_core.formats.config import ConfigError
from hilserl_core.robot.spacemouse import SPACENAV_AXIS_MAP, SpaceMouseConfig, SpaceMouseState, parse_axis_map

IDENTITY = ("x", "y", "z", "rx", "ry", "rz")


def _six_axis(x=0, y=0, z=0, rx=0, ry=0, rz=0):
    return [1] + list(struct.pack("<6h", x, y, z, rx, ry, rz))


def _twist(report, config=None):
    s = SpaceMouseState()
    assert s.update(report)
    return s.twist(config or SpaceMouseConfig())


@pytest.mark.parametrize(
    "what, report, expected",
    [
        # pushing the cap away from the person: raw y negative -> forward, +x
        ("push away (forward)", _six_axis(y=-350), [1, 0, 0, 0, 0, 0]),
        ("pull toward the person", _six_axis(y=175), [-0.5, 0, 0, 0, 0, 0]),
        # pushing left: raw x negative -> +y
        ("push left", _six_axis(x=-350), [0, 1, 0, 0, 0, 0]),
        ("push right", _six_axis(x=350), [0, -1, 0, 0, 0, 0]),
        # lifting: raw z negative (z is down) -> +z
        ("lift", _six_axis(z=-350), [0, 0, 1, 0, 0, 0]),
        ("press down", _six_axis(z=70), [0, 0, -0.2, 0, 0, 0]),
        # twisting counter-clockwise seen from above: right-handed about up = -raw rz
        ("twist counter-clockwise about vertical", _six_axis(rz=-350), [0, 0, 0, 0, 0, 1]),
        # tilting the top away (right-handed about left = -raw rx)
        ("tilt forward (pitch about left)", _six_axis(rx=-350), [0, 0, 0, 0, 1, 0]),
        # rolling the top to the right (right-handed about forward = -raw ry)
        ("roll right (about forward)", _six_axis(ry=-350), [0, 0, 0, 1, 0, 0]),
    ],
)
def test_golden_reports_give_the_spacenav_convention(what, report, expected):
    assert np.allclose(_twist(report), expected), what


def test_default_map_is_the_one_in_the_params_file_and_a_proper_rotation():
    assert SpaceMouseConfig().axis_map == SPACENAV_AXIS_MAP == ("-y", "-x", "-z", "-ry", "-rx", "-rz")
    index, sign = parse_axis_map(SPACENAV_AXIS_MAP)
    m = np.zeros((3, 3))
    m[np.arange(3), index[:3]] = sign[:3]
    # raw frame (right, toward, down) and output frame (forward, left, up) are both
    # right-handed: the map is a rotation, so angular velocities map like linear ones
    assert np.isclose(np.linalg.det(m), 1.0)
    assert np.array_equal(index[3:] - 3, index[:3]) and np.array_equal(sign[3:], sign[:3])


def test_split_translation_and_rotation_reports_with_an_identity_map():
    s = SpaceMouseState()
    assert s.update([1] + list(struct.pack("<3h", 350, -175, 0)))
    assert s.update([2] + list(struct.pack("<3h", 0, 35, -350)))
    assert np.allclose(s.twist(SpaceMouseConfig(axis_map=IDENTITY)), [1.0, -0.5, 0.0, 0.0, 0.1, -1.0])
    # the same state in the default (spacenav) convention
    assert np.allclose(s.twist(SpaceMouseConfig()), [0.5, -1.0, 0.0, -0.1, 0.0, 1.0])


def test_explicit_plus_signs_and_clipping():
    s = SpaceMouseState()
    assert s.update(_six_axis(700, 70, -70, 0, 0, 350))
    t = s.twist(SpaceMouseConfig(axis_map=("+x", "-y", "-z", "+RX", "-ry", "-rz")))
    assert np.allclose(t, [1.0, -0.2, 0.2, 0.0, 0.0, -1.0])


@pytest.mark.parametrize(
    "axis_map, pattern",
    [
        (("-y", "-x", "-z", "-ry", "-rx"), r"5 entries; needs six entries"),
        (("-y", "-y", "-z", "-ry", "-rx", "-rz"), r"raw axis y feeds both vx and vy; each of x, y, z must be used exactly once"),
        (("-y", "-x", "-z", "-rz", "-rx", "-rz"), r"raw axis rz feeds both wx and wz"),
        (("-y", "-x", "-w", "-ry", "-rx", "-rz"), r"axis_map\[2\] \(vz\) = '-w': must be one of x, y, z"),
        (("-y", "-x", "-rz", "-ry", "-rx", "-z"), r"axis_map\[2\] \(vz\) = '-rz': must be one of x, y, z"),
        (("-y", "-x", "-z", "-y", "-rx", "-rz"), r"axis_map\[3\] \(wx\) = '-y': must be one of rx, ry, rz"),
        (("-y", "x-", "-z", "-ry", "-rx", "-rz"), r"axis_map\[1\] \(vy\) = 'x-'"),
        (("-y", "", "-z", "-ry", "-rx", "-rz"), r"axis_map\[1\] \(vy\) = ''"),
    ],
)
def test_invalid_axis_maps_are_rejected_with_the_reason(axis_map, pattern):
    with pytest.raises(ConfigError, match=pattern):
        SpaceMouseConfig(axis_map=axis_map)
    # the same check when the map comes from a params file or ROS parameters
    with pytest.raises(ConfigError, match=pattern):
        cfg.from_mapping(SpaceMouseConfig, {"axis_map": list(axis_map)}, "spacemouse.yaml")


def test_the_params_file_fits_the_schema():
    from pathlib import Path

    import yaml

    doc = yaml.safe_load((Path(__file__).resolve().parents[2] / "config" / "params" / "spacemouse.yaml").read_text())
    conf = cfg.from_mapping(SpaceMouseConfig, doc["/**"]["ros__parameters"], "spacemouse.yaml")
    assert conf.axis_map == SPACENAV_AXIS_MAP


def test_buttons_and_unknown_reports():
    s = SpaceMouseState()
    assert s.update([3, 0b10, 0])
    assert s.buttons[:2] == [0, 1]
    assert s.update([3, 0b01])
    assert s.buttons[:2] == [1, 0]
    assert not s.update([23, 1, 2])
    assert not s.update([])
