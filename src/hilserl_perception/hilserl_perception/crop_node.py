"""Camera crop node: ``cameras/<cam>/image_raw`` -> ``cameras/<cam>/image_cropped``.

Crops the configured region of interest and area-resizes it to
``output_size`` x ``output_size`` rgb8 (the paper's 128x128 policy input). The
output keeps the input's header, so downstream staleness checks and latency
measurements see the camera's own timestamp. A frame that already is the output (rgb8,
unpadded, the ROI its whole ``output_size`` square: the simulator's cameras) is passed
on as it came, without converting or resizing it (the resize would be the identity). The ROI is live: tune it with
``ros2 param set`` while watching the cropped image in rqt_image_view.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rclpy.node import Node
from sensor_msgs.msg import Image

from hilserl_core.formats import msgconv
from hilserl_core.formats.config import param
from hilserl_core.vision.imageproc import CropResizer, Roi
from hilserl_interfaces import diagnostics, qos, topics
from hilserl_interfaces.node_main import run_node
from hilserl_interfaces.params import NodeConfig


@dataclass(frozen=True)
class RoiConfig:
    x: int = param(0, "left edge of the region of interest", units="px", low=0, live=True)
    y: int = param(0, "top edge of the region of interest", units="px", low=0, live=True)
    width: int = param(0, "width of the region of interest; 0 = the largest centred square", units="px", low=0, live=True)
    height: int = param(0, "height of the region of interest; 0 = same as width", units="px", low=0, live=True)


@dataclass(frozen=True)
class CropConfig:
    camera: str = param("wrist", "camera name: topics are cameras/<camera>/image_raw and .../image_cropped")
    output_size: int = param(128, "side of the square output image", units="px", low=8, high=1024)
    roi: RoiConfig = field(default_factory=RoiConfig)


def resolve_roi(cfg: RoiConfig, width: int, height: int) -> Roi:
    """The configured ROI for a frame size (0 sizes = centred square), validated."""
    if cfg.width == 0:
        side = min(width, height)
        roi = Roi((width - side) // 2, (height - side) // 2, side, side)
    else:
        roi = Roi(cfg.x, cfg.y, cfg.width, cfg.height or cfg.width)
    roi.check_inside(width, height)
    return roi


class CropNode(Node):
    def __init__(self, **node_kwargs):
        super().__init__("crop_node", **node_kwargs)
        self.conf = NodeConfig(self, CropConfig, on_change=lambda old, new: self._reset())
        self.diag = diagnostics.Diagnostics(self)
        cam = self.conf.value.camera
        self._resizer = None
        self._passthrough = {}  # (width, height, encoding, step) -> frame is already the output
        self._pub = self.create_publisher(Image, topics.camera_cropped(cam), qos.SENSOR)
        self.create_subscription(Image, topics.camera_raw(cam), self._on_image, qos.SENSOR)
        self.frames = 0
        self._healthy = False
        self._mode = ""

    def _reset(self) -> None:
        self._resizer = None  # rebuilt for the new ROI on the next frame
        self._passthrough = {}

    def _is_output_already(self, msg: Image) -> bool:
        key = (msg.width, msg.height, msg.encoding, msg.step)
        if key not in self._passthrough:
            w, h = int(msg.width), int(msg.height)
            size = self.conf.value.output_size
            same = msg.encoding == "rgb8" and msg.step == 3 * w and w == h == size
            if same:
                try:
                    roi = resolve_roi(self.conf.value.roi, w, h)
                    same = (roi.x, roi.y, roi.width, roi.height) == (0, 0, w, h)
                except ValueError:
                    same = False  # the normal path reports the bad ROI
            self._passthrough[key] = same
        return self._passthrough[key] and len(msg.data) == msg.height * msg.step

    def _on_image(self, msg: Image) -> None:
        if self._is_output_already(msg):
            out = Image(header=msg.header, height=msg.height, width=msg.width, encoding="rgb8", step=msg.step, data=msg.data)
            self._publish(out, "passing frames through (already rgb8 at the output size)")
            return
        try:
            rgb = msgconv.image_to_rgb(msg)
            hw = rgb.shape[:2]
            if self._resizer is None or self._resizer.image_hw != hw:
                size = self.conf.value.output_size
                roi = resolve_roi(self.conf.value.roi, hw[1], hw[0])
                self._resizer = CropResizer(roi, hw, (size, size))
            out = Image(header=msg.header)
            msgconv.fill_image(out, self._resizer(rgb), "rgb8")
        except ValueError as exc:  # bad encoding or ROI: say why, publish nothing
            self._healthy = False
            self._resizer = None
            self.diag.report("crop", diagnostics.ERROR, str(exc))
            return
        self._publish(out, "cropping", roi=str(self._resizer.roi))

    def _publish(self, out: Image, what: str, **values) -> None:
        self._pub.publish(out)
        self.frames += 1
        if not self._healthy or what != self._mode:
            self._healthy, self._mode = True, what
            self.diag.report("crop", diagnostics.OK, what, **values)


# what `ros2 run` starts and what compose_nodes builds when this node shares a process
NODE_CLASS = CropNode


def main(args=None) -> int:
    return run_node(NODE_CLASS, args)


if __name__ == "__main__":
    raise SystemExit(main())
