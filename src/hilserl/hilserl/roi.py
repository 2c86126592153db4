"""``hilserl roi``: pick a camera's crop ROI by looking at it.

    hilserl roi frame.png camera:=left/wrist                  an image file (PNG, JPEG, ...)
    hilserl roi bags/raw_001 camera:=left/side                a bag holding the camera's image_raw
    hilserl roi /left/cameras/wrist/image_raw                 a live topic (one frame)
    hilserl roi frame.png camera:=left/wrist roi:=80,0,480,480   try numbers before writing them down

It takes one raw frame, resolves the ROI the crop node of that camera would use (from the
setup's graph and its parameter files: ``config/params/perception_real.yaml`` for the real
setups; ``roi:=x,y,width,height`` overrides it), and saves a PNG (``out:=``, default
``roi-<arm>-<camera>.png``): the frame with the ROI drawn (green; red when it does not fit the
frame) and, beside it, the ``output_size`` square the crop node would publish. Adjust the
numbers in the parameter file (or try them with ``roi:=``) and run it again.

Options: ``setup:=`` (graph, default real_single_arm), ``camera:=<arm>/<camera>`` (default the
setup's first; for a live topic named /<arm>/cameras/<camera>/image_raw, that camera),
``out:=``, ``roi:=``, ``topic:=`` (the bag's topic; default ``/<arm>/cameras/<camera>/image_raw``),
``index:=`` (which message of the bag, default 0), ``timeout_s:=`` (live topic, default 10).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

from .graph import GraphError, load_graph, parse_overrides

__all__ = ["RoiChoice", "configured_roi", "load_frame", "draw_roi", "roi_preview", "run_roi", "register"]

OPTIONS = ("setup", "camera", "out", "roi", "topic", "index", "timeout_s")
GREEN, RED = (0, 255, 0), (255, 0, 0)


class RoiChoice:
    """The ROI parameters of one camera and where they come from."""

    def __init__(self, camera: str, roi: Tuple[int, int, int, int], output_size: int, source: str):
        self.camera, self.roi, self.output_size, self.source = camera, tuple(int(v) for v in roi), int(output_size), source


def configured_roi(setup: str, camera: Optional[str] = None, override: Optional[str] = None) -> RoiChoice:
    """The ROI of ``camera`` (``arm/camera``) as the setup's crop node gets it, or ``override`` (``x,y,w,h``)."""
    from .recording import crops

    graph = load_graph(setup)
    found = crops(graph)
    if not found:
        raise GraphError(f"setup {setup} has no crop nodes")
    camera = camera or next(iter(found))  # the graph's first camera
    if camera not in found:
        raise GraphError(f"camera {camera!r} is not a camera of {setup}; its cameras: {', '.join(sorted(found))}")
    crop = found[camera]
    node = next(n for n in graph.nodes if n.package == "hilserl_perception" and
                n.namespace.strip("/") == camera.split("/")[0] and dict(n.parameters).get("camera") == camera.split("/")[1])
    files = ", ".join(_shown(f) for f in node.params_files) or "inline parameters"
    source = f"{node.fqn} roi.* in {files}"
    roi = crop["roi"]
    if override:
        try:
            roi = [int(v) for v in str(override).replace(" ", "").split(",")]
        except ValueError:
            roi = []
        if len(roi) != 4:
            raise GraphError(f"roi:={override}: give x,y,width,height (whole pixels), e.g. roi:=80,0,480,480")
        source = "roi:= on the command line"
    return RoiChoice(camera, tuple(roi), crop["output_size"], source)


def _shown(path: str) -> str:
    """A path relative to the working directory when it is under it, else as it is."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


_TOPIC = re.compile(r"^(/[A-Za-z_~][A-Za-z0-9_]*)+$")


def is_topic(source: str) -> bool:
    """A live topic name (and no such file): /left/cameras/wrist/image_raw."""
    return bool(_TOPIC.match(source)) and not Path(source).exists()


def _is_bag(path: Path) -> bool:
    return path.suffix == ".mcap" or (path.is_dir() and ((path / "metadata.yaml").is_file() or any(path.glob("*.mcap"))))


def _image_file(path: Path) -> np.ndarray:
    from PIL import Image  # Pillow, installed with matplotlib

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise GraphError(f"{path}: not an image file ({exc})") from None


def _bag_frame(path: Path, topic: str, index: int) -> np.ndarray:
    from hilserl_core.formats import msgconv
    from hilserl_core.formats.bags import BagReader

    from hilserl_core.formats.bags import BagError

    try:
        with BagReader(path) as bag:
            bag.require([topic], "the raw camera image: record it with `ros2 bag record " + topic + "`")
            for i, m in enumerate(bag.messages([topic])):
                if i == index:
                    return msgconv.image_to_rgb(m.msg)
            count = bag.counts.get(topic, 0)
    except (BagError, ValueError) as exc:  # ValueError: an image encoding the crop node does not take either
        raise GraphError(str(exc)) from None
    raise GraphError(f"{path}: {topic} has {count} message(s); index:={index} is past the end")


def _topic_frame(topic: str, timeout_s: float) -> np.ndarray:
    import rclpy
    from sensor_msgs.msg import Image

    from hilserl_core.formats import msgconv
    from hilserl_interfaces import qos

    rclpy.init()
    try:
        node = rclpy.create_node("hilserl_roi")
        got = []
        node.create_subscription(Image, topic, got.append, qos.SENSOR)
        import time

        end = time.monotonic() + timeout_s
        while not got and time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.1)
        node.destroy_node()
    finally:
        rclpy.shutdown()
    if not got:
        raise GraphError(f"no image on {topic} within {timeout_s:g} s (is the camera driver running? ros2 topic hz {topic})")
    return msgconv.image_to_rgb(got[0])


def load_frame(source: str, topic: str, index: int = 0, timeout_s: float = 10.0) -> Tuple[np.ndarray, str]:
    """One RGB frame (uint8 [H, W, 3]) from an image file, a bag, or a live topic; and what it was."""
    path = Path(source)
    if path.exists():
        if _is_bag(path):
            return _bag_frame(path, topic, index), f"{path} {topic} message {index}"
        return _image_file(path), str(path)
    if is_topic(source):
        return _topic_frame(source, timeout_s), f"topic {source}"
    raise GraphError(f"{source}: no such image file or bag (a live topic starts with /)")


def resolve(choice: RoiChoice, width: int, height: int):
    """The ``Roi`` the crop node would use on a ``width`` x ``height`` frame (ValueError when it does not fit)."""
    from hilserl_core.formats.config import ConfigError, from_mapping
    from hilserl_perception.crop_node import RoiConfig, resolve_roi

    x, y, w, h = choice.roi
    try:
        cfg = from_mapping(RoiConfig, {"x": x, "y": y, "width": w, "height": h})
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    return resolve_roi(cfg, width, height)


def _box(choice: RoiChoice, width: int, height: int) -> Tuple[int, int, int, int]:
    """The rectangle to draw, also for an ROI that does not fit (then what the numbers say)."""
    x, y, w, h = choice.roi
    if w == 0:
        side = min(width, height)
        return (width - side) // 2, (height - side) // 2, side, side
    return x, y, w, h or w


def draw_roi(frame: np.ndarray, box: Tuple[int, int, int, int], color=GREEN, thickness: int = 2) -> np.ndarray:
    """A copy of ``frame`` with the rectangle's outline (inside its edges, clipped to the frame)."""
    out = frame.copy()
    height, width = out.shape[:2]
    x, y, w, h = box
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
    if x0 >= x1 or y0 >= y1:
        return out
    t = max(1, thickness)
    c = np.asarray(color, dtype=np.uint8)
    if y >= 0:
        out[y0:min(y0 + t, y1), x0:x1] = c
    if y + h <= height:
        out[max(y1 - t, y0):y1, x0:x1] = c
    if x >= 0:
        out[y0:y1, x0:min(x0 + t, x1)] = c
    if x + w <= width:
        out[y0:y1, max(x1 - t, x0):x1] = c
    return out


def roi_preview(frame: np.ndarray, roi, output_size: int) -> np.ndarray:
    """What the crop node publishes for ``frame``: the ROI area-resized to output_size squared."""
    from hilserl_core.vision.imageproc import CropResizer

    return CropResizer(roi, frame.shape[:2], (output_size, output_size))(frame)


def compose(annotated: np.ndarray, preview: Optional[np.ndarray], gap: int = 8) -> np.ndarray:
    """The annotated frame with the crop preview to its right (top-aligned, dark background)."""
    if preview is None:
        return annotated
    h = max(annotated.shape[0], preview.shape[0])
    w = annotated.shape[1] + gap + preview.shape[1]
    canvas = np.full((h, w, 3), 32, dtype=np.uint8)
    canvas[:annotated.shape[0], :annotated.shape[1]] = annotated
    canvas[:preview.shape[0], annotated.shape[1] + gap:] = preview
    return canvas


def save_png(image: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, format="PNG")


def run_roi(source: str, options: Dict[str, str]) -> int:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise GraphError(f"hilserl roi: unknown option(s) {', '.join(unknown)}; options: {', '.join(f'{o}:=' for o in OPTIONS)}")
    setup = options.get("setup", "real_single_arm")
    live = is_topic(source)
    camera = options.get("camera")
    parts = source.strip("/").split("/")
    if live and not camera and len(parts) == 4 and parts[1] == "cameras":  # /<arm>/cameras/<camera>/image_raw
        camera = f"{parts[0]}/{parts[2]}"
    choice = configured_roi(setup, camera, options.get("roi"))
    arm, cam = choice.camera.split("/")
    topic = options.get("topic") or f"/{arm}/cameras/{cam}/image_raw"
    try:
        index = int(options.get("index", 0))
        timeout_s = float(options.get("timeout_s", 10.0))
    except ValueError:
        raise GraphError("index:= takes a whole number and timeout_s:= a number of seconds") from None
    try:
        frame, what = load_frame(source, topic, index, timeout_s)
    except ValueError as exc:  # an image encoding the crop node does not take either
        if isinstance(exc, GraphError):
            raise
        raise GraphError(f"{source}: {exc}") from None
    height, width = frame.shape[:2]
    out = Path(options.get("out") or f"roi-{arm}-{cam}.png")
    x, y, w, h = choice.roi
    print(f"{what}: {width}x{height} frame; {choice.camera}: roi x={x} y={y} width={w} height={h} "
          f"(output {choice.output_size}x{choice.output_size}) from {choice.source}")
    try:
        roi = resolve(choice, width, height)
    except ValueError as exc:
        save_png(draw_roi(frame, _box(choice, width, height), RED), out)
        print(f"hilserl roi: {exc}; saved {out} with it drawn in red", file=sys.stderr)
        return 2
    preview = roi_preview(frame, roi, choice.output_size)
    save_png(compose(draw_roi(frame, (roi.x, roi.y, roi.width, roi.height)), preview), out)
    print(f"saved {out}: the frame with the ROI drawn (x={roi.x} y={roi.y} width={roi.width} height={roi.height}) "
          f"and the {choice.output_size}x{choice.output_size} crop beside it")
    print(f"in the parameter file:\n/{arm}/crop_{cam}:\n  ros__parameters:\n"
          f"    roi: {{x: {roi.x}, y: {roi.y}, width: {roi.width}, height: {roi.height}}}")
    return 0


def _cmd_roi(args) -> int:
    options = parse_overrides(args.options)
    return run_roi(args.source, options)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("roi", help="save a camera frame with its configured crop ROI drawn (PNG), to pick the ROI: "
                                   "from an image file, a bag with the camera's image_raw, or a live topic")
    p.add_argument("source", help="image file, bag (directory or .mcap), or a live image topic (starts with /)")
    p.add_argument("options", nargs="*", metavar="name:=value",
                   help="setup:=real_single_arm, camera:=left/wrist, out:=roi.png, roi:=x,y,w,h, topic:=, index:=0, timeout_s:=10")
    p.set_defaults(func=_cmd_roi)
