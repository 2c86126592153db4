"""`hilserl roi`: a frame with the configured crop ROI drawn, on images the tests make (a PNG
file and a bag holding the camera's image_raw), with the ROI from a parameter file, from the
command line, and one that does not fit the frame."""

import argparse
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hilserl import roi
from hilserl.graph import GraphError
from hilserl_core.vision.imageproc import CropResizer, Roi

ROOT = Path(__file__).resolve().parents[2]
W, H = 640, 480


def _frame():
    """A frame whose every pixel says where it is: red = x mod 256, green = y mod 256, blue = x // 256."""
    x, y = np.meshgrid(np.arange(W), np.arange(H))
    return np.stack([x % 256, y % 256, x // 256 * 60], axis=-1).astype(np.uint8)


def _run(argv, capsys=None):
    parser = argparse.ArgumentParser(prog="hilserl")
    roi.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture
def config(tmp_path, monkeypatch):
    """A copy of config/ with a known ROI for /left/crop_wrist (the graphs read HILSERL_CONFIG_DIR)."""
    cfg = tmp_path / "config"
    shutil.copytree(ROOT / "config", cfg)
    text = (cfg / "params" / "perception_real.yaml").read_text()
    section = "/left/crop_wrist:\n  ros__parameters:\n    roi: {x: 0, y: 0, width: 0, height: 0}"
    assert section in text
    (cfg / "params" / "perception_real.yaml").write_text(
        text.replace(section, "/left/crop_wrist:\n  ros__parameters:\n    roi: {x: 100, y: 40, width: 300, height: 200}"))
    monkeypatch.setenv("HILSERL_CONFIG_DIR", str(cfg))
    return cfg


def _outline(image, x, y, w, h, color):
    """The 2-pixel outline of the rectangle has ``color`` everywhere, the pixel just inside does not."""
    c = np.array(color, dtype=np.uint8)
    edges = [image[y:y + 2, x:x + w], image[y + h - 2:y + h, x:x + w], image[y:y + h, x:x + 2], image[y:y + h, x + w - 2:x + w]]
    return all((e == c).all() for e in edges)


def test_image_file_with_the_roi_from_the_parameter_file(tmp_path, config, capsys):
    frame = _frame()
    Image.fromarray(frame).save(tmp_path / "frame.png")
    out = tmp_path / "out" / "wrist.png"
    assert _run(["roi", str(tmp_path / "frame.png"), "camera:=left/wrist", f"out:={out}"]) == 0
    text = capsys.readouterr().out
    assert "640x480 frame" in text and "roi x=100 y=40 width=300 height=200" in text and "perception_real.yaml" in text
    assert "roi: {x: 100, y: 40, width: 300, height: 200}" in text  # ready to paste
    image = np.asarray(Image.open(out).convert("RGB"))
    assert image.shape == (H, W + 8 + 128, 3)  # frame, gap, the 128x128 crop beside it
    left = image[:, :W]
    assert _outline(left, 100, 40, 300, 200, roi.GREEN)
    outside = np.ones((H, W), bool)
    outside[40:240, 100:400] = False
    assert (left[outside] == frame[outside]).all()  # nothing drawn outside the ROI
    inner = np.zeros((H, W), bool)
    inner[42:238, 102:398] = True
    assert (left[inner] == frame[inner]).all()  # nor inside it
    # the preview is exactly what the crop node publishes for that ROI
    expected = CropResizer(Roi(100, 40, 300, 200), (H, W), (128, 128))(frame)
    assert (image[:128, W + 8:] == expected).all()


def test_default_roi_is_the_centred_square_and_a_roi_on_the_command_line_wins(tmp_path, config, capsys):
    Image.fromarray(_frame()).save(tmp_path / "frame.png")
    assert _run(["roi", str(tmp_path / "frame.png"), "camera:=left/side", f"out:={tmp_path / 'side.png'}"]) == 0
    assert _outline(np.asarray(Image.open(tmp_path / "side.png"))[:, :W], 80, 0, 480, 480, roi.GREEN)
    assert _run(["roi", str(tmp_path / "frame.png"), "camera:=left/wrist", "roi:=10,20,64,32", f"out:={tmp_path / 'try.png'}"]) == 0
    assert "from roi:= on the command line" in capsys.readouterr().out
    assert _outline(np.asarray(Image.open(tmp_path / "try.png"))[:, :W], 10, 20, 64, 32, roi.GREEN)


def test_a_roi_outside_the_frame_is_drawn_in_red_and_refused(tmp_path, config, capsys):
    Image.fromarray(_frame()).save(tmp_path / "frame.png")
    out = tmp_path / "bad.png"
    assert _run(["roi", str(tmp_path / "frame.png"), "camera:=left/wrist", "roi:=500,100,200,100", f"out:={out}"]) == 2
    assert "does not fit in a 640x480 image" in capsys.readouterr().err
    image = np.asarray(Image.open(out).convert("RGB"))
    assert image.shape == (H, W, 3)  # no preview
    assert (image[100:102, 500:W] == roi.RED).all() and (image[100:200, 500:502] == roi.RED).all()


def test_a_bag_with_the_raw_image_and_the_dual_arm_setup(tmp_path, config, capsys):
    from rosbags.typesys import Stores, get_typestore

    from hilserl_core.formats import bags

    ts = get_typestore(Stores.ROS2_KILTED)
    Image_, Header, Time = ts.types["sensor_msgs/msg/Image"], ts.types["std_msgs/msg/Header"], ts.types["builtin_interfaces/msg/Time"]
    topic = "/right/cameras/side/image_raw"
    frames = [_frame(), 255 - _frame()]
    bag = tmp_path / "raw_bag"
    with bags.BagWriter(bag, [bags.TopicSpec(topic, "sensor_msgs/msg/Image", False)]) as w:
        for i, f in enumerate(frames):
            msg = Image_(header=Header(stamp=Time(sec=i, nanosec=0), frame_id="cam"), height=H, width=W, encoding="rgb8",
                         is_bigendian=0, step=3 * W, data=f.reshape(-1))
            w.write(topic, bags.serialize(msg, "sensor_msgs/msg/Image"), (i + 1) * 10**9)
    out = tmp_path / "bag.png"
    assert _run(["roi", str(bag), "setup:=real_dual_arm", "camera:=right/side", "index:=1", f"out:={out}"]) == 0
    assert f"{topic} message 1" in capsys.readouterr().out
    image = np.asarray(Image.open(out).convert("RGB"))[:, :W]
    assert (image[200, 200] == frames[1][200, 200]).all()
    assert _outline(image, 80, 0, 480, 480, roi.GREEN)
    with pytest.raises(GraphError, match=r"missing topic\(s\) /left/cameras/wrist/image_raw"):
        _run(["roi", str(bag), "setup:=real_dual_arm", "camera:=left/wrist", f"out:={out}"])


def test_mistakes_are_named(tmp_path, config):
    Image.fromarray(_frame()).save(tmp_path / "frame.png")
    with pytest.raises(GraphError, match="camera 'left/front' is not a camera of real_single_arm; its cameras: left/side, left/wrist"):
        _run(["roi", str(tmp_path / "frame.png"), "camera:=left/front"])
    with pytest.raises(GraphError, match="roi:=1,2,3: give x,y,width,height"):
        _run(["roi", str(tmp_path / "frame.png"), "roi:=1,2,3"])
    with pytest.raises(GraphError, match="unknown option"):
        _run(["roi", str(tmp_path / "frame.png"), "camrea:=left/wrist"])
    with pytest.raises(GraphError, match="no such image file or bag"):
        _run(["roi", str(tmp_path / "missing.png")])
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(GraphError, match="not an image file"):
        _run(["roi", str(tmp_path / "notes.txt")])


def test_the_hilserl_command_has_the_subcommand(tmp_path, config, capsys):
    from hilserl import cli

    Image.fromarray(_frame()).save(tmp_path / "frame.png")
    assert cli.main(["roi", str(tmp_path / "frame.png"), "camera:=left/wrist", f"out:={tmp_path / 'cli.png'}"]) == 0
    assert (tmp_path / "cli.png").is_file()
    assert cli.main(["roi", str(tmp_path / "frame.png"), "camera:=left/nope"]) == 2  # one line on stderr, no traceback
    assert "is not a camera of real_single_arm" in capsys.readouterr().err
