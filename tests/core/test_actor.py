"""Actor bookkeeping: staleness, executed-action pairing, episode cuts, grasp penalty."""

import numpy as np
import pytest

from hilserl_core.robot import frames
from hilserl_core.robot.actor import EpisodeRecorder, LatestInputs, egocentric_observation, grasp_penalty
from hilserl_core.robot.intervention import GRIPPER_CLOSE, GRIPPER_OPEN, GRIPPER_STAY, Source


def test_snapshot_requires_every_input_fresh():
    li = LatestInputs()
    li.put("image/wrist", 1, 10.0)
    vals, why = li.snapshot(10.05, ["image/wrist", "pose"], 0.1)
    assert vals is None and why == "waiting for pose"
    li.put("pose", 2, 9.8)
    vals, why = li.snapshot(10.05, ["image/wrist", "pose"], 0.1)
    assert vals is None and "pose (250 ms old) > 100 ms" in why
    li.put("pose", 3, 10.01)
    vals, why = li.snapshot(10.05, ["image/wrist", "pose"], 0.1)
    assert vals == {"image/wrist": 1, "pose": 3} and why == "" and li.oldest_stamp(["image/wrist", "pose"]) == 10.0


def obs(i):
    return {"proprio": np.full(3, i, np.float32)}


def run(rec, n, sources, rewards=None, success_at=None, reset_at=None):
    """Drive the recorder: observation i at t=i/10, executed action for step i from sources[i]."""
    out, summary = [], None
    for i in range(n + 1):
        succ = success_at is not None and i == success_at
        t, summary = rec.observe(obs(i), i / 10, reward=float(succ), success=succ, operator_reset=(reset_at == i))
        if t is not None:
            out.append(t)
        if summary is not None:
            break
        src = sources[i] if i < len(sources) else Source.POLICY
        if src is not None:
            assert rec.on_executed(i / 10, np.full(6, i / 10), GRIPPER_STAY, src)
    return out, summary


def test_transitions_carry_executed_action_and_intervention_flag():
    rec = EpisodeRecorder(max_episode_steps=100, control_period_s=0.1)
    rec.start_episode({"left": np.eye(4)})
    ts, summary = run(rec, 4, [Source.POLICY, Source.OPERATOR, Source.OPERATOR, Source.POLICY], success_at=4)
    assert [t.intervened for t in ts] == [False, True, True, False]
    assert [t.step for t in ts] == [0, 1, 2, 3]
    assert [t.info["stamp_s"] for t in ts] == [i / 10 for i in range(4)]
    assert all(np.array_equal(t.next_observation["proprio"], obs(i + 1)["proprio"]) for i, t in enumerate(ts))
    assert np.allclose(ts[1].action, 0.1)
    assert ts[-1].terminated and not ts[-1].truncated and ts[-1].reward == 1.0
    assert not any(t.terminated or t.truncated for t in ts[:-1])
    assert summary.success and summary.end == "success" and summary.steps == 4 and summary.intervention_steps == 2
    assert summary.duration_s == pytest.approx(0.4)


def test_time_limit_is_truncation_not_termination():
    rec = EpisodeRecorder(max_episode_steps=3, control_period_s=0.1)
    rec.start_episode({})
    ts, summary = run(rec, 10, [])
    assert len(ts) == 3 and ts[-1].truncated and not ts[-1].terminated
    assert summary.end == "time_limit" and not summary.success


def test_operator_reset_truncates():
    rec = EpisodeRecorder(max_episode_steps=50, control_period_s=0.1)
    rec.start_episode({})
    ts, summary = run(rec, 10, [], reset_at=2)
    assert len(ts) == 2 and ts[-1].truncated and summary.end == "operator_reset"


def test_unexecuted_or_held_steps_are_dropped_and_counted():
    rec = EpisodeRecorder(max_episode_steps=50, control_period_s=0.1)
    rec.start_episode({})
    ts, _ = run(rec, 4, [Source.POLICY, None, Source.HOLD, Source.POLICY])
    # step numbers count control periods, dropped ones included
    assert [t.step for t in ts] == [0, 3] and rec.dropped_steps == 2
    # the transition after a dropped step starts from its own observation, not a stale one
    assert np.array_equal(ts[1].observation["proprio"], obs(3)["proprio"])
    assert not rec.on_executed(99.0, np.zeros(6), GRIPPER_STAY, Source.POLICY)


def test_time_limit_counts_control_periods_even_when_every_step_is_dropped():
    rec = EpisodeRecorder(max_episode_steps=5, control_period_s=0.1)
    rec.start_episode({})
    ts, summary = run(rec, 50, [Source.HOLD] * 50)  # the mux held every step (e.g. NaN actions rejected)
    assert ts == [] and summary is not None and summary.end == "time_limit"
    assert summary.steps == 5 and summary.transitions == 0 and summary.duration_s == pytest.approx(0.5)
    assert not summary.last_step_recorded and rec.dropped_steps == 5


def test_no_mux_report_for_max_unexecuted_steps_in_a_row_ends_the_episode_as_failed_to_act():
    rec = EpisodeRecorder(max_episode_steps=50, control_period_s=0.1, max_unexecuted_steps=3)
    rec.start_episode({})
    # holds are the mux's own decision (it runs) and reset the count; then the mux goes silent
    ts, summary = run(rec, 30, [Source.POLICY, None, None, Source.HOLD, Source.HOLD] + [None] * 30)
    assert summary is not None and summary.end == "failed_to_act" and not summary.success
    assert summary.steps == 8 and [t.step for t in ts] == [0]  # the third silent step in a row (5, 6, 7)


def test_success_on_a_dropped_step_ends_the_episode_and_says_no_transition_carries_it():
    rec = EpisodeRecorder(max_episode_steps=50, control_period_s=0.1)
    rec.start_episode({})
    ts, summary = run(rec, 10, [Source.POLICY, Source.POLICY, None], success_at=3)
    assert [t.step for t in ts] == [0, 1] and not any(t.terminated for t in ts)
    assert summary.success and summary.end == "success" and summary.steps == 3 and summary.transitions == 2
    assert not summary.last_step_recorded


def test_a_step_whose_next_observation_comes_late_is_dropped():
    rec = EpisodeRecorder(max_episode_steps=50, control_period_s=0.1)
    rec.start_episode({})
    out = []
    for i, stamp in enumerate([0.0, 0.1, 0.5, 0.6]):  # inputs stale between 0.1 and 0.5 s
        t, _ = rec.observe(obs(i), stamp, 0.0, False)
        out += [t] if t is not None else []
        assert rec.on_executed(stamp, np.full(6, 0.1), GRIPPER_STAY, Source.OPERATOR)
    # 0 -> 0.1 and 0.5 -> 0.6 are recorded; the action at 0.1 is not credited with 0.4 s of motion
    assert [(t.step, float(t.info["stamp_s"])) for t in out] == [(0, 0.0), (5, 0.5)]
    assert rec.dropped_steps == 1 and rec.steps == 6
    assert np.array_equal(out[1].observation["proprio"], obs(2)["proprio"])


def test_in_lockstep_steps_are_counted_per_observation_and_a_pause_drops_nothing():
    """The simulator waited (for the actor, which waited for its learner): 0.4 s of wall time
    between frames is one simulated control period."""
    rec = EpisodeRecorder(max_episode_steps=50, control_period_s=0.1, steps_by_observation=True)
    rec.start_episode({})
    out = []
    for i, stamp in enumerate([0.0, 0.1, 0.5, 0.6]):
        t, _ = rec.observe(obs(i), stamp, 0.0, False)
        out += [t] if t is not None else []
        assert rec.on_executed(stamp, np.full(6, 0.1), GRIPPER_STAY, Source.OPERATOR)
    assert [t.step for t in out] == [0, 1, 2] and rec.dropped_steps == 0 and rec.steps == 3


def test_grasp_penalty_only_on_state_changes_per_gripper():
    assert grasp_penalty(GRIPPER_CLOSE, closed_before=False, penalty=-0.02) == -0.02
    assert grasp_penalty(GRIPPER_CLOSE, closed_before=True, penalty=-0.02) == 0.0
    assert grasp_penalty(GRIPPER_OPEN, closed_before=False, penalty=-0.02) == 0.0
    rec = EpisodeRecorder(max_episode_steps=50, control_period_s=0.1, n_grippers=2)
    rec.start_episode({})
    # joint action: gripper0 digit + 3 * gripper1 digit
    seq = [GRIPPER_CLOSE + 3 * GRIPPER_STAY, GRIPPER_CLOSE + 3 * GRIPPER_CLOSE, GRIPPER_OPEN + 3 * GRIPPER_OPEN]
    pens = []
    for i, a in enumerate(seq + [4]):
        t, _ = rec.observe(obs(i), i / 10, 0.0, False)
        if t is not None:
            pens.append(t.grasp_penalty)
        rec.on_executed(i / 10, np.zeros(6), a, Source.POLICY)
    assert pens == [-0.02, -0.02, -0.04]


def test_egocentric_observation_concatenates_arms():
    start = {"left": np.eye(4), "right": frames.pose_to_matrix([0, 1, 0], [0, 0, 0, 1])}
    pose = {"left": (np.array([0.1, 0, 0]), np.array([0, 0, 0, 1.0])), "right": (np.array([0, 1.2, 0]), np.array([0, 0, 0, 1.0]))}
    zero = {a: np.zeros(6) for a in start}
    o = egocentric_observation({"image/left_wrist": np.zeros((2, 2, 3), np.uint8)}, ["left", "right"], start, pose, zero, zero, {"left": 0.0, "right": 1.0})
    n = frames.proprio_size(1)
    assert o["proprio"].shape == (2 * n,) and o["proprio"].dtype == np.float32
    assert np.allclose(o["proprio"][:3], [0.1, 0, 0]) and np.allclose(o["proprio"][n : n + 3], [0, 0.2, 0])
    assert o["proprio"][n - 1] == 0.0 and o["proprio"][-1] == 1.0 and "image/left_wrist" in o


def test_egocentric_observation_equals_one_call_per_arm():
    """The arms go through the frame functions as one batch: the same numbers as arm by arm."""
    rng = np.random.default_rng(4)

    def pose():
        q = rng.standard_normal(4)
        return rng.standard_normal(3), q / np.linalg.norm(q)

    arms = ["left", "right", "third"]
    start = {a: frames.pose_to_matrix(*pose()) for a in arms}
    now = {a: pose() for a in arms}
    twist = {a: rng.standard_normal(6) for a in arms}
    wrench = {a: rng.standard_normal(6) for a in arms}
    grip = {a: float(rng.random()) for a in arms}
    o = egocentric_observation({}, arms, start, now, twist, wrench, grip)
    want = np.concatenate([frames.egocentric_proprio(start[a], frames.pose_to_matrix(*now[a]), twist[a], wrench[a], grip[a]) for a in arms])
    assert np.array_equal(o["proprio"], want)
