"""Bags -> labelled frames for the reward classifier (``hilserl bag2frames``; no ROS).

A *frame* is one image per camera, assembled as the reward node assembles its input: each
message of the first camera triggers, and the newest image of every other camera joins it
if its header stamp is at most ``max_age_s`` older (``robot.actor.LatestInputs``, the rule
the reward node applies); a frame with a missing or stale camera is skipped. Its time is its
log time in the bag, the clock the episode marks are on.

Episodes come from the operator's marks (``robot.episode_marks.segment``). Labels:

- ``labels="marks"`` (a robot): in an episode with a success mark at ``t``, frames in
  ``[t - before_s, t + after_s]`` are successes and frames before ``t - before_s`` failures;
  frames after the window are left out (the operator may be resetting the scene). In an
  episode marked failure, frames up to the mark are failures. Unmarked episodes are left out.
- ``labels="sim"``: each frame takes the simulator's ground truth ``/sim/success`` nearest in
  log time (within ``sim_tolerance_s``); every episode counts.

Then whole episodes are held out (``reward_classifier.split_by_episode``, about
``val_fraction`` of each class) so held-out frames never come from a training episode.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..formats import bags, msgconv
from ..formats.frames import FramesError, LabelledFrames
from ..robot import episode_marks as em
from ..robot.actor import LatestInputs
from .reward_classifier import split_by_episode

__all__ = ["LabelOptions", "frames_from_bags", "LABEL_SOURCES"]

LABEL_SOURCES = ("marks", "sim")


@dataclass(frozen=True)
class LabelOptions:
    labels: str = "marks"
    before_s: float = 0.0
    after_s: float = 1.0
    val_fraction: float = 0.2
    seed: int = 0
    max_age_s: float = 0.2  # the reward node's max_input_age_s
    sim_tolerance_s: float = 0.05

    def check(self) -> None:
        if self.labels not in LABEL_SOURCES:
            raise FramesError(f"labels:={self.labels}: choose one of {', '.join(LABEL_SOURCES)}")
        if self.before_s < 0 or self.after_s < 0:
            raise FramesError(f"before:= and after:= are seconds >= 0 (got {self.before_s}, {self.after_s})")
        if not 0.0 <= self.val_fraction < 1.0:
            raise FramesError(f"val_fraction:={self.val_fraction}: must be in [0, 1)")


@dataclass
class _BagFrames:
    images: Dict[str, List[np.ndarray]]
    times: List[float]  # log time, s since the bag's start
    labels: List[int]
    episodes: List[int]  # index within the bag
    outcomes: List[str]  # per episode of the bag


def _frames_of_bag(reader: bags.BagReader, cameras: Sequence[str], opts: LabelOptions) -> _BagFrames:
    topics = {bags.cropped_image_topic(*c.split("/")): c for c in cameras}
    first = bags.cropped_image_topic(*cameras[0].split("/"))
    if opts.labels == "marks":
        reader.require([em.SUCCESS_TOPIC], "success marks label the frames (labels:=marks)")
        if not reader.counts.get(em.SUCCESS_TOPIC, 0):
            raise FramesError(f"{reader.path}: no success marks on {em.SUCCESS_TOPIC}, so no success frames "
                              "(mark successes while recording, or use labels:=sim in simulation)")
    else:
        reader.require([bags.SIM_SUCCESS_TOPIC], "the simulator's ground truth labels the frames (labels:=sim)")
    wanted = list(topics) + [t for t in (*em.MARK_TOPICS, bags.SIM_SUCCESS_TOPIC) if t in reader.topics]
    t0 = reader.start_ns
    latest = LatestInputs()
    marks: List[Tuple[float, str]] = []
    truth_t: List[float] = []
    truth_v: List[bool] = []
    images: Dict[str, List[np.ndarray]] = {c: [] for c in cameras}
    times: List[float] = []
    shapes: Dict[str, tuple] = {}
    for m in reader.messages(wanted):
        t = (m.log_time_ns - t0) * 1e-9
        if m.topic in em.MARK_TOPICS:
            marks.append((t, em.MARK_TOPICS[m.topic]))
        elif m.topic == bags.SIM_SUCCESS_TOPIC:
            truth_t.append(t)
            truth_v.append(bool(m.msg.data))
        else:
            cam = topics[m.topic]
            try:
                rgb = msgconv.image_to_rgb(m.msg)
            except ValueError as exc:
                raise FramesError(f"{reader.path}: {m.topic} at {t:.2f} s: {exc}") from None
            if shapes.setdefault(cam, rgb.shape) != rgb.shape:
                raise FramesError(f"{reader.path}: {m.topic} changes image size from {shapes[cam]} to {rgb.shape} at {t:.2f} s")
            stamp = msgconv.stamp_to_seconds(m.msg.header.stamp)
            latest.put(cam, rgb, stamp)
            if m.topic == first:
                snap, _ = latest.snapshot(stamp, list(cameras), opts.max_age_s)
                if snap is not None:
                    for c in cameras:
                        images[c].append(snap[c])
                    times.append(t)
    end = (reader.end_ns - t0) * 1e-9
    episodes = em.segment(marks, 0.0, end)
    ep_of = np.searchsorted([e.start_s for e in episodes], np.asarray(times), side="right") - 1
    keep_images: Dict[str, List[np.ndarray]] = {c: [] for c in cameras}
    out_t, out_l, out_e = [], [], []
    for i, t in enumerate(times):
        ep = episodes[int(ep_of[i])]
        label = _label(t, ep, opts, truth_t, truth_v)
        if label is None:
            continue
        for c in cameras:
            keep_images[c].append(images[c][i])
        out_t.append(t)
        out_l.append(label)
        out_e.append(ep.index)
    return _BagFrames(keep_images, out_t, out_l, out_e, [e.outcome for e in episodes])


def _label(t: float, ep: em.Episode, opts: LabelOptions, truth_t: List[float], truth_v: List[bool]) -> Optional[int]:
    if opts.labels == "sim":
        if not truth_t:
            return None
        j = bisect.bisect_left(truth_t, t)
        best = min((k for k in (j - 1, j) if 0 <= k < len(truth_t)), key=lambda k: abs(truth_t[k] - t))
        return int(truth_v[best]) if abs(truth_t[best] - t) <= opts.sim_tolerance_s else None
    if ep.outcome == em.SUCCESS:
        tm = float(ep.outcome_s)
        if tm - opts.before_s <= t <= tm + opts.after_s:
            return 1
        return 0 if t < tm - opts.before_s else None
    if ep.outcome == em.FAILURE:
        return 0 if t <= float(ep.outcome_s) else None
    return None


def frames_from_bags(
    paths: Sequence[str],
    setup: str,
    arms: Sequence[str],
    cameras: Sequence[str],
    opts: LabelOptions,
    extra_metadata: Optional[Mapping[str, object]] = None,
    say: Callable[[str], None] = print,
) -> LabelledFrames:
    """Labelled frames of every bag (each must be a recording of ``setup``: its ``cameras``)."""
    opts.check()
    if not paths:
        raise FramesError("no bags given")
    cameras = list(cameras)
    parts: List[_BagFrames] = []
    episode_meta: List[Dict[str, object]] = []
    for path in paths:
        with bags.BagReader(path) as reader:
            setup_cams = sorted({c.split("/")[1] for c in cameras})
            reader.check_setup(setup, arms, setup_cams)
            part = _frames_of_bag(reader, cameras, opts)
        parts.append(part)
        n_pos = sum(part.labels)
        say(f"{path}: {len(part.outcomes)} episode(s) ({part.outcomes.count(em.SUCCESS)} success, "
            f"{part.outcomes.count(em.FAILURE)} failure, {part.outcomes.count(em.UNMARKED)} unmarked), "
            f"{len(part.labels)} frames ({n_pos} success, {len(part.labels) - n_pos} not)")
    images = {c: [img for p in parts for img in p.images[c]] for c in cameras}
    labels, episode, times = [], [], []
    offset = 0
    for b, (path, p) in enumerate(zip(paths, parts)):
        for i, outcome in enumerate(p.outcomes):
            episode_meta.append({"id": offset + i, "bag": str(path), "index": i, "outcome": outcome})
        labels += p.labels
        episode += [offset + e for e in p.episodes]
        times += p.times
        offset += len(p.outcomes)
    label = np.asarray(labels, dtype=np.uint8)
    if label.size == 0:
        raise FramesError(f"{', '.join(map(str, paths))}: no labelled frames (no episode with a success or failure mark"
                          f"{' and no /sim/success' if opts.labels == 'sim' else ''})")
    n_pos = int(label.sum())
    if n_pos == 0 or n_pos == label.size:
        only = "success" if n_pos else "failure"
        raise FramesError(f"{', '.join(map(str, paths))}: only {only} frames ({label.size}); the classifier needs both "
                          "classes (record failed attempts and successes)")
    episode_arr = np.asarray(episode, dtype=np.int32)
    held_out = np.zeros(label.size, dtype=np.uint8)
    if opts.val_fraction > 0:
        pos_idx, neg_idx = np.flatnonzero(label == 1), np.flatnonzero(label == 0)
        try:
            _, pv, _, nv = split_by_episode(episode_arr[pos_idx], episode_arr[neg_idx], opts.val_fraction,
                                            np.random.default_rng(opts.seed))
        except ValueError as exc:
            raise FramesError(f"{', '.join(map(str, paths))}: {exc}") from None
        held_out[pos_idx[pv]] = 1
        held_out[neg_idx[nv]] = 1
    shapes = {c: tuple(images[c][0].shape) for c in cameras}
    meta: Dict[str, object] = {
        "setup": setup,
        "image_size": list(shapes[cameras[0]][:2]),
        "source_bags": [str(p) for p in paths],
        "labels": opts.labels,
        "before_s": opts.before_s,
        "after_s": opts.after_s,
        "val_fraction": opts.val_fraction,
        "seed": opts.seed,
        "max_age_s": opts.max_age_s,
        "episodes": episode_meta,
    }
    meta.update(dict(extra_metadata or {}))
    return LabelledFrames(
        cameras,
        {c: np.stack(images[c]) for c in cameras},
        label=label,
        episode=episode_arr,
        held_out=held_out,
        time_s=np.asarray(times, dtype=np.float64),
        metadata=meta,
    )
