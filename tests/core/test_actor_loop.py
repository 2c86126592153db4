"""The actor's tick without ROS: fresh inputs, episode start after a reset, the mux-report join,
episode ends."""

import numpy as np
import pytest

from hilserl_core.robot.actor_loop import ActorLoop
from hilserl_core.robot.episode_cycle import EpisodePhase
from hilserl_core.robot.intervention import GRIPPER_CLOSE, GRIPPER_STAY, Source

IMG = np.zeros((4, 4, 3), np.uint8)


def make_loop(arms=("left",), cams=("left_wrist",), **kw):
    args = dict(control_rate_hz=10.0, max_episode_steps=100, max_input_age_s=0.25, grasp_penalty=-0.02,
                use_grasp_critic=True, reset_timeout_s=30.0)
    args.update(kw)
    loop = ActorLoop(arms, cams, **args)
    loop.cycle.reset_requested(0.0)
    loop.cycle.scene_ready(0.0)  # as after a reset service answered
    return loop


def feed(loop, t, x=0.0, success=False, images=True):
    """Every input sampled at time t; the arm at (x, 0, 0.3), identity orientation."""
    for arm in loop.arms:
        loop.put(f"{arm}/pose", (np.array([x, 0.0, 0.3]), np.array([0.0, 0.0, 0.0, 1.0])), t)
        loop.put(f"{arm}/twist", np.zeros(6), t)
        loop.put(f"{arm}/wrench", np.zeros(6), t)
        loop.put(f"{arm}/gripper", 1.0, t)
    if images:
        for cam in loop.cam_keys:
            loop.put("image/" + cam, IMG + int(t * 10), t)
    loop.put("success", success, t)


def test_missing_and_stale_inputs_give_no_observation_and_a_reason():
    loop = make_loop()
    out = loop.tick(0.1)
    assert out.observation is None and out.inputs_ok is False and out.waiting.startswith("waiting for left/pose")
    feed(loop, 0.1)
    out = loop.tick(0.5)  # 400 ms old > 250 ms
    assert out.observation is None and out.inputs_ok is False and "stale" in out.waiting
    assert loop.cycle.phase is EpisodePhase.WAITING


def test_episode_starts_egocentric_and_steps_close_with_the_executed_action():
    loop = make_loop()
    feed(loop, 0.1, x=0.2)
    first = loop.tick(0.12)
    assert first.started and first.transition is None and first.observation is not None
    assert loop.cycle.phase is EpisodePhase.RUNNING
    assert np.allclose(first.observation["proprio"][:3], 0.0)  # the start pose is the origin
    assert first.stamp_s == pytest.approx(0.1)
    # the same frames are never used twice
    again = loop.tick(0.13)
    assert again.observation is None and again.inputs_ok is True and "new camera frames" in again.waiting
    loop.acted(first.stamp_s)
    assert loop.on_executed("left", 0.1, np.full(6, 0.5), GRIPPER_CLOSE, Source.OPERATOR) is not None
    feed(loop, 0.2, x=0.25)
    second = loop.tick(0.21)
    t = second.transition
    assert t is not None and t.intervened and np.allclose(t.action, 0.5) and t.grasp_action == GRIPPER_CLOSE
    assert t.grasp_penalty == pytest.approx(-0.02)  # closing an open gripper
    assert np.allclose(second.observation["proprio"][:3], [0.05, 0.0, 0.0], atol=1e-6)
    assert np.array_equal(t.next_observation["proprio"], second.observation["proprio"])


def test_an_unreported_step_is_dropped_not_guessed():
    loop = make_loop()
    feed(loop, 0.1)
    loop.acted(loop.tick(0.1).stamp_s)
    feed(loop, 0.2)
    out = loop.tick(0.2)  # the mux never reported the first step
    assert out.transition is None and out.observation is not None and loop.recorder.dropped_steps == 1


def test_in_lockstep_the_next_frames_wait_for_the_muxes_report_of_the_last_action():
    """Lockstep: the simulator moved on because the muxes reported, so their report is on its way;
    frames that reach the actor first must not close the step unexecuted (after a reset, before
    lockstep engages again, that dropped a step per episode). A report that never comes drops the
    step once its frame is max_input_age_s old."""
    loop = make_loop(steps_by_observation=True, max_input_age_s=5.0)
    feed(loop, 0.1)
    loop.acted(loop.tick(0.1).stamp_s)
    feed(loop, 0.2)
    out = loop.tick(0.2)
    assert out.observation is None and "report" in out.waiting and loop.recorder.dropped_steps == 0
    loop.on_executed("left", 0.1, np.full(6, 0.5), GRIPPER_STAY, Source.POLICY)
    out = loop.tick(0.21)
    assert out.observation is not None and out.transition is not None and np.allclose(out.transition.action, 0.5)
    loop.acted(out.stamp_s)
    feed(loop, 5.0)
    assert loop.tick(5.0).observation is None  # the step's frame (0.2) is 4.8 s old: still waiting
    feed(loop, 5.3)
    out = loop.tick(5.3)  # 5.1 s old: the step is dropped, the episode goes on
    assert out.observation is not None and loop.recorder.dropped_steps == 1


def test_success_ends_the_episode_as_terminal_and_the_next_needs_a_reset():
    loop = make_loop()
    feed(loop, 0.1)
    loop.acted(loop.tick(0.1).stamp_s)
    loop.on_executed("left", 0.1, np.zeros(6), GRIPPER_STAY, Source.POLICY)
    feed(loop, 0.2, success=True)
    out = loop.tick(0.2)
    assert out.summary is not None and out.summary.success and out.observation is None
    assert out.transition.terminated and out.transition.reward == 1.0
    assert loop.cycle.phase is EpisodePhase.RESET and loop.join.pending_stamp is None
    feed(loop, 0.3)
    assert loop.tick(0.3).observation is None  # no episode until the scene is reset again


def test_success_left_from_the_last_episode_does_not_end_the_next_at_once():
    loop = make_loop()
    feed(loop, 0.1, success=True)  # the reward node still says success from before the reset
    out = loop.tick(0.1)
    assert out.started and out.summary is None and out.observation is not None


def test_operator_cut_truncates_and_poses_from_before_the_reset_do_not_start_an_episode():
    loop = make_loop()
    feed(loop, 0.1)
    loop.acted(loop.tick(0.1).stamp_s)
    loop.on_executed("left", 0.1, np.zeros(6), GRIPPER_STAY, Source.POLICY)
    loop.cycle.operator_signal()
    feed(loop, 0.2)
    out = loop.tick(0.2)
    assert out.summary.end == "operator_reset" and out.transition.truncated and not out.transition.terminated
    loop.cycle.reset_requested(0.2)
    loop.cycle.scene_ready(0.35)
    feed(loop, 0.3)  # measured before the reset finished
    assert loop.tick(0.36).observation is None
    feed(loop, 0.4)
    assert loop.tick(0.4).started


def test_two_arms_join_before_the_step_closes():
    loop = make_loop(arms=("left", "right"), cams=("left_wrist", "right_wrist"))
    feed(loop, 0.1)
    first = loop.tick(0.1)
    assert first.observation["proprio"].shape[0] % 2 == 0
    loop.acted(first.stamp_s)
    assert loop.on_executed("left", 0.1, np.ones(6), GRIPPER_CLOSE, Source.POLICY) is None  # right not in yet
    joined = loop.on_executed("right", 0.1, -np.ones(6), GRIPPER_STAY, Source.OPERATOR)
    assert joined is not None and joined.source is Source.OPERATOR
    feed(loop, 0.2)
    t = loop.tick(0.2).transition
    assert np.allclose(t.action, np.r_[np.ones(6), -np.ones(6)]) and t.intervened
    assert t.grasp_action == GRIPPER_CLOSE + 3 * GRIPPER_STAY


def test_new_frames_needs_every_camera_about_one_period_newer():
    loop = make_loop(cams=("left_wrist", "left_side"))
    assert not loop.new_frames()
    feed(loop, 0.1)
    assert loop.new_frames()
    loop.tick(0.1)
    loop.put("image/left_wrist", IMG, 0.2)
    assert not loop.new_frames()  # the side camera has no newer frame
    loop.put("image/left_side", IMG, 0.17)
    assert not loop.new_frames()  # 70 ms newer: less than 0.8 of a period
    loop.put("image/left_side", IMG, 0.19)
    assert loop.new_frames()


# -- the reward is the verdict on the observation's own frames (/reward/success carries their stamp)
def start_and_act(loop, t=0.1):
    """An episode started at frame t, its first action executed."""
    feed(loop, t)
    first = loop.tick(t)
    assert first.started
    loop.acted(first.stamp_s)
    loop.on_executed("left", first.stamp_s, np.zeros(6), GRIPPER_STAY, Source.POLICY)
    return first


def step_on(loop, t, now):
    out = loop.tick(now)
    if out.observation is not None:
        loop.acted(out.stamp_s)
        loop.on_executed("left", out.stamp_s, np.zeros(6), GRIPPER_STAY, Source.POLICY)
    return out


def test_success_lands_on_the_frame_it_was_judged_on_not_one_step_late():
    loop = make_loop()
    start_and_act(loop, 0.1)
    feed(loop, 0.2, images=True)  # frame 0.2 and its verdict (no success) come together
    assert step_on(loop, 0.2, 0.21).transition.reward == 0.0
    # frame 0.3 shows success; its verdict comes after the frames: the tick waits for it
    feed(loop, 0.3)
    loop.verdicts.clear()  # (feed put a verdict; here the classifier is slower than the cameras)
    loop.put_success(False, 0.2)
    acting = loop.tick(0.31)  # the actor acts on frame 0.3 at once; the step into it waits for the verdict
    assert acting.observation is not None and acting.stamp_s == pytest.approx(0.3) and acting.transition is None
    assert acting.awaiting_reward and loop.awaiting_reward
    waiting = loop.tick(0.315)
    assert waiting.observation is None and waiting.awaiting_reward and "verdict of the frame at 0.300" in waiting.waiting
    loop.put_success(True, 0.3)
    out = loop.tick(0.32)
    assert out.summary is not None and out.summary.success and out.summary.end == "success"
    t = out.transition
    assert t.terminated and t.reward == 1.0 and t.info["stamp_s"] == pytest.approx(0.2)  # the step INTO frame 0.3
    assert not loop.awaiting_reward and loop.reward_late_steps == 0


def test_a_verdict_that_came_before_the_frames_is_used_and_a_newer_frame_never_takes_an_older_verdict():
    loop = make_loop()
    start_and_act(loop, 0.1)
    loop.put_success(True, 0.1)  # success judged on the episode's first frame (e.g. left from the last episode)
    loop.put_success(False, 0.2)  # the verdict on frame 0.2 is in before the frame itself
    feed(loop, 0.2, success=False)
    out = step_on(loop, 0.2, 0.21)
    assert out.summary is None and out.transition.reward == 0.0


def test_a_late_verdict_is_waited_for_at_most_half_max_input_age_s_then_the_step_takes_an_earlier_one_and_says_so():
    loop = make_loop(max_input_age_s=0.25)
    start_and_act(loop, 0.1)  # verdict (no success) on frame 0.1

    def frame(t):  # every input at t, no verdict
        for arm in loop.arms:
            loop.put(f"{arm}/pose", (np.array([0.0, 0.0, 0.3]), np.array([0.0, 0.0, 0.0, 1.0])), t)
            loop.put(f"{arm}/twist", np.zeros(6), t)
            loop.put(f"{arm}/wrench", np.zeros(6), t)
            loop.put(f"{arm}/gripper", 1.0, t)
        loop.put("image/left_wrist", IMG, t)

    frame(0.2)
    acted = step_on(loop, 0.2, 0.21)
    assert acted.observation is not None and acted.awaiting_reward and acted.transition is None  # acts without waiting
    frame(0.3)
    held = loop.tick(0.31)  # one step in flight: frame 0.3 waits while 0.2's verdict may still come
    assert held.observation is None and held.awaiting_reward
    out = step_on(loop, 0.3, 0.33)  # past 0.2 + 0.25 / 2: the step into 0.2 takes frame 0.1's verdict, then 0.3 is acted on
    assert "did not come within half max_input_age_s (125 ms)" in out.reward_note and "100 ms earlier" in out.reward_note
    assert out.transition.reward == 0.0 and out.transition.info["stamp_s"] == pytest.approx(0.1) and loop.reward_late_steps == 1
    assert out.observation is not None and out.stamp_s == pytest.approx(0.3) and out.awaiting_reward
    loop.put_success(False, 0.3)  # frame 0.3's verdict comes: its step closes with it, on time
    settled = loop.tick(0.34)
    assert settled.transition.info["stamp_s"] == pytest.approx(0.2) and settled.reward_note == "" and loop.reward_late_steps == 1
    assert np.allclose(settled.transition.action, 0.0)  # the action taken on frame 0.2, as the mux reported it


def test_frames_the_reward_source_skipped_take_the_newest_earlier_verdict_at_once():
    loop = make_loop()
    start_and_act(loop, 0.1)
    feed(loop, 0.2)
    loop.verdicts.clear()
    loop.put_success(False, 0.15)  # the source judged other frames: one before and one after these
    loop.put_success(True, 0.25)
    out = step_on(loop, 0.2, 0.21)
    assert out.observation is not None and out.transition.reward == 0.0
    assert "judged later frames" in out.reward_note and loop.reward_late_steps == 1


def test_without_a_reward_source_no_episode_starts_and_a_dead_one_stops_the_steps():
    loop = make_loop()
    feed(loop, 0.1)
    loop.verdicts.clear()
    assert loop.tick(0.11).awaiting_reward  # the first frame's verdict may still come
    out = loop.tick(0.23)
    assert out.observation is None and out.inputs_ok is False and "is the reward source running?" in out.waiting
    assert loop.cycle.phase is EpisodePhase.WAITING
    loop.put_success(False, 0.1)  # it came after all
    assert loop.tick(0.24).started
    loop = make_loop()
    start_and_act(loop, 0.1)
    feed(loop, 0.4)  # the source fell silent after frame 0.1
    loop.verdicts.clear()
    loop.put_success(False, 0.1)
    out = loop.tick(0.41)  # nothing from the reward source for 310 ms: no new step is acted on
    assert out.observation is None and out.inputs_ok is False and "is the reward source running?" in out.waiting


def test_unsynchronised_cameras_pair_with_the_frame_the_classifier_judged():
    """The classifier sees the wrist camera only; the observation's oldest frame is the side camera's."""
    loop = make_loop(cams=("left_wrist", "left_side"))
    start_and_act(loop, 0.1)
    feed(loop, 0.2)
    loop.put("image/left_side", IMG, 0.17)
    loop.verdicts.clear()
    loop.put_success(True, 0.2)  # the verdict on the wrist frame in this observation
    out = loop.tick(0.21)
    assert out.stamp_s == pytest.approx(0.17) and out.summary is not None and out.summary.success
    assert out.reward_note == ""


def test_a_wait_left_from_an_episode_cut_outside_a_tick_does_not_carry_into_the_next():
    """``hilserl bag2demos`` ends an episode at a reset mark between ticks: the next episode's
    first frame still waits for its own verdict."""
    loop = make_loop()
    start_and_act(loop, 0.1)
    feed(loop, 0.2)
    loop.verdicts.clear()
    loop.put_success(False, 0.1)
    assert loop.tick(0.21).awaiting_reward
    loop.cycle.episode_ended()  # the converter: a reset mark cut the episode
    loop.cycle.reset_requested(0.5)
    loop.cycle.scene_ready(0.5)
    feed(loop, 0.6)
    loop.verdicts.clear()
    loop.put_success(False, 0.55)
    assert loop.tick(0.61).awaiting_reward  # not the old, passed bound: this frame's verdict may still come
    loop.put_success(False, 0.6)
    assert loop.tick(0.62).started
