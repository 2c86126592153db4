"""The actor node with scripted peers for robot state, cameras, reward, mux and reset:
actions stamped with their observation, transitions carry the EXECUTED action and the
intervention flag, success ends an episode (terminal) and triggers a reset, a stale
input stops acting, and new weights are used."""

import json

import numpy as np
import pytest
import rclpy
import rclpy.task
from geometry_msgs.msg import PoseStamped, TwistStamped, WrenchStamped
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.time import Time
from sensor_msgs.msg import Image, JointState, Joy
from std_msgs.msg import Empty, String, UInt8MultiArray
from std_srvs.srv import Trigger

from hilserl_core.formats import msgconv, wire
from hilserl_core.robot import frames
from hilserl_core.robot.episode_cycle import EpisodePhase
from hilserl_core.robot.intervention import Source
from hilserl_core.vision import encoders
from hilserl_interfaces import actions, payload, qos, topics
from hilserl_policy.actor_node import ActorNode

SMALL = {"agent.actor_hidden_dims": [16], "agent.critic_hidden_dims": [16], "agent.image_bottleneck_dim": 8,
         "grasp.hidden_dims": [16], "grasp.image_bottleneck_dim": 8}


class World:
    """Robot, camera, reward and mux stand-ins on one node."""

    def __init__(self, ctx):
        self.node = rclpy.create_node("world", context=ctx)
        n = self.node
        self.pubs = {
            "pose": n.create_publisher(PoseStamped, "/left/current_pose", qos.COMMAND),
            "twist": n.create_publisher(TwistStamped, "/left/current_twist", qos.COMMAND),
            "wrench": n.create_publisher(WrenchStamped, "/left/external_wrench", qos.COMMAND),
            "gripper": n.create_publisher(JointState, "/left/gripper/joint_states", qos.COMMAND),
            "image": n.create_publisher(Image, "/left/cameras/wrist/image_cropped", qos.COMMAND),
            "success": n.create_publisher(Joy, "/reward/success", qos.EVENTS),
            "executed": n.create_publisher(Joy, "/left/mux/executed", qos.EVENTS),
            "episode_reset": n.create_publisher(Empty, "/episode/reset", qos.EVENTS),
        }
        self.actions, self.transitions, self.metrics = [], [], []
        n.create_subscription(Joy, "/left/policy/action", self.on_action, qos.COMMAND)
        n.create_subscription(UInt8MultiArray, "/learner/transitions", lambda m: self.transitions.append(wire.arrays_to_transition(*payload.decode(m))[0]), qos.TRANSITIONS)
        n.create_subscription(String, "/metrics/episodes", lambda m: self.metrics.append(json.loads(m.data)), qos.EVENTS)
        # its own reentrant group: a request left unanswered must not block the next one, nor the robot
        n.create_service(Trigger, "/sim/reset", self.on_reset, callback_group=ReentrantCallbackGroup())
        self.resets = 0
        self.reset_mode = "ok"  # ok | refuse_once | never_answer_once
        self.operator = False
        self.gripper = 1  # what the mux reports for the gripper (-1: this arm has none)
        self.success = False
        self.fresh = True
        self.stamp_age_s = 0.0  # stamps this much in the past (a simulator holding its frame in lockstep)
        self.img = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)

    async def on_reset(self, req, resp):
        self.resets += 1
        if self.reset_mode == "refuse_once":
            self.reset_mode = "ok"
            resp.success, resp.message = False, "robot in reflex"
            return resp
        if self.reset_mode == "never_answer_once":  # as when DDS drops the response
            self.reset_mode = "ok"
            await rclpy.task.Future()  # never done: this request gets no response
        self.success = False
        resp.success = True
        return resp

    def on_action(self, msg):
        a = actions.from_joy(msg)
        self.actions.append(a)
        # the mux: the operator overrides with a fixed action when intervening
        src = Source.OPERATOR if self.operator else Source.POLICY
        executed = np.full(6, 0.5) if self.operator else a.action
        self.pubs["executed"].publish(actions.to_joy(actions.ActionMsg(executed, self.gripper, a.stamp_s, src), executed=True))

    def publish_state(self):
        if not self.fresh:
            return
        n = self.node
        stamp = msgconv.seconds_to_stamp(Time().to_msg(), n.get_clock().now().nanoseconds * 1e-9 - self.stamp_age_s)
        p = PoseStamped()
        p.header.stamp = stamp
        msgconv.fill_pose(p.pose, [0.5, 0, 0.3], frames.quat_from_euler_xyz(np.pi, 0, 0))
        self.pubs["pose"].publish(p)
        t = TwistStamped()
        t.header.stamp = stamp
        self.pubs["twist"].publish(t)
        w = WrenchStamped()
        w.header.stamp = stamp
        self.pubs["wrench"].publish(w)
        self.pubs["gripper"].publish(JointState(header=p.header, name=["f1", "f2"], position=[0.02, 0.02]))
        im = Image(header=p.header)
        msgconv.fill_image(im, self.img)
        self.pubs["image"].publish(im)
        self.pubs["success"].publish(topics.reward_success_msg(self.success, float(self.success), stamp))  # on this frame


def _rig(ros_context, reset_service="/sim/reset", **extra):
    params = [Parameter("cameras", value=["left/wrist"]), Parameter("max_episode_steps", value=50),
              Parameter("reset_service", value=reset_service)]
    params += [Parameter(k, value=v) for k, v in {**SMALL, **extra}.items()]
    actor = ActorNode(context=ros_context, parameter_overrides=params)
    world = World(ros_context)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(actor)
    ex.add_node(world.node)
    world.node.create_timer(0.02, world.publish_state)
    return actor, world, ex


@pytest.fixture(params=["/sim/reset"], ids=["reset_service"])
def rig(ros_context, request):
    actor, world, ex = _rig(ros_context, request.param)
    yield actor, world, ex
    ex.shutdown()
    actor.destroy_node()
    world.node.destroy_node()


@pytest.mark.parametrize("mode", ["never_answer_once", "refuse_once"])
def test_a_lost_or_refused_reset_is_asked_again(ros_context, spin_until, mode):
    actor, world, ex = _rig(ros_context, reset_timeout_s=1.0)
    world.reset_mode = mode
    try:
        assert spin_until(ex, lambda: len(world.transitions) >= 2, 30), (world.resets, actor.cycle.phase)
        assert world.resets == 2  # the first request was lost or refused, the second one worked
        assert "asking again" in actor.diag._statuses["reset"].message
    finally:
        ex.shutdown()
        actor.destroy_node()
        world.node.destroy_node()


def test_the_actor_runs_the_encoder_dtype_it_is_given(ros_context, spin_until):
    ok, why = encoders.int8_available()
    if not ok:
        pytest.skip(f"int8 encoder unavailable: {why}")
    actor, world, ex = _rig(ros_context, encoder_dtype="int8")
    try:
        assert actor.policy.encoder.compute_dtype == "int8"
        assert spin_until(ex, lambda: len(world.transitions) >= 2, 30), "no transitions from the int8 actor"
        assert all(np.isfinite(a.action).all() for a in world.actions)
    finally:
        ex.shutdown()
        actor.destroy_node()
        world.node.destroy_node()
    with pytest.raises(Exception, match="encoder_dtype"):
        ActorNode(context=ros_context, parameter_overrides=[Parameter("encoder_dtype", value="int4")])


def test_actor_loop(rig, spin_until):
    actor, world, ex = rig
    assert spin_until(ex, lambda: len(world.transitions) >= 3, 30), "no transitions from the actor"
    assert world.resets == 1
    # every transition's action is the one the mux executed, for the observation it was chosen on
    sent = {round(a.stamp_s, 6): a.action for a in world.actions}
    assert all(not t.intervened for t in world.transitions)
    assert any(np.allclose(t.action, s, atol=1e-6) for t in world.transitions[:1] for s in sent.values())
    # operator takes over: transitions are flagged and carry the operator's action
    world.operator = True
    n0 = len(world.transitions)
    assert spin_until(ex, lambda: len(world.transitions) >= n0 + 3, 30)
    ops = [t for t in world.transitions[n0 + 1:]]
    assert ops and all(t.intervened and np.allclose(t.action, 0.5) for t in ops)
    # success ends the episode as terminal, the metrics come out, and the scene is reset
    world.operator = False
    world.success = True
    # (transitions go out from the actor's sender thread: the episode report may come first)
    assert spin_until(ex, lambda: world.metrics and world.transitions[-1].terminated, 30)
    last = world.transitions[-1]
    assert last.terminated and not last.truncated and last.reward == 1.0
    assert world.metrics[-1]["successes_total"] == 1 and world.metrics[-1]["end"] == "success"
    # a reset signal while the scene is being reset is ignored: the next episode is not cut at once
    assert actor.cycle.phase is not EpisodePhase.RUNNING
    world.pubs["episode_reset"].publish(Empty())
    world.success = False
    assert spin_until(ex, lambda: world.resets == 2, 10)
    n1 = len(world.transitions)
    assert spin_until(ex, lambda: len(world.transitions) >= n1 + 2, 30)
    assert [m["end"] for m in world.metrics] == ["success"]
    # stale inputs: no action
    world.fresh = False
    ex.spin_once(timeout_sec=0.5)
    n_actions = len(world.actions)
    spin_until(ex, lambda: False, 1.0)
    assert len(world.actions) <= n_actions + 1 and "stale" in actor.diag._statuses["inputs"].message


def test_with_await_weights_no_episode_begins_before_the_learners_weights(ros_context, spin_until):
    """hilserl eval: every episode acts with the checkpoint's weights, so every one can count."""
    actor, world, ex = _rig(ros_context, await_weights=True)
    try:
        spin_until(ex, lambda: False, 1.5)  # inputs flow, but no weights yet
        assert world.resets == 0 and world.actions == [] and actor.cycle.phase is EpisodePhase.RESET
        waiting = actor.diag._statuses["weights"]
        assert "no episode begins until they arrive" in waiting.message, waiting.message
        state = {f"{n}/{k}": v.numpy() for n, a in actor.policy.agents().items() for k, v in a.policy_state_dict().items()}
        pub = world.node.create_publisher(UInt8MultiArray, "/learner/policy_weights", qos.LATCHED)
        pub.publish(payload.encode(*wire.weights_to_arrays(state, 7)))
        assert spin_until(ex, lambda: world.resets == 1 and len(world.actions) >= 3, 15), (world.resets, actor.cycle.phase)
        assert actor.policy.version == 7
    finally:
        ex.shutdown()
        actor.destroy_node()
        world.node.destroy_node()


def test_actor_swaps_in_weights_and_rejects_foreign_ones(rig, spin_until):
    actor, world, ex = rig
    other = ActorNode(context=ex.context, namespace="/other", parameter_overrides=[
        Parameter("cameras", value=["left/wrist"]), Parameter("agent.seed", value=9), Parameter("grasp.seed", value=9)]
        + [Parameter(k, value=v) for k, v in SMALL.items()])
    state = {f"{n}/{k}": v.numpy() for n, a in other.policy.agents().items() for k, v in a.policy_state_dict().items()}
    pub = world.node.create_publisher(UInt8MultiArray, "/learner/policy_weights", qos.LATCHED)
    pub.publish(payload.encode(*wire.weights_to_arrays(state, 4)))
    assert spin_until(ex, lambda: actor.policy.version == 4, 10)
    k = next(iter(state))
    assert np.array_equal(actor.policy.agents()[k.split("/")[0]].policy_state_dict()[k.split("/", 1)[1]].numpy(), state[k])
    state.pop(k)
    pub.publish(payload.encode(*wire.weights_to_arrays(state, 5)))
    assert spin_until(ex, lambda: "kept weights v4" in getattr(actor.diag._statuses.get("weights"), "message", ""), 10)
    assert actor.policy.version == 4
    other.destroy_node()


def _weights_msg(header_or_meta, data=b"", raw=False):
    """A payload message carrying these exact bytes (raw) or a valid container with this metadata."""
    import struct

    from hilserl_core.formats import tensorio

    if raw:
        h = json.dumps(header_or_meta).encode()
        h += b" " * ((-len(h)) % 8)
        blob = struct.pack("<Q", len(h)) + h + data
    else:
        blob = tensorio.to_bytes({}, header_or_meta)
    msg = payload.encode({}, {})
    msg.data = __import__("array").array("B", blob)
    return msg


def test_malformed_weights_never_kill_the_actor(rig, monkeypatch):
    """The weights topic is transient-local: a payload that raised in the callback would kill
    the actor again after every restart. Each is reported and the actor keeps its weights."""
    actor, world, ex = rig
    state = {f"{n}/{k}": v.numpy() for n, a in actor.policy.agents().items() for k, v in a.policy_state_dict().items()}
    good_arrays, good_meta = wire.weights_to_arrays(state, 4)
    actor._on_weights(payload.encode(good_arrays, good_meta))
    assert actor.policy.version == 4
    bad = [
        _weights_msg([], raw=True),  # header is a JSON list
        _weights_msg(5, raw=True),
        _weights_msg({"__metadata__": "hilserl.format_version hilserl.sha256"}, raw=True),
        _weights_msg({"__metadata__": {"hilserl.format_version": [1], "hilserl.sha256": "x"}}, raw=True),
        _weights_msg({"kind": wire.WEIGHTS_KIND, "names": [], "version": None}),
        _weights_msg({"kind": wire.WEIGHTS_KIND, "names": 5, "version": 5}),
        _weights_msg({"kind": wire.WEIGHTS_KIND, "names": []}),  # no version
    ]
    for msg in bad:
        actor._on_weights(msg)
        status = actor.diag._statuses["weights"]
        assert status.level == bytes([2]) and status.message.startswith("kept weights v4: "), status.message
    # informational metadata of the wrong type does not refuse good weights, nor crash
    actor._on_weights(payload.encode(*wire.weights_to_arrays(state, 5, extra={"published_s": "soon"})))
    assert actor.policy.version == 5 and actor.diag._statuses["weights"].message == "policy weights v5"

    # last line of defence: any exception from decoding is reported, never raised
    def broken(arrays, meta):
        raise KeyError("decoder bug")

    monkeypatch.setattr(wire, "arrays_to_weights", broken)
    actor._on_weights(payload.encode(*wire.weights_to_arrays(state, 6)))
    status = actor.diag._statuses["weights"]
    assert actor.policy.version == 5 and "kept weights v5: unexpected KeyError" in status.message
    monkeypatch.undo()
    actor._on_weights(payload.encode(*wire.weights_to_arrays(state, 7)))
    assert actor.policy.version == 7


@pytest.mark.parametrize("rig", [""], ids=["operator_resets"], indirect=True)
def test_without_a_reset_service_the_actor_waits_for_the_operator(rig, spin_until):
    """A robot where a person resets the scene: no episode starts until /episode/reset says it is ready;
    /episode/reset during an episode cuts it (truncation), and the next one waits for the operator again."""
    actor, world, ex = rig
    spin_until(ex, lambda: False, 1.5)
    assert world.actions == [] and actor.cycle.phase is EpisodePhase.OPERATOR
    assert "waiting for the operator" in actor.diag._statuses["reset"].message
    world.pubs["episode_reset"].publish(Empty())  # the scene is ready
    assert spin_until(ex, lambda: len(world.transitions) >= 2, 30)
    world.pubs["episode_reset"].publish(Empty())  # cut the episode
    assert spin_until(ex, lambda: world.metrics and world.transitions[-1].truncated, 10)
    assert world.metrics[-1]["end"] == "operator_reset"
    assert world.resets == 0  # nobody called a reset service
    spin_until(ex, lambda: False, 0.5)
    n_actions, n_transitions = len(world.actions), len(world.transitions)
    spin_until(ex, lambda: False, 1.0)
    assert len(world.actions) == n_actions and len(world.transitions) == n_transitions and actor.cycle.phase is EpisodePhase.OPERATOR
    world.pubs["episode_reset"].publish(Empty())
    assert spin_until(ex, lambda: len(world.transitions) >= n_transitions + 2, 30)
    assert [m["end"] for m in world.metrics] == ["operator_reset"]


def test_a_gripperless_arm_is_recorded_as_stay_with_a_warning_and_malformed_reports_are_ignored(rig, spin_until):
    actor, world, ex = rig
    world.gripper = -1  # the mux has has_gripper: false
    assert spin_until(ex, lambda: len(world.transitions) >= 2, 30)
    assert all(t.grasp_action == 1 for t in world.transitions)  # stay, never "open"
    assert "reports no gripper" in actor.diag._statuses["grasp"].message
    bad = Joy(axes=[0.0] * 5, buttons=[1, 0])
    bad.header.stamp = world.node.get_clock().now().to_msg()
    world.pubs["executed"].publish(bad)
    assert spin_until(ex, lambda: "executed" in actor.diag._statuses, 10)
    assert "6 axes" in actor.diag._statuses["executed"].message
    n = len(world.transitions)
    assert spin_until(ex, lambda: len(world.transitions) >= n + 2, 30)  # still running
