"""Wire format of transitions and policy weights (through real safetensors bytes)."""

import numpy as np
import pytest
import torch

from hilserl_core import tensorio, wire
from hilserl_core.types import Transition


def _t():
    rng = np.random.default_rng(0)
    o = {"proprio": rng.standard_normal(20).astype(np.float32), "image/left_wrist": rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)}
    n = {"proprio": rng.standard_normal(20).astype(np.float32), "image/left_wrist": rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)}
    return Transition(o, rng.uniform(-1, 1, 6).astype(np.float32), 1.0, True, False, n, intervened=True,
                      grasp_action=2, grasp_penalty=-0.02, episode_id=7, step=41, info={"latency_s": 0.01})


def test_transition_roundtrip_through_bytes():
    t = _t()
    arrays, meta = wire.transition_to_arrays(t, "left_actor", 99)
    back, actor, seq = wire.arrays_to_transition(*tensorio.from_bytes(tensorio.to_bytes(arrays, meta)))
    assert (actor, seq) == ("left_actor", 99)
    for k in t.observation:
        assert np.array_equal(back.observation[k], t.observation[k]) and back.observation[k].dtype == t.observation[k].dtype
        assert np.array_equal(back.next_observation[k], t.next_observation[k])
    assert np.array_equal(back.action, t.action)
    assert (back.reward, back.terminated, back.truncated, back.intervened) == (1.0, True, False, True)
    assert (back.grasp_action, back.grasp_penalty, back.episode_id, back.step, back.info) == (2, -0.02, 7, 41, {"latency_s": 0.01})
    with pytest.raises(ValueError, match="is not 'hilserl.transition'"):
        wire.arrays_to_transition(arrays, {**meta, "kind": "x"})
    with pytest.raises(ValueError, match="lacks 'reward'"):
        wire.arrays_to_transition(arrays, {k: v for k, v in meta.items() if k != "reward"})


def test_sequence_tracker_counts_gaps_per_actor():
    s = wire.SequenceTracker()
    assert [s.see("a", i) for i in (0, 1, 4, 5)] == [0, 0, 2, 0]
    assert s.see("b", 10) == 0 and s.see("b", 12) == 1
    assert s.see("a", 5) == 0 and s.duplicates == 1 and s.lost == 3


def test_weights_roundtrip_and_name_check():
    state = {"actor.w": torch.randn(4, 3), "heads.b": torch.zeros(2)}
    arrays, meta = wire.weights_to_arrays(state, version=5, extra={"step": 100})
    out, version = wire.arrays_to_weights(*tensorio.from_bytes(tensorio.to_bytes(arrays, meta)))
    assert version == 5 and np.array_equal(out["actor.w"], state["actor.w"].numpy())
    with pytest.raises(ValueError, match="do not match"):
        wire.arrays_to_weights({"actor.w": arrays["actor.w"]}, meta)


def test_weights_can_travel_as_float16_and_load_into_float32():
    from hilserl_core.networks import load_trainable_state_dict

    layer = torch.nn.Linear(64, 32)
    arrays, meta = wire.weights_to_arrays(dict(layer.state_dict()), 1, float_dtype="float16")
    assert all(a.dtype == np.float16 for a in arrays.values())
    assert sum(a.nbytes for a in arrays.values()) == 2 * (64 * 32 + 32)
    other = torch.nn.Linear(64, 32)
    out, _ = wire.arrays_to_weights(*tensorio.from_bytes(tensorio.to_bytes(arrays, meta)))
    load_trainable_state_dict(other, {k: torch.from_numpy(v) for k, v in out.items()})
    assert other.weight.dtype == torch.float32
    assert torch.allclose(other.weight, layer.weight, rtol=1e-3, atol=1e-4)
