"""``hilserl bag2demos`` on bad input: a missing bag, a truncated or corrupt one, one without a
topic the demos need, a bag of another setup, an output path that exists. Each is one line on
stderr naming the file and the problem, exit status 2, no traceback, and nothing written (an
existing output untouched). The same bag, whole, converts (so the failures are the input's).

Bags are written with hilserl's own writer (``formats.bags.BagWriter``, through
``bag_helpers.write_rosbags``): a few 16x16 frames, fast."""

import os

import numpy as np
import pytest
from bag_helpers import PERIOD_NS, T0_NS, image_fields, write_rosbags

from hilserl.cli import main
from hilserl_core.formats import bags
from hilserl_core.formats.demos import load_demos

SETUP = "sim_single_arm"  # arm left, cameras wrist and front
CAMERAS = ("wrist", "front")


def _header(t_ns, frame="left_base"):
    return {"stamp": {"sec": t_ns // 10**9, "nanosec": t_ns % 10**9}, "frame_id": frame}


def _xyz(v):
    return {"x": float(v[0]), "y": float(v[1]), "z": float(v[2])}


def recording(frames=8, cameras=CAMERAS, arm="left", executed=True):
    """One episode as a bag recorded during training holds it: a reset, then per frame the
    arm's state and the cameras (one stamp), the mux's report for it; success marked at the end."""
    rng = np.random.default_rng(0)
    events = [("/episode/reset", "std_msgs/msg/Empty", T0_NS, {})]
    for k in range(frames):
        t = T0_NS + PERIOD_NS // 2 + k * PERIOD_NS
        h = _header(t)
        events += [
            (f"/{arm}/current_pose", "geometry_msgs/msg/PoseStamped", t + 100,
             {"header": h, "pose": {"position": _xyz([0.4 + 0.01 * k, 0.0, 0.3]), "orientation": {"x": 1.0, "y": 0.0, "z": 0.0, "w": 0.0}}}),
            (f"/{arm}/current_twist", "geometry_msgs/msg/TwistStamped", t + 200,
             {"header": h, "twist": {"linear": _xyz([0.1, 0, 0]), "angular": _xyz([0, 0, 0])}}),
            (f"/{arm}/external_wrench", "geometry_msgs/msg/WrenchStamped", t + 300,
             {"header": h, "wrench": {"force": _xyz([0, 0, 1.0]), "torque": _xyz([0, 0, 0])}}),
            (f"/{arm}/gripper/joint_states", "sensor_msgs/msg/JointState", t + 400,
             {"header": h, "name": ["f1", "f2"], "position": np.array([0.04, 0.04]), "velocity": np.zeros(0), "effort": np.zeros(0)}),
        ]
        for i, cam in enumerate(cameras):
            rgb = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
            events.append((bags.cropped_image_topic(arm, cam), "sensor_msgs/msg/Image", t + 1000 * (i + 1), image_fields(t, rgb)))
        if k == frames - 1:
            events.append(("/episode/success", "std_msgs/msg/Empty", t - PERIOD_NS // 2, {}))
        elif executed:  # the actor acted on this frame; the mux reports what ran (policy, stay)
            events.append((f"/{arm}/mux/executed", "sensor_msgs/msg/Joy", t + 20_000_000,
                           {"header": _header(t, ""), "axes": np.full(6, 0.1, np.float32), "buttons": np.array([1, 0], np.int32)}))
    return sorted(events, key=lambda e: e[2])


def _bag(tmp_path, name="bag", setup=SETUP, **kw):
    return write_rosbags(tmp_path / name, recording(**kw), custom_data={bags.KEY_SETUP: setup})


def _fails(capsys, argv, *expected):
    """The command fails with status 2 and one stderr line holding ``expected``, no traceback."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("hilserl bag2demos: "), lines[0]
    for text in expected:
        assert text in lines[0], (text, lines[0])
    return lines[0]


def test_a_whole_bag_converts(tmp_path, capsys):
    out = tmp_path / "demos.safetensors"
    assert main(["bag2demos", str(_bag(tmp_path)), "-o", str(out)]) == 0
    said = capsys.readouterr().out
    assert "1 episodes, 7 steps, 1 successes" in said and f"wrote {out}" in said
    transitions, meta = load_demos(out)
    assert len(transitions) == 7 and transitions[-1].terminated and transitions[-1].reward == 1.0
    assert meta["setup"] == SETUP


def test_a_missing_bag(tmp_path, capsys):
    out = tmp_path / "demos.safetensors"
    _fails(capsys, ["bag2demos", str(tmp_path / "nothing"), "-o", str(out)], str(tmp_path / "nothing"), "no such bag")
    assert not out.exists()


@pytest.mark.parametrize("how", ["truncated", "garbage", "zeroed_chunk"])
def test_a_truncated_or_corrupt_bag(tmp_path, capsys, how):
    path = _bag(tmp_path)
    mcap = path / "bag.mcap"
    data = mcap.read_bytes()
    if how == "truncated":  # a recording cut off: the end of the file (footer, index) missing
        mcap.write_bytes(data[: len(data) * 2 // 3])
    elif how == "garbage":
        mcap.write_bytes(b"not an mcap file" * 64)
    else:  # damaged data in the middle, the index intact
        mcap.write_bytes(data[:600] + bytes(6000) + data[6600:])
    out = tmp_path / "demos.safetensors"
    _fails(capsys, ["bag2demos", str(path), "-o", str(out)], str(path), "corrupt")
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["bag"]


def test_a_bag_missing_a_topic_the_demos_need(tmp_path, capsys):
    path = _bag(tmp_path, executed=False)
    out = tmp_path / "demos.safetensors"
    _fails(capsys, ["bag2demos", str(path), "-o", str(out)], str(path), "missing topic(s) /left/mux/executed")
    assert not out.exists()
    # success from the simulator's ground truth: the bag has none
    _fails(capsys, ["bag2demos", str(_bag(tmp_path, "b2")), "-o", str(out), "reward:=sim"], "missing topic(s) /sim/success")
    assert not out.exists()


def test_a_bag_of_another_setup(tmp_path, capsys):
    out = tmp_path / "demos.safetensors"
    other = _bag(tmp_path, "other", setup="sim_dual_arm")  # says so in its metadata
    _fails(capsys, ["bag2demos", str(other), "-o", str(out), f"setup:={SETUP}"], str(other),
           "recorded from setup sim_dual_arm, not sim_single_arm")
    # no word of its setup, but other cameras than the setup's
    renamed = _bag(tmp_path, "renamed", setup="", cameras=("wrist", "side"))
    _fails(capsys, ["bag2demos", str(renamed), "-o", str(out), f"setup:={SETUP}"], str(renamed),
           "not a bag of setup sim_single_arm", "left/side")
    assert not out.exists()


def test_an_output_that_exists_is_left_untouched(tmp_path, capsys):
    path = _bag(tmp_path)
    out = tmp_path / "demos.safetensors"
    out.write_bytes(b"earlier demos")
    os.utime(out, (1_000_000, 1_000_000))
    _fails(capsys, ["bag2demos", str(path), "-o", str(out)], str(out), "already exists")
    assert out.read_bytes() == b"earlier demos" and out.stat().st_mtime == 1_000_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag", "demos.safetensors"]


def test_a_bad_bag_after_good_ones_writes_nothing(tmp_path, capsys):
    good = _bag(tmp_path, "good")
    bad = _bag(tmp_path, "bad")
    mcap = bad / "bad.mcap"
    mcap.write_bytes(mcap.read_bytes()[:2000])
    out = tmp_path / "demos.safetensors"
    _fails(capsys, ["bag2demos", str(good), str(bad), "-o", str(out)], str(bad), "truncated or corrupt")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bad", "good"]
