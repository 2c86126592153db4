"""rosbag2 MCAP bags (hilserl_core.formats.bags): written by hilserl (rosbags) and by another
writer (mcap-ros2-support, as `ros2 bag record -s mcap` lays a bag out) they read the same;
metadata.yaml follows rosbag2's layout; damaged, incomplete and foreign bags are one-line
BagErrors; the writer never leaves a half-written bag under its name. Episode marks."""

import shutil

import numpy as np
import pytest
import yaml
from bag_helpers import synthetic_recording, write_mcap_ros2, write_rosbags

from hilserl_core.formats import bags
from hilserl_core.robot import episode_marks as em

CAMS = ("left/wrist", "left/front")


def _dump(path):
    """(topic, log time, fields) of every message, images as arrays."""
    out = []
    with bags.BagReader(path) as r:
        for m in r.messages():
            msg = m.msg
            if m.msgtype == "sensor_msgs/msg/Image":
                fields = (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.height, msg.width, msg.encoding,
                          msg.step, bytes(np.asarray(msg.data, dtype=np.uint8)))
            elif m.msgtype == "std_msgs/msg/Bool":
                fields = bool(msg.data)
            elif m.msgtype == "geometry_msgs/msg/PoseStamped":
                fields = (msg.header.frame_id, msg.pose.position.x, msg.pose.orientation.w)
            else:
                fields = m.msgtype
            out.append((m.topic, m.log_time_ns, fields))
    return out


@pytest.fixture(scope="module")
def recording():
    return synthetic_recording(["success", "failure", "success"], CAMS)


def test_round_trip_and_rosbag2_layout(tmp_path, recording):
    custom = {bags.KEY_SETUP: "sim_single_arm", bags.KEY_CAMERAS: '["left/wrist","left/front"]'}
    path = write_rosbags(tmp_path / "demo", recording, custom_data=custom)
    got = _dump(path)
    assert len(got) == len(recording)
    for (topic, _, t, fields), (gtopic, gt, gfields) in zip(recording, got):
        assert (gtopic, gt) == (topic, t)
        if topic.endswith("image_cropped"):
            assert gfields[-1] == fields["data"] and gfields[2:4] == (16, 16)
    # what `ros2 bag info/play` read: metadata.yaml (version 9, mcap) naming the .mcap beside it
    meta = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == 9 and meta["storage_identifier"] == "mcap"
    assert meta["relative_file_paths"] == ["demo.mcap"] and (path / "demo.mcap").is_file()
    assert meta["message_count"] == len(recording) and meta["custom_data"] == custom
    assert {t["topic_metadata"]["name"] for t in meta["topics_with_message_count"]} == {e[0] for e in recording}
    assert all(t["topic_metadata"]["type_description_hash"].startswith("RIHS01_") for t in meta["topics_with_message_count"])
    with bags.BagReader(path) as r:
        assert r.setup == "sim_single_arm" and r.json_value(bags.KEY_CAMERAS) == list(CAMS)
        assert r.cameras() == sorted(CAMS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]  # no temporary left beside it


@pytest.mark.parametrize("bare", [False, True], ids=["ros2-bag-directory", "bare-mcap"])
def test_a_bag_from_another_writer_reads_the_same(tmp_path, recording, bare):
    ours = write_rosbags(tmp_path / "ours", recording)
    theirs = write_mcap_ros2(tmp_path / ("theirs.mcap" if bare else "theirs"), recording, bare=bare,
                             custom_data={bags.KEY_SETUP: "sim_single_arm"})
    assert _dump(theirs) == _dump(ours)
    if not bare:
        with bags.BagReader(theirs) as r:
            assert r.setup == "sim_single_arm"


def test_recorded_topics_are_one_list_for_both_recorders():
    from hilserl import launch_support, recording
    from hilserl.graph import load_graph

    g = recording.record_graph("sim_dual_arm")
    names = recording.topic_names(g)
    assert names == launch_support.demo_topics(g)
    for arm in ("left", "right"):
        for t in ("cameras/wrist/image_cropped", "cameras/front/image_cropped", "current_pose", "gripper/joint_states",
                  "mux/executed", "target_pose", "target_wrench", "gripper/command", "spacenav/joy"):
            assert f"/{arm}/{t}" in names
    assert {em.SUCCESS_TOPIC, em.FAILURE_TOPIC, em.RESET_TOPIC, "/sim/success", "/reward/success"} <= set(names)
    assert "/sim/success" not in recording.topic_names(recording.record_graph("real_single_arm"))
    cmd = launch_support.record_command(g, "demos/x")
    assert cmd[:7] == ["ros2", "bag", "record", "-s", "mcap", "-o", "demos/x"] and cmd[7:7 + len(names)] == names
    assert cmd[7 + len(names)] == "--custom-data" and f"{bags.KEY_SETUP}=sim_dual_arm" in cmd
    # the recording graph: no actor, no learner; the scripted operator demonstrates and drives the episodes
    fqns = {n.fqn for n in g.nodes}
    assert "/actor" not in fqns and "/learner" not in fqns
    sim = g.node("/sim")
    assert dict(sim.parameters)["operator.drives_episodes"] is True and dict(sim.parameters)["operator.mode"] == "demo"
    assert "/actor" in {n.fqn for n in load_graph("sim_dual_arm").nodes}


def test_writer_refuses_an_existing_path_and_leaves_nothing_when_aborted(tmp_path):
    spec = [bags.TopicSpec("/x", "std_msgs/msg/Bool", True)]
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    with pytest.raises(bags.BagError, match="taken: already exists"):
        bags.BagWriter(tmp_path / "taken", spec)
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"
    with pytest.raises(RuntimeError):
        with bags.BagWriter(tmp_path / "new", spec) as w:
            w.write("/x", b"\x00\x01\x00\x00\x01", 1)
            raise RuntimeError("recording failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
    w = bags.BagWriter(tmp_path / "open", spec)
    assert not (tmp_path / "open").exists()  # built beside its name until closed
    w.close()
    assert (tmp_path / "open" / "metadata.yaml").is_file()


def _damaged(tmp_path, recording, how):
    path = write_rosbags(tmp_path / how, recording)
    mcap = path / f"{how}.mcap"
    data = mcap.read_bytes()
    if how == "truncated":
        mcap.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        mcap.write_bytes(b"not an mcap file at all" * 10)
    elif how == "zeroed":  # a damaged chunk in the middle, index intact
        mcap.write_bytes(data[:400] + bytes(4000) + data[4400:])
    elif how == "no_metadata":
        (path / "metadata.yaml").unlink()
    elif how == "bad_metadata":
        (path / "metadata.yaml").write_text("just: [text")
    return path


@pytest.mark.parametrize("how", ["truncated", "garbage", "zeroed", "no_metadata", "bad_metadata"])
def test_damaged_bags_are_one_line_errors_naming_the_bag(tmp_path, recording, how):
    path = _damaged(tmp_path, recording, how)
    with pytest.raises(bags.BagError) as info:
        with bags.BagReader(path) as r:
            for _ in r.messages():
                pass
    text = str(info.value)
    assert text.startswith(str(path)) and "\n" not in text


def test_missing_topics_and_another_setup(tmp_path, recording):
    path = write_rosbags(tmp_path / "b", recording, custom_data={bags.KEY_SETUP: "sim_single_arm"})
    with bags.BagReader(path) as r:
        r.require(["/left/cameras/wrist/image_cropped"])
        with pytest.raises(bags.BagError, match=r"missing topic\(s\) /right/current_pose \(why\)"):
            r.require(["/right/current_pose"], "why")
        with pytest.raises(bags.BagError, match="recorded from setup sim_single_arm, not sim_dual_arm"):
            r.check_setup("sim_dual_arm", ["left", "right"], ["wrist", "front"])
        with pytest.raises(bags.BagError, match="it has camera.s. left/front, left/wrist, the setup has left/wrist, left/side"):
            r.check_setup("sim_single_arm", ["left"], ["wrist", "side"])
    with pytest.raises(bags.BagError, match="no such bag"):
        bags.BagReader(tmp_path / "nothing")
    shutil.rmtree(path)


def test_episode_segmentation_and_counter():
    marks = [(1.0, em.RESET), (3.0, em.SUCCESS), (3.5, em.SUCCESS), (4.0, em.RESET), (9.0, em.FAILURE), (10.0, em.RESET)]
    eps = em.segment(marks, 0.0, 12.0)
    assert [(e.start_s, e.outcome, e.outcome_s) for e in eps] == [
        (0.0, em.UNMARKED, None), (1.0, em.SUCCESS, 3.0), (4.0, em.FAILURE, 9.0), (10.0, em.UNMARKED, None)]
    assert eps[1].extra_marks == 1 and eps[1].contains(3.9) and not eps[1].contains(4.0)
    assert [e.outcome for e in em.segment([(0.0, em.RESET), (1.0, em.FAILURE)], 0.0, 2.0)] == [em.FAILURE]
    c = em.EpisodeCounter()
    assert [c.mark(k) for _, k in marks] == [False, True, False, False, True, False]
    assert (c.finished, c.successes) == (2, 1)
    with pytest.raises(ValueError, match="unknown episode mark"):
        em.segment([(0.0, "done")], 0.0, 1.0)
