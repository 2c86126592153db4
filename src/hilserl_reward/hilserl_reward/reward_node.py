"""Reward node: cropped camera images -> success probability -> binary success.

Subscribes to ``/<arm>/cameras/<cam>/image_cropped`` for each entry
``<arm>/<cam>`` of ``cameras`` (the classifier's camera keys are ``<arm>_<cam>``),
classifies each new set of frames (once every camera has a frame newer than the
oldest frame of the set it classified last, whatever order they arrive in; all
frames no older than ``max_input_age_s`` than the newest), and publishes ``/reward/probability``
(std_msgs/Float32) and ``/reward/success`` (probability above the threshold for
``consecutive_frames`` frames in a row).

``/reward/success`` is a sensor_msgs/Joy (``hilserl_interfaces.topics.reward_success_msg``):
``buttons[0]`` 1 success / 0 not, ``axes[0]`` the probability, ``header.stamp`` the stamp of
the frame judged (the oldest of the frames classified, copied from its header). std_msgs has
no stamped Bool, and a message of our own with a Header does not build with the ROS wheels
(docs/DESIGN.md); Joy is standard, carries a header, an integer and a float, and is how the
project already carries actions, so bags stay readable by any ROS 2 install. With the stamp
the actor pairs each verdict with the observation holding that frame, not with whatever
observation it has when the verdict arrives. The threshold is the
one saved with the classifier (chosen when it was trained) unless the
``threshold`` parameter is set above 0.0, which overrides it; setting it back to
0.0 returns to the classifier's. ``threshold`` and ``consecutive_frames`` are
live; the ``threshold`` diagnostic names the threshold in use and its source.
``/reward/reset`` (std_msgs/Empty, sent by the actor at an episode start)
clears the streak.

A classifier made by ``hilserl train-reward`` records what it was trained on (setup,
cameras, each camera's crop and the image size): cameras other than the node's are refused
at start, and a frame of another size than the training crops is refused with an error
naming the classifier file and its crops (set the crop nodes as when the frames were
recorded, or train again).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from rclpy.node import Node
from sensor_msgs.msg import Image, Joy
from std_msgs.msg import Empty, Float32

from hilserl_core.formats import msgconv
from hilserl_core.formats.config import ConfigError, param
from hilserl_core.robot.actor import LatestInputs
from hilserl_core.vision.encoders import ENCODER_DTYPE_HELP, ENCODER_DTYPES, load_frozen_encoder
from hilserl_core.vision.reward_classifier import RewardClassifier
from hilserl_core.vision.success import SuccessRule
from hilserl_interfaces import diagnostics, qos, topics
from hilserl_interfaces.node_main import run_node
from hilserl_interfaces.params import NodeConfig

REWARD_RESET = "/reward/reset"


@dataclass(frozen=True)
class RewardConfig:
    classifier_path: str = param("", "reward classifier file (safetensors) written by the classifier training command")
    encoder_weights: str = param("", "frozen ResNet-10 weights (safetensors); empty = random weights (tests and smoke runs only)")
    encoder_dtype: str = param("auto", ENCODER_DTYPE_HELP, choices=ENCODER_DTYPES)
    cameras: Tuple[str, ...] = param(("left/wrist",), "cameras as <arm>/<camera>; classifier keys are <arm>_<camera>")
    threshold: float = param(
        0.0,
        "success when the probability is above this; 0.0 = use the threshold saved with the classifier file",
        low=0.0,
        high=0.99,
        live=True,
    )
    consecutive_frames: int = param(1, "frames in a row above the threshold before success is reported", low=1, high=100, live=True)
    max_input_age_s: float = param(0.2, "frames older than this are not classified", units="s", low=0.01, high=5.0)


def load_models(conf: RewardConfig) -> RewardClassifier:
    if not conf.classifier_path:
        raise ConfigError("classifier_path is empty: train a classifier first and set the parameter to its file")
    model = RewardClassifier.load(conf.classifier_path, encoder=load_frozen_encoder(conf.encoder_weights, conf.encoder_dtype))
    keys = [topics.camera_key(c) for c in conf.cameras]
    if sorted(keys) != sorted(model.cameras):
        raise ConfigError(f"classifier {conf.classifier_path} was trained on cameras {model.cameras}, node configured for {keys}")
    trained = model.extra_metadata.get("cameras")
    if trained is not None and sorted(trained) != sorted(conf.cameras):
        raise ConfigError(f"classifier {conf.classifier_path} was trained on cameras {sorted(trained)}, node configured for {sorted(conf.cameras)}")
    return model


def trained_image_size(model: RewardClassifier) -> Optional[Tuple[int, int]]:
    """(H, W) of the cropped frames the classifier was trained on, where its file says."""
    size = model.extra_metadata.get("image_size")
    return (int(size[0]), int(size[1])) if size else None


class RewardNode(Node):
    def __init__(self, **node_kwargs):
        super().__init__("reward_classifier", **node_kwargs)
        torch.set_num_threads(1)  # one frame at a time: threads cost more than they give (process-wide)
        self.conf = NodeConfig(self, RewardConfig, on_change=self._on_change)
        c = self.conf.value
        self.diag = diagnostics.Diagnostics(self)
        self.model = load_models(c)
        self.rule = SuccessRule(self._threshold(c), c.consecutive_frames)
        self._report_threshold(c)
        notes = [] if c.encoder_weights else ["random encoder weights: set encoder_weights for real use"]
        if self.model.load_warning:  # the classifier's features came in another precision
            self.get_logger().warning(self.model.load_warning)
            notes.append(self.model.load_warning)
        if notes:
            self.diag.report("encoder", diagnostics.WARN, "; ".join(notes))
        self.inputs = LatestInputs()
        self._image_size = trained_image_size(self.model)
        self._input_errors = 0
        crops = self.model.extra_metadata.get("crops")
        if crops:
            self.get_logger().info(f"classifier {c.classifier_path} was trained on {self.model.extra_metadata.get('setup', '?')} "
                                   f"frames cropped as {crops}; the crop nodes must crop the same way")
        self._keys = [topics.camera_key(e) for e in c.cameras]
        self._prob_pub = self.create_publisher(Float32, topics.REWARD_PROBABILITY, qos.EVENTS)
        self._success_pub = self.create_publisher(Joy, topics.REWARD_SUCCESS, qos.EVENTS)
        self._stamps = {}  # camera key -> header stamp of its newest frame (the verdict carries the judged frame's)
        for i, entry in enumerate(c.cameras):
            self.create_subscription(Image, topics.cropped_topic(entry),
                                     lambda m, k=self._keys[i]: self._on_image(k, m), qos.SENSOR)
        self.create_subscription(Empty, REWARD_RESET, lambda _m: self.rule.reset(), qos.EVENTS)
        self.classified = 0
        self._judged_s = float("-inf")  # the oldest frame of the set classified last

    def _threshold(self, conf: RewardConfig) -> float:
        """The parameter when set (> 0.0), else the threshold saved with the classifier."""
        return conf.threshold if conf.threshold > 0.0 else self.model.threshold

    @staticmethod
    def _threshold_source(conf: RewardConfig) -> str:
        return "parameter" if conf.threshold > 0.0 else "classifier"

    def _report_threshold(self, conf: RewardConfig) -> None:
        t, saved = self._threshold(conf), self.model.threshold
        if self._threshold_source(conf) == "parameter":
            text = f"threshold {t:.3f} from the threshold parameter (overrides the classifier's {saved:.3f})"
        else:
            text = f"threshold {t:.3f} saved with the classifier (parameter threshold is 0.0)"
        self.diag.report("threshold", diagnostics.OK, text, publish_now=True, threshold=f"{t:.3f}",
                         source=self._threshold_source(conf), classifier_threshold=f"{saved:.3f}")

    def _on_change(self, old: RewardConfig, new: RewardConfig) -> None:
        self.rule.configure(self._threshold(new), new.consecutive_frames)
        self._report_threshold(new)

    def _on_image(self, key: str, msg: Image) -> None:
        stamp = msgconv.stamp_to_seconds(msg.header.stamp)
        try:
            rgb = msgconv.image_to_rgb(msg)
            if self._image_size is not None and rgb.shape[:2] != self._image_size:
                raise ValueError(
                    f"frames are {rgb.shape[0]}x{rgb.shape[1]} but classifier {self.conf.value.classifier_path} was trained on "
                    f"{self._image_size[0]}x{self._image_size[1]} crops ({self.model.extra_metadata.get('crops')}): crop as in "
                    "training or train the classifier again")
            self.inputs.put(key, rgb, stamp)
            self._stamps[key] = msg.header.stamp
        except ValueError as exc:
            self._input_errors += 1
            if self._input_errors == 1:
                self.get_logger().error(f"{key}: {exc}")
            self.diag.report("inputs", diagnostics.ERROR, f"{key}: {exc}")
            return
        # A new frame set: every camera has a frame newer than the oldest one judged last. (Triggered
        # by one camera, a frame set whose other frames had not arrived yet would be judged with
        # the frames before them and carry an older stamp than the set the actor observes.)
        got = [self.inputs.get(k) for k in self._keys]
        if all(g is not None for g in got) and self.inputs.oldest_stamp(self._keys) > self._judged_s:
            self._classify(max(g[1] for g in got))

    def _classify(self, now_s: float) -> None:
        frames, why = self.inputs.snapshot(now_s, self._keys, self.conf.value.max_input_age_s)
        if frames is None:
            self.diag.report("inputs", diagnostics.WARN, why)
            return
        batch = {f"image/{k}": torch.from_numpy(v[None]) for k, v in frames.items()}
        prob = float(self.model.predict_proba(batch)[0])
        success = self.rule.update(prob)
        judged = min((self._stamps[k] for k in self._keys), key=msgconv.stamp_to_seconds)  # the frame judged
        self._judged_s = self.inputs.oldest_stamp(self._keys)
        self._prob_pub.publish(Float32(data=prob))
        self._success_pub.publish(topics.reward_success_msg(success, prob, judged))
        self.classified += 1
        self.diag.report("reward", diagnostics.OK, "classifying", probability=f"{prob:.3f}", success=success,
                         threshold=f"{self.rule.threshold:.3f}", threshold_source=self._threshold_source(self.conf.value))


# what `ros2 run` starts and what compose_nodes builds when this node shares a process
NODE_CLASS = RewardNode


def main(args=None) -> int:
    return run_node(NODE_CLASS, args)


if __name__ == "__main__":
    raise SystemExit(main())
