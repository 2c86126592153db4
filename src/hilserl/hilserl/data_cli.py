"""``hilserl record``, ``hilserl bag2frames`` and ``hilserl train-reward``: demonstrations and
reward-classifier data through rosbag2 (docs/DEMOS.md).

    hilserl record <setup> bag:=DIR [episodes:=N] [tail_s:=2.0] [graph arguments]
    hilserl bag2frames BAG... -o FRAMES [setup:=..] [labels:=marks|sim] [before:=0.0] [after:=1.0]
                                        [val_fraction:=0.2] [seed:=0]
    hilserl train-reward FRAMES... -o CLASSIFIER [extra:=FRAMES[,FRAMES]] [cameras:=left/wrist,..]
                                        [steps:=500] [seed:=0] [threshold:=auto|0.5]
                                        [encoder_weights:=FILE] [encoder_dtype:=auto]

Bad input (a truncated or corrupt bag, a missing topic, a bag of another setup, one class
only, an output that exists) is one line naming the file and the problem, exit status 2,
and nothing written. ``register(sub)`` adds the commands to ``hilserl``'s parser.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from hilserl_core.formats.bags import BagError
from hilserl_core.formats.config import ConfigError
from hilserl_core.formats.demos import DemoFileError
from hilserl_core.formats.frames import FramesError

from .graph import GraphError

__all__ = ["register", "DataError"]


class DataError(ValueError):
    """Bad command-line input; one line."""


_ERRORS = (BagError, FramesError, GraphError, DataError, ConfigError, DemoFileError)


def _say(text: str) -> None:
    print(text, flush=True)


def _options(items: Sequence[str], allowed: Sequence[str], command: str) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for item in items:
        if ":=" not in item:
            raise DataError(f"{command}: '{item}' is not name:=value (options: {', '.join(allowed)})")
        k, v = item.split(":=", 1)
        if k not in allowed:
            raise DataError(f"{command}: unknown option {k}:= (options: {', '.join(allowed)})")
        out[k] = v
    return out


def _number(opts: Mapping[str, str], name: str, default, kind=float):
    if name not in opts:
        return default
    try:
        return kind(opts[name])
    except ValueError:
        raise DataError(f"{name}:={opts[name]} is not a {'whole number' if kind is int else 'number'}") from None


def _split_paths_and_options(items: Sequence[str]):
    paths = [i for i in items if ":=" not in i]
    return paths, [i for i in items if ":=" in i]


def _inputs_and_output(inputs: Sequence[str], output: Sequence[str], allowed: Sequence[str], command: str, what: str):
    """(input paths, options, output path) of ``hilserl <command> INPUT... -o OUT [name:=value]``:
    at least one input, and an output that does not exist yet."""
    paths, rest = _split_paths_and_options(list(inputs) + list(output[1:]))
    opts = _options(rest, allowed, command)
    if not paths:
        raise DataError(f"{command}: give at least one {what}")
    out = Path(output[0])
    if out.exists():
        raise DataError(f"{out}: already exists; choose another output name (nothing was written)")
    return paths, opts, out


# ------------------------------------------------------------------------------- record
def _cmd_record(args) -> int:
    from . import graph as graphmod
    from .recorder import run_record

    return run_record(args.setup, graphmod.parse_overrides(args.overrides), say=_say)


# ------------------------------------------------------------------------------- bag2frames
_B2F_OPTIONS = ("setup", "labels", "before", "after", "val_fraction", "seed")


def _setup_of(bag_paths: Sequence[str], given: Optional[str]) -> str:
    from hilserl_core.formats.bags import BagReader

    if given:
        return given
    for path in bag_paths:
        with BagReader(path) as reader:
            if reader.setup:
                return reader.setup
    raise DataError(f"{bag_paths[0]}: the bag does not name its setup (not recorded by hilserl record or "
                    "record_demos.launch.py); give setup:=NAME")


def _cmd_bag2frames(args) -> int:
    from hilserl_core.formats.frames import save_frames
    from hilserl_core.vision.label_bags import LabelOptions, frames_from_bags

    from .graph import load_graph
    from .recording import crops

    paths, opts, out = _inputs_and_output(args.bags, args.output, _B2F_OPTIONS, "bag2frames", "bag")
    setup = _setup_of(paths, opts.get("setup"))
    graph = load_graph(setup)
    cameras = [f"{a}/{c}" for a in graph.arms for c in graph.cameras]
    label_opts = LabelOptions(
        labels=opts.get("labels", "marks"),
        before_s=_number(opts, "before", 0.0),
        after_s=_number(opts, "after", 1.0),
        val_fraction=_number(opts, "val_fraction", 0.2),
        seed=_number(opts, "seed", 0, int),
    )
    frames = frames_from_bags(paths, setup, graph.arms, cameras, label_opts, say=_say,
                              extra_metadata={"crops": {c: v for c, v in crops(graph).items() if c in cameras}})
    c = frames.counts()
    path = save_frames(out, frames)
    _say(f"wrote {path}: {c['frames']} frames ({c['success']} success, {c['failure']} not) from {c['episodes']} episodes; "
         f"held out: {c['held_out_episodes']} whole episodes, {c['held_out_success']} success + {c['held_out_failure']} not")
    return 0


# ------------------------------------------------------------------------------- train-reward
_TR_OPTIONS = ("extra", "cameras", "steps", "seed", "threshold", "encoder_weights", "encoder_dtype", "views", "batch")


def reward_cameras(setup: str) -> List[str]:
    """The cameras the setup's reward node classifies (its ``cameras`` parameter in the graph)."""
    from .graph import load_graph

    g = load_graph(setup)
    overrides = {k: v for k, v in (("reward", "classifier"), ("learning", "true")) if k in dict(g.arguments)}
    for n in load_graph(setup, overrides).nodes:
        if n.package == "hilserl_reward":
            cams = dict(n.parameters).get("cameras")
            if cams:
                return [str(c) for c in cams]
    return [f"{a}/{c}" for a in g.arms for c in g.cameras]


class _Bar:
    """A one-line progress bar on stderr (a plain line every 10% when stderr is no terminal)."""

    def __init__(self, width: int = 30):
        self.width = width
        self.tty = sys.stderr.isatty()
        self._last = -1
        self.t0 = time.monotonic()

    def __call__(self, step: int, steps: int, loss: float) -> None:
        frac = step / max(steps, 1)
        if self.tty:
            fill = int(frac * self.width)
            sys.stderr.write(f"\rtraining [{'#' * fill}{'.' * (self.width - fill)}] {step}/{steps} loss {loss:.4f} "
                             f"{time.monotonic() - self.t0:.0f} s")
            if step == steps:
                sys.stderr.write("\n")
            sys.stderr.flush()
        elif int(frac * 10) != self._last:
            self._last = int(frac * 10)
            sys.stderr.write(f"training {int(frac * 100):3d}% ({step}/{steps}) loss {loss:.4f}\n")
            sys.stderr.flush()


def suggest_threshold(probs: np.ndarray, labels: np.ndarray) -> float:
    """The middle of the widest run of thresholds with the best held-out accuracy (a run's
    middle keeps the most margin to both classes); 0.5 without held-out frames."""
    if probs.size == 0 or labels.min() == labels.max():
        return 0.5
    grid = np.round(np.arange(0.05, 0.951, 0.01), 2)
    acc = np.array([np.mean((probs > t) == labels.astype(bool)) for t in grid])
    best = np.flatnonzero(acc >= acc.max() - 1e-12)
    runs, start = [], best[0]
    for a, b in zip(best[:-1], best[1:]):
        if b != a + 1:
            runs.append((start, a))
            start = b
    runs.append((start, best[-1]))
    lo, hi = max(runs, key=lambda r: r[1] - r[0])
    return float(grid[(lo + hi) // 2])


def _check_same(files: Sequence[str], frames, cameras: Sequence[str]) -> None:
    ref = frames[0]
    for path, f in zip(files, frames):
        missing = [c for c in cameras if c not in f.cameras]
        if missing:
            raise DataError(f"{path}: has no frames of camera(s) {', '.join(missing)} (it has {', '.join(f.cameras)})")
        if f.setup != ref.setup:
            raise DataError(f"{path}: frames of setup {f.setup}, but {files[0]} is of {ref.setup}")
        for c in cameras:
            if f.images[c].shape[1:] != ref.images[c].shape[1:]:
                raise DataError(f"{path}: camera {c} images {f.images[c].shape[1:3]}, {files[0]} has {ref.images[c].shape[1:3]}")
            a, b = (f.metadata.get("crops") or {}).get(c), (ref.metadata.get("crops") or {}).get(c)
            if a != b:
                raise DataError(f"{path}: camera {c} was cropped as {a}, {files[0]} as {b}")


def _cmd_train_reward(args) -> int:
    import torch

    from hilserl_core.formats.frames import concat, load_frames
    from hilserl_core.formats.types import camera_key
    from hilserl_core.vision.encoders import load_frozen_encoder
    from hilserl_core.vision.reward_classifier import classification_metrics, train_classifier

    paths, opts, out = _inputs_and_output(args.frames, args.output, _TR_OPTIONS, "train-reward",
                                          "labelled-frames file (made by hilserl bag2frames)")
    if not out.parent.is_dir():
        raise DataError(f"{out}: the directory {out.parent} does not exist")
    extra_paths = [p for p in opts.get("extra", "").split(",") if p]
    main = [load_frames(p) for p in paths]
    extra = [load_frames(p) for p in extra_paths]
    setup = main[0].setup
    cameras = [c for c in opts.get("cameras", "").split(",") if c] or [c for c in reward_cameras(setup) if c in main[0].cameras]
    if not cameras:
        raise DataError(f"{paths[0]}: none of the cameras of {setup}'s reward node are in it; give cameras:=")
    _check_same(paths + extra_paths, main + extra, cameras)
    steps = _number(opts, "steps", 500, int)
    seed = _number(opts, "seed", 0, int)
    views = _number(opts, "views", 4, int)
    batch = _number(opts, "batch", 64, int)
    fixed_threshold = None if opts.get("threshold", "auto") == "auto" else _number(opts, "threshold", 0.5)
    if fixed_threshold is not None and not 0.0 < fixed_threshold < 1.0:
        raise DataError(f"threshold:={fixed_threshold}: a probability in (0, 1), or auto")
    if steps < 1:
        raise DataError("steps:= must be at least 1")

    data = concat(main)
    if extra:
        more = concat(extra)
        more.held_out[:] = 0  # frames collected later (false positives / negatives) only train
        data = concat([data, more])
    lab = data.label.astype(bool)
    for cls, name in ((lab, "success"), (~lab, "failure")):
        if not (cls & (data.held_out == 0)).any():
            raise DataError(f"{', '.join(paths + extra_paths)}: no {name} frames to train on (the classifier needs both classes)")
    if not data.held_out.any():
        _say("note: no held-out frames (bag2frames val_fraction:=0): the metrics below are on the training frames")

    keys = {c: "image/" + camera_key(c) for c in cameras}
    pos = {keys[c]: data.images[c][lab] for c in cameras}
    neg = {keys[c]: data.images[c][~lab] for c in cameras}
    weights = opts.get("encoder_weights", "")
    encoder = load_frozen_encoder(weights, opts.get("encoder_dtype", "auto"))
    if not weights:
        _say("note: random encoder weights (encoder_weights:= not given); the reward node must run with the same")
    counts = f"{int(lab.sum())} success and {int((~lab).sum())} failure frames"
    _say(f"train-reward: {counts} from {len(paths)} file(s) + {len(extra_paths)} extra, cameras {', '.join(cameras)}; "
         f"encoding {views} views per training frame")
    torch.manual_seed(seed)
    result = train_classifier(
        pos, neg, cameras=[camera_key(c) for c in cameras], encoder=encoder,
        groups=(data.episode[lab], data.episode[~lab]), held_out=(data.held_out[lab] == 1, data.held_out[~lab] == 1),
        steps=steps, batch_size=batch, augment_views=views, seed=seed, log=None, progress=_Bar(),
    )
    probs, labels = result.val_probabilities, result.val_labels
    if probs is None or probs.size == 0:
        probs, labels = _train_probabilities(result.classifier, pos, neg)
    suggested = suggest_threshold(probs, labels)
    threshold = fixed_threshold if fixed_threshold is not None else suggested
    m = classification_metrics(probs, labels, threshold)
    m05 = classification_metrics(probs, labels, 0.5)
    which = "held-out" if data.held_out.any() else "training"
    _say(f"{which}: {len(labels)} frames ({int(labels.sum())} success) from "
         f"{result.metrics.get('n_val_episodes') or 0} episode(s)")
    _say(f"{which} at threshold {threshold:.2f}: accuracy {m['accuracy']:.3f}  precision {m['precision']:.3f}  recall {m['recall']:.3f}")
    _say("confusion matrix (rows: true, columns: predicted)")
    _say("               success  failure")
    _say(f"  success    {m['true_positives']:8d} {m['false_negatives']:8d}")
    _say(f"  failure    {m['false_positives']:8d} {m['true_negatives']:8d}")
    _say(f"{which} at threshold 0.50: accuracy {m05['accuracy']:.3f}  precision {m05['precision']:.3f}  recall {m05['recall']:.3f}")
    _say(f"suggested threshold: {suggested:.2f} (chosen on the same held-out frames, so its figures are optimistic)"
         + ("" if fixed_threshold is None else f"; saved: {threshold:.2f} (threshold:=)"))
    clf = result.classifier
    clf.threshold = float(threshold)
    crops_meta = {c: (main[0].metadata.get("crops") or {}).get(c) for c in cameras}
    extra_meta = {
        "setup": setup,
        "cameras": cameras,
        "crops": crops_meta,
        "image_size": list(data.images[cameras[0]].shape[1:3]),
        "frames": [str(p) for p in paths],
        "extra_frames": [str(p) for p in extra_paths],
        "labels": main[0].metadata.get("labels"),
        "suggested_threshold": suggested,
        "held_out": {k: m[k] for k in ("accuracy", "precision", "recall", "true_positives", "false_positives",
                                        "false_negatives", "true_negatives")},
        "held_out_at_0.5": {k: m05[k] for k in ("accuracy", "precision", "recall")},
        "steps": steps,
        "seed": seed,
    }
    try:
        saved = clf.save(out, extra_metadata=extra_meta)
    except Exception as exc:
        raise DataError(f"{out}: cannot write ({exc})") from None
    _say(f"wrote {saved} (threshold {threshold:.2f}; metadata: {json.dumps({k: extra_meta[k] for k in ('setup', 'cameras', 'image_size')})})")
    return 0


def _train_probabilities(model, pos, neg):
    import torch

    obs = {k: torch.from_numpy(np.concatenate([pos[k], neg[k]])) for k in pos}
    n_pos = len(next(iter(pos.values())))
    n = len(next(iter(obs.values())))
    return model.predict_proba(obs).numpy(), np.r_[np.ones(n_pos), np.zeros(n - n_pos)]


# ------------------------------------------------------------------------------- registration
def _guarded(func):
    def run(args) -> int:
        try:
            return func(args)
        except _ERRORS as exc:
            print(f"hilserl {args.command}: {' '.join(str(exc).split())}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"hilserl {args.command}: interrupted; nothing written", file=sys.stderr)
            return 130

    return run


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``record``, ``bag2frames`` and ``train-reward`` to the ``hilserl`` command."""
    p = sub.add_parser("record", help="record a setup's topics into a rosbag2 MCAP bag (no actor, no learner)",
                       description="Bring up SETUP without actor and learner and record every topic training needs "
                                   "into bag:=DIR, until episodes:=N episodes are marked or Ctrl-C.")
    p.add_argument("setup", help="graph name (see `hilserl graphs`)")
    p.add_argument("overrides", nargs="*", metavar="name:=value", help="bag:=DIR, episodes:=N, tail_s:=S and graph arguments")
    p.set_defaults(func=_guarded(_cmd_record))

    p = sub.add_parser("bag2frames", help="labelled frames for the reward classifier from bags",
                       description="Extract labelled camera frames from recorded bags into a safetensors file.")
    p.add_argument("bags", nargs="*", metavar="BAG|name:=value",
                   help="bags, and options: " + ", ".join(f"{o}:=" for o in _B2F_OPTIONS))
    p.add_argument("-o", "--output", required=True, nargs="+", metavar="FRAMES",
                   help="labelled-frames file to write (must not exist); bags and options may follow it")
    p.set_defaults(func=_guarded(_cmd_bag2frames))

    p = sub.add_parser("train-reward", help="train the reward classifier on labelled frames",
                       description="Train the success classifier the reward node loads.")
    p.add_argument("frames", nargs="*", metavar="FRAMES|name:=value",
                   help="labelled-frames files, and options: " + ", ".join(f"{o}:=" for o in _TR_OPTIONS))
    p.add_argument("-o", "--output", required=True, nargs="+", metavar="CLASSIFIER",
                   help="classifier file to write (must not exist); frames files and options may follow it")
    p.set_defaults(func=_guarded(_cmd_train_reward))
