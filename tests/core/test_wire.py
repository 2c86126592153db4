"""Wire format of transitions and policy weights (through real safetensors bytes)."""

import numpy as np
import pytest
import torch

from hilserl_core.formats import tensorio, wire
from hilserl_core.formats.types import Transition


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


def test_weights_roundtrip_and_name_check():
    state = {"actor.w": torch.randn(4, 3), "heads.b": torch.zeros(2)}
    arrays, meta = wire.weights_to_arrays(state, version=5, extra={"step": 100})
    out, version = wire.arrays_to_weights(*tensorio.from_bytes(tensorio.to_bytes(arrays, meta)))
    assert version == 5 and np.array_equal(out["actor.w"], state["actor.w"].numpy())
    with pytest.raises(ValueError, match="do not match"):
        wire.arrays_to_weights({"actor.w": arrays["actor.w"]}, meta)


def test_weights_can_travel_as_float16_and_load_into_float32():
    from hilserl_core.rl.networks import load_trainable_state_dict

    layer = torch.nn.Linear(64, 32)
    arrays, meta = wire.weights_to_arrays(dict(layer.state_dict()), 1, float_dtype="float16")
    assert all(a.dtype == np.float16 for a in arrays.values())
    assert sum(a.nbytes for a in arrays.values()) == 2 * (64 * 32 + 32)
    other = torch.nn.Linear(64, 32)
    out, _ = wire.arrays_to_weights(*tensorio.from_bytes(tensorio.to_bytes(arrays, meta)))
    load_trainable_state_dict(other, {k: torch.from_numpy(v) for k, v in out.items()})
    assert other.weight.dtype == torch.float32
    assert torch.allclose(other.weight, layer.weight, rtol=1e-3, atol=1e-4)


def _small_t():
    o = {"proprio": np.arange(4, dtype=np.float32), "image/w": np.full((2, 2, 3), 7, np.uint8)}
    return Transition(o, np.zeros(6, np.float32), 0.5, False, True, dict(o), intervened=True, grasp_action=1,
                      grasp_penalty=0.0, episode_id=3, step=2, info={"a": 1.0})


_T_META = wire.transition_to_arrays(_small_t(), "actor_a", 5)[1]


@pytest.mark.parametrize("change, message", [
    ({"sequence": None}, "'sequence' must be an integer, got None"),
    ({"sequence": "5"}, "'sequence' must be an integer"),
    ({"reward": [1]}, r"'reward' must be a number, got \[1\]"),
    ({"reward": 10**400}, "'reward' = .* is out of range"),
    ({"grasp_penalty": True}, "'grasp_penalty' must be a number"),
    ({"terminated": 1}, "'terminated' must be true or false"),
    ({"step": 1.5}, "'step' must be an integer"),
    ({"info": [1, 2]}, "'info' must be an object of numbers"),
    ({"info": "abc"}, "'info' must be an object of numbers"),
    ({"info": {"x": "fast"}}, "'info.x' must be a number"),
    ({"actor_id": 5}, "'actor_id' must be a string"),
    ({"kind": ["x"]}, "payload kind"),
])
def test_a_malformed_transition_field_is_a_value_error_naming_it(change, message):
    arrays = wire.transition_to_arrays(_small_t(), "actor_a", 5)[0]
    with pytest.raises(ValueError, match=message):
        wire.arrays_to_transition(arrays, {**_T_META, **change})
    # ... also after a trip through real bytes with a valid checksum
    with pytest.raises(ValueError, match=message):
        wire.arrays_to_transition(*tensorio.from_bytes(tensorio.to_bytes(arrays, {**_T_META, **change})))


def test_missing_transition_fields_and_non_object_metadata_are_value_errors():
    arrays = wire.transition_to_arrays(_small_t(), "actor_a", 5)[0]
    for key in ("sequence", "reward", "terminated", "grasp_action", "episode_id"):
        with pytest.raises(ValueError, match=f"lacks '{key}'"):
            wire.arrays_to_transition(arrays, {k: v for k, v in _T_META.items() if k != key})
    with pytest.raises(ValueError, match="lacks 'action'"):
        wire.arrays_to_transition({k: v for k, v in arrays.items() if k != "action"}, _T_META)
    for meta in ([], "x", 5, None):
        with pytest.raises(ValueError, match="metadata must be a JSON object"):
            wire.arrays_to_transition(arrays, meta)
        with pytest.raises(ValueError, match="metadata must be a JSON object"):
            wire.arrays_to_weights({}, meta)
    back, actor, seq = wire.arrays_to_transition(arrays, {k: v for k, v in _T_META.items() if k not in ("actor_id", "info")})
    assert (actor, seq, back.info) == ("", 5, {})


@pytest.mark.parametrize("change, message", [
    ({"version": "3"}, "'version' must be an integer"),
    ({"version": None}, "'version' must be an integer"),
    ({"names": "w"}, "'names' must be a list of strings"),
    ({"names": [1]}, "'names' must be a list of strings"),
    ({"names": ["v"]}, "do not match"),
])
def test_a_malformed_weights_field_is_a_value_error_naming_it(change, message):
    arrays, meta = wire.weights_to_arrays({"w": np.zeros(2, np.float32)}, 3)
    with pytest.raises(ValueError, match=message):
        wire.arrays_to_weights(arrays, {**meta, **change})
    with pytest.raises(ValueError, match="lacks 'version'"):
        wire.arrays_to_weights(arrays, {k: v for k, v in meta.items() if k != "version"})


def _mutants(blob: bytes, rng: np.random.Generator, count: int):
    """Seeded byte flips (biased to the header, where they are not just checksum mismatches),
    truncations, extensions and length-prefix changes of a valid payload."""
    (n,) = np.frombuffer(blob[:8], "<u8")
    header_end = 8 + int(n)
    for i in range(count):
        b = bytearray(blob)
        kind = i % 6
        if kind <= 2:  # 1-3 flipped bytes, mostly inside the header JSON
            for _ in range(1 + kind):
                pos = int(rng.integers(0, header_end if rng.random() < 0.85 else len(b)))
                # mostly one low bit (the header stays ASCII: '{' <-> '[', digits, key names change)
                b[pos] ^= 1 << int(rng.integers(0, 7)) if rng.random() < 0.8 else int(rng.integers(1, 256))
        elif kind == 3:  # truncation anywhere
            b = b[: int(rng.integers(0, len(b)))]
        elif kind == 4:  # header bytes replaced by random printable JSON-ish characters
            pos = int(rng.integers(8, header_end))
            b[pos] = int(rng.choice(list(b'{}[]",:0123456789-.eE ntfalsru\\')))
        else:  # a corrupt length prefix, or stray bytes appended
            if rng.random() < 0.5:
                b[int(rng.integers(0, 8))] ^= 1 << int(rng.integers(0, 8))
            else:
                b += bytes(rng.integers(0, 256, int(rng.integers(1, 16)), dtype=np.uint8))
        yield bytes(b)


def _decode_only_raises_value_errors(blob, decode):
    try:
        decode(*tensorio.from_bytes(blob))
    except (tensorio.TensorIOError, ValueError):
        return False
    return True


def test_fuzzed_transition_and_weights_payloads_only_ever_raise_tensorio_or_value_errors():
    rng = np.random.default_rng(20240607)
    t_blob = tensorio.to_bytes(*wire.transition_to_arrays(_small_t(), "actor_a", 5))
    w_blob = tensorio.to_bytes(*wire.weights_to_arrays({"actor.w": np.ones((3, 2), np.float32), "b": np.zeros(2, np.float16)},
                                                      7, {"updates": 3, "published_s": 1.5}))
    accepted = 0
    for blob, decode, count in ((t_blob, wire.arrays_to_transition, 3000), (w_blob, wire.arrays_to_weights, 1500)):
        for bad in _mutants(blob, rng, count):
            accepted += _decode_only_raises_value_errors(bad, decode)  # any other exception fails the test
    assert accepted < 200  # a flip into insignificant whitespace may still decode; almost nothing else does


def test_fuzzed_metadata_values_with_valid_checksums_only_raise_value_errors():
    rng = np.random.default_rng(7)
    arrays, meta = wire.transition_to_arrays(_small_t(), "actor_a", 5)
    w_arrays, w_meta = wire.weights_to_arrays({"w": np.zeros(2, np.float32)}, 3)
    junk = [None, True, 0, -1, 2**70, 10**400, 1.5, float("nan"), "", "x", [], [1, "a"], {}, {"k": [1]}, {"k": None}]
    for _ in range(1000):
        for base, arrs, decode in ((meta, arrays, wire.arrays_to_transition), (w_meta, w_arrays, wire.arrays_to_weights)):
            m = dict(base)
            for key in rng.choice(sorted(m) + ["extra"], size=int(rng.integers(1, 4))):
                if rng.random() < 0.2:
                    m.pop(str(key), None)
                else:
                    m[str(key)] = junk[int(rng.integers(0, len(junk)))]
            _decode_only_raises_value_errors(tensorio.to_bytes(arrs, m), decode)
