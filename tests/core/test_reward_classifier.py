"""Reward classifier: learns a synthetic success cue, saves/loads without the encoder."""

import numpy as np
import pytest
import torch

from hilserl_core.formats import tensorio
from hilserl_core.vision.encoders import ResNet10Encoder, encode_features, int8_available
from hilserl_core.vision.reward_classifier import RewardClassifier, classification_metrics, split_by_episode, train_classifier

SIZE = 32  # -> [1, 1, 512] features: fast on 2 shared cores, and robust across seeds (48 px was not)
SQUARE = 8


def squares(n, success, rng):
    """Noisy grey background with a square at a random position: red = success, blue = not."""
    imgs = rng.integers(80, 150, size=(n, SIZE, SIZE, 3), dtype=np.uint8)
    color = (220, 30, 30) if success else (30, 30, 220)
    for k in range(n):
        y, x = rng.integers(0, SIZE - SQUARE, size=2)
        imgs[k, y : y + SQUARE, x : x + SQUARE] = color
    return imgs


@pytest.fixture(scope="module")
def encoder():
    # random weights: enough for this task, no download. float32 for the tests that compare
    # predictions exactly; the learning check below runs every encoder precision.
    return ResNet10Encoder(seed=0, compute_dtype="float32")


def train_on_squares(encoder, seed):
    rng = np.random.default_rng(seed)
    pos, neg = squares(60, True, rng), squares(120, False, rng)  # 1:2, negatives dominate as in teleop data
    lines = []
    result = train_classifier(pos, neg, cameras=["wrist"], encoder=encoder, steps=150, batch_size=32, eval_every=50,
                              augment_views=3, seed=seed, log=lines.append)
    return result, lines


def fresh_accuracy(classifier, seed):
    """Accuracy on 200 new images (100 of each class) never seen in training or validation."""
    rng = np.random.default_rng(123 + seed)
    fresh_pos, fresh_neg = squares(100, True, rng), squares(100, False, rng)
    probs = classifier.predict_proba({"image/wrist": np.concatenate([fresh_pos, fresh_neg])}).numpy()
    return classification_metrics(probs, np.r_[np.ones(100), np.zeros(100)])["accuracy"]


@pytest.fixture(scope="module")
def trained(encoder):
    return train_on_squares(encoder, 0)


def squares_accuracy(seed: int, encoder_dtype: str) -> float:
    """The lower of held-out and fresh-image accuracy of a classifier trained with ``seed`` on
    features of the frozen encoder (seeded random weights) in ``encoder_dtype``."""
    result, _ = train_on_squares(ResNet10Encoder(seed=0, compute_dtype=encoder_dtype), seed)
    return min(result.metrics["accuracy"], fresh_accuracy(result.classifier, seed))


def test_training_reports_held_out_episodes_and_progress(trained):
    result, lines = trained
    assert result.metrics["n_val_positive"] == 12 and result.metrics["n_val_negative"] == 24
    assert lines and "val acc" in lines[-1] and len(result.history) == 3


@pytest.mark.slow
@pytest.mark.parametrize("encoder_dtype", ["float32", "bfloat16", "int8"])  # what "auto" picks on one host or another
def test_reaches_95_percent_on_held_out_and_fresh_images(encoder_dtype):
    """min(held-out, fresh-image accuracy), median of 3 seeds >= 0.95.

    Measured on a 2-core Intel with AMX, seeds 0-3: float32 0.975-0.99, bfloat16 0.972-0.995,
    int8 0.965-0.99."""
    if encoder_dtype == "int8" and not int8_available()[0]:
        pytest.skip(f"int8 encoder unavailable here ({int8_available()[1]}); auto never picks it on such a host")
    from learning_checks import median_at_least, run_seeds

    median_at_least(f"reward classifier accuracy, {encoder_dtype} encoder",
                    run_seeds(squares_accuracy, (0, 1, 2), encoder_dtype), 0.95)


def test_encoder_stays_frozen_during_training(encoder):
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    rng = np.random.default_rng(1)
    train_classifier(squares(6, True, rng), squares(6, False, rng), ["wrist"], encoder, steps=3, augment_views=2, log=None)
    for k, v in encoder.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_save_load_round_trip_without_encoder_weights(tmp_path, trained, encoder):
    clf = trained[0].classifier
    clf.threshold = 0.7
    path = clf.save(tmp_path / "clf.safetensors")
    arrays, meta = tensorio.load_file(path)
    assert not any(k.startswith("encoder.") for k in arrays)
    assert meta["cameras"] == ["wrist"] and meta["threshold"] == 0.7
    loaded = RewardClassifier.load(path, encoder=encoder)
    imgs = squares(8, True, np.random.default_rng(5))
    torch.testing.assert_close(loaded.predict_proba({"image/wrist": imgs}), clf.predict_proba({"image/wrist": imgs}))
    assert loaded.threshold == 0.7
    assert torch.equal(loaded.is_success({"image/wrist": imgs}), clf.predict_proba({"image/wrist": imgs}) > 0.7)
    clf.threshold = 0.5


def test_load_errors_name_the_problem(tmp_path, trained, encoder):
    encoder.save_weights(tmp_path / "enc.safetensors")
    with pytest.raises(tensorio.TensorIOError, match="not a reward classifier"):
        RewardClassifier.load(tmp_path / "enc.safetensors")
    path = trained[0].classifier.save(tmp_path / "clf.safetensors")
    arrays, meta = tensorio.load_file(path)
    arrays["mlp.4.weight"] = np.zeros((1, 7), np.float32)
    tensorio.save_file(tmp_path / "bad.safetensors", arrays, meta)
    with pytest.raises(tensorio.TensorIOError, match=r"bad.safetensors.*mlp\.4\.weight"):
        RewardClassifier.load(tmp_path / "bad.safetensors")


def test_two_cameras_from_cached_features():
    # success is visible only in the side camera's features: the head must use both inputs
    rng = np.random.default_rng(2)
    shape = (2, 2, 16)  # channel-last [h, w, C]

    def batch(n, success):
        side = rng.standard_normal((n, *shape)).astype(np.float16)
        side[:, 1, 1, 3] += 3.0 if success else -3.0
        return {"feature/wrist": rng.standard_normal((n, *shape)).astype(np.float16), "feature/side": side}

    result = train_classifier(batch(40, True), batch(120, False), steps=150, lr=1e-3, batch_size=32, log=None, bottleneck_dim=32, hidden_dim=32)
    assert result.classifier.cameras == ["wrist", "side"]
    assert result.metrics["accuracy"] > 0.95
    with pytest.raises(ValueError, match="no encoder"):
        result.classifier({"image/wrist": np.zeros((1, SIZE, SIZE, 3), np.uint8), "feature/side": batch(1, True)["feature/side"]})
    with pytest.raises(ValueError, match="do not match"):
        result.classifier({"feature/wrist": np.zeros((1, 4, 4, 16), np.float16), "feature/side": np.zeros((1, *shape), np.float16)})


def test_classification_metrics_hand_values():
    probs = np.array([0.9, 0.8, 0.2, 0.6, 0.1, 0.4])
    labels = np.array([1, 1, 1, 0, 0, 0])
    m = classification_metrics(probs, labels, threshold=0.5)
    assert (m["true_positives"], m["false_positives"], m["false_negatives"], m["true_negatives"]) == (2, 1, 1, 2)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert classification_metrics(np.zeros(3), np.zeros(3))["precision"] == 0.0


def test_needs_both_classes():
    rng = np.random.default_rng(3)
    with pytest.raises(ValueError, match="at least 2 positives"):
        train_classifier(squares(1, True, rng), squares(5, False, rng), ["wrist"], ResNet10Encoder(seed=0), log=None)


# ------------------------------------------------------------ held-out split by episode
FEAT = (2, 2, 16)


def teleop_episodes(n_ep, frames, rng):
    """Feature frames of ``n_ep`` episodes in recording order: consecutive frames are near duplicates."""
    base = rng.standard_normal((n_ep, 1, *FEAT))
    return (base + 0.05 * rng.standard_normal((n_ep, frames, *FEAT))).reshape(-1, *FEAT).astype(np.float16)


@pytest.fixture(scope="module")
def unlearnable():
    """Positives and negatives from the same distribution: no cue generalises to new episodes,
    but every frame has near-identical neighbours from its own episode."""
    rng = np.random.default_rng(7)
    pos, neg = teleop_episodes(20, 10, rng), teleop_episodes(60, 10, rng)
    return pos, neg, np.repeat(np.arange(20), 10), np.repeat(np.arange(20, 80), 10)


def _train_unlearnable(pos, neg, **kw):
    kw = {"steps": 300, "lr": 1e-3, "batch_size": 32, "log": None, "bottleneck_dim": 32, "hidden_dim": 32, **kw}
    return train_classifier({"feature/wrist": pos}, {"feature/wrist": neg}, **kw)


def test_held_out_episodes_measure_generalisation_not_memorisation(unlearnable):
    pos, neg, pos_ids, neg_ids = unlearnable
    result = _train_unlearnable(pos, neg, groups=(pos_ids, neg_ids))
    m = result.metrics
    assert m["train"]["accuracy"] > 0.95  # it memorises its own episodes ...
    assert m["accuracy"] < 0.85, m  # ... and the held-out episodes say it learned nothing (a frame split said 1.00)
    assert (m["n_val_positive"], m["n_val_negative"], m["n_val_episodes"]) == (40, 120, 16)
    assert (m["n_train_positive"], m["n_train_negative"], m["split"]) == (160, 480, "episodes")


def test_without_groups_the_held_out_frames_are_the_last_ones_in_recording_order(unlearnable):
    pos, neg, _, _ = unlearnable
    lines = []
    result = _train_unlearnable(pos, neg, log=lines.append)
    m = result.metrics
    assert m["train"]["accuracy"] > 0.95
    assert m["accuracy"] < 0.85, m  # last 4 + 12 episodes: unseen in training
    assert (m["n_val_positive"], m["n_val_negative"], m["split"]) == (40, 120, "contiguous")
    assert "160+40 positives, 480+120 negatives" in lines[0]


def _check_split(pos_ids, neg_ids, val_fraction, seed):
    pt, pv, nt, nv = split_by_episode(pos_ids, neg_ids, val_fraction, np.random.default_rng(seed))
    assert sorted(np.r_[pt, pv]) == list(range(len(pos_ids))) and sorted(np.r_[nt, nv]) == list(range(len(neg_ids)))
    train_eps = set(pos_ids[pt]) | set(neg_ids[nt])
    val_eps = set(pos_ids[pv]) | set(neg_ids[nv])
    assert not train_eps & val_eps  # no episode on both sides, whichever class its frames are
    assert len(pv) and len(nv) and len(pt) and len(nt)  # both classes on both sides
    return pv, nv


def test_split_by_episode_is_stratified_and_keeps_episodes_whole():
    rng = np.random.default_rng(11)
    # 40 teleop episodes: negatives while reaching, then a few positive frames at the end
    n_neg, n_pos = rng.integers(15, 40, size=40), rng.integers(2, 8, size=40)
    neg_ids, pos_ids = np.repeat(np.arange(40), n_neg), np.repeat(np.arange(40), n_pos)
    for seed in range(5):
        pv, nv = _check_split(pos_ids, neg_ids, 0.2, seed)
        assert 0.15 < len(pv) / len(pos_ids) < 0.25 and 0.15 < len(nv) / len(neg_ids) < 0.25
    # positives in only two episodes: exactly one of them is held out
    pos_ids = np.repeat([3, 9], 10)
    pv, nv = _check_split(pos_ids, neg_ids, 0.2, 0)
    assert len(set(pos_ids[pv])) == 1


def test_split_by_episode_finds_a_split_exactly_when_one_exists():
    from itertools import product

    rng = np.random.default_rng(5)
    for _ in range(300):
        n_ep = int(rng.integers(1, 6))
        ep_pos, ep_neg = rng.integers(0, 4, size=n_ep), rng.integers(0, 4, size=n_ep)
        pos_ids, neg_ids = np.repeat(np.arange(n_ep), ep_pos), np.repeat(np.arange(n_ep), ep_neg)
        if len(pos_ids) < 2 or len(neg_ids) < 2:
            continue
        possible = any(
            0 < ep_pos[m].sum() < ep_pos.sum() and 0 < ep_neg[m].sum() < ep_neg.sum()
            for m in (np.array(bits, bool) for bits in product([0, 1], repeat=n_ep))
        )
        if possible:
            _check_split(pos_ids, neg_ids, 0.2, 0)
        else:
            with pytest.raises(ValueError, match="cannot hold out whole episodes"):
                split_by_episode(pos_ids, neg_ids, 0.2, np.random.default_rng(0))


def test_groups_errors_are_clear(unlearnable):
    pos, neg, pos_ids, neg_ids = unlearnable
    with pytest.raises(ValueError, match="cannot hold out whole episodes.*1 with positive frames"):
        _train_unlearnable(pos, neg, groups=(np.zeros(len(pos)), neg_ids), steps=1)  # one successful episode
    with pytest.raises(ValueError, match="one episode id per frame"):
        _train_unlearnable(pos, neg, groups=(pos_ids[:-1], neg_ids), steps=1)
    # without a held-out set the episodes do not matter
    result = _train_unlearnable(pos, neg, groups=(np.zeros(len(pos)), neg_ids), steps=1, val_fraction=0.0)
    assert result.metrics["n_val_positive"] == 0 and result.metrics["n_train_positive"] == len(pos)


# ------------------------------------------------------------ image and feature cameras mixed
def _mixed(n, rng):
    return {"image/wrist": rng.integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8),
            "feature/side": rng.standard_normal((n, 1, 1, 512)).astype(np.float16)}


@pytest.mark.parametrize("feature_first", [False, True])
def test_image_and_feature_cameras_mix_with_augmented_image_views(encoder, monkeypatch, feature_first):
    rng = np.random.default_rng(4)
    pos, neg = _mixed(6, rng), _mixed(6, rng)
    cameras = ["side", "wrist"] if feature_first else ["wrist", "side"]
    seen = []
    forward = RewardClassifier.forward

    def spy(self, obs):
        if self.training:
            seen.append(np.asarray(obs["feature/wrist"], np.float32))
        return forward(self, obs)

    monkeypatch.setattr(RewardClassifier, "forward", spy)
    result = train_classifier(pos, neg, cameras, encoder, steps=20, batch_size=16, augment_views=4, log=None)
    assert result.classifier.cameras == cameras
    # the wrist camera trained on shifted views too, not only on its unshifted images
    unshifted = encode_features(encoder, np.concatenate([pos["image/wrist"], neg["image/wrist"]])).astype(np.float32)
    rows = np.concatenate(seen).reshape(-1, 1, unshifted[0].size)
    dist = np.abs(rows - unshifted.reshape(1, len(unshifted), -1)).max(axis=2).min(axis=1)
    assert np.mean(dist > 1e-2) > 0.3, dist


def test_the_file_records_its_encoder_and_refuses_other_weights(tmp_path):
    from hilserl_core.vision.encoders import EncoderMismatch

    enc = ResNet10Encoder(seed=0)
    path = RewardClassifier(["wrist"], encoder=enc).save(tmp_path / "clf.safetensors")
    assert tensorio.load_file(path)[1]["encoder"] == enc.identity()
    assert RewardClassifier.load(path, encoder=ResNet10Encoder(seed=0)).load_warning == ""
    with pytest.raises(EncoderMismatch, match="weights"):
        RewardClassifier.load(path, encoder=ResNet10Encoder(seed=1))
    # loaded without an encoder and saved again, the file keeps what it said
    again = RewardClassifier.load(path).save(tmp_path / "again.safetensors")
    assert tensorio.load_file(again)[1]["encoder"] == enc.identity()
    # trained on cached features only: the caller says which encoder made them
    feats = RewardClassifier(["wrist"]).save(tmp_path / "f.safetensors", encoder_identity=enc.identity())
    assert tensorio.load_file(feats)[1]["encoder"] == enc.identity()
    if enc.identity()["compute_dtype"] != "float32":  # the same weights in another precision: a note, not a refusal
        note = RewardClassifier.load(path, encoder=ResNet10Encoder(seed=0, compute_dtype="float32")).load_warning
        assert "float32" in note and enc.identity()["compute_dtype"] in note
