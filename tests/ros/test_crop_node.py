"""The camera crop node as a real rclpy node: rgb8/bgr8/mono8 in, 128x128 rgb8 out,
header kept, live ROI change, and a clear diagnostic for an ROI that does not fit."""

import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image

from hilserl_core.formats import msgconv
from hilserl_interfaces import qos
from hilserl_perception.crop_node import CropNode, RoiConfig, resolve_roi


def test_resolve_roi_defaults_to_centred_square():
    r = resolve_roi(RoiConfig(), 640, 480)
    assert (r.x, r.y, r.width, r.height) == (80, 0, 480, 480)
    r = resolve_roi(RoiConfig(x=10, y=20, width=100), 640, 480)
    assert (r.x, r.y, r.width, r.height) == (10, 20, 100, 100)
    with pytest.raises(ValueError, match="does not fit"):
        resolve_roi(RoiConfig(x=600, width=100), 640, 480)


def test_crop_node_end_to_end(ros_context, spin_until):
    crop = CropNode(context=ros_context, namespace="/left", parameter_overrides=[
        Parameter("camera", value="wrist"), Parameter("roi.x", value=64), Parameter("roi.y", value=32), Parameter("roi.width", value=256)])
    peer = rclpy.create_node("camera_driver", namespace="/left", context=ros_context)
    pub = peer.create_publisher(Image, "cameras/wrist/image_raw", qos.COMMAND)
    got = []
    peer.create_subscription(Image, "cameras/wrist/image_cropped", got.append, qos.SENSOR)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(crop)
    ex.add_node(peer)

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    expect = frame[32:288, 64:320].reshape(128, 2, 128, 2, 3).mean(axis=(1, 3))
    def publish_until_cropped(msg):
        # frames still in flight from an earlier step may arrive first: wait for this stamp
        stamp = msg.header.stamp.sec
        got.clear()
        ok = spin_until(ex, lambda: (pub.publish(msg), any(m.header.stamp.sec == stamp for m in got))[1], 10.0)
        return [m for m in got if m.header.stamp.sec == stamp][-1] if ok else None

    for i, encoding in enumerate(("rgb8", "bgr8", "mono8")):
        msg = Image()
        msg.header.stamp.sec, msg.header.frame_id = 42 + i, "wrist_camera"
        msgconv.fill_image(msg, frame, encoding)
        out = publish_until_cropped(msg)
        assert out is not None, f"no cropped image for {encoding}"
        assert (out.height, out.width, out.encoding) == (128, 128, "rgb8")
        assert out.header.frame_id == "wrist_camera"
        img = msgconv.image_to_rgb(out).astype(float)
        if encoding == "mono8":
            luma = frame[32:288, 64:320] @ np.array([0.299, 0.587, 0.114])
            assert np.abs(img[:, :, 0] - luma.reshape(128, 2, 128, 2).mean(axis=(1, 3))).max() <= 1.0
        else:
            assert np.abs(img - expect).max() <= 0.51

    # live ROI change: the next frame is cropped with the new region
    crop.set_parameters([Parameter("roi.x", value=0), Parameter("roi.y", value=0), Parameter("roi.width", value=128)])
    msg = Image()
    msg.header.stamp.sec = 100
    msgconv.fill_image(msg, frame, "rgb8")
    out = publish_until_cropped(msg)
    assert out is not None and np.array_equal(msgconv.image_to_rgb(out), frame[:128, :128])

    # a frame that already is the output (rgb8 128x128, ROI = whole frame) passes through
    # unchanged; a bgr8 one of that size is still converted
    crop.set_parameters([Parameter("roi.width", value=0)])
    small = frame[:128, :128]
    for i, encoding in enumerate(("rgb8", "bgr8")):
        msg = Image()
        msg.header.stamp.sec = 150 + i
        msgconv.fill_image(msg, small, encoding)
        out = publish_until_cropped(msg)
        assert out is not None and (out.height, out.width, out.encoding, out.step) == (128, 128, "rgb8", 384)
        assert np.array_equal(msgconv.image_to_rgb(out), small), encoding
        passed = "passing frames through" in crop.diag._statuses["crop"].message
        assert passed == (encoding == "rgb8"), encoding

    # an ROI outside the image: rejected frame, ERROR diagnostic naming the fix
    crop.set_parameters([Parameter("roi.x", value=600), Parameter("roi.width", value=128)])
    msg = Image()
    msgconv.fill_image(msg, frame, "rgb8")
    msg.header.stamp.sec = 200
    got.clear()
    for _ in range(5):
        pub.publish(msg)
        ex.spin_once(timeout_sec=0.1)
    assert not [m for m in got if m.header.stamp.sec == 200] and crop.diag.level("crop") == 2
    assert "does not fit in a 640x480 image" in crop.diag._statuses["crop"].message
    ex.shutdown()
    crop.destroy_node()
    peer.destroy_node()
