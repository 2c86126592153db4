"""Simulated time that fits the machine (hilserl_sim.pacing): at most real_time_factor times the
wall clock, frames one camera period apart (scaled), and in lockstep no physics past a frame until
every arm's action for it is in; lockstep lets go after its timeout and engages again."""

import pytest

from hilserl_sim.pacing import Pacer

STEP = 0.01  # 100 Hz physics


def run(pacer, wall_s, sim_s, arms=("left",), answer=None, period=0.1):
    """Tick every 1 ms of wall time until wall_s; returns (sim time, frames as (wall, sim))."""
    frames, t, next_frame = [], 0.0, 0.0
    while t < wall_s:
        if answer is not None:
            answer(pacer, t, frames)
        pacer.check_timeout(t)
        for _ in range(pacer.steps_due(t, sim_s)):
            sim_s += STEP
            if sim_s >= next_frame - 1e-9:
                break
        if sim_s >= next_frame - 1e-9:
            next_frame = sim_s + period
            frames.append((t, sim_s))
            pacer.frame(t, sim_s, stamp_s=t, arms=arms)
        t = round(t + 0.001, 6)
    return sim_s, frames


@pytest.mark.parametrize("rtf", [1.0, 0.5, 0.25])
def test_simulated_time_runs_at_most_the_real_time_factor(rtf):
    sim_s, frames = run(Pacer(STEP, rtf), 4.0, 0.0)
    assert sim_s == pytest.approx(4.0 * rtf, abs=0.03)
    gaps = [b[0] - a[0] for a, b in zip(frames, frames[1:])]
    assert min(gaps) >= 0.1 / rtf - 1e-6  # frames never closer than one period in wall time


def test_late_ticks_catch_up_within_a_frame():
    pacer = Pacer(STEP, 1.0)
    assert pacer.steps_due(0.0, 0.0) == 0
    assert pacer.steps_due(0.045, 0.0) == 4  # a tick 45 ms late: four steps at once


def test_factors_above_one_are_refused():
    with pytest.raises(ValueError, match=r"real_time_factor must be in \(0, 1\]"):
        Pacer(STEP, 2.0)


def slow_actor(latency_s, arms=("left",), stop_after_s=None):
    """Takes the newest frame when it is free and answers it latency_s later (every arm), until stop_after_s."""
    state = {"frame": None, "done_at": None, "last": None}

    def answer(pacer, t, frames):
        if stop_after_s is not None and t >= stop_after_s:
            return
        if state["frame"] is not None and t >= state["done_at"]:
            for arm in arms:
                pacer.executed(arm, state["frame"])
            state["last"], state["frame"] = state["frame"], None
        if state["frame"] is None and frames and frames[-1][0] != state["last"]:
            state["frame"], state["done_at"] = frames[-1][0], t + latency_s
    return answer


def test_lockstep_slows_the_simulation_to_the_actor_and_keeps_the_frame_period_in_sim_time():
    pacer = Pacer(STEP, 1.0, lockstep=True, timeout_s=5.0)
    sim_s, frames = run(pacer, 6.0, 0.0, answer=slow_actor(0.3))
    assert pacer.engaged and pacer.timeouts == 0
    late = frames[8:]  # (engaged by the first answer, within the first frames)
    sim_gaps = [b[1] - a[1] for a, b in zip(late, late[1:])]
    wall_gaps = [b[0] - a[0] for a, b in zip(late, late[1:])]
    assert max(sim_gaps) == pytest.approx(0.1, abs=1e-6) and min(sim_gaps) == pytest.approx(0.1, abs=1e-6)
    assert min(wall_gaps) >= 0.3 - 1e-6  # one frame per answer: 0.3 s of wall time per 0.1 s simulated
    assert sim_s == pytest.approx(6.0 / 0.3 * 0.1, abs=0.15)


def test_lockstep_with_a_fast_actor_stays_at_real_time():
    pacer = Pacer(STEP, 1.0, lockstep=True)
    sim_s, frames = run(pacer, 5.0, 0.0, answer=slow_actor(0.04))
    assert pacer.engaged and pacer.waits > 40
    assert sim_s == pytest.approx(5.0, abs=0.12)  # the 40 ms waits are caught up within each frame


def test_lockstep_waits_for_every_arm():
    pacer = Pacer(STEP, 1.0, lockstep=True)
    pacer.steps_due(0.0, 0.0)
    pacer.frame(0.0, 0.0, stamp_s=1.0, arms=("left", "right"))
    assert pacer.executed("left", 1.0) is False and pacer.engaged  # the first answer engages it
    pacer.frame(0.1, 0.1, stamp_s=2.0, arms=("left", "right"))
    assert pacer.waiting and pacer.steps_due(0.5, 0.1) == 0
    assert pacer.executed("left", 1.0) is False  # an answer to an older frame does not count
    assert pacer.executed("left", 2.3) is False and pacer.waiting  # nor a mux timer step (its own time)
    assert pacer.executed("left", 2.0) is False and pacer.waiting
    assert pacer.executed("right", 2.0) is True and not pacer.waiting
    assert pacer.steps_due(0.5, 0.1) > 0


def test_lockstep_lets_go_after_its_timeout_and_engages_again():
    pacer = Pacer(STEP, 1.0, lockstep=True, timeout_s=1.0)
    sim_s, frames = run(pacer, 3.0, 0.0, answer=slow_actor(0.05, stop_after_s=1.0))
    assert pacer.timeouts == 1 and not pacer.engaged and pacer.state == "idle"
    assert sim_s > 1.5  # after letting go, simulated time follows the wall clock again
    pacer.executed("left", frames[-1][0])
    assert pacer.engaged


def test_a_scene_reset_ends_the_wait_for_the_old_scenes_frame():
    pacer = Pacer(STEP, 1.0, lockstep=True)
    pacer.steps_due(0.0, 0.0)
    pacer.frame(0.0, 0.0, stamp_s=1.0, arms=("left",))
    pacer.executed("left", 1.0)
    pacer.frame(0.1, 0.1, stamp_s=2.0, arms=("left",))
    assert pacer.state == "waiting"
    pacer.scene_reset()
    assert pacer.state == "idle" and pacer.steps_due(0.15, 0.1) > 0
    pacer.frame(0.2, 0.2, stamp_s=3.0, arms=("left",))
    assert not pacer.waiting  # the new scene's first frames come in real time ...
    pacer.executed("left", 2.0)
    assert not pacer.engaged  # (a late answer to the old scene does not count)
    pacer.executed("left", 3.0)
    assert pacer.engaged  # ... until the actor acts on one
    pacer.frame(0.3, 0.3, stamp_s=4.0, arms=("left",))
    assert pacer.waiting


def test_without_lockstep_actions_change_nothing():
    pacer = Pacer(STEP, 1.0)
    pacer.frame(0.0, 0.0, stamp_s=1.0, arms=("left",))
    assert pacer.executed("left", 1.0) is False and pacer.state == "off" and not pacer.waiting
