"""Demo files: observations stored once, a lossless round trip, clear errors, and the learner's
preload (all files checked before anything is added)."""

import numpy as np
import pytest
from test_learner import A, P, make_learner

from hilserl_core.formats import tensorio
from hilserl_core.formats.demos import DemoFileError, demo_summary, load_demos, save_demos
from hilserl_core.formats.types import Transition


def episode(n, episode_id, success=True, img=False):
    rng = np.random.default_rng(episode_id)
    obs = []
    for _ in range(n + 1):
        o = {"proprio": rng.standard_normal(P).astype(np.float32)}
        if img:
            o["image/left_wrist"] = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
        obs.append(o)
    return [Transition(obs[i], rng.uniform(-1, 1, A).astype(np.float32), float(success and i == n - 1),
                       success and i == n - 1, (not success) and i == n - 1, obs[i + 1], intervened=True,
                       grasp_action=i % 3, grasp_penalty=-0.02 * (i % 2), episode_id=episode_id, step=i)
            for i in range(n)]


def test_round_trip_is_lossless_and_stores_each_observation_once(tmp_path):
    ts = episode(5, 1, img=True) + episode(3, 2, success=False, img=True)
    path = save_demos(tmp_path / "d.safetensors", ts, {"setup": "sim_single_arm"})
    arrays, meta = tensorio.load_file(path)
    assert arrays["obs/image/left_wrist"].shape == (5 + 1 + 3 + 1, 8, 8, 3)  # not 2 per transition
    assert meta["setup"] == "sim_single_arm" and meta["episodes"] == 2 and meta["successes"] == 1
    back, _ = load_demos(path)
    assert len(back) == len(ts)
    for a, b in zip(ts, back):
        for k in a.observation:
            assert np.array_equal(a.observation[k], b.observation[k]) and np.array_equal(a.next_observation[k], b.next_observation[k])
        assert np.array_equal(a.action, b.action) and (a.reward, a.terminated, a.truncated, a.intervened) == \
            (b.reward, b.terminated, b.truncated, b.intervened)
        assert (a.grasp_action, a.episode_id, a.step) == (b.grasp_action, b.episode_id, b.step)
        assert b.grasp_penalty == pytest.approx(a.grasp_penalty)
    assert back[0].next_observation is back[1].observation  # shared after loading too
    assert demo_summary(back) == {"episodes": 2, "steps": 8, "successes": 1, "intervened": 8}


def test_bad_files_are_named(tmp_path):
    with pytest.raises(DemoFileError, match="no such demo file"):
        load_demos(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 40)
    with pytest.raises(DemoFileError, match="junk.safetensors: not a readable demo file"):
        load_demos(tmp_path / "junk.safetensors")
    tensorio.save_file(tmp_path / "other.safetensors", {"x": np.zeros(3)}, {"kind": "something else"})
    with pytest.raises(DemoFileError, match="other.safetensors: not a demo file"):
        load_demos(tmp_path / "other.safetensors")
    with pytest.raises(DemoFileError, match="no transitions"):
        save_demos(tmp_path / "empty.safetensors", [])


def test_learner_preload_fills_the_demo_buffer_or_nothing(tmp_path):
    good = save_demos(tmp_path / "good.safetensors", episode(4, 1) + episode(2, 2, success=False))
    wide = [Transition({"proprio": np.zeros(2 * P, np.float32)}, np.zeros(A, np.float32), 0.0, False, False,
                       {"proprio": np.zeros(2 * P, np.float32)})]
    bad = save_demos(tmp_path / "two_arms.safetensors", wide)
    L = make_learner()
    with pytest.raises(ValueError, match="two_arms.safetensors: demo transition 0/0 does not fit"):
        L.preload_demos([good, bad])
    assert len(L.buffers["demo"]) == 0 and L.demos_added == 0
    summaries = L.preload_demos([good])
    assert summaries == [(str(good), {"episodes": 2, "steps": 6, "successes": 1, "intervened": 6})]
    assert len(L.buffers["demo"]) == 6 and len(L.buffers["rl"]) == 0 and L.demos_added == 6
