"""The actor's reset cycle and the join of the mux reports, without ROS (robot/episode_cycle.py)."""

import numpy as np
import pytest

from hilserl_core.robot.episode_cycle import EpisodeCycle, EpisodePhase, ExecutedJoin
from hilserl_core.robot.intervention import GRIPPER_CLOSE, GRIPPER_NONE, GRIPPER_OPEN, Source


def test_a_reset_service_cycle_runs_reset_resetting_waiting_running_and_back():
    c = EpisodeCycle(reset_timeout_s=30.0)
    assert c.phase is EpisodePhase.RESET and c.may_request_reset(0.0)
    c.reset_requested(1.0)
    assert c.phase is EpisodePhase.RESETTING and not c.may_request_reset(1.0)
    assert not c.reset_timed_out(20.0) and c.phase is EpisodePhase.RESETTING
    c.scene_ready(2.0)
    assert c.phase is EpisodePhase.WAITING and c.reset_done_s == 2.0
    c.episode_started()
    assert c.phase is EpisodePhase.RUNNING and not c.take_cut()
    c.episode_ended()
    assert c.phase is EpisodePhase.RESET


def test_a_refused_reset_waits_before_asking_again_and_a_lost_one_is_asked_at_once():
    c = EpisodeCycle(reset_timeout_s=5.0, retry_s=1.0)
    c.reset_requested(10.0)
    c.reset_refused(10.5)
    assert c.phase is EpisodePhase.RESET
    assert not c.may_request_reset(11.4) and c.may_request_reset(11.5)
    c.reset_requested(11.5)
    assert c.waited_s(14.0) == pytest.approx(2.5) and not c.reset_timed_out(16.4)
    assert c.reset_timed_out(16.5) and c.phase is EpisodePhase.RESET
    assert c.may_request_reset(16.5)  # no answer: asked again at once


def test_the_operator_signal_cuts_a_running_episode_readies_the_scene_or_is_ignored():
    c = EpisodeCycle(reset_timeout_s=30.0)
    c.operator_signal()  # RESET: a reset is under way, nothing to do
    c.wait_for_operator()
    assert c.phase is EpisodePhase.OPERATOR and not c.operator_says_ready(1.0)
    c.operator_signal()
    assert c.operator_says_ready(3.0) and c.phase is EpisodePhase.WAITING and c.reset_done_s == 3.0
    c.operator_signal()  # WAITING: ignored, the next episode must not be cut at once
    c.episode_started()
    assert not c.take_cut()
    c.operator_signal()
    assert c.take_cut() and not c.take_cut()  # taken once
    c.operator_signal()
    c.episode_ended()
    c.episode_started()
    assert not c.take_cut()  # a cut never carries into the next episode


def test_the_join_waits_for_every_arm_of_the_pending_stamp_and_says_who_acted():
    j = ExecutedJoin(["left", "right"])
    left, right = np.arange(6.0), -np.arange(6.0)
    assert j.report("left", 1.0, left, GRIPPER_CLOSE, Source.POLICY) is None  # nothing sent yet
    j.sent(1.0)
    assert j.report("left", 1.0, left, GRIPPER_CLOSE, Source.POLICY) is None  # right still missing
    assert j.report("right", 0.9, right, GRIPPER_OPEN, Source.POLICY) is None  # an older step's report
    step = j.report("right", 1.0, right, GRIPPER_OPEN, Source.OPERATOR)
    assert np.array_equal(step.action, np.r_[left, right])
    assert step.grasp_action == GRIPPER_CLOSE + 3 * GRIPPER_OPEN and step.source is Source.OPERATOR
    assert step.arms_without_gripper == ()
    j.sent(2.0)  # a new step: the old reports no longer count
    assert j.report("left", 2.0, left, GRIPPER_CLOSE, Source.HOLD) is None
    assert j.report("right", 2.0, right, GRIPPER_OPEN, Source.POLICY).source is Source.HOLD


def test_an_arm_without_a_gripper_or_no_grasp_critic_records_stay():
    j = ExecutedJoin(["left", "right"])
    j.sent(1.0)
    j.report("left", 1.0, np.zeros(6), GRIPPER_NONE, Source.POLICY)
    step = j.report("right", 1.0, np.zeros(6), GRIPPER_CLOSE, Source.POLICY)
    assert step.arms_without_gripper == ("left",) and step.grasp_action == 1 + 3 * GRIPPER_CLOSE
    j = ExecutedJoin(["left"], use_grasp_critic=False)
    j.sent(1.0)
    assert j.report("left", 1.0, np.zeros(6), GRIPPER_CLOSE, Source.POLICY).grasp_action == 1
    j.clear()
    assert j.report("left", 1.0, np.zeros(6), GRIPPER_CLOSE, Source.POLICY) is None  # the episode ended
