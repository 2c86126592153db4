"""Camera image preprocessing of the paper: crop a region of interest, resize to 128x128.

Resizing is area averaging (each output pixel is the mean of the input area it
covers), done as two small matrix products with weights precomputed per ROI, so a
640x480 frame costs about a millisecond and needs no OpenCV.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np

__all__ = ["Roi", "area_weights", "CropResizer"]


@dataclass(frozen=True)
class Roi:
    """Region of interest in raw-image pixels: top-left corner and size."""

    x: int
    y: int
    width: int
    height: int

    def check_inside(self, image_width: int, image_height: int) -> None:
        if self.width <= 0 or self.height <= 0 or self.x < 0 or self.y < 0:
            raise ValueError(f"ROI {self} must have x, y >= 0 and a positive size")
        if self.x + self.width > image_width or self.y + self.height > image_height:
            raise ValueError(
                f"ROI x={self.x} y={self.y} width={self.width} height={self.height} does not fit in a "
                f"{image_width}x{image_height} image; adjust the roi.* parameters of the crop node"
            )


def area_weights(n_in: int, n_out: int) -> np.ndarray:
    """``[n_out, n_in]`` matrix: row i averages the input interval that output pixel i covers."""
    scale = n_in / n_out
    edges_out = np.arange(n_out + 1) * scale  # output pixel i spans [edges_out[i], edges_out[i+1])
    lo = edges_out[:-1, None]
    hi = edges_out[1:, None]
    j = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0.0, None)
    return (overlap / overlap.sum(axis=1, keepdims=True)).astype(np.float32)


class CropResizer:
    """Crop ``roi`` out of uint8 RGB frames of a fixed size and area-resize to ``out_hw``."""

    def __init__(self, roi: Roi, image_hw: Tuple[int, int], out_hw: Tuple[int, int] = (128, 128)):
        height, width = image_hw
        roi.check_inside(width, height)
        self.roi, self.image_hw, self.out_hw = roi, (height, width), tuple(out_hw)
        self._rows = area_weights(roi.height, out_hw[0])  # [oh, rh]
        self._cols = area_weights(roi.width, out_hw[1]).T.copy()  # [rw, ow]

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        if rgb.shape[:2] != self.image_hw:
            raise ValueError(f"frame is {rgb.shape[1]}x{rgb.shape[0]}, crop node configured for "
                             f"{self.image_hw[1]}x{self.image_hw[0]}; the camera resolution changed")
        r = self.roi
        crop = rgb[r.y : r.y + r.height, r.x : r.x + r.width].astype(np.float32)
        rh, rw, c = crop.shape
        # rows first: [oh, rh] @ [rh, rw*c]; then columns on the channel-last layout
        tmp = (self._rows @ crop.reshape(rh, rw * c)).reshape(-1, rw, c)
        out = np.einsum("hwc,wo->hoc", tmp, self._cols, optimize=True)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
