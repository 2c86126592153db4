"""Fused image heads: several observation encoders' heads as one product chain, same outputs."""

import pytest
import torch

from hilserl_core.accel.fused_heads import FusedObservationEncoders
from hilserl_core.rl.networks import ObservationEncoder

CAMS = ["left_wrist", "left_front", "right_wrist"]


def encoders(n=2, k=1, proprio=11, bottleneck=16, seed=0, **kw):
    torch.manual_seed(seed)
    encs = [ObservationEncoder(CAMS, proprio, num_spatial_kernels=k, bottleneck_dim=bottleneck, proprio_latent_dim=8, **kw) for _ in range(n)]
    for e in encs:
        e.eval()
    return encs


def batch(b=1, seed=1, proprio=11):
    g = torch.Generator().manual_seed(seed)
    obs = {f"feature/{c}": torch.randn(b, 4, 4, 512, generator=g).half() for c in CAMS}
    if proprio:
        obs["proprio"] = torch.randn(b, proprio, generator=g)
    return obs


@pytest.mark.parametrize("k,proprio,b", [(1, 11, 1), (1, 0, 3), (3, 11, 2)])
def test_fused_outputs_match_the_modules(k, proprio, b):
    encs = encoders(k=k, proprio=proprio)
    fused = FusedObservationEncoders(encs)
    assert fused.supported, fused.why
    obs = batch(b, proprio=proprio)
    with torch.no_grad():
        want = [e(obs) for e in encs]
    got = fused(obs)
    assert len(got) == len(want) == len(encs)
    for w, g in zip(want, got):
        assert g.shape == w.shape
        torch.testing.assert_close(g, w, atol=2e-6, rtol=1e-5)


def test_camera_ranges_give_the_rows_of_the_whole():
    fused = FusedObservationEncoders(encoders())
    fused.prepare()
    x = torch.stack([batch()[f"feature/{c}"] for c in CAMS])
    whole = fused.heads(x)
    assert whole.shape == (3, 2, 1, 16)
    parts = torch.cat([fused.heads(x[:1], 0, 1), fused.heads(x[1:], 1, 3)])
    torch.testing.assert_close(parts, whole, atol=0, rtol=0)
    with pytest.raises(ValueError, match="feature maps for cameras"):
        fused.heads(x[:2], 0, 1)


def test_changed_weights_are_restacked():
    encs = encoders()
    fused = FusedObservationEncoders(encs)
    obs = batch()
    before = fused(obs)[1].clone()
    with torch.no_grad():
        encs[1].image_heads["left_front"].dense.weight.mul_(-1.0)  # in place: same storage, new version
        want = encs[1](obs)
    after = fused(obs)[1]
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, want, atol=2e-6, rtol=1e-5)
    encs[0].load_state_dict(encoders(seed=5)[0].state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fused(obs)[0], encs[0](obs), atol=2e-6, rtol=1e-5)


def test_heads_of_other_shapes_are_not_fused(monkeypatch):
    a = encoders(n=1)[0]
    b = encoders(n=1, bottleneck=8)[0]
    fused = FusedObservationEncoders([a, b])
    assert not fused.supported and "differ" in fused.why
    with pytest.raises(RuntimeError, match="cannot be fused"):
        fused(batch())
    assert not FusedObservationEncoders([a, ObservationEncoder(CAMS[:2], 11, proprio_latent_dim=8)]).supported
    monkeypatch.setenv("HILSERL_FUSED_HEADS", "0")
    off = FusedObservationEncoders(encoders())
    assert not off.supported and "HILSERL_FUSED_HEADS=0" in off.why
    assert FusedObservationEncoders(encoders(), enabled=True).supported  # the argument wins over the environment
    monkeypatch.delenv("HILSERL_FUSED_HEADS")
    off = FusedObservationEncoders(encoders(), enabled=False)
    assert not off.supported and "enabled=False" in off.why


def test_missing_features_are_named():
    fused = FusedObservationEncoders(encoders())
    obs = batch()
    del obs["feature/left_front"]
    with pytest.raises(KeyError, match="feature/left_front"):
        fused(obs)
