"""`hilserl bag2frames`, `hilserl train-reward` and `hilserl record` from the command line: the
happy path writes files the reward node loads; every bad input is one line on stderr naming the
file and the problem, exit status 2, no traceback, and no output file."""

import numpy as np
import pytest
from bag_helpers import synthetic_recording, write_mcap_ros2, write_rosbags

from hilserl.cli import main
from hilserl_core.formats import bags
from hilserl_core.formats.frames import LabelledFrames, save_frames

CAMS = ["left/wrist", "left/front"]
SETUP = {bags.KEY_SETUP: "sim_single_arm"}


@pytest.fixture(scope="module")
def two_bags(tmp_path_factory):
    d = tmp_path_factory.mktemp("bags")
    outcomes = ["success", "failure", "success", "failure", "success"]
    a = write_rosbags(d / "ours", synthetic_recording(outcomes, CAMS, seed=1), custom_data=SETUP)
    b = write_mcap_ros2(d / "theirs", synthetic_recording(outcomes, CAMS, seed=2), custom_data=SETUP)
    return a, b


def _one_error_line(capsys, rc, *names):
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert "\n" not in err and "Traceback" not in err, err
    for name in names:
        assert str(name) in err, err
    return err


def test_bag2frames_then_train_reward_make_a_classifier_the_reward_node_loads(tmp_path, two_bags, capsys):
    from hilserl_core.vision.encoders import load_frozen_encoder
    from hilserl_core.vision.reward_classifier import RewardClassifier
    from hilserl_reward.reward_node import RewardConfig, load_models

    frames = tmp_path / "f.safetensors"
    assert main(["bag2frames", *map(str, two_bags), "-o", str(frames), "after:=0.6", "val_fraction:=0.3"]) == 0
    out = capsys.readouterr().out
    assert "ours: 5 episode(s) (3 success, 2 failure, 0 unmarked)" in out and f"wrote {frames}" in out
    extra = tmp_path / "extra.safetensors"
    assert main(["bag2frames", str(two_bags[0]), "-o", str(extra), "val_fraction:=0"]) == 0
    clf = tmp_path / "clf.safetensors"
    assert main(["train-reward", str(frames), "-o", str(clf), "steps:=30", "views:=1", f"extra:={extra}",
                 "cameras:=left/wrist"]) == 0
    cap = capsys.readouterr()
    for text in ("held-out at threshold", "accuracy", "precision", "recall", "confusion matrix", "suggested threshold"):
        assert text in cap.out
    assert "training" in cap.err and "30/30" in cap.err  # the progress bar
    model = RewardClassifier.load(clf, encoder=load_frozen_encoder(""))
    meta = model.extra_metadata
    assert meta["setup"] == "sim_single_arm" and meta["cameras"] == ["left/wrist"] and meta["image_size"] == [16, 16]
    assert meta["crops"]["left/wrist"] == {"output_size": 128, "roi": [0, 0, 0, 0]} and meta["extra_frames"] == [str(extra)]
    assert model.recorded_encoder is not None and 0.0 < model.threshold < 1.0
    load_models(RewardConfig(classifier_path=str(clf), cameras=("left/wrist",)))  # what the reward node checks
    with pytest.raises(Exception, match=r"trained on cameras \['left_wrist'\], node configured for \['left_front'\]"):
        load_models(RewardConfig(classifier_path=str(clf), cameras=("left/front",)))


@pytest.mark.parametrize("case", ["truncated", "missing_topic", "other_setup", "single_class", "exists", "no_bag",
                                  "not_a_bag", "unknown_option"])
def test_bag2frames_bad_input(tmp_path, two_bags, capsys, case):
    out = tmp_path / "frames.safetensors"
    args = ["bag2frames"]
    if case == "truncated":
        bag = write_rosbags(tmp_path / "t", synthetic_recording(["success", "failure"], CAMS), custom_data=SETUP)
        f = bag / "t.mcap"
        f.write_bytes(f.read_bytes()[:3000])
        args += [str(bag)]
        names = [bag, "truncated or corrupt"]
    elif case == "missing_topic":
        rec = [e for e in synthetic_recording(["success", "failure"], CAMS) if e[0] != "/left/cameras/front/image_cropped"]
        bag = write_rosbags(tmp_path / "m", rec, custom_data=SETUP)
        args += [str(bag)]
        names = [bag, "left/front"]
    elif case == "other_setup":
        bag = write_rosbags(tmp_path / "o", synthetic_recording(["success", "failure"], ["right/wrist", "right/side"]),
                            custom_data={bags.KEY_SETUP: "real_dual_arm"})
        args += [str(bag), "setup:=sim_single_arm"]
        names = [bag, "real_dual_arm"]
    elif case == "single_class":
        bag = write_rosbags(tmp_path / "s", synthetic_recording(["failure", "failure"], CAMS), custom_data=SETUP,
                            topics=bags.recorded_topics(["left"], ["wrist", "front"], sim=True))
        args += [str(bag)]
        names = [bag, "no success marks"]
    elif case == "exists":
        out.write_bytes(b"keep")
        args += [str(two_bags[0])]
        names = [out, "already exists"]
    elif case == "no_bag":
        args += [str(tmp_path / "nope"), "setup:=sim_single_arm"]
        names = [tmp_path / "nope", "no such bag"]
    elif case == "not_a_bag":
        (tmp_path / "dir").mkdir()
        args += [str(tmp_path / "dir"), "setup:=sim_single_arm"]
        names = [tmp_path / "dir", "not a rosbag2 bag"]
    else:
        args += [str(two_bags[0]), "window:=3"]
        names = ["unknown option window:="]
    rc = main(args + ["-o", str(out)])
    _one_error_line(capsys, rc, *names)
    assert (out.read_bytes() == b"keep") if case == "exists" else not out.exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def _frames_file(path, labels, cameras=("left/wrist",), size=16, setup="sim_single_arm"):
    n = len(labels)
    rng = np.random.default_rng(0)
    imgs = {c: rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8) for c in cameras}
    f = LabelledFrames(list(cameras), imgs, label=np.asarray(labels, np.uint8), episode=np.arange(n) // 4,
                       held_out=(np.arange(n) // 4 == 0).astype(np.uint8), time_s=np.arange(n, dtype=float),
                       metadata={"setup": setup, "crops": {c: {"output_size": size, "roi": [0, 0, 0, 0]} for c in cameras}})
    return save_frames(path, f)


@pytest.mark.parametrize("case", ["exists", "single_class", "corrupt", "not_frames", "other_cameras", "other_setup",
                                  "camera_not_in_file", "bad_number"])
def test_train_reward_bad_input(tmp_path, capsys, case):
    good = _frames_file(tmp_path / "good.safetensors", [0, 0, 1, 1] * 4)
    out = tmp_path / "clf.safetensors"
    args = ["train-reward", str(good), "-o", str(out), "steps:=2", "views:=1"]
    if case == "exists":
        out.write_bytes(b"keep")
        names = [out, "already exists"]
    elif case == "single_class":
        bad = _frames_file(tmp_path / "one.safetensors", [0] * 16)
        args[1] = str(bad)
        names = [bad, "no success frames"]
    elif case == "corrupt":
        bad = tmp_path / "bad.safetensors"
        bad.write_bytes(good.read_bytes()[:-500])
        args[1] = str(bad)
        names = [bad, "not a readable labelled-frames file"]
    elif case == "not_frames":
        from hilserl_core.formats import tensorio

        bad = tensorio.save_file(tmp_path / "other.safetensors", {"x": np.zeros(3, np.float32)}, {"kind": "something"})
        args[1] = str(bad)
        names = [bad, "not labelled frames"]
    elif case == "other_cameras":
        bad = _frames_file(tmp_path / "right.safetensors", [0, 1] * 8, cameras=("right/wrist",))
        args.append(f"extra:={bad}")
        names = [bad, "left/wrist"]
    elif case == "other_setup":
        bad = _frames_file(tmp_path / "dual.safetensors", [0, 1] * 8, setup="sim_dual_arm")
        args.append(str(bad))
        names = [bad, "sim_dual_arm"]
    elif case == "camera_not_in_file":
        args.append("cameras:=left/side")
        names = [good, "left/side"]
    else:
        args.append("steps:=many")
        names = ["steps:=many"]
    rc = main(args)
    _one_error_line(capsys, rc, *names)
    assert (out.read_bytes() == b"keep") if case == "exists" else not out.exists()


def test_record_refuses_an_existing_bag_and_a_learning_graph_before_starting_anything(tmp_path, capsys):
    (tmp_path / "bag").mkdir()
    rc = main(["record", "sim_single_arm", f"bag:={tmp_path / 'bag'}", "episodes:=1"])
    _one_error_line(capsys, rc, tmp_path / "bag", "already exists")
    rc = main(["record", "sim_single_arm", f"bag:={tmp_path / 'new'}", "learning:=true"])
    _one_error_line(capsys, rc, "learning:=true")
    rc = main(["record", "sim_single_arm", f"bag:={tmp_path / 'new'}", "operator:=assist"])
    _one_error_line(capsys, rc, "operator:=demo")
    rc = main(["record", "sim_single_arm", "episodes:=2"])
    _one_error_line(capsys, rc, "bag:=DIR")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag"]
