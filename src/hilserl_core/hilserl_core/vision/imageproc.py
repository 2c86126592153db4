"""Camera image preprocessing of the paper: crop a region of interest, resize to 128x128.

Resizing is area averaging (each output pixel is the mean of the input area it
covers), done as two gathered weighted sums with taps precomputed per ROI, so a
640x480 frame costs about half a millisecond and needs no OpenCV.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np

__all__ = ["Roi", "area_weights", "area_taps", "CropResizer"]


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


def area_taps(n_in: int, n_out: int) -> Tuple[np.ndarray, np.ndarray]:
    """:func:`area_weights` as taps: ``index [n_out, T]`` and ``weight [n_out, T]`` (T = most inputs
    any output pixel covers; unused taps repeat a covered index with weight 0)."""
    dense = area_weights(n_in, n_out)
    taps = int((dense > 0).sum(axis=1).max())
    index = np.zeros((n_out, taps), np.intp)
    weight = np.zeros((n_out, taps), np.float32)
    for i, row in enumerate(dense):
        nz = np.flatnonzero(row)
        index[i, : len(nz)], index[i, len(nz) :] = nz, nz[-1]
        weight[i, : len(nz)] = row[nz]
    return index, weight


class CropResizer:
    """Crop ``roi`` out of uint8 RGB frames of a fixed size and area-resize to ``out_hw``.

    Each output pixel averages the few input pixels it covers (at most ``ceil(scale) + 1``
    per axis), so the resize gathers those rows and columns and sums them with precomputed
    weights: 0.6 ms for a 480x480 ROI -> 128x128 here, against 2.3 ms for the same
    weights as dense ``[128, 480]`` matrix products (identical output).
    """

    def __init__(self, roi: Roi, image_hw: Tuple[int, int], out_hw: Tuple[int, int] = (128, 128)):
        height, width = image_hw
        roi.check_inside(width, height)
        self.roi, self.image_hw, self.out_hw = roi, (height, width), tuple(out_hw)
        self._row_index, self._row_weight = area_taps(roi.height, out_hw[0])  # [oh, T]
        self._col_index, self._col_weight = area_taps(roi.width, out_hw[1])  # [ow, T]

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        if rgb.shape[:2] != self.image_hw:
            raise ValueError(f"frame is {rgb.shape[1]}x{rgb.shape[0]}, crop node configured for "
                             f"{self.image_hw[1]}x{self.image_hw[0]}; the camera resolution changed")
        r = self.roi
        crop = rgb[r.y : r.y + r.height, r.x : r.x + r.width]
        # rows: gather the taps of every output row [oh, T, rw, c] (uint8), weighted sum in float32
        rows = np.einsum("otwc,ot->owc", crop[self._row_index], self._row_weight, dtype=np.float32,
                         casting="unsafe", optimize=False)
        # columns: the same on the row-resized image [oh, ow, T, c]
        out = np.einsum("hotc,ot->hoc", rows[:, self._col_index], self._col_weight, optimize=False)
        np.rint(out, out=out)
        return np.clip(out, 0, 255, out=out).astype(np.uint8)
