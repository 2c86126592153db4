"""Reward classifier: learns a synthetic success cue, saves/loads without the encoder."""

import time

import numpy as np
import pytest
import torch

from hilserl_core import tensorio
from hilserl_core.encoders import ResNet10Encoder
from hilserl_core.reward_classifier import RewardClassifier, classification_metrics, train_classifier

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
    return ResNet10Encoder(seed=0)  # random weights: enough for this task, no download


@pytest.fixture(scope="module")
def trained(encoder):
    rng = np.random.default_rng(0)
    pos, neg = squares(60, True, rng), squares(120, False, rng)  # 1:2, negatives dominate as in teleop data
    lines = []
    t0 = time.perf_counter()
    result = train_classifier(
        pos, neg, cameras=["wrist"], encoder=encoder, steps=150, batch_size=32, eval_every=50, augment_views=3, log=lines.append
    )
    return result, lines, time.perf_counter() - t0


@pytest.mark.slow  # ~5-10 s alone, longer on busy shared cores (the fixture encodes 576 images)
def test_reaches_95_percent_on_held_out_images_quickly(trained, encoder):
    result, lines, seconds = trained
    print(f"train_classifier: {seconds:.1f} s, held-out metrics {result.metrics}")
    assert seconds < 90  # ~5-10 s on 2 idle cores; the bound only catches pathological slowness
    assert result.metrics["accuracy"] > 0.95
    assert result.metrics["n_val_positive"] == 12 and result.metrics["n_val_negative"] == 24
    # and on fresh images never seen in training or validation
    rng = np.random.default_rng(123)
    fresh_pos, fresh_neg = squares(100, True, rng), squares(100, False, rng)
    probs = result.classifier.predict_proba({"image/wrist": np.concatenate([fresh_pos, fresh_neg])}).numpy()
    m = classification_metrics(probs, np.r_[np.ones(100), np.zeros(100)])
    assert m["accuracy"] > 0.95, m
    assert lines and "val acc" in lines[-1] and len(result.history) == 3


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
