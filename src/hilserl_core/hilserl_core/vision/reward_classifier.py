"""Binary success classifier that gives HIL-SERL its sparse reward (paper Sec. 3, "Reward").

Model: the frozen, shared ResNet-10 (``encoders.ResNet10Encoder``) or cached
``feature/<cam>`` maps -> per camera a learned spatial embedding (each channel's
``h x w`` map is reduced with ``num_spatial_features`` learned spatial kernels,
which keeps *where* things are, unlike average pooling) -> Linear bottleneck +
LayerNorm + tanh -> cameras concatenated -> MLP -> one logit. Only the head
trains; the encoder is never in the saved file (load it from its own weights). The
file records the encoder's identity (``ResNet10Encoder.identity``: weights digest and
precision) when the classifier had one; loading it beside an encoder with other
weights raises ``EncoderMismatch``, another precision leaves a note in ``load_warning``.

Training (:func:`train_classifier`): positives/negatives are observation
batches (``image/<cam>`` uint8 ``[N, H, W, 3]`` or ``feature/<cam>``) in
recording order, split into train and held-out validation sets without letting
an episode straddle the two: with ``groups`` (episode id per frame) whole
episodes are held out, about ``val_fraction`` of each class, both classes on
each side; without, the last ``val_fraction`` of each class's frames are. A
random per-frame split would put near-identical consecutive frames of one
episode on both sides and report memorisation as accuracy. Every step draws a
class-balanced batch (half positives, half negatives: teleop data is ~1:5).
Augmentation is DrQ random shift. Because the encoder is frozen, the features
of a shifted image never change, so each training image is encoded once per
*view* (view 0 unshifted, views 1.. randomly shifted by up to ``augment_pad``
pixels) and the head trains on these cached features: on a CPU that makes
training seconds instead of hours, at the price of a finite number of shifts
per image (``augment_views``). Cached-feature inputs cannot be shifted; they
get one view (cameras may mix both kinds: views are drawn per camera).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..accel.paths import spatial_fast_path
from ..formats import tensorio
from ..formats.types import FEATURE_PREFIX, FEATURE_SHAPE_128, IMAGE_PREFIX
from ..rl.networks import ImageHead
from .augment import random_shift
from .encoders import ResNet10Encoder, compare_encoder_identity, encode_features

CLASSIFIER_KIND = "hilserl.reward_classifier"
ObsBatch = Mapping[str, Union[np.ndarray, torch.Tensor]]


class RewardClassifier(nn.Module):
    """Frozen encoder (optional) + trainable head -> success logit per observation."""

    def __init__(
        self,
        cameras: Sequence[str],
        feature_shape: Sequence[int] = FEATURE_SHAPE_128,
        encoder: Optional[ResNet10Encoder] = None,
        num_spatial_features: int = 8,
        bottleneck_dim: int = 256,
        hidden_dim: int = 256,
        dropout: float = 0.1,
        threshold: float = 0.5,
    ):
        super().__init__()
        if not cameras:
            raise ValueError("a reward classifier needs at least one camera")
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold is a probability in (0, 1), got {threshold}")
        self.cameras = list(cameras)
        self.feature_shape = tuple(int(s) for s in feature_shape)
        self.config = {
            "num_spatial_features": int(num_spatial_features),
            "bottleneck_dim": int(bottleneck_dim),
            "hidden_dim": int(hidden_dim),
            "dropout": float(dropout),
        }
        self.threshold = float(threshold)
        self.encoder = encoder
        self.load_warning = ""  # set by load(): a note on the encoder the file was trained with
        self.recorded_encoder: Optional[Dict[str, str]] = None  # set by load(): the identity the file records
        self.extra_metadata: Dict[str, Any] = {}  # set by load(): the file's extra metadata
        self.heads = nn.ModuleDict(
            {cam: ImageHead(self.feature_shape, num_spatial_features, bottleneck_dim, dropout,
                            spatial_fast_path=spatial_fast_path()) for cam in self.cameras}
        )
        self.mlp = nn.Sequential(
            nn.Linear(bottleneck_dim * len(self.cameras), hidden_dim),
            nn.LayerNorm(hidden_dim),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, 1),
        )

    # ------------------------------------------------------------- inference
    def camera_features(self, obs: ObsBatch, cam: str) -> torch.Tensor:
        device = self.mlp[0].weight.device
        fkey, ikey = FEATURE_PREFIX + cam, IMAGE_PREFIX + cam
        if fkey in obs:
            feats = torch.as_tensor(obs[fkey]).to(device=device, dtype=torch.float32)
        elif ikey in obs:
            if self.encoder is None:
                raise ValueError(
                    f"observation has {ikey!r} but the classifier has no encoder; pass encoder= "
                    f"(encoders.ResNet10Encoder with pretrained weights) or give {fkey!r}"
                )
            feats = self.encoder(torch.as_tensor(obs[ikey]).to(device)).float()
        else:
            raise KeyError(f"observation lacks {ikey!r} and {fkey!r}; the classifier uses cameras {self.cameras}")
        if tuple(feats.shape[1:]) != self.feature_shape:
            raise ValueError(
                f"camera {cam!r}: features {tuple(feats.shape[1:])} do not match the classifier's "
                f"{self.feature_shape} (was it trained on a different image size?)"
            )
        return feats

    def forward(self, obs: ObsBatch) -> torch.Tensor:
        """Logits ``[B]`` for a batch of observations."""
        parts = [self.heads[cam](self.camera_features(obs, cam)) for cam in self.cameras]
        return self.mlp(torch.cat(parts, dim=1))[:, 0]

    def predict_proba(self, obs: ObsBatch) -> torch.Tensor:
        """Success probability ``[B]`` (eval mode, no gradients)."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                return torch.sigmoid(self(obs))
        finally:
            self.train(was_training)

    def is_success(self, obs: ObsBatch) -> torch.Tensor:
        """Boolean ``[B]``: probability above the stored threshold."""
        return self.predict_proba(obs) > self.threshold

    # ------------------------------------------------------------- files
    def head_state_dict(self) -> Dict[str, torch.Tensor]:
        """Trainable weights only (the frozen encoder is never saved or shipped)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("encoder.")}

    def save(self, path: Union[str, Path], extra_metadata: Optional[Mapping[str, Any]] = None,
             encoder_identity: Optional[Mapping[str, str]] = None) -> Path:
        """``encoder_identity``: what made the features it trained on, for a classifier trained
        on cached features only (default: its own encoder's, when it has one)."""
        arrays = {k: v.detach().cpu().numpy() for k, v in self.head_state_dict().items()}
        meta = {
            "kind": CLASSIFIER_KIND,
            "cameras": self.cameras,
            "feature_shape": list(self.feature_shape),
            "threshold": self.threshold,
            **self.config,
        }
        if encoder_identity is None and self.encoder is not None and hasattr(self.encoder, "identity"):
            encoder_identity = self.encoder.identity()
        if encoder_identity is None:  # loaded without an encoder and saved again: keep what the file said
            encoder_identity = self.recorded_encoder
        if encoder_identity is not None:
            meta["encoder"] = dict(encoder_identity)
        if extra_metadata:
            meta["extra"] = dict(extra_metadata)
        return tensorio.save_file(path, arrays, meta)

    @classmethod
    def load(cls, path: Union[str, Path], encoder: Optional[ResNet10Encoder] = None) -> "RewardClassifier":
        """Load a head saved by :meth:`save`; ``encoder`` is needed only for image inputs.
        Raises ``EncoderMismatch`` when the file names other encoder weights than ``encoder``'s."""
        arrays, meta = tensorio.load_file(path)
        if meta.get("kind") != CLASSIFIER_KIND:
            raise tensorio.TensorIOError(f"{path}: holds {meta.get('kind')!r}, not a reward classifier")
        warning = ""
        if encoder is not None and hasattr(encoder, "identity"):
            warning = compare_encoder_identity(meta.get("encoder"), encoder.identity(), f"reward classifier {path}",
                                       "train the classifier again on features of this encoder")
        try:
            model = cls(
                meta["cameras"],
                meta["feature_shape"],
                encoder=encoder,
                num_spatial_features=meta["num_spatial_features"],
                bottleneck_dim=meta["bottleneck_dim"],
                hidden_dim=meta["hidden_dim"],
                dropout=meta["dropout"],
                threshold=meta["threshold"],
            )
        except KeyError as exc:
            raise tensorio.TensorIOError(f"{path}: classifier metadata lacks {exc}") from exc
        expected = {k: (tuple(v.shape), np.float32) for k, v in model.head_state_dict().items()}
        tensorio.check_arrays(arrays, expected, str(path))
        model.load_state_dict({k: torch.from_numpy(v) for k, v in arrays.items()}, strict=False)
        model.load_warning = warning  # "" unless the file's features came in another precision
        model.recorded_encoder = meta.get("encoder")
        model.extra_metadata = dict(meta.get("extra") or {})  # what train-reward recorded: setup, cameras, crops, ...
        return model.eval()


# ----------------------------------------------------------------- metrics
def classification_metrics(probs: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> Dict[str, float]:
    """Accuracy, precision, recall (0.0 where the denominator is empty) and counts."""
    pred = np.asarray(probs) > threshold
    labels = np.asarray(labels).astype(bool)
    tp = int(np.sum(pred & labels))
    fp = int(np.sum(pred & ~labels))
    fn = int(np.sum(~pred & labels))
    tn = int(np.sum(~pred & ~labels))
    n = tp + fp + fn + tn
    return {
        "accuracy": (tp + tn) / n if n else 0.0,
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
        "true_positives": tp,
        "false_positives": fp,
        "false_negatives": fn,
        "true_negatives": tn,
    }


# ----------------------------------------------------------------- training
@dataclass
class TrainResult:
    classifier: RewardClassifier
    metrics: Dict[str, Any]  # held-out "accuracy", "precision", "recall", ... and "train"
    history: List[Dict[str, float]] = field(default_factory=list)
    val_probabilities: Optional[np.ndarray] = None  # held-out success probability per frame (positives first)
    val_labels: Optional[np.ndarray] = None  # 1 / 0 for those frames


def _as_batch(data: Union[ObsBatch, Sequence[Mapping[str, np.ndarray]], np.ndarray], cameras: Optional[Sequence[str]]) -> Dict[str, np.ndarray]:
    if isinstance(data, np.ndarray):
        if not cameras or len(cameras) != 1:
            raise ValueError("a bare image array needs exactly one camera name (cameras=[...])")
        return {IMAGE_PREFIX + cameras[0]: data}
    if isinstance(data, Mapping):
        return {k: np.asarray(v.cpu() if isinstance(v, torch.Tensor) else v) for k, v in data.items()}
    data = list(data)
    if not data:
        return {}
    return {k: np.stack([np.asarray(o[k]) for o in data]) for k in data[0]}


def _cameras_of(batch: Mapping[str, np.ndarray]) -> List[str]:
    cams = []
    for key in batch:
        for prefix in (IMAGE_PREFIX, FEATURE_PREFIX):
            if key.startswith(prefix) and key[len(prefix):] not in cams:
                cams.append(key[len(prefix):])
    return cams


def _val_count(n: int, val_fraction: float) -> int:
    n_val = int(round(n * val_fraction))
    if val_fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    return n_val


def _split_contiguous(n: int, val_fraction: float) -> Tuple[np.ndarray, np.ndarray]:
    """Train = the first frames, held out = the last ``val_fraction`` of them, in the order given.

    Frames of one teleoperation episode are near duplicates; with frames in
    recording order a contiguous tail shares at most one episode with training,
    where a random per-frame split would put most episodes on both sides.
    """
    n_val = _val_count(n, val_fraction)
    idx = np.arange(n)
    return idx[: n - n_val], idx[n - n_val :]


def _episode_ids(groups: Any, n: int, what: str) -> np.ndarray:
    ids = np.asarray(groups.cpu() if isinstance(groups, torch.Tensor) else groups)
    if ids.ndim != 1 or len(ids) != n:
        raise ValueError(f"groups for the {what}: need one episode id per frame ({n}), got shape {ids.shape}")
    return ids


def split_by_episode(
    pos_groups: Any, neg_groups: Any, val_fraction: float, rng: np.random.Generator
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Indices ``(pos_train, pos_val, neg_train, neg_val)`` that keep every episode on one side.

    ``pos_groups`` / ``neg_groups`` give the episode id of each positive / negative
    frame; the same id in both names the same episode (its negative frames before
    the success and its positive frames after it go to the same side). Episodes
    are held out (in an order drawn from ``rng``) while that brings each class
    closer to ``val_fraction`` of its frames; the held-out set and the training
    set must each contain both classes, else ``ValueError``.
    """
    keys, inverse = np.unique(np.concatenate([pos_groups, neg_groups]), return_inverse=True)
    pos_ep, neg_ep = inverse[: len(pos_groups)], inverse[len(pos_groups) :]
    n_ep = len(keys)
    ep_pos = np.bincount(pos_ep, minlength=n_ep)
    ep_neg = np.bincount(neg_ep, minlength=n_ep)
    n_pos, n_neg = int(ep_pos.sum()), int(ep_neg.sum())
    if val_fraction <= 0:
        empty = np.zeros(0, dtype=np.int64)
        return np.arange(n_pos), empty, np.arange(n_neg), empty
    t_pos, t_neg = max(_val_count(n_pos, val_fraction), 1), max(_val_count(n_neg, val_fraction), 1)
    big = 1e9  # a held-out or training set without one of the classes

    def cost(vp, vn):
        vp, vn = np.asarray(vp, float), np.asarray(vn, float)
        missing = (vp == 0).astype(float) + (vn == 0) + (vp == n_pos) + (vn == n_neg)
        return np.abs(vp - t_pos) / t_pos + np.abs(vn - t_neg) / t_neg + big * missing

    def grow(chosen: np.ndarray) -> np.ndarray:
        # greedily add the episode that most improves the balance, until none does
        order = rng.permutation(n_ep)  # ties broken by a seeded order: the seed picks the episodes
        while True:
            vp, vn = ep_pos[chosen].sum(), ep_neg[chosen].sum()
            free = order[~chosen[order]]
            if free.size == 0:
                return chosen
            c = cost(vp + ep_pos[free], vn + ep_neg[free])
            best = int(np.argmin(c))
            if c[best] >= cost(vp, vn):
                return chosen
            chosen[free[best]] = True

    chosen = grow(np.zeros(n_ep, dtype=bool))
    if cost(ep_pos[chosen].sum(), ep_neg[chosen].sum()) >= big:
        # A valid split exists iff one with at most two held-out episodes does; look for the best
        # such seed and grow from it (the greedy start can miss it in contrived layouts).
        best_cost, i, j = np.inf, 0, 0
        for a in range(n_ep):  # pairs (a, b), b == a meaning the single episode a; row by row
            vp, vn = ep_pos[a] + ep_pos, ep_neg[a] + ep_neg
            vp[a], vn[a] = ep_pos[a], ep_neg[a]
            c = cost(vp, vn)
            b = int(np.argmin(c))
            if c[b] < best_cost:
                best_cost, i, j = float(c[b]), a, b
        if best_cost >= big:
            with_pos, with_neg = int(np.sum(ep_pos > 0)), int(np.sum(ep_neg > 0))
            raise ValueError(
                f"cannot hold out whole episodes with both classes on each side: {n_ep} episode(s), "
                f"{with_pos} with positive frames and {with_neg} with negative frames; both the held-out and "
                f"the training episodes need positives and negatives (record more episodes, or pass val_fraction=0 "
                f"to train without a held-out set)"
            )
        chosen = np.zeros(n_ep, dtype=bool)
        chosen[[i, j]] = True
        chosen = grow(chosen)
    pos_val_mask, neg_val_mask = chosen[pos_ep], chosen[neg_ep]
    return (
        np.flatnonzero(~pos_val_mask),
        np.flatnonzero(pos_val_mask),
        np.flatnonzero(~neg_val_mask),
        np.flatnonzero(neg_val_mask),
    )


def _encode_views(
    batch: Mapping[str, np.ndarray],
    idx: np.ndarray,
    cam: str,
    encoder: Optional[ResNet10Encoder],
    views: int,
    pad: int,
    generator: torch.Generator,
    encode_batch_size: int,
) -> np.ndarray:
    """float16 ``[V, N, C, h, w]`` features of the selected samples (view 0 unshifted)."""
    fkey, ikey = FEATURE_PREFIX + cam, IMAGE_PREFIX + cam
    if fkey in batch:
        return np.asarray(batch[fkey][idx], dtype=np.float16)[None]
    if ikey not in batch:
        raise KeyError(f"training data lacks {ikey!r} / {fkey!r}")
    if encoder is None:
        raise ValueError(f"{ikey!r} given without an encoder; pass encoder=ResNet10Encoder(...)")
    images = torch.from_numpy(np.ascontiguousarray(batch[ikey][idx]))
    if images.dtype != torch.uint8:
        raise TypeError(f"{ikey!r} must be uint8 images, got {images.dtype}")
    out = []
    for v in range(max(views, 1)):
        shifted = images if v == 0 or pad == 0 else random_shift(images, pad, generator)
        out.append(encode_features(encoder, shifted, encode_batch_size).numpy())
    return np.stack(out)


def train_classifier(
    positives: Union[ObsBatch, Sequence[Mapping[str, np.ndarray]], np.ndarray],
    negatives: Union[ObsBatch, Sequence[Mapping[str, np.ndarray]], np.ndarray],
    cameras: Optional[Sequence[str]] = None,
    encoder: Optional[ResNet10Encoder] = None,
    *,
    groups: Optional[Tuple[Any, Any]] = None,
    held_out: Optional[Tuple[Any, Any]] = None,
    steps: int = 500,
    batch_size: int = 64,
    lr: float = 3e-4,
    val_fraction: float = 0.2,
    augment_pad: int = 4,
    augment_views: int = 4,
    threshold: float = 0.5,
    eval_every: int = 50,
    seed: int = 0,
    encode_batch_size: int = 64,
    log: Optional[Callable[[str], None]] = print,
    progress: Optional[Callable[[int, int, float], None]] = None,
    **classifier_kwargs: Any,
) -> TrainResult:
    """Train a success classifier on positive and negative observations.

    Frames must be given in recording order. ``groups = (positive_ids,
    negative_ids)`` gives the teleoperation episode of every frame (one id per
    positive and per negative frame; the same id in both is the same episode):
    whole episodes are then held out (:func:`split_by_episode`), about
    ``val_fraction`` of each class, and both the held-out and the training
    episodes must contain both classes (``ValueError`` otherwise). Without
    ``groups`` the held-out set is the last ``val_fraction`` of each class's
    frames in the order given (never a random choice of frames: consecutive
    frames of an episode are near duplicates, and a frame-level split measures
    memorisation, not generalisation).

    Returns the trained classifier and the held-out metrics (accuracy, precision,
    recall at ``threshold``), plus train-set metrics under ``metrics["train"]``
    and a per-``eval_every`` history. ``log`` receives one progress line per
    evaluation (``None`` for silence).

    ``held_out = (positive_mask, negative_mask)`` (one bool per frame) gives the held-out
    frames instead, as ``hilserl bag2frames`` chose them (by whole episodes); ``groups`` then
    only counts the held-out episodes. ``progress(step, steps, loss)`` is called after every
    step (a progress bar).
    """
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    torch_gen = torch.Generator().manual_seed(seed)
    pos, neg = _as_batch(positives, cameras), _as_batch(negatives, cameras)
    cameras = list(cameras) if cameras else _cameras_of(pos)
    if not cameras:
        raise ValueError("no 'image/<cam>' or 'feature/<cam>' entries in the positives")
    n_pos = len(next(iter(pos.values()))) if pos else 0
    n_neg = len(next(iter(neg.values()))) if neg else 0
    if n_pos < 2 or n_neg < 2:
        raise ValueError(f"need at least 2 positives and 2 negatives, got {n_pos} and {n_neg}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if held_out is not None:
        pos_mask = np.asarray(held_out[0], dtype=bool)
        neg_mask = np.asarray(held_out[1], dtype=bool)
        if pos_mask.shape != (n_pos,) or neg_mask.shape != (n_neg,):
            raise ValueError(f"held_out: need one flag per positive ({n_pos}) and negative ({n_neg}) frame")
        pos_train, pos_val = np.flatnonzero(~pos_mask), np.flatnonzero(pos_mask)
        neg_train, neg_val = np.flatnonzero(~neg_mask), np.flatnonzero(neg_mask)
        if min(len(pos_train), len(neg_train)) == 0:
            raise ValueError("held_out leaves no positive or no negative frame to train on")
        val_episodes = None
        if groups is not None:
            ids = np.concatenate([_episode_ids(groups[0], n_pos, "positives")[pos_val], _episode_ids(groups[1], n_neg, "negatives")[neg_val]])
            val_episodes = int(len(np.unique(ids)))
        split_text = f"held out as given{f': {val_episodes} whole episode(s)' if val_episodes is not None else ''}"
    elif groups is not None:
        if len(groups) != 2:
            raise ValueError("groups must be a pair (episode id per positive frame, episode id per negative frame)")
        pos_groups, neg_groups = _episode_ids(groups[0], n_pos, "positives"), _episode_ids(groups[1], n_neg, "negatives")
        pos_train, pos_val, neg_train, neg_val = split_by_episode(pos_groups, neg_groups, val_fraction, rng)
        val_episodes = int(len(np.unique(np.concatenate([pos_groups[pos_val], neg_groups[neg_val]]))))
        split_text = f"{val_episodes} whole episode(s) held out"
    else:
        pos_train, pos_val = _split_contiguous(n_pos, val_fraction)
        neg_train, neg_val = _split_contiguous(n_neg, val_fraction)
        val_episodes = None
        split_text = "held out: the last frames of each class in the order given"

    def encode(batch, idx, views):
        return {cam: _encode_views(batch, idx, cam, encoder, views, augment_pad, torch_gen, encode_batch_size) for cam in cameras}

    train_pos, train_neg = encode(pos, pos_train, augment_views), encode(neg, neg_train, augment_views)
    val_pos, val_neg = encode(pos, pos_val, 1), encode(neg, neg_val, 1)
    feature_shape = train_pos[cameras[0]].shape[2:]
    for cam in cameras[1:]:
        if train_pos[cam].shape[2:] != feature_shape:
            raise ValueError(
                f"camera {cam!r} has features {tuple(train_pos[cam].shape[2:])}, camera {cameras[0]!r} "
                f"{tuple(feature_shape)}: all cameras need the same feature shape (same image size)"
            )
    if log:
        log(
            f"reward classifier: {len(pos_train)}+{len(pos_val)} positives, {len(neg_train)}+{len(neg_val)} "
            f"negatives (train+held-out; {split_text}), cameras {cameras}, features {tuple(feature_shape)}, "
            f"{augment_views} views encoded in {time.perf_counter() - t0:.1f} s"
        )

    torch.manual_seed(seed)
    model = RewardClassifier(cameras, feature_shape, encoder=encoder, threshold=threshold, **classifier_kwargs)
    params = [p for n, p in model.named_parameters() if not n.startswith("encoder.")]
    opt = torch.optim.Adam(params, lr=lr)

    def draw(feats: Dict[str, np.ndarray], n: int) -> Dict[str, np.ndarray]:
        # the same samples for every camera, each camera's view drawn from its own views
        # (an image camera has augment_views, a cached-feature camera only one)
        i = rng.integers(0, feats[cameras[0]].shape[1], size=n)
        out = {}
        for cam in cameras:
            v = rng.integers(0, feats[cam].shape[0], size=n)
            out[FEATURE_PREFIX + cam] = feats[cam][v, i]
        return out

    def probabilities(pos_feats, neg_feats) -> Tuple[np.ndarray, np.ndarray]:
        obs = {FEATURE_PREFIX + cam: np.concatenate([pos_feats[cam][0], neg_feats[cam][0]]) for cam in cameras}
        labels = np.r_[np.ones(pos_feats[cameras[0]].shape[1]), np.zeros(neg_feats[cameras[0]].shape[1])]
        if labels.size == 0:
            return np.zeros(0), labels
        return model.predict_proba(obs).numpy(), labels

    def evaluate(pos_feats, neg_feats) -> Dict[str, float]:
        return classification_metrics(*probabilities(pos_feats, neg_feats), threshold)

    history: List[Dict[str, float]] = []
    half = max(batch_size // 2, 1)
    labels = torch.cat([torch.ones(half), torch.zeros(half)])
    model.train()
    for step in range(1, steps + 1):
        p, n = draw(train_pos, half), draw(train_neg, half)
        obs = {k: np.concatenate([p[k], n[k]]) for k in p}
        loss = F.binary_cross_entropy_with_logits(model(obs), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if progress is not None:
            progress(step, steps, loss.item())
        if step % eval_every == 0 or step == steps:
            val = evaluate(val_pos, val_neg)
            history.append({"step": step, "loss": loss.item(), **{k: val[k] for k in ("accuracy", "precision", "recall")}})
            if log:
                log(
                    f"step {step}/{steps} loss {loss.item():.4f} val acc {val['accuracy']:.3f} "
                    f"prec {val['precision']:.3f} rec {val['recall']:.3f} ({time.perf_counter() - t0:.1f} s)"
                )
    val_probs, val_labels = probabilities(val_pos, val_neg)
    metrics: Dict[str, Any] = dict(classification_metrics(val_probs, val_labels, threshold))
    metrics["train"] = evaluate(train_pos, train_neg)
    metrics.update(
        {
            "n_val_positive": int(len(pos_val)),
            "n_val_negative": int(len(neg_val)),
            "n_train_positive": int(len(pos_train)),
            "n_train_negative": int(len(neg_train)),
            "split": "given" if held_out is not None else ("episodes" if groups is not None else "contiguous"),
            "n_val_episodes": val_episodes,
            "threshold": threshold,
            "train_seconds": time.perf_counter() - t0,
        }
    )
    model.eval()
    return TrainResult(model, metrics, history, val_probs, val_labels)
