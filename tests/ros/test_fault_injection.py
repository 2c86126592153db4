"""Fault injection: the simulated single-arm graph trains while its learner is killed with SIGKILL
and respawned by the runner several times. Afterwards every transition the actor produced is in
the learner's buffers exactly once, weight versions only ever went up, and each restarted learner
went on from the newest checkpoint on disk."""

import io
import json
import os
import re
import signal
import pytest
import rclpy
import yaml
from rclpy.executors import SingleThreadedExecutor
from std_msgs.msg import String, UInt8MultiArray
from test_graph_e2e import small_config

from hilserl import graph as G
from hilserl.runner import GraphRunner
from hilserl_core.formats import wire
from hilserl_core.rl.learner import checkpoints
from hilserl_core.rl.replay import ReplayBuffer
from hilserl_interfaces import payload, qos, topics

pytestmark = [pytest.mark.ros, pytest.mark.slow]

KILLS = 3


class Watcher:
    """What crosses the graph: the actor's transitions (sent and resent), acks, weight versions."""

    def __init__(self, ctx):
        self.node = rclpy.create_node("fault_watcher", context=ctx)
        self.sent = {}  # (session, seq) -> times seen
        self.versions = []
        self.acks = []
        self.node.create_subscription(UInt8MultiArray, topics.TRANSITIONS, self._on_transition, qos.TRANSITIONS)
        self.node.create_subscription(UInt8MultiArray, topics.POLICY_WEIGHTS, self._on_weights, qos.LATCHED)
        self.node.create_subscription(String, topics.TRANSITION_ACKS, lambda m: self.acks.append(json.loads(m.data)), qos.ACKS)

    def _on_transition(self, msg):
        arrays, meta = payload.decode(msg)
        key = (wire.transition_session(meta), wire.arrays_to_transition(arrays, meta)[2])
        self.sent[key] = self.sent.get(key, 0) + 1

    def _on_weights(self, msg):
        self.versions.append(wire.arrays_to_weights(*payload.decode(msg))[1])

    def acked_through(self, session):
        for ack in reversed(self.acks):
            for s in ack["streams"]:
                if s["session"] == session:
                    return s["through"]
        return -1


def test_learner_sigkill_and_respawn_lose_no_transition_and_store_none_twice(tmp_path, ros_context, spin_until):
    cfg = small_config(tmp_path)
    ckpt = tmp_path / "ckpt"
    # checkpoints every 4 s, so restarts resume from several different ones; updates keep going
    params = cfg / "params" / "learner.yaml"
    doc = yaml.safe_load(params.read_text())
    doc["/**"]["ros__parameters"]["learner"]["checkpoint_period_s"] = 4.0
    params.write_text(yaml.safe_dump(doc))
    graph = G.load_graph("sim_single_arm", {"checkpoint_dir": str(ckpt), "operator": "assist"}, cfg_dir=cfg)
    log = io.StringIO()
    runner = GraphRunner(graph, out=log)
    watch = Watcher(ros_context)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(watch.node)
    runner.start()
    resumed_expected = []
    killed = set()  # learner sessions killed: their acks still in flight must not count as a live learner
    try:
        def alive(min_transitions):
            dead = runner.poll()  # respawns the learner when it is due
            assert dead is None, "a required node stopped:\n" + log.getvalue()[-4000:]
            acks = [a for a in watch.acks if a["learner"] not in killed]
            return len(acks) > 0 and acks[-1]["streams"] and len(watch.sent) >= min_transitions

        def stuck():  # where the transitions stopped: the actor's publisher, or the learner's side
            acks = [a for a in watch.acks if a["learner"] not in killed]
            return (f"watcher: {len(watch.sent)} transition(s) seen on {topics.TRANSITIONS}, {len(acks)} ack(s) from "
                    f"live learners, the last {acks[-1] if acks else None}\n" + log.getvalue()[-4000:])

        for k in range(KILLS):
            assert spin_until(ex, lambda: alive(40 * (k + 1)), 240), stuck()
            newest = checkpoints(ckpt)[:1]
            resumed_expected.append(newest[0].name if newest else None)
            learner_pid = runner._procs["/learner"].pid
            killed.add(next(a["learner"] for a in reversed(watch.acks) if a["learner"] not in killed))
            os.killpg(learner_pid, signal.SIGKILL)
            assert spin_until(ex, lambda: runner.poll() is None and runner._procs["/learner"].pid != learner_pid, 30)
        assert spin_until(ex, lambda: alive(40 * (KILLS + 1)), 240), stuck()
        backlog = watch.acks[-1]["updates_due"]  # what an actor in lockstep waits on
        assert isinstance(backlog, int) and backlog >= 0
        sessions = {s for s, _ in watch.sent}
        assert len(sessions) == 1, sessions  # one actor process all along
        session = sessions.pop()
        # what the actor sent while the learner was down is resent and stored while it keeps acting
        sent_by_now = max(seq for _, seq in watch.sent)
        assert spin_until(ex, lambda: runner.poll() is None and watch.acked_through(session) >= sent_by_now, 120), \
            (watch.acks[-1:], sent_by_now, log.getvalue()[-3000:])

        # stop the actor (Ctrl-C), then wait until the learner has stored all it sent
        os.killpg(runner._procs["/actor"].pid, signal.SIGINT)
        assert spin_until(ex, lambda: runner._procs["/actor"].poll() is not None, 20)
        # the actor's own count (it waited for the learner's confirmations before it exited); the
        # watcher may have matched the actor's publisher a moment after its first transitions
        m = re.search(r"the learner confirmed all (\d+) transition\(s\) sent in session (\w+)", log.getvalue())
        assert m and m.group(2) == session, log.getvalue()[-3000:]
        produced = list(range(int(m.group(1))))
        seen = sorted(seq for _, seq in watch.sent)
        assert seen[-1] == produced[-1] and set(produced) - set(seen) <= set(range(50)), "the watcher missed transitions"
        assert spin_until(ex, lambda: watch.acked_through(session) == produced[-1], 30), (watch.acks[-1:], produced[-1])
    finally:
        runner._stopping = True
        runner.shutdown()
        ex.shutdown()
        watch.node.destroy_node()
    text = log.getvalue()
    assert len(runner.respawned) == KILLS, text[-4000:]
    assert any(n > 1 for n in watch.sent.values()), "nothing was resent: the kills did not hit in-flight data"

    # the final checkpoint: each transition exactly once
    final = checkpoints(ckpt)[0]
    meta = json.loads((final / "learner.json").read_text())
    assert meta["transitions_received"] == len(produced), (meta["transitions_received"], len(produced))
    assert len(ReplayBuffer.load(final / "rl_buffer.safetensors")) == len(produced)
    streams = meta["delivery"]["ledger"]
    assert [(s["session"], s["through"], s["above"]) for s in streams] == [(session, produced[-1], [])]

    # versions never repeat or go back; each restart resumed from the newest checkpoint on disk
    assert all(b > a for a, b in zip(watch.versions, watch.versions[1:])), watch.versions
    resumed = [line.split("resumed from ")[1].split(":")[0] for line in text.splitlines() if "resumed from " in line]
    wanted = [w for w in resumed_expected if w is not None]
    assert len(resumed) >= len(wanted), (resumed, resumed_expected)
    for want, got in zip(wanted, resumed[-len(wanted):] if wanted else []):
        assert os.path.basename(got) >= want, (want, got)
    assert "from the transition log" in text, "no restart replayed transitions the checkpoint did not hold"
