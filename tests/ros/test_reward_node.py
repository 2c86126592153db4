"""The reward node with a real classifier file: probabilities match the model,
the classifier's saved threshold is used unless the parameter overrides it,
threshold and consecutive-frame rule are live, misconfiguration is a clear error."""

import numpy as np
import pytest
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image, Joy
from std_msgs.msg import Float32

from hilserl_core.formats import msgconv
from hilserl_core.formats.config import ConfigError
from hilserl_core.vision.encoders import ResNet10Encoder
from hilserl_core.vision.reward_classifier import RewardClassifier
from hilserl_interfaces import qos
from hilserl_reward.reward_node import RewardConfig, RewardNode


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("reward")
    torch.manual_seed(0)
    enc = ResNet10Encoder(seed=3)
    enc.save_weights(d / "encoder.safetensors")
    RewardClassifier(["left_wrist"], encoder=enc).save(d / "clf.safetensors")
    return d / "clf.safetensors", d / "encoder.safetensors"


def test_reward_node_publishes_model_probability(ros_context, spin_until, model_files):
    clf, enc = model_files
    node = RewardNode(context=ros_context, parameter_overrides=[
        Parameter("classifier_path", value=str(clf)), Parameter("encoder_weights", value=str(enc)),
        Parameter("cameras", value=["left/wrist"]), Parameter("consecutive_frames", value=2)])
    peer = rclpy.create_node("camera", context=ros_context)
    pub = peer.create_publisher(Image, "/left/cameras/wrist/image_cropped", qos.COMMAND)
    probs, succ = [], []
    peer.create_subscription(Float32, "/reward/probability", lambda m: probs.append(m.data), qos.EVENTS)
    verdicts, sent = [], []
    peer.create_subscription(Joy, "/reward/success", lambda m: (verdicts.append(m), succ.append(bool(m.buttons[0]))), qos.EVENTS)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(node)
    ex.add_node(peer)

    img = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    encoder = ResNet10Encoder(seed=0).load_pretrained(enc)
    expect = float(RewardClassifier.load(clf, encoder=encoder).predict_proba({"image/left_wrist": torch.from_numpy(img[None])})[0])

    def send():
        msg = Image()
        msg.header.stamp = node.get_clock().now().to_msg()  # fresh, or the node refuses it
        msgconv.fill_image(msg, img, "rgb8")
        pub.publish(msg)
        sent.append((msg.header.stamp.sec, msg.header.stamp.nanosec))

    # threshold just below the model's probability: success after 2 frames in a row
    node.set_parameters([Parameter("threshold", value=max(0.01, expect - 0.01))])
    assert spin_until(ex, lambda: (send(), len(succ) >= 3)[1], 15)
    assert abs(probs[0] - expect) < 1e-5
    assert succ[0] is False and succ[1] is True
    # each verdict carries the probability and the stamp of the frame it judged, exactly
    assert all(abs(v.axes[0] - expect) < 1e-5 for v in verdicts)
    judged = [(v.header.stamp.sec, v.header.stamp.nanosec) for v in verdicts]
    assert all(j in sent for j in judged) and judged == sorted(judged) and len(set(judged)) == len(judged)
    # live threshold above it: no success any more
    node.set_parameters([Parameter("threshold", value=min(0.99, expect + 0.01))])
    n = len(succ)
    assert spin_until(ex, lambda: (send(), len(succ) >= n + 2)[1], 15)
    assert succ[-1] is False
    ex.shutdown()
    node.destroy_node()
    peer.destroy_node()


def test_each_frame_set_is_judged_once_whatever_order_its_cameras_arrive_in(ros_context, spin_until, tmp_path):
    """Two cameras whose frames of one set arrive in either order: every set is classified once,
    with all of its own frames, and the verdict carries that set's stamp (a trigger on the first
    camera judged the other camera's previous frame and stamped the verdict with it, so the actor
    found no verdict for the set it observed). In lockstep the set may be seconds old."""
    torch.manual_seed(0)
    enc = ResNet10Encoder(seed=3)
    enc.save_weights(tmp_path / "encoder.safetensors")
    RewardClassifier(["left_wrist", "left_front"], encoder=enc).save(tmp_path / "clf.safetensors")
    node = RewardNode(context=ros_context, parameter_overrides=[
        Parameter("classifier_path", value=str(tmp_path / "clf.safetensors")),
        Parameter("encoder_weights", value=str(tmp_path / "encoder.safetensors")),
        Parameter("cameras", value=["left/wrist", "left/front"])])
    peer = rclpy.create_node("cameras", context=ros_context)
    pubs = {c: peer.create_publisher(Image, f"/left/cameras/{c}/image_cropped", qos.COMMAND) for c in ("wrist", "front")}
    verdicts = []
    peer.create_subscription(Joy, "/reward/success", verdicts.append, qos.EVENTS)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(node)
    ex.add_node(peer)
    img = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    t0 = node.get_clock().now().nanoseconds * 1e-9 - 3.0  # frames held 3 s (lockstep): same stamp per set
    sets = []
    for i in range(4):
        for cam in (("front", "wrist") if i % 2 == 0 else ("wrist", "front")):
            msg = Image()
            msgconv.seconds_to_stamp(msg.header.stamp, t0 + 0.1 * i)
            msgconv.fill_image(msg, img, "rgb8")
            pubs[cam].publish(msg)
            spin_until(ex, lambda: False, 0.3)  # delivered before the other camera's frame
        sets.append((msg.header.stamp.sec, msg.header.stamp.nanosec))
        assert spin_until(ex, lambda: len(verdicts) >= i + 1, 10), f"no verdict for frame set {i}"
    spin_until(ex, lambda: False, 0.3)
    judged = [(v.header.stamp.sec, v.header.stamp.nanosec) for v in verdicts]
    assert judged == sets, (judged, sets)
    assert node.classified == 4
    ex.shutdown()
    node.destroy_node()
    peer.destroy_node()


def test_camera_mismatch_other_encoder_weights_and_missing_file_are_clear_errors(ros_context, model_files):
    from hilserl_core.vision.encoders import EncoderMismatch

    clf, enc = model_files
    with pytest.raises(ConfigError, match="classifier_path is empty"):
        RewardNode(context=ros_context)
    with pytest.raises(ConfigError, match=r"trained on cameras \['left_wrist'\], node configured for \['right_side'\]"):
        RewardNode(context=ros_context, parameter_overrides=[
            Parameter("classifier_path", value=str(clf)), Parameter("encoder_weights", value=str(enc)),
            Parameter("cameras", value=["right/side"])])
    # trained on features of the encoder in `enc`; the default random weights are others
    with pytest.raises(EncoderMismatch, match="encoder_weights"):  # run_node: a configuration error, exit status 2
        RewardNode(context=ros_context, parameter_overrides=[
            Parameter("classifier_path", value=str(clf)), Parameter("cameras", value=["left/wrist"])])


def test_saved_classifier_threshold_is_the_default_and_the_parameter_overrides_it(ros_context, spin_until, tmp_path):
    torch.manual_seed(1)
    enc = ResNet10Encoder(seed=3)
    enc.save_weights(tmp_path / "encoder.safetensors")
    img = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    clf = RewardClassifier(["left_wrist"], encoder=enc)
    clf.save(tmp_path / "probe.safetensors")
    encoder = ResNet10Encoder(seed=0).load_pretrained(tmp_path / "encoder.safetensors")
    p = float(RewardClassifier.load(tmp_path / "probe.safetensors", encoder=encoder).predict_proba(
        {"image/left_wrist": torch.from_numpy(img[None])})[0])
    # tuned threshold on the other side of p from 0.5: the node's answer tells which threshold it uses
    saved = round(p + 0.02, 3) if p > 0.5 else round(p - 0.02, 3)
    assert 0.0 < saved < 1.0 and (p > saved) != (p > 0.5)
    clf.threshold = saved
    clf.save(tmp_path / "clf.safetensors")

    node = RewardNode(context=ros_context, parameter_overrides=[
        Parameter("classifier_path", value=str(tmp_path / "clf.safetensors")),
        Parameter("encoder_weights", value=str(tmp_path / "encoder.safetensors")),
        Parameter("cameras", value=["left/wrist"])])
    peer = rclpy.create_node("camera", context=ros_context)
    pub = peer.create_publisher(Image, "/left/cameras/wrist/image_cropped", qos.COMMAND)
    succ, diags = [], {}
    peer.create_subscription(Joy, "/reward/success", lambda m: succ.append(bool(m.buttons[0])), qos.EVENTS)

    def on_diag(msg):
        for st in msg.status:
            if st.name.endswith(": threshold"):
                diags["threshold"] = (st.message, {kv.key: kv.value for kv in st.values})

    peer.create_subscription(DiagnosticArray, "/diagnostics", on_diag, qos.EVENTS)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(node)
    ex.add_node(peer)

    def send():
        msg = Image()
        msg.header.stamp = node.get_clock().now().to_msg()
        msgconv.fill_image(msg, img, "rgb8")
        pub.publish(msg)

    def outcome():
        n = len(succ)
        assert spin_until(ex, lambda: (send(), len(succ) >= n + 2)[1], 15)
        return succ[-1]

    def threshold_diag(value, source):
        return spin_until(ex, lambda: diags.get("threshold", ("", {}))[1].get("threshold") == f"{value:.3f}"
                          and diags["threshold"][1].get("source") == source, 10)

    # default: the saved threshold decides, not 0.5
    assert outcome() is (p > saved)
    assert threshold_diag(saved, "classifier"), diags
    assert "saved with the classifier" in diags["threshold"][0]
    # a user-set value overrides it, live
    assert node.set_parameters([Parameter("threshold", value=0.5)])[0].successful
    assert outcome() is (p > 0.5)
    assert threshold_diag(0.5, "parameter"), diags
    assert diags["threshold"][1]["classifier_threshold"] == f"{saved:.3f}"
    # back to 0.0: the classifier's threshold again
    assert node.set_parameters([Parameter("threshold", value=0.0)])[0].successful
    assert outcome() is (p > saved)
    assert threshold_diag(saved, "classifier"), diags
    assert not node.set_parameters([Parameter("threshold", value=1.0)])[0].successful  # still a probability
    assert RewardConfig().threshold == 0.0  # the schema default means "the classifier's"
    ex.shutdown()
    node.destroy_node()
    peer.destroy_node()


def test_threshold_parameter_given_at_start_overrides_the_saved_one(ros_context, model_files, tmp_path):
    clf, enc = model_files
    model = RewardClassifier.load(clf)
    model.threshold = 0.7
    model.save(tmp_path / "clf07.safetensors")
    common = [Parameter("encoder_weights", value=str(enc)), Parameter("cameras", value=["left/wrist"])]
    node = RewardNode(context=ros_context, parameter_overrides=[
        *common, Parameter("classifier_path", value=str(tmp_path / "clf07.safetensors"))])
    assert node.rule.threshold == 0.7
    node.destroy_node()
    node = RewardNode(context=ros_context, parameter_overrides=[
        *common, Parameter("classifier_path", value=str(tmp_path / "clf07.safetensors")), Parameter("threshold", value=0.6)])
    assert node.rule.threshold == 0.6
    node.destroy_node()
