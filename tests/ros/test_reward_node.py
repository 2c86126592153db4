"""The reward node with a real classifier file: probabilities match the model,
threshold and consecutive-frame rule are live, misconfiguration is a clear error."""

import numpy as np
import pytest
import rclpy
import torch
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from std_msgs.msg import Bool, Float32

from hilserl_core import msgconv
from hilserl_core.config import ConfigError
from hilserl_core.encoders import ResNet10Encoder
from hilserl_core.reward_classifier import RewardClassifier
from hilserl_interfaces import qos
from hilserl_reward.reward_node import RewardNode


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
    peer.create_subscription(Bool, "/reward/success", lambda m: succ.append(m.data), qos.EVENTS)
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

    # threshold just below the model's probability: success after 2 frames in a row
    node.set_parameters([Parameter("threshold", value=max(0.01, expect - 0.01))])
    assert spin_until(ex, lambda: (send(), len(succ) >= 3)[1], 15)
    assert abs(probs[0] - expect) < 1e-5
    assert succ[0] is False and succ[1] is True
    # live threshold above it: no success any more
    node.set_parameters([Parameter("threshold", value=min(0.99, expect + 0.01))])
    n = len(succ)
    assert spin_until(ex, lambda: (send(), len(succ) >= n + 2)[1], 15)
    assert succ[-1] is False
    ex.shutdown()
    node.destroy_node()
    peer.destroy_node()


def test_camera_mismatch_and_missing_file_are_clear_errors(ros_context, model_files):
    clf, _ = model_files
    with pytest.raises(ConfigError, match="classifier_path is empty"):
        RewardNode(context=ros_context)
    with pytest.raises(ConfigError, match=r"trained on cameras \['left_wrist'\], node configured for \['right_side'\]"):
        RewardNode(context=ros_context, parameter_overrides=[
            Parameter("classifier_path", value=str(clf)), Parameter("cameras", value=["right/side"])])
