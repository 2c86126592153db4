"""The simulated dual-arm graph, started as separate processes over DDS on loopback from
the same description as `ros2 launch hilserl sim_dual_arm.launch.py`, runs several
episodes with the scripted operator intervening. Checked from outside, as a user would:

- transitions reach the learner, each flagged as intervened exactly when the mux
  reported the operator acting on that step (paired by observation stamp);
- the learner routes them: demo buffer = interventions, RL buffer = all transitions;
- the learner's weights reach the actor and the actor acts with them;
- a parameter change through the parameter services takes effect, an out-of-range
  one is rejected with a reason;
- Ctrl-C (SIGINT) stops every node cleanly.

Run three times: every node a process of its own; with crop nodes, actor and muxes
composed into one process (graph argument ``hot_path_process``), which must change
nothing seen from outside; and with ``lockstep:=true`` (the simulator waits for each
frame's actions, the actor for the learner's update-to-data ratio).
"""

import io
import json
import shutil

import pytest
import rclpy
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Joy
from std_msgs.msg import String, UInt8MultiArray

from hilserl import graph as G
from hilserl.runner import GraphRunner
from hilserl_core.formats import wire
from hilserl_core.robot.intervention import Source
from hilserl_interfaces import actions, payload, qos

ROOT = G.config_dir().parent

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def small_config(tmp_path):
    """config/ with networks small enough for a 2-core test machine and short episodes."""
    cfg = tmp_path / "config"
    shutil.copytree(ROOT / "config", cfg)

    def edit(name, section_updates):
        path = cfg / "params" / name
        doc = yaml.safe_load(path.read_text())
        params = doc["/**"]["ros__parameters"]
        for dotted, value in section_updates.items():
            d = params
            *parents, leaf = dotted.split(".")
            for p in parents:
                d = d.setdefault(p, {})
            d[leaf] = value
        path.write_text(yaml.safe_dump(doc))

    edit("agent.yaml", {"agent.batch_size": 32, "agent.actor_hidden_dims": [64], "agent.critic_hidden_dims": [64],
                        "agent.image_bottleneck_dim": 32, "grasp.hidden_dims": [64], "grasp.image_bottleneck_dim": 32})
    edit("learner.yaml", {"learner.learning_starts": 16, "learner.weights_period_s": 1.0,
                          "learner.checkpoint_period_updates": 0, "learner.updates_per_transition": 0.5})
    edit("actor.yaml", {"max_input_age_s": 0.5})  # (short episodes: the graph argument episode_steps)
    return cfg


class Observer:
    def __init__(self, ctx):
        self.node = rclpy.create_node("e2e_observer", context=ctx)
        n = self.node
        self.transitions, self.executed, self.metrics, self.weights = [], {}, [], []
        self.diag = {}
        n.create_subscription(UInt8MultiArray, "/learner/transitions", self._on_transition, qos.TRANSITIONS)
        for arm in ("left", "right"):
            # A deep reader queue: under load this test's executor can fall seconds behind the muxes'
            # 10 Hz, and the profile's depth of 50 would then drop the records the checks below match.
            n.create_subscription(Joy, f"/{arm}/mux/executed", lambda m, a=arm: self._on_executed(a, m),
                                  QoSProfile(depth=2000, reliability=qos.EVENTS.reliability, history=qos.EVENTS.history))
        n.create_subscription(String, "/metrics/episodes", lambda m: self.metrics.append(json.loads(m.data)), qos.EVENTS)
        n.create_subscription(UInt8MultiArray, "/learner/policy_weights", lambda m: self.weights.append(wire.arrays_to_weights(*payload.decode(m))[1]), qos.LATCHED)
        n.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, qos.EVENTS)

    def _on_transition(self, msg):
        self.transitions.append(wire.arrays_to_transition(*payload.decode(msg))[0])

    def _on_executed(self, arm, msg):
        a = actions.from_joy(msg)
        self.executed.setdefault(round(a.stamp_s, 6), {})[arm] = a.source

    def _on_diag(self, msg):
        for s in msg.status:
            self.diag[s.name] = (s.message, {kv.key: kv.value for kv in s.values})

    def status(self, suffix):
        for name, v in self.diag.items():
            if name.endswith(suffix):
                return v
        return None


@pytest.mark.parametrize("hot_path_process,lockstep", [("", "false"), ("hot_path", "false"), ("", "true")],
                         ids=["processes", "hot_path", "lockstep"])
def test_sim_dual_arm_graph_end_to_end(tmp_path, ros_context, spin_until, hot_path_process, lockstep):
    cfg = small_config(tmp_path)
    graph = G.load_graph("sim_dual_arm", {"checkpoint_dir": str(tmp_path / "ckpt"), "operator": "assist",
                                          "hot_path_process": hot_path_process, "lockstep": lockstep,
                                          "episode_steps": "20"}, cfg_dir=cfg)
    log = io.StringIO()
    runner = GraphRunner(graph, out=log)
    composed = [p for p in runner.processes if p.composed]
    if hot_path_process:
        assert len(composed) == 1 and len(composed[0].nodes) == 7  # 4 crop nodes, 2 muxes, the actor
    else:
        assert not composed
    obs = Observer(ros_context)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(obs.node)
    runner.start()
    try:
        def progress():
            assert runner.poll() is None, "a node died:\n" + log.getvalue()[-4000:]
            weights_used = obs.status("/actor: actor")
            return (
                len(obs.metrics) >= 3
                and sum(t.intervened for t in obs.transitions) >= 3
                and sum(not t.intervened for t in obs.transitions) >= 3
                and weights_used is not None and int(weights_used[1].get("weights_version", 0)) >= 2
            )

        ok = spin_until(ex, progress, 420)
        summary = {"episodes": len(obs.metrics), "transitions": len(obs.transitions),
                   "intervened": sum(t.intervened for t in obs.transitions), "weights_seen": obs.weights[-1:],
                   "actor": obs.status("/actor: actor")}
        assert ok, f"{summary}\n--- log tail ---\n{log.getvalue()[-6000:]}"

        # intervention flags agree with what the muxes reported for the same step
        matched = [t for t in obs.transitions if set(obs.executed.get(round(t.info["stamp_s"], 6), {})) == {"left", "right"}]
        assert len(matched) >= 0.8 * len(obs.transitions), summary
        for t in matched:
            sources = obs.executed[round(t.info["stamp_s"], 6)].values()
            assert t.intervened == (Source.OPERATOR in sources), (t.step, t.episode_id, sources)
        assert any(t.truncated for t in obs.transitions)  # time-limit ends are truncations

        # buffer routing, as the learner reports it
        def routed():
            s = obs.status("/learner: learner")
            if s is None:
                return False
            v = s[1]
            return int(v["demo_buffer"]) == int(v["interventions_received"]) and int(v["rl_buffer"]) == int(v["transitions_received"]) > 0

        assert spin_until(ex, routed, 20), obs.status("/learner: learner")

        # lockstep: the simulator waited for the actions of both arms, frame after frame
        sim = obs.status("/sim: sim")
        if lockstep == "true":
            assert sim is not None and int(sim[1]["lockstep_waits"]) >= 20, sim
            assert sim[1]["lockstep"] in ("engaged", "waiting"), sim
            # every frame waits for its own action, also while the actor waits for the learner (the
            # muxes' timer steps do not release it): no step is lost to a frame that came too soon
            actor = obs.status("/actor: actor")[1]
            assert int(actor["dropped_steps"]) <= 0.02 * int(actor["transitions_sent"]), actor
            stalls = "\n".join(line for line in log.getvalue().splitlines()
                               if "lockstep: no action" in line or "reset" in line.lower())
            assert int(sim[1]["lockstep_timeouts"]) == 0, f"{sim}\n{stalls[-6000:]}"  # resets between episodes never stall it
        else:
            assert sim is not None and sim[1]["lockstep"] == "off", sim

        # live parameter through the parameter services; out of range rejected with a reason
        client = AsyncParameterClient(obs.node, "/left/intervention_mux")
        assert client.wait_for_services(timeout_sec=20)
        fut = client.set_parameters([Parameter("mux.speed_scale", value=0.5)])
        assert spin_until(ex, fut.done, 20) and fut.result().results[0].successful
        fut = client.set_parameters([Parameter("mux.speed_scale", value=50.0)])
        assert spin_until(ex, fut.done, 20)
        res = fut.result().results[0]
        assert not res.successful and "out of range" in res.reason
        fut = client.get_parameters(["mux.speed_scale"])
        assert spin_until(ex, fut.done, 20) and fut.result().values[0].double_value == 0.5
    finally:
        runner.shutdown()
        ex.shutdown()
        obs.node.destroy_node()
    bad = [(e.spec.fqn, e.returncode) for e in runner.exits if e.returncode != 0]
    assert not bad, f"nodes did not stop cleanly: {bad}\n{log.getvalue()[-3000:]}"
