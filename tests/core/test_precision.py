"""precision.py: which dtype the products run in, and what mixed precision leaves in float32."""

import sys

import pytest
import torch

from hilserl_core.accel import precision
from hilserl_core.formats.types import Batch
from hilserl_core.rl.rlpd import RLPDAgent, RLPDConfig


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux /proc/cpuinfo")
def test_cpu_info_is_the_first_processor_and_flags_come_from_it():
    info = precision.cpu_info()
    assert info["processor"] == "0" and info["flags"]  # one block, not the last one read
    assert precision.cpu_flags() == frozenset(info["flags"].split())
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        first_model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    assert info.get("model name") == first_model


def test_resolve_compute_dtype(monkeypatch):
    monkeypatch.delenv(precision.FORCE_COMPUTE_DTYPE, raising=False)  # this host decides
    assert precision.resolve_compute_dtype("float32") == torch.float32
    assert precision.resolve_compute_dtype("bfloat16") == torch.bfloat16
    expected = torch.bfloat16 if precision.cpu_has_native_bf16() else torch.float32
    assert precision.resolve_compute_dtype("auto", "cpu") == expected
    with pytest.raises(ValueError, match="compute_dtype must be one of"):
        precision.resolve_compute_dtype("float16")
    with precision.autocast("cpu", torch.float32):
        assert not torch.is_autocast_enabled("cpu")  # float32 means no autocast at all
    with precision.autocast("cpu", torch.bfloat16):
        assert torch.is_autocast_enabled("cpu")
        with precision.full_precision(torch.zeros(1)):
            assert not torch.is_autocast_enabled("cpu")


def test_the_environment_forces_what_auto_means_and_nothing_else(monkeypatch):
    for forced, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16), (" BFloat16 ", torch.bfloat16)):
        monkeypatch.setenv(precision.FORCE_COMPUTE_DTYPE, forced)
        assert precision.resolve_compute_dtype("auto", "cpu") == dtype
        assert precision.resolve_compute_dtype("auto", "meta") == dtype
        assert precision.resolve_compute_dtype("float32") == torch.float32  # an explicit setting stays
        assert RLPDAgent(RLPDConfig(), 3, (), 7).compute_dtype == dtype
    for host in ("", "auto"):
        monkeypatch.setenv(precision.FORCE_COMPUTE_DTYPE, host)
        monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
        assert precision.resolve_compute_dtype("auto", "cpu") == torch.float32
        monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
        assert precision.resolve_compute_dtype("auto", "cpu") == torch.bfloat16
    monkeypatch.setenv(precision.FORCE_COMPUTE_DTYPE, "float16")
    with pytest.raises(ValueError, match="HILSERL_COMPUTE_DTYPE='float16' is not a precision: use one of float32, bfloat16"):
        precision.resolve_compute_dtype("auto")


def _batch(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)

    def obs():
        return {"feature/wrist": torch.rand(n, 4, 4, 512, generator=g).half(), "proprio": torch.randn(n, 7, generator=g)}

    return Batch(obs(), torch.rand(n, 3, generator=g) * 2 - 1, torch.rand(n, generator=g), torch.zeros(n), obs(),
                 torch.zeros(n, dtype=torch.long), torch.zeros(n), torch.zeros(n, dtype=torch.bool))


def test_bfloat16_update_tracks_the_float32_update():
    # Same seed, same batch: one update in each dtype. Parameters stay float32, and the
    # losses and the parameters after the step agree to bfloat16 accuracy.
    batch = _batch()
    agents = {d: RLPDAgent(RLPDConfig(compute_dtype=d, image_dropout=0.0, seed=3), 3, ("wrist",), 7)
              for d in ("float32", "bfloat16")}
    before = [p.detach().clone() for p in agents["float32"].critic_params]  # same seed: same initial weights
    infos = {d: a.update(batch, update_actor=True) for d, a in agents.items()}
    assert all(p.dtype == torch.float32 for p in agents["bfloat16"].critic_params + agents["bfloat16"].actor_params)
    assert agents["bfloat16"].compute_dtype == torch.bfloat16 and agents["float32"].compute_dtype == torch.float32
    assert infos["float32"]["critic_loss"] != infos["bfloat16"]["critic_loss"]  # bfloat16 did run (else it tracks trivially)
    for key in ("critic_loss", "q_mean", "target_mean", "actor_loss"):
        a, b = infos["float32"][key], infos["bfloat16"][key]
        assert abs(a - b) <= 0.05 * abs(a) + 1e-2, (key, a, b)
    # The critic step points the same way: Adam's first step is ~lr * sign(gradient), so the
    # cosine of the two steps is the fraction of gradient signs that agree (garbage gradients: ~0).
    steps = {d: torch.cat([(p.detach() - p0).flatten() for p, p0 in zip(a.critic_params, before)])
             for d, a in agents.items()}
    cos = torch.nn.functional.cosine_similarity(steps["float32"], steps["bfloat16"], dim=0)
    assert cos > 0.9, f"bfloat16 critic step has cosine {float(cos):.3f} with the float32 step"
