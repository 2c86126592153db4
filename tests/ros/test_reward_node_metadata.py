"""The reward node checks what a classifier made by `hilserl train-reward` says it was trained on:
other cameras are refused at start, frames of another size than the training crops are refused
with an error naming the classifier file (nothing classified)."""

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from std_msgs.msg import Float32

from hilserl_core.formats import msgconv
from hilserl_core.formats.config import ConfigError
from hilserl_core.vision.encoders import ResNet10Encoder
from hilserl_core.vision.reward_classifier import RewardClassifier
from hilserl_interfaces import qos
from hilserl_reward.reward_node import RewardNode

pytestmark = pytest.mark.ros


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    d = tmp_path_factory.mktemp("clf")
    enc = ResNet10Encoder(seed=0)  # what load_frozen_encoder("") builds
    meta = {"setup": "sim_single_arm", "cameras": ["left/wrist"], "image_size": [64, 64],
            "crops": {"left/wrist": {"output_size": 64, "roi": [0, 0, 0, 0]}}}
    RewardClassifier(["left_wrist"], feature_shape=(2, 2, 512), encoder=enc).save(d / "clf.safetensors", extra_metadata=meta)
    return d / "clf.safetensors"


def test_frames_of_another_size_than_the_training_crops_are_refused(ros_context, spin_until, classifier):
    node = RewardNode(context=ros_context, parameter_overrides=[
        Parameter("classifier_path", value=str(classifier)), Parameter("cameras", value=["left/wrist"])])
    assert node.model.extra_metadata["image_size"] == [64, 64]
    peer = rclpy.create_node("camera", context=ros_context)
    pub = peer.create_publisher(Image, "/left/cameras/wrist/image_cropped", qos.COMMAND)
    probs, errors = [], []
    peer.create_subscription(Float32, "/reward/probability", lambda m: probs.append(m.data), qos.EVENTS)
    peer.create_subscription(DiagnosticArray, "/diagnostics", lambda m: errors.extend(
        s.message for s in m.status if s.level == b"\x02"), qos.EVENTS)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(node)
    ex.add_node(peer)

    def send(size):
        msg = Image()
        msg.header.stamp = node.get_clock().now().to_msg()
        msgconv.fill_image(msg, np.zeros((size, size, 3), np.uint8), "rgb8")
        pub.publish(msg)

    assert spin_until(ex, lambda: (send(128), any("trained on 64x64 crops" in e for e in errors))[1], 15)
    assert not probs and str(classifier) in [e for e in errors if "64x64" in e][0]
    assert spin_until(ex, lambda: (send(64), len(probs) > 0)[1], 15)  # the training size is classified
    ex.shutdown()
    node.destroy_node()
    peer.destroy_node()


def test_other_cameras_than_the_classifier_metadata_are_refused(ros_context, classifier, tmp_path):
    model = RewardClassifier.load(classifier, encoder=ResNet10Encoder(seed=0))
    model.save(tmp_path / "two.safetensors", extra_metadata={"cameras": ["left/wrist", "left/front"]})
    with pytest.raises(ConfigError, match=r"trained on cameras \['left/front', 'left/wrist'\], node configured for \['left/wrist'\]"):
        RewardNode(context=ros_context, parameter_overrides=[
            Parameter("classifier_path", value=str(tmp_path / "two.safetensors")), Parameter("cameras", value=["left/wrist"])])
