"""The bag recorder as a real rclpy node over loopback DDS: what other nodes publish is what the
bag holds (published -> recorded -> read -> labelled), it stops after N marked episodes, and
`hilserl record` records a simulated task driven by the scripted operator."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import rclpy
from geometry_msgs.msg import PoseStamped
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import Image, Joy
from std_msgs.msg import Empty

from hilserl.recorder import BagRecorder
from hilserl_core.formats import bags, msgconv
from hilserl_core.robot import episode_marks as em
from hilserl_core.vision.label_bags import LabelOptions, frames_from_bags
from hilserl_interfaces import qos

pytestmark = pytest.mark.ros
CAMS = ["wrist", "front"]


def test_published_messages_are_recorded_read_back_and_labelled(ros_context, spin_until, tmp_path):
    topics = bags.recorded_topics(["left"], CAMS)
    writer = bags.BagWriter(tmp_path / "rec", topics, {bags.KEY_SETUP: "sim_single_arm"})
    said = []
    rec = BagRecorder(writer, topics, episodes=2, tail_s=0.3, say=said.append, context=ros_context)
    peer = rclpy.create_node("robot", context=ros_context)
    img_pubs = {c: peer.create_publisher(Image, f"/left/cameras/{c}/image_cropped", qos.SENSOR) for c in CAMS}
    pose_pub = peer.create_publisher(PoseStamped, "/left/current_pose", qos.SENSOR)
    exec_pub = peer.create_publisher(Joy, "/left/mux/executed", qos.EVENTS)
    marks = {k: peer.create_publisher(Empty, t, qos.EVENTS) for t, k in em.MARK_TOPICS.items()}
    resets_seen = []
    peer.create_subscription(Empty, em.RESET_TOPIC, lambda _m: resets_seen.append(1), qos.EVENTS)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(rec)
    ex.add_node(peer)
    pubs = [*img_pubs.values(), pose_pub, exec_pub, *marks.values()]
    assert spin_until(ex, lambda: all(p.get_subscription_count() > 0 for p in pubs), 10)

    rng = np.random.default_rng(0)
    sent = {c: [] for c in CAMS}
    script = ["frame"] * 4 + ["wait_start"] + ["frame"] * 5 + ["success"] + ["frame"] * 3 + ["reset"] + \
             ["frame"] * 5 + ["failure"] + ["frame"] * 20
    for step in script:
        if rec.done:
            break
        if step == "wait_start":  # the recorder's own reset mark once both cameras sent
            assert spin_until(ex, lambda: resets_seen, 5)
        elif step == "frame":
            stamp = peer.get_clock().now().to_msg()
            bright = 200 if rec.counter.successes and rec.counter.finished == 1 and rec.counter.last == em.SUCCESS else 40
            for c in CAMS:
                rgb = np.clip(rng.normal(bright, 10, (8, 8, 3)), 0, 255).astype(np.uint8)
                msg = Image()
                msg.header.stamp = stamp
                msgconv.fill_image(msg, rgb, "rgb8")
                img_pubs[c].publish(msg)
                sent[c].append(rgb)
            pose = PoseStamped()
            pose.header.stamp = stamp
            pose.pose.position.x = float(len(sent["wrist"]))
            pose_pub.publish(pose)
            exec_pub.publish(Joy(axes=[0.1] * 6, buttons=[1, 0]))
        else:
            marks[step].publish(Empty())
        t_end = time.monotonic() + 0.1  # 10 Hz
        while time.monotonic() < t_end:
            ex.spin_once(timeout_sec=0.01)
    assert spin_until(ex, lambda: rec.done, 10), said
    ex.shutdown()
    rec.destroy_node()
    peer.destroy_node()
    path = writer.close()
    assert (rec.counter.finished, rec.counter.successes) == (2, 1)
    assert any("episode 2/2: failure" in s for s in said)

    with bags.BagReader(path) as r:
        assert r.setup == "sim_single_arm"
        got = {c: [msgconv.image_to_rgb(m.msg) for m in r.messages([f"/left/cameras/{c}/image_cropped"])] for c in CAMS}
        kinds = [em.MARK_TOPICS[m.topic] for m in r.messages(list(em.MARK_TOPICS))]
        poses = [m.msg.pose.position.x for m in r.messages(["/left/current_pose"])]
        joys = list(r.messages(["/left/mux/executed"]))
    for c in CAMS:  # every frame sent after the recorder matched, in order, byte for byte (loopback drops none here)
        assert len(got[c]) == len(sent[c]) and all(np.array_equal(a, b) for a, b in zip(got[c], sent[c]))
    assert poses == [float(i + 1) for i in range(len(poses))] and len(poses) == len(sent["wrist"])
    assert list(joys[0].msg.axes) == pytest.approx([0.1] * 6) and list(joys[0].msg.buttons) == [1, 0]
    assert kinds == [em.RESET, em.SUCCESS, em.RESET, em.FAILURE]  # the recorder's start reset, then the operator's
    frames = frames_from_bags([str(path)], "sim_single_arm", ["left"], [f"left/{c}" for c in CAMS],
                              LabelOptions(labels="marks", after_s=0.5, val_fraction=0.0), say=lambda _t: None)
    assert frames.label.sum() >= 2 and (frames.label == 0).sum() >= 8
    assert frames.images["left/wrist"][frames.label == 1].mean() > 100  # mostly the bright frames shown after the mark


@pytest.mark.slow
def test_hilserl_record_records_a_simulated_task_until_its_episodes_are_done(tmp_path):
    bag = tmp_path / "pick"
    env = dict(os.environ, HILSERL_EXECUTOR="single")
    proc = subprocess.run([sys.executable, "-m", "hilserl.cli", "record", "sim_single_arm", f"bag:={bag}", "episodes:=2",
                           "tail_s:=0.5", "seed:=3"], capture_output=True, text=True, timeout=300, env=env, stdin=subprocess.DEVNULL)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("[record]")]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert any("episode 2/2" in line for line in lines), lines
    with bags.BagReader(bag) as r:
        assert r.setup == "sim_single_arm" and r.json_value(bags.KEY_CROPS)["left/wrist"]["output_size"] == 128
        for t in ("/left/cameras/wrist/image_cropped", "/left/cameras/front/image_cropped", "/left/current_pose",
                  "/left/mux/executed", "/left/gripper/joint_states", "/sim/success", em.RESET_TOPIC):
            assert r.counts[t] > 0, t
        assert r.counts[em.SUCCESS_TOPIC] + r.counts[em.FAILURE_TOPIC] >= 2
        img = next(iter(r.messages(["/left/cameras/wrist/image_cropped"]))).msg
        assert (img.height, img.width, img.encoding) == (128, 128, "rgb8")
    frames = frames_from_bags([str(bag)], "sim_single_arm", ["left"], ["left/wrist", "left/front"],
                              LabelOptions(labels="sim", val_fraction=0.0), say=lambda _t: None)
    assert 0 < frames.label.sum() < len(frames)
