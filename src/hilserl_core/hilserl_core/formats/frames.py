"""Labelled frames for the reward classifier: one safetensors file (no pickle).

Written by ``hilserl bag2frames``, read by ``hilserl train-reward``. Arrays (N frames):

- ``image/<arm>_<camera>``: uint8 ``[N, H, W, 3]`` RGB, one per camera (the cropped images,
  as the reward node sees them; keys as ``formats.types.camera_key``);
- ``label``: uint8 ``[N]``, 1 = success, 0 = not;
- ``episode``: int32 ``[N]``, episode id (unique within the file; ``metadata["episodes"]``
  says which bag and episode each is);
- ``held_out``: uint8 ``[N]``, 1 = a frame of a held-out episode (whole episodes are held out,
  ``vision.reward_classifier.split_by_episode``);
- ``time_s``: float64 ``[N]``, seconds since the start of its bag.

Metadata (JSON): ``kind`` (:data:`FRAMES_KIND`), ``setup``, ``cameras`` (``<arm>/<camera>``,
in array order), ``crops`` (per camera ``output_size`` and ``roi`` [x, y, width, height]),
``image_size`` [H, W], ``source_bags``, ``labels`` (``marks``: the operator's success marks;
``sim``: the simulator's ground truth), ``before_s`` / ``after_s`` (the window around a success
mark taken as success), ``val_fraction``, ``seed``, ``episodes`` (id, bag, index in the bag,
outcome).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Sequence, Union

import numpy as np

from . import tensorio
from .types import IMAGE_PREFIX, camera_key

__all__ = ["FRAMES_KIND", "FramesError", "LabelledFrames", "save_frames", "load_frames", "concat"]

FRAMES_KIND = "hilserl.labelled_frames"
FRAMES_VERSION = 1
_COLUMNS = {"label": np.uint8, "episode": np.int32, "held_out": np.uint8, "time_s": np.float64}


class FramesError(ValueError):
    """A labelled-frames file could not be made, written or read; one line naming the file."""


@dataclass
class LabelledFrames:
    cameras: List[str]  # "<arm>/<camera>"
    images: Dict[str, np.ndarray]  # by camera entry: uint8 [N, H, W, 3]
    label: np.ndarray
    episode: np.ndarray
    held_out: np.ndarray
    time_s: np.ndarray
    metadata: Dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(len(self.label))

    @property
    def setup(self) -> str:
        return str(self.metadata.get("setup", ""))

    def check(self, where: str) -> None:
        n = len(self.label)
        if set(self.images) != set(self.cameras):
            raise FramesError(f"{where}: images for {sorted(self.images)}, cameras {self.cameras}")
        for cam, arr in self.images.items():
            if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3 or len(arr) != n:
                raise FramesError(f"{where}: camera {cam}: images {arr.dtype} {tuple(arr.shape)}, need uint8 [{n}, H, W, 3]")
        for name in _COLUMNS:
            if len(getattr(self, name)) != n:
                raise FramesError(f"{where}: {name} has {len(getattr(self, name))} entries for {n} frames")

    def counts(self) -> Dict[str, int]:
        lab, ho = self.label.astype(bool), self.held_out.astype(bool)
        return {
            "frames": len(self),
            "success": int(lab.sum()),
            "failure": int((~lab).sum()),
            "held_out_success": int((lab & ho).sum()),
            "held_out_failure": int((~lab & ho).sum()),
            "episodes": int(len(np.unique(self.episode))),
            "held_out_episodes": int(len(np.unique(self.episode[ho]))),
        }


def save_frames(path: Union[str, os.PathLike], frames: LabelledFrames, overwrite: bool = False) -> Path:
    """Write atomically (a temporary file renamed); refuses an existing path unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FramesError(f"{path}: already exists; choose another output name (nothing was written)")
    frames.check(str(path))
    arrays: Dict[str, np.ndarray] = {IMAGE_PREFIX + camera_key(c): frames.images[c] for c in frames.cameras}
    for name, dtype in _COLUMNS.items():
        arrays[name] = np.asarray(getattr(frames, name), dtype=dtype)
    meta = dict(frames.metadata)
    meta.update({"kind": FRAMES_KIND, "version": FRAMES_VERSION, "cameras": list(frames.cameras), "counts": frames.counts()})
    try:
        return tensorio.save_file(path, arrays, meta)
    except (OSError, tensorio.TensorIOError) as exc:
        raise FramesError(f"{path}: cannot write ({exc})") from None


def load_frames(path: Union[str, os.PathLike]) -> LabelledFrames:
    path = Path(path)
    if not path.is_file():
        raise FramesError(f"{path}: no such file")
    try:
        arrays, meta = tensorio.load_file(path)
    except (OSError, tensorio.TensorIOError) as exc:
        raise FramesError(f"{path}: not a readable labelled-frames file ({' '.join(str(exc).split())})") from None
    if meta.get("kind") != FRAMES_KIND:
        raise FramesError(f"{path}: holds {meta.get('kind')!r}, not labelled frames (made by hilserl bag2frames)")
    if int(meta.get("version", 0)) > FRAMES_VERSION:
        raise FramesError(f"{path}: labelled-frames version {meta.get('version')} is newer than this hilserl reads ({FRAMES_VERSION})")
    cameras = [str(c) for c in meta.get("cameras", [])]
    try:
        images = {c: arrays[IMAGE_PREFIX + camera_key(c)] for c in cameras}
        cols = {name: arrays[name] for name in _COLUMNS}
    except KeyError as exc:
        raise FramesError(f"{path}: lacks the array {exc}") from None
    frames = LabelledFrames(cameras, images, metadata=meta, **cols)
    frames.check(str(path))
    return frames


def concat(parts: Sequence[LabelledFrames]) -> LabelledFrames:
    """Frames of several files (same cameras, in that order) with episode ids kept apart."""
    if not parts:
        raise FramesError("no labelled frames given")
    cams = parts[0].cameras
    images = {c: np.concatenate([p.images[c] for p in parts]) for c in cams}
    episodes, offset = [], 0
    for p in parts:
        episodes.append(p.episode.astype(np.int64) + offset)
        offset += int(p.episode.max()) + 1 if len(p) else 0
    return LabelledFrames(
        list(cams), images,
        label=np.concatenate([p.label for p in parts]),
        episode=np.concatenate(episodes),
        held_out=np.concatenate([p.held_out for p in parts]),
        time_s=np.concatenate([p.time_s for p in parts]),
        metadata=dict(parts[0].metadata),
    )
