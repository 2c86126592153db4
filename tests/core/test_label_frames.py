"""Bags -> labelled frames (vision/label_bags.py, formats/frames.py): labels from the operator's
success marks with before/after windows or from the simulator's ground truth, whole episodes
held out, the same frames from either writer's bag, the safetensors file, and every bad input
as a one-line error naming the file."""

import numpy as np
import pytest
from bag_helpers import PERIOD_NS, synthetic_recording, write_mcap_ros2, write_rosbags

from hilserl_core.formats import bags
from hilserl_core.formats.frames import FramesError, load_frames, save_frames
from hilserl_core.vision.label_bags import LabelOptions, frames_from_bags

CAMS = ["left/wrist", "left/front"]
SETUP = dict(setup="sim_single_arm", arms=["left"], cameras=CAMS)


def _frames(paths, **opts):
    return frames_from_bags([str(p) for p in paths], opts.pop("setup", "sim_single_arm"), ["left"],
                            opts.pop("cameras", CAMS), LabelOptions(**opts), say=lambda _t: None)


def test_labels_from_marks_follow_the_windows(tmp_path):
    # one success episode: frames 0..11 dark, success shown from frame 12 and marked 5 ms after it
    bag = write_rosbags(tmp_path / "b", synthetic_recording(["success"], CAMS, frames_before=12, frames_after=10))
    f = _frames([bag], labels="marks", before_s=0.0, after_s=0.35, val_fraction=0.0)
    # frame 0 has no front image yet (skipped); frame 12's camera image is before the mark: not success
    # yet with before 0; frames 13..15 (within 0.35 s after the mark) success; later frames left out
    assert f.label.tolist() == [0] * 12 + [1] * 3
    f2 = _frames([bag], labels="marks", before_s=0.15, after_s=0.35, val_fraction=0.0)
    assert f2.label.tolist() == [0] * 10 + [1] * 5  # frames 11 and 12 fall in the window before the mark
    # the frame images are the recorded ones: success frames bright
    assert f.images["left/wrist"][f.label == 1].mean() > 150 > 100 > f.images["left/wrist"][f.label == 0].mean()
    assert np.all(np.diff(f.time_s) > 0)


def test_failure_and_unmarked_episodes_and_sim_ground_truth(tmp_path):
    rec = synthetic_recording(["failure", "unmarked", "success"], CAMS, frames_before=6, frames_after=4)
    bag = write_rosbags(tmp_path / "b", rec)
    f = _frames([bag], labels="marks", after_s=1.0, val_fraction=0.0)
    # episode 0 (failure): its frames up to the mark are failures; the unmarked episode is left out
    assert sorted(set(f.episode.tolist())) == [0, 2]
    # the frame showing success first comes before its mark (before_s 0): 3 of the 4 success frames
    assert f.label[f.episode == 0].sum() == 0 and f.label[f.episode == 2].sum() == 3
    s = _frames([bag], labels="sim", val_fraction=0.0)
    assert sorted(set(s.episode.tolist())) == [0, 1, 2]  # ground truth labels every episode
    assert s.label.sum() == 4 and s.label[s.episode != 2].sum() == 0


def test_held_out_frames_come_from_held_out_episodes(tmp_path):
    outcomes = ["success", "failure"] * 5
    bag = write_rosbags(tmp_path / "b", synthetic_recording(outcomes, CAMS, frames_before=8, frames_after=6))
    f = _frames([bag], labels="marks", after_s=1.0, val_fraction=0.3, seed=3)
    held, train = set(f.episode[f.held_out == 1].tolist()), set(f.episode[f.held_out == 0].tolist())
    assert held and train and not held & train
    for side in (f.held_out == 1, f.held_out == 0):
        assert 0 < f.label[side].sum() < side.sum()  # both classes on each side
    c = f.counts()
    assert c["held_out_episodes"] == len(held) and 0.15 < (c["held_out_success"] / c["success"]) < 0.45


def test_both_writers_give_the_same_frames_and_the_file_round_trips(tmp_path):
    rec = synthetic_recording(["success", "failure", "success", "failure"], CAMS)
    a = _frames([write_rosbags(tmp_path / "a", rec)], labels="marks", val_fraction=0.25)
    b = _frames([write_mcap_ros2(tmp_path / "b", rec)], labels="marks", val_fraction=0.25)
    for name in ("label", "episode", "held_out", "time_s"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    for cam in CAMS:
        assert np.array_equal(a.images[cam], b.images[cam])
    path = save_frames(tmp_path / "f.safetensors", a)
    back = load_frames(path)
    assert back.cameras == CAMS and back.setup == "sim_single_arm" and back.metadata["labels"] == "marks"
    assert np.array_equal(back.images["left/front"], a.images["left/front"]) and np.array_equal(back.label, a.label)
    assert back.metadata["counts"]["frames"] == len(a)
    with pytest.raises(FramesError, match="already exists"):
        save_frames(path, a)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    with pytest.raises(FramesError, match=r"f.safetensors: not a readable labelled-frames file"):
        load_frames(path)


@pytest.mark.parametrize("case", ["no_success_marks", "only_failures", "no_marks_topic", "no_sim_truth",
                                  "other_setup", "other_cameras", "no_labels", "one_episode"])
def test_bad_input_is_one_line_naming_the_bag(tmp_path, case):
    opts = dict(labels="marks", val_fraction=0.2)
    kwargs = {}
    if case == "no_success_marks":  # recorded by hilserl record: the topic is there, with no message
        rec = synthetic_recording(["failure", "failure"], CAMS)
        kwargs["topics"] = bags.recorded_topics(["left"], ["wrist", "front"], sim=True)
    elif case == "only_failures":  # a success mark, but no frame falls in its window (after 0 s)
        rec = synthetic_recording(["failure", "success"], CAMS, frames_after=1)
        opts["after_s"] = 0.0
    elif case == "no_marks_topic":
        rec = [e for e in synthetic_recording(["success", "failure"], CAMS) if e[0] != "/episode/success"]
    elif case == "no_sim_truth":
        rec = synthetic_recording(["success", "failure"], CAMS, sim=False)
        opts["labels"] = "sim"
    elif case == "other_setup":
        rec = synthetic_recording(["success", "failure"], CAMS)
        kwargs["custom_data"] = {bags.KEY_SETUP: "real_single_arm"}
    elif case == "other_cameras":
        rec = synthetic_recording(["success", "failure"], ["right/wrist", "right/side"])
    elif case == "no_labels":
        rec = synthetic_recording(["unmarked", "unmarked"], CAMS)
        rec.append(("/episode/success", "std_msgs/msg/Empty", rec[0][2] - PERIOD_NS, {}))  # before any frame
        rec.sort(key=lambda e: e[2])
        opts["after_s"] = 0.0
    else:  # one episode cannot be held out with both classes on each side
        rec = synthetic_recording(["success"], CAMS)
    bag = write_rosbags(tmp_path / "bag", rec, **kwargs)
    with pytest.raises((FramesError, bags.BagError)) as info:
        _frames([bag], **opts)
    text = str(info.value)
    assert "\n" not in text and str(bag) in text, text
    expected = {"no_success_marks": "no success marks", "only_failures": "only failure frames",
                "no_marks_topic": "missing topic(s) /episode/success", "no_sim_truth": "missing topic(s) /sim/success",
                "other_setup": "recorded from setup real_single_arm, not sim_single_arm",
                "other_cameras": "not a bag of setup sim_single_arm", "no_labels": "no labelled frames",
                "one_episode": "cannot hold out whole episodes"}[case]
    assert expected in text, text
