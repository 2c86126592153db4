"""Message conversions without cv_bridge, and the crop/resize of the camera node."""

from types import SimpleNamespace as NS

import numpy as np
import pytest

from hilserl_core.formats import msgconv
from hilserl_core.vision import imageproc


def _image_msg(arr, encoding, pad=0):
    h, w = arr.shape[:2]
    c = 1 if arr.ndim == 2 else arr.shape[2]
    rows = arr.reshape(h, w * c)
    data = np.concatenate([rows, np.zeros((h, pad), np.uint8)], axis=1).tobytes()
    return NS(height=h, width=w, encoding=encoding, step=w * c + pad, data=data, is_bigendian=0)


@pytest.fixture
def rgb():
    return np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)


@pytest.mark.parametrize("pad", [0, 3])
def test_rgb8_and_bgr8_decode_to_the_same_rgb(rgb, pad):
    assert np.array_equal(msgconv.image_to_rgb(_image_msg(rgb, "rgb8", pad)), rgb)
    assert np.array_equal(msgconv.image_to_rgb(_image_msg(rgb[:, :, ::-1].copy(), "bgr8", pad)), rgb)


def test_rgba_bgra_and_mono(rgb):
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 7, np.uint8)], axis=2)
    assert np.array_equal(msgconv.image_to_rgb(_image_msg(rgba, "rgba8")), rgb)
    bgra = np.concatenate([rgb[:, :, ::-1], rgba[:, :, 3:]], axis=2)
    assert np.array_equal(msgconv.image_to_rgb(_image_msg(bgra, "bgra8")), rgb)
    mono = rgb[:, :, 0].copy()
    out = msgconv.image_to_rgb(_image_msg(mono, "mono8", pad=1))
    assert out.shape == rgb.shape and all(np.array_equal(out[:, :, k], mono) for k in range(3))


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_encode_decode_roundtrip(rgb, encoding):
    msg = msgconv.fill_image(NS(), rgb, encoding)
    assert msg.step == rgb.shape[1] * (4 if "a" in encoding else 3)
    assert np.array_equal(msgconv.image_to_rgb(msg), rgb)


def test_mono_encoding_is_luma():
    rgb = np.zeros((1, 3, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)
    rgb[0, 1] = (0, 255, 0)
    rgb[0, 2] = (255, 255, 255)
    msg = msgconv.fill_image(NS(), rgb, "mono8")
    assert list(msg.data) == [76, 150, 255]


def test_bad_images_give_clear_errors(rgb):
    with pytest.raises(ValueError, match="unsupported image encoding '16UC1'"):
        msgconv.image_to_rgb(_image_msg(rgb, "16UC1"))
    short = _image_msg(rgb, "rgb8")
    short.data = short.data[:-1]
    with pytest.raises(ValueError, match="expected height\\*step"):
        msgconv.image_to_rgb(short)
    with pytest.raises(ValueError, match="uint8"):
        msgconv.rgb_to_image_fields(rgb.astype(np.float32))


def test_pose_twist_wrench_stamp_roundtrip():
    vec = lambda: NS(x=0.0, y=0.0, z=0.0)  # noqa: E731
    pose = NS(position=vec(), orientation=NS(x=0.0, y=0.0, z=0.0, w=1.0))
    msgconv.fill_pose(pose, [1, 2, 3], [0.1, 0.2, 0.3, 0.9])
    p, q = msgconv.pose_to_arrays(pose)
    assert np.allclose(p, [1, 2, 3]) and np.allclose(q, [0.1, 0.2, 0.3, 0.9])  # xyzw order kept
    tw = NS(linear=vec(), angular=vec())
    assert np.allclose(msgconv.vector6_from_twist(msgconv.fill_twist(tw, np.arange(6.0))), np.arange(6.0))
    wr = NS(force=vec(), torque=vec())
    assert np.allclose(msgconv.vector6_from_wrench(msgconv.fill_wrench(wr, -np.arange(6.0))), -np.arange(6.0))
    st = msgconv.seconds_to_stamp(NS(), 12.999999999)
    assert (st.sec, st.nanosec) == (12, 999999999)
    assert msgconv.stamp_to_seconds(msgconv.seconds_to_stamp(NS(), 3.25)) == 3.25


def test_area_weights_rows_are_averages():
    w = imageproc.area_weights(10, 4)  # scale 2.5
    assert np.allclose(w.sum(axis=1), 1.0)
    assert np.allclose(w[0, :3], [0.4, 0.4, 0.2]) and np.allclose(w[0, 3:], 0)


def test_integer_factor_resize_is_block_mean():
    img = np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    roi = imageproc.Roi(x=80, y=0, width=384, height=384)
    out = imageproc.CropResizer(roi, (480, 640))(img)
    crop = img[0:384, 80:464].astype(np.float64)
    expect = crop.reshape(128, 3, 128, 3, 3).mean(axis=(1, 3))
    assert out.shape == (128, 128, 3) and out.dtype == np.uint8
    assert np.max(np.abs(out.astype(float) - expect)) <= 0.5 + 1e-3


@pytest.mark.parametrize("roi_hw", [(477, 477), (141, 190), (128, 128), (100, 300)])
def test_tap_resize_equals_the_dense_area_weight_products(roi_hw):
    # the taps are the non-zero entries of area_weights: same result as the dense products
    h, w = roi_hw
    img = np.random.default_rng(h + w).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    out = imageproc.CropResizer(imageproc.Roi(7, 3, w, h), (480, 640))(img)
    crop = img[3 : 3 + h, 7 : 7 + w].astype(np.float64)
    rows, cols = imageproc.area_weights(h, 128).astype(np.float64), imageproc.area_weights(w, 128).astype(np.float64)
    expect = np.einsum("oh,hwc,pw->opc", rows, crop, cols)
    assert np.max(np.abs(out.astype(float) - expect)) <= 0.5 + 1e-3
    index, weight = imageproc.area_taps(h, 128)
    dense = np.zeros((128, h))
    np.add.at(dense, (np.arange(128)[:, None], index), weight)
    np.testing.assert_allclose(dense, rows, atol=1e-6)


def test_resize_preserves_constant_and_mean_of_gradient():
    img = np.tile(np.arange(200, dtype=np.uint8)[None, :, None], (150, 1, 3))
    out = imageproc.CropResizer(imageproc.Roi(0, 0, 200, 150), (150, 200))(img)
    assert abs(out.mean() - img.mean()) < 0.6
    const = np.full((150, 200, 3), 77, np.uint8)
    assert np.all(imageproc.CropResizer(imageproc.Roi(3, 5, 190, 141), (150, 200))(const) == 77)


def test_roi_and_frame_size_errors():
    with pytest.raises(ValueError, match="does not fit in a 640x480 image"):
        imageproc.CropResizer(imageproc.Roi(600, 0, 100, 100), (480, 640))
    cr = imageproc.CropResizer(imageproc.Roi(0, 0, 100, 100), (480, 640))
    with pytest.raises(ValueError, match="camera resolution changed"):
        cr(np.zeros((240, 320, 3), np.uint8))
