"""The actor keeps what it sent until the learner acknowledges it as stored, resends the rest when
the learner answers again, stops starting episodes when its spool is full, ends an episode the mux
does not execute as failed_to_act, and its statuses return to OK when their causes clear."""

import json
import re

from std_msgs.msg import String, UInt8MultiArray
from test_actor_node import _rig

from hilserl_core.formats import wire
from hilserl_interfaces import diagnostics, payload, qos, topics


class Learner:
    """The learner's side of delivery: counts what arrives, acknowledges what the test says."""

    def __init__(self, node):
        self.node = node
        self.seqs = []
        self.sessions = set()
        node.create_subscription(UInt8MultiArray, topics.TRANSITIONS, self.on_transition, qos.TRANSITIONS)
        self.acks = node.create_publisher(String, topics.TRANSITION_ACKS, qos.ACKS)

    def on_transition(self, msg):
        arrays, meta = payload.decode(msg)
        _t, _actor, seq = wire.arrays_to_transition(arrays, meta)
        self.seqs.append(seq)
        self.sessions.add(wire.transition_session(meta))

    def ack(self, actor, through, learner="L1"):
        streams = [{"actor": actor.actor_id, "session": actor.session, "through": through}]
        self.acks.publish(String(data=json.dumps({"learner": learner, "streams": streams})))


def _level(actor, name):
    return actor.diag.level(name)


def test_unacknowledged_transitions_are_kept_resent_to_an_answering_learner_and_dropped_once_stored(ros_context, spin_until):
    actor, world, ex = _rig(ros_context, resend_after_s=1.0)
    learner = Learner(world.node)
    try:
        assert spin_until(ex, lambda: len(learner.seqs) >= 8, 30)
        assert learner.sessions == {actor.session}
        assert len(actor.spool) >= 8  # nobody acknowledged: all kept
        spin_until(ex, lambda: False, 1.2)  # the 0.5 s delivery timer reports
        assert _level(actor, "delivery") == diagnostics.WARN
        assert "no acknowledgement from the learner" in actor.diag._statuses["delivery"].message
        # the learner (re)appears having stored only 0..2: the rest is sent again, in order
        n_sent = len(learner.seqs)
        learner.ack(actor, 2)
        assert spin_until(ex, lambda: 4 in learner.seqs[n_sent:], 10)
        resent = learner.seqs[n_sent:]
        assert 0 not in resent and 2 not in resent and resent.index(3) < resent.index(4)
        # everything acknowledged: the spool empties and the status is OK again
        def all_acked():
            learner.ack(actor, actor.sequence - 1)
            return len(actor.spool) == 0 and _level(actor, "delivery") == diagnostics.OK
        assert spin_until(ex, all_acked, 10), actor.diag._statuses["delivery"].message
    finally:
        ex.shutdown()
        actor.destroy_node()
        world.node.destroy_node()


def test_a_full_spool_starts_no_new_episode_until_the_learner_stores(ros_context, spin_until):
    actor, world, ex = _rig(ros_context, spool_max_transitions=5, max_episode_steps=8)
    learner = Learner(world.node)
    try:
        assert spin_until(ex, lambda: world.metrics, 30)  # the first episode ended (time limit)
        spin_until(ex, lambda: False, 2.0)
        assert world.resets == 1 and len(set(learner.seqs)) >= 5  # no second episode: none acknowledged
        assert _level(actor, "delivery") == diagnostics.ERROR
        assert "no new episode" in actor.diag._statuses["delivery"].message
        learner.ack(actor, actor.sequence - 1)
        assert spin_until(ex, lambda: world.resets >= 2, 15)  # room again: episodes go on
    finally:
        ex.shutdown()
        actor.destroy_node()
        world.node.destroy_node()


def test_an_episode_the_mux_stops_executing_ends_failed_to_act_and_is_not_counted(ros_context, spin_until):
    actor, world, ex = _rig(ros_context, max_unexecuted_steps=5)
    try:
        assert spin_until(ex, lambda: len(world.transitions) >= 2, 30)
        executed = world.pubs["executed"]
        world.pubs["executed"] = type("DeadMux", (), {"publish": lambda self, m: None})()  # the mux died
        assert spin_until(ex, lambda: _level(actor, "actor") == diagnostics.ERROR, 15)
        assert "failed" not in json.dumps(world.metrics) and world.metrics == []  # not a try of the policy
        assert "the mux reported none of the last 5 actions" in actor.diag._statuses["actor"].message
        # stale inputs then fresh again: the WARN clears
        world.pubs["executed"] = executed  # the mux is back
        assert spin_until(ex, lambda: _level(actor, "actor") == diagnostics.OK, 30)
        world.fresh = False
        assert spin_until(ex, lambda: _level(actor, "inputs") == diagnostics.WARN, 10)
        assert spin_until(ex, lambda: _level(actor, "actor") == diagnostics.WARN, 10)  # it cannot act: says so
        assert "not acting for" in actor.diag._statuses["actor"].message
        world.fresh = True
        assert spin_until(ex, lambda: _level(actor, "inputs") == diagnostics.OK, 10)
        assert spin_until(ex, lambda: _level(actor, "actor") == diagnostics.OK, 10)
    finally:
        ex.shutdown()
        actor.destroy_node()
        world.node.destroy_node()


def test_on_stop_the_actor_acts_no_more_and_waits_for_the_learner_to_confirm(ros_context, spin_until):
    actor, world, ex = _rig(ros_context)
    learner = Learner(world.node)
    try:
        assert spin_until(ex, lambda: len(learner.seqs) >= 5, 30)
        learner.ack(actor, 1)  # the learner answers, 2.. not confirmed yet
        assert spin_until(ex, lambda: actor.spool.acknowledged_through == 1, 10)
        n_actions = len(world.actions)
        # the learner confirms everything a moment later (what the actor sent counts: it keeps
        # sending nothing new while it drains)
        world.node.create_timer(0.3, lambda: learner.ack(actor, actor.sequence - 1))

        def spin_for(seconds):
            spin_until(ex, lambda: False, seconds)

        actor.drain(spin_for)
        assert len(actor.spool) == 0
        assert len(world.actions) <= n_actions + 1  # at most the tick already under way
        # a learner that does not answer is not waited for
        actor.spool.sent(actor.sequence, None, actor._now())
        actor._last_ack_s = -1.0
        t0 = actor._now()
        actor.drain(spin_for)
        assert actor._now() - t0 < 1.0 and len(actor.spool) == 1
    finally:
        ex.shutdown()
        actor.destroy_node()
        world.node.destroy_node()


def test_in_lockstep_the_actor_holds_actions_while_the_learner_is_behind_its_ratio(ros_context, spin_until):
    actor, world, ex = _rig(ros_context, lockstep=True, max_learner_backlog=20)
    learner = Learner(world.node)

    def ack(backlog):
        streams = [{"actor": actor.actor_id, "session": actor.session, "through": actor.sequence - 1}]
        learner.acks.publish(String(data=json.dumps({"learner": "L1", "streams": streams, "updates_due": backlog})))

    try:
        assert spin_until(ex, lambda: len(world.actions) >= 3, 30)  # no word from the learner yet: it acts
        assert spin_until(ex, lambda: (ack(50), actor.learner_waits > 0)[1], 10)
        held = len(world.actions)
        spin_until(ex, lambda: (ack(50), False)[1], 1.5)
        assert len(world.actions) <= held + 1  # 50 updates behind (more than 20): no action
        assert spin_until(ex, lambda: (ack(5), len(world.actions) >= held + 5)[1], 10)  # caught up: it acts again
        # a learner that stops answering is not waited for
        assert spin_until(ex, lambda: (ack(50), actor.learner_waits > 1)[1], 10)
        held = len(world.actions)
        assert spin_until(ex, lambda: len(world.actions) >= held + 5, 15)
    finally:
        ex.shutdown()
        actor.destroy_node()
        world.node.destroy_node()


def test_in_lockstep_inputs_the_waiting_simulator_holds_are_current(ros_context, spin_until):
    """In lockstep the simulator holds its frame until the action on it comes, so the frame and
    the state sent with it are current however old by the wall clock: inputs stamped 1 s ago are
    acted on (they were refused as stale, and the simulator waited 5 s for an action that never
    came). Outside lockstep the same inputs are stale: no action."""
    for lockstep in (False, True):
        actor, world, ex = _rig(ros_context, lockstep=lockstep)
        world.stamp_age_s = 1.0
        try:
            if lockstep:
                assert spin_until(ex, lambda: len(world.actions) >= 3, 30)
                assert all(0.9 < actor._now() - a.stamp_s < 5.0 for a in world.actions[-3:])
            else:
                spin_until(ex, lambda: False, 3.0)
                assert world.actions == [] and _level(actor, "inputs") == diagnostics.WARN
                assert "stale" in actor.diag._statuses["inputs"].message
        finally:
            ex.shutdown()
            actor.destroy_node()
            world.node.destroy_node()


def test_a_learner_that_answers_but_stores_nothing_is_reported_with_the_publishers_side_of_the_link(ros_context, spin_until, capfd):
    actor, world, ex = _rig(ros_context, resend_after_s=1.0)
    learner = Learner(world.node)
    # it answers every 0.2 s, as a learner does, but lists no stream of this actor: nothing stored
    world.node.create_timer(0.2, lambda: learner.acks.publish(String(data=json.dumps({"learner": "L1", "streams": []}))))
    try:
        assert spin_until(ex, lambda: len(learner.seqs) >= 8, 30)
        assert spin_until(ex, lambda: _level(actor, "delivery") == diagnostics.WARN, 10)  # late: none stored for 2 s
        status = actor.diag._statuses["delivery"]
        assert "not yet stored by the learner" in status.message and "no acknowledgement" not in status.message
        # the actor's side, so a failing link tells a silent publisher from a reader that gets nothing
        link = re.search(rf"(\d+) subscription\(s\) matched on {topics.TRANSITIONS}, (\d+) publish\(es\) done", status.message)
        assert link, status.message
        assert int(link.group(1)) >= 1  # this learner (the rig's world listens too)
        assert int(link.group(2)) >= len(set(learner.seqs)) >= 8
        assert "waited" not in status.message  # the sending thread is not stuck in a publish
        # after 10 s of answers that store nothing, the actor's log says so (a console shows no diagnostics)
        spin_until(ex, lambda: False, 10.0)
        err = capfd.readouterr().err
        assert "the learner (session L1) answers but has not stored" in err and f"of session {actor.session}" in err, err[-2000:]
    finally:
        ex.shutdown()
        actor.destroy_node()
        world.node.destroy_node()
