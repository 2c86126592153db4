"""Actor node (10 Hz): observations -> policy + grasp critic -> actions; transitions -> learner.

Reads per arm ``current_pose``, ``current_twist``, ``external_wrench``, ``gripper/joint_states``,
the cropped cameras and ``mux/executed``; globally ``/reward/success``, ``/learner/policy_weights``
and ``/episode/reset``. What a tick decides (fresh inputs, the egocentric observation, closing the
step with the action the mux executed, its reward from the success verdict stamped with the
observation's frame, episode ends) is ``hilserl_core.robot.actor_loop.ActorLoop``; a tick that
waits for its frame's verdict runs again when a verdict comes (and on the timer, for the bound);
between episodes the scene is reset through ``reset_service`` or by the operator (``scene_reset``).
The node runs the policy, publishes one ``policy/action`` per arm stamped with the observation's
time (the mux's report pairs with it), sends transitions, and swaps in new weights between ticks.
"""

from __future__ import annotations

import json
import queue
import secrets
import threading
import time
import traceback
from typing import Optional

import numpy as np
import torch
from geometry_msgs.msg import PoseStamped, TwistStamped, WrenchStamped
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState, Joy
from std_msgs.msg import Empty, String, UInt8MultiArray

from hilserl_core.accel.threaded_encoder import resolve_encoder_threads
from hilserl_core.formats import config as cfg
from hilserl_core.formats import msgconv, wire
from hilserl_core.rl.delivery import TransitionSpool
from hilserl_core.rl.grasp_dqn import joint_index_to_gripper_actions
from hilserl_core.rl.metrics import EpisodeMetrics, EpisodeRecord, RecentMedian
from hilserl_core.rl.policy import PolicyRunner, WeightsMismatch
from hilserl_core.robot import frames
from hilserl_core.robot.actor import ActorConfig
from hilserl_core.robot.actor_loop import ARM_INPUTS, ActorLoop, stamp_s, success_from_msg
from hilserl_core.robot.episode_cycle import EpisodePhase
from hilserl_core.robot.intervention import input_age_limit
from hilserl_core.vision.encoders import load_frozen_encoder
from hilserl_interfaces import actions, diagnostics, payload, qos, topics
from hilserl_interfaces.node_main import run_node
from hilserl_interfaces.params import NodeConfig

from .scene_reset import EPISODE_RESET, SceneReset

AWAIT_WEIGHTS_WARN_S = 10.0  # await_weights: a wait this long for the learner's first weights is logged


class ActorNode(Node):
    def __init__(self, **node_kwargs):
        super().__init__("actor", **node_kwargs)
        self.conf = NodeConfig(self, ActorConfig)
        c = self.conf.value
        torch.set_num_threads(c.torch_threads)
        self.diag = diagnostics.Diagnostics(self)
        self.arms = list(c.arms)
        self.cam_keys = [topics.camera_key(e) for e in c.cameras]
        n_arms = len(self.arms)
        encoder = load_frozen_encoder(c.encoder_weights, c.encoder_dtype)
        if not c.encoder_weights:
            self.diag.report("encoder", diagnostics.WARN, "random encoder weights: set encoder_weights for real use")
        grasp_cfg = None
        if c.use_grasp_critic:
            grasp_cfg = cfg.replace(c.grasp, n_grippers=n_arms)
        self.policy = PolicyRunner(c.agent, 6 * n_arms, self.cam_keys, frames.proprio_size(1) * n_arms, encoder, grasp_cfg,
                                   encoder_threads=resolve_encoder_threads(c.encoder_threads, len(self.cam_keys)))
        self.get_logger().info(
            f"frozen encoder {c.encoder_dtype} ({encoder.forward_path()}) on {self.policy.encoder_threads} thread(s); image heads "
            + ("fused" if self.policy.use_fused else f"module by module ({self.policy.fused_why})"))
        self.loop = ActorLoop(self.arms, self.cam_keys, control_rate_hz=c.control_rate_hz, max_episode_steps=c.max_episode_steps,
                              max_input_age_s=input_age_limit(c.max_input_age_s, c.lockstep), grasp_penalty=c.grasp_penalty,
                              use_grasp_critic=c.use_grasp_critic, reset_timeout_s=c.reset_timeout_s,
                              max_unexecuted_steps=c.max_unexecuted_steps, steps_by_observation=c.lockstep)
        self.cycle = self.loop.cycle  # reset -> resetting or operator -> waiting -> running
        self.metrics = EpisodeMetrics()
        self.actor_id = c.actor_id or self.get_fully_qualified_name()
        self.session = secrets.token_hex(6)  # this process: its sequence numbers start at 0
        self.sequence = 0
        # sent, not yet stored by the learner: resent when it answers again (hilserl_core.rl.delivery)
        self.spool = TransitionSpool(c.spool_max_transitions, c.resend_after_s)
        self._learner_backlog = 0  # updates the learner owes its update-to-data ratio (from its acknowledgements)
        self._deferred = None  # (observation, stamp_s) waiting for the learner (lockstep)
        self._weights_in = False  # any policy weights from the learner yet (await_weights)
        self.learner_waits = 0
        self._last_ack_s = -1.0  # when the learner last acknowledged anything (its acks come periodically)
        self._learner_session = ""
        self._answering_since = -1.0  # since when the current learner session has answered without a pause
        self._last_act_s = self._now()
        self._draining = False  # stopping: no more actions, only delivery

        self._action_pubs = {}
        for arm in self.arms:
            ns = f"/{arm}/"
            for name, msg_type in (("pose", PoseStamped), ("twist", TwistStamped), ("wrench", WrenchStamped), ("gripper", JointState)):
                topic, convert = ARM_INPUTS[name]
                self.create_subscription(msg_type, ns + topic, lambda m, k=f"{arm}/{name}", f=convert: self._put(k, f(m), m.header.stamp), qos.SENSOR)
            self.create_subscription(Joy, ns + "mux/executed", lambda m, a=arm: self._on_executed(a, m), qos.EVENTS)
            self._action_pubs[arm] = self.create_publisher(Joy, ns + topics.POLICY_ACTION, qos.COMMAND)
        for entry, key in zip(c.cameras, self.cam_keys):
            self.create_subscription(Image, topics.cropped_topic(entry), lambda m, k=key: self._on_image(k, m), qos.SENSOR)
        self.create_subscription(Joy, topics.REWARD_SUCCESS, self._on_success, qos.EVENTS)
        self.create_subscription(UInt8MultiArray, topics.POLICY_WEIGHTS, self._on_weights, qos.LATCHED)
        self.create_subscription(Empty, EPISODE_RESET, self._on_operator_reset, qos.EVENTS)
        self._transition_pub = self.create_publisher(UInt8MultiArray, topics.TRANSITIONS, qos.TRANSITIONS)
        # Transitions go out from a thread of their own: a reliable publish can block while the
        # learner is matched but unreachable (a cut link, until the DDS lease expires: ~20 s), and
        # the 10 Hz loop must not wait for it (the spool keeps them until they are confirmed).
        self._outbox: "queue.SimpleQueue" = queue.SimpleQueue()
        self.published = 0  # publish calls that returned (live and resent)
        self._publishing_since: Optional[float] = None  # monotonic time the sender entered a publish still running
        self._sender = threading.Thread(target=self._send_loop, name="actor-transitions", daemon=True)
        self._sender.start()
        self.create_subscription(String, topics.TRANSITION_ACKS, self._on_acks, qos.ACKS)
        self._metrics_pub = self.create_publisher(String, topics.EPISODE_METRICS, qos.EVENTS)
        self._reward_reset_pub = self.create_publisher(Empty, "/reward/reset", qos.EVENTS)
        self.reset = SceneReset(self, c.reset_service, self.cycle, self.diag)
        self.create_timer(1.0 / c.control_rate_hz, self._on_timer)
        self.create_timer(0.5, self._resend)
        self.diag.report("weights", diagnostics.WARN, "no policy weights from the learner yet: " + (
            "no episode begins until they arrive (await_weights)" if c.await_weights else "acting with the initial policy"))
        self._started_s = self._now()
        self._await_warned = False
        self._last_tick_s = -1.0
        self.actions_sent = 0
        self._frame_to_action_ms, self._compute_ms = RecentMedian(), RecentMedian()  # compute: policy + grasp critic
        self._reward_warned_s = -1.0  # when the last step took an earlier frame's verdict

    # -- inputs ---------------------------------------------------------------------------
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _put(self, key: str, value, stamp) -> None:
        self.loop.put(key, value, stamp_s(stamp, self._now()))

    def _on_image(self, key: str, msg: Image) -> None:
        try:
            self._put("image/" + key, msgconv.image_to_rgb(msg), msg.header.stamp)
        except ValueError as exc:
            self.diag.report("inputs", diagnostics.ERROR, f"{key}: {exc}")
            return
        if self.conf.value.trigger == "camera" and self.loop.new_frames():
            self._tick()

    def _on_success(self, msg: Joy) -> None:
        try:
            success, _probability = success_from_msg(msg)
        except ValueError as exc:
            self.diag.report("reward", diagnostics.ERROR, f"ignored a malformed {topics.REWARD_SUCCESS}: {exc}")
            return
        self.loop.put_success(success, stamp_s(msg.header.stamp, self._now()))
        if self.loop.awaiting_reward:  # a tick is waiting for its frame's verdict: maybe this one
            self._tick()

    def _on_timer(self) -> None:
        c = self.conf.value
        self._act_deferred()  # (the learner stopped answering: act without it)
        # camera trigger: the timer only covers resets, missing cameras (to say why nothing happens)
        # and the bound on waiting for a frame's success verdict
        if (c.trigger == "timer" or self.cycle.phase is not EpisodePhase.RUNNING or self.loop.awaiting_reward
                or self._now() - self._last_tick_s > 1.5 / c.control_rate_hz):
            self._tick()

    def _on_executed(self, arm: str, msg: Joy) -> None:
        try:
            a = actions.from_joy(msg)  # checks the axes and the gripper action
        except ValueError as exc:  # a malformed report: that step stays unexecuted (dropped), the actor goes on
            self.diag.report("executed", diagnostics.ERROR, f"ignored a malformed mux/executed from {arm}: {exc}")
            return
        step = self.loop.on_executed(arm, a.stamp_s, a.action, a.gripper, a.source)
        if step is None:
            return
        if self.conf.value.lockstep:  # the next frames may be in already, waiting for this report
            self._tick()
        if step.arms_without_gripper and self.conf.value.use_grasp_critic:
            self.diag.report("grasp", diagnostics.WARN, f"the mux of {', '.join(step.arms_without_gripper)} reports no "
                             "gripper, but the grasp critic is on: that arm's gripper is recorded as 'stay' and the critic's "
                             "actions for it are never trained; set use_grasp_critic false (actor and learner) for arms "
                             "without a gripper")

    def _on_weights(self, msg: UInt8MultiArray) -> None:
        # Anyone on the graph can publish here, and the topic is transient-local: an exception
        # escaping this callback would kill the actor again after every restart. Decoding
        # raises ValueError for a malformed payload; any other exception from decoding is a
        # decoder bug, reported the same way (the actor keeps its weights).
        try:
            arrays, meta = payload.decode(msg)
            arrays, version = wire.arrays_to_weights(arrays, meta)
        except Exception as exc:  # noqa: BLE001 - last line of defence, see above
            if not isinstance(exc, ValueError):
                self.get_logger().error(f"unexpected error decoding a policy weights payload:\n{traceback.format_exc()}")
            self.diag.report("weights", diagnostics.ERROR, f"kept weights v{self.policy.version}: "
                             + (str(exc) if isinstance(exc, ValueError) else f"unexpected {type(exc).__name__} decoding "
                                f"the payload: {exc}"), publish_now=True)
            return
        try:
            self.policy.load_weights(arrays, version)  # checks names, shapes and dtypes before changing anything
        except (ValueError, WeightsMismatch) as exc:
            self.diag.report("weights", diagnostics.ERROR, f"kept weights v{self.policy.version}: {exc}", publish_now=True)
            return
        self._weights_in = True
        extra = {}
        published = meta.get("published_s")  # learner publish -> loaded here (same clock source on one machine; NTP across)
        if isinstance(published, (int, float)) and not isinstance(published, bool) and np.isfinite(published):
            extra["delivery_s"] = f"{self._now() - published:.4f}"
        self.diag.report("weights", diagnostics.OK, f"policy weights v{version}", publish_now=True, bytes=len(msg.data), **extra)

    def _on_operator_reset(self, _msg: Empty) -> None:
        self.cycle.operator_signal()  # cuts a running episode, or says the scene is ready; else ignored

    # -- the 10 Hz loop -------------------------------------------------------------------
    def _tick(self) -> None:
        if self._draining:
            return
        self._last_tick_s = now = self._now()
        c, cycle = self.conf.value, self.cycle
        if cycle.phase is EpisodePhase.RESET:
            if self.spool.full:  # the learner stores nothing: more episodes would be lost, so wait (_resend says so)
                return
            if c.await_weights and not self._weights_in:
                if not self._await_warned and now - self._started_s > AWAIT_WEIGHTS_WARN_S:
                    self._await_warned = True  # once: the diagnostic above stays WARN until they arrive
                    self.get_logger().warning(f"no policy weights from the learner after {AWAIT_WEIGHTS_WARN_S:g} s: no "
                                              f"episode begins until they arrive (await_weights); is the learner running "
                                              f"and publishing {topics.POLICY_WEIGHTS}?")
                return
            if cycle.may_request_reset(now):
                self.reset.request(self.loop.recorder.episode_id + 1)
            return
        if cycle.phase is EpisodePhase.RESETTING:
            if not self.reset.answered():
                return
            cycle.scene_ready(self._now())
        self.loop.max_episode_steps, self.loop.max_input_age_s = c.max_episode_steps, input_age_limit(c.max_input_age_s, c.lockstep)  # live
        out = self.loop.tick(now)
        if out.inputs_ok is not None:  # fresh again: the WARN clears
            self.diag.report("inputs", diagnostics.OK if out.inputs_ok else diagnostics.WARN, out.waiting or "inputs fresh")
        if out.observation is None and cycle.phase is EpisodePhase.RUNNING and now - self._last_act_s > 1.0:
            self.diag.report("actor", diagnostics.WARN, f"not acting for {now - self._last_act_s:.1f} s: {out.waiting}",
                             weights_version=self.policy.version, transitions_sent=self.transitions_sent)
        if out.reward_note:
            self._reward_warned_s = now
            self.diag.report("reward", diagnostics.WARN, out.reward_note, late_steps=self.loop.reward_late_steps)
        elif out.observation is not None and self._reward_warned_s >= 0 and now - self._reward_warned_s > 2.0:
            self._reward_warned_s = -1.0
            self.diag.report("reward", diagnostics.OK, "each step's reward is the verdict of its own frame",
                             late_steps=self.loop.reward_late_steps)
        if out.started:
            self._reward_reset_pub.publish(Empty())
        if out.observation is not None:
            self._deferred = None  # a newer observation replaces one still waiting for the learner
            if self._waits_for_learner(now):
                self._deferred = (out.observation, out.stamp_s)
                self.learner_waits += 1
            else:
                self._act(out.observation, out.stamp_s)  # the learner can wait a few milliseconds; the arm should not
        self._send_transition(out.transition)
        if out.summary is not None:
            self._end_episode(out.summary)

    def _send_transition(self, transition) -> None:
        if transition is None:
            return
        msg = payload.encode(*wire.transition_to_arrays(transition, self.actor_id, self.sequence, self.session))
        self._outbox.put(msg)
        self.spool.sent(self.sequence, msg, self._now())
        self.sequence += 1

    # -- delivery to the learner ----------------------------------------------------------
    def _on_acks(self, msg: String) -> None:
        try:
            acks = json.loads(msg.data)
            mine = [s for s in acks["streams"] if s["actor"] == self.actor_id and s["session"] == self.session]
            learner = str(acks["learner"])
        except (ValueError, KeyError, TypeError) as exc:
            self.diag.report("delivery", diagnostics.ERROR, f"ignored a malformed {topics.TRANSITION_ACKS}: {exc}")
            return
        now = self._now()
        if not self._learner_answers(now) or learner != self._learner_session:
            self._answering_since = now
        self._last_ack_s = now
        if learner != self._learner_session:
            if self._learner_session:
                self.get_logger().info(f"learner session {learner} answers ({len(self.spool)} transition(s) to confirm)")
            self._learner_session = learner
        if mine:
            self.spool.acknowledge(int(mine[0]["through"]))
        backlog = acks.get("updates_due", 0)
        self._learner_backlog = backlog if isinstance(backlog, int) and not isinstance(backlog, bool) else 0
        self._act_deferred()

    def _waits_for_learner(self, now: float) -> bool:
        """lockstep: hold the action while the learner (answering) is too far behind its ratio."""
        c = self.conf.value
        return c.lockstep and self._learner_answers(now) and self._learner_backlog > c.max_learner_backlog

    def _act_deferred(self) -> None:
        if self._deferred is None or self._waits_for_learner(self._now()):
            return
        obs, stamp = self._deferred
        self._deferred = None
        if self.cycle.phase is EpisodePhase.RUNNING:  # (an episode cut meanwhile: nothing to act on)
            self._act(obs, stamp)

    def _learner_answers(self, now: float) -> bool:
        return self._last_ack_s >= 0 and now - self._last_ack_s < 2.0

    def _delivery_text(self, now: float) -> str:
        waiting = f"{len(self.spool)} transition(s) not yet stored by the learner (oldest sent {self.spool.oldest_age_s(now):.1f} s ago)"
        if self._learner_answers(now):
            return waiting
        heard = "never" if self._last_ack_s < 0 else f"{now - self._last_ack_s:.1f} s ago"
        return f"no acknowledgement from the learner (last {heard}): {waiting}"

    def _link_text(self) -> str:
        """The transition publisher's side of the link: matched readers, publishes, a stuck sender."""
        text = (f"{self._transition_pub.get_subscription_count()} subscription(s) matched on {topics.TRANSITIONS}, "
                f"{self.published} publish(es) done")
        since = self._publishing_since
        waited = 0.0 if since is None else time.monotonic() - since
        if waited > 1.0:
            text += f", the sending thread has waited {waited:.1f} s in one publish"
        return text

    def _resend(self) -> None:
        """Every 0.5 s: resend what the answering learner has not stored; say how delivery goes."""
        now = self._now()
        answers = self._learner_answers(now)
        if answers and now - self._answering_since > 10.0 and len(self.spool) and self.spool.oldest_age_s(now) > 10.0:
            # (a learner that came back had 10 s to store the resent ones)
            self.get_logger().warning(
                f"the learner (session {self._learner_session}) answers but has not stored {len(self.spool)} "
                f"transition(s) of session {self.session}, the oldest sent {self.spool.oldest_age_s(now):.0f} s ago: "
                f"{self._link_text()}", throttle_duration_sec=30.0)
        if answers and self._outbox.qsize() < 10:  # (not while the sender is stuck: no pile of copies)
            for _seq, msg in self.spool.due(now, limit=50):  # at most 100/s beside the live stream
                self._outbox.put(msg)
        late = len(self.spool) > 0 and self.spool.oldest_age_s(now) > max(2.0, self.spool.resend_after_s)
        level = diagnostics.ERROR if self.spool.full else diagnostics.WARN if late or not answers else diagnostics.OK
        text = (f"{self._delivery_text(now)}; {self._link_text()}" if level != diagnostics.OK
                else "the learner stores every transition sent")
        if self.spool.full:
            text += "; no new episode until the learner stores them"
        self.diag.report("delivery", level, text, spooled=len(self.spool), resent=self.spool.resent,
                         acknowledged_through=self.spool.acknowledged_through, session=self.session)

    transitions_sent = property(lambda self: self.sequence)  # numbered from 0 in this session

    def _act(self, obs, stamp_s: float) -> None:
        c = self.conf.value
        t0 = time.perf_counter()
        action, grasp = self.policy.act(obs, deterministic=c.deterministic, grasp_epsilon=0.0 if c.deterministic else c.grasp_epsilon)
        compute_ms = self._compute_ms.add((time.perf_counter() - t0) * 1e3)
        grippers = joint_index_to_gripper_actions(grasp, len(self.arms)) if grasp is not None else [1] * len(self.arms)
        self.loop.acted(stamp_s)
        for i, arm in enumerate(self.arms):
            msg = actions.to_joy(actions.ActionMsg(action[6 * i : 6 * i + 6], int(grippers[i]), stamp_s, frame_id=f"{arm}_ee"))
            self._action_pubs[arm].publish(msg)
        self.actions_sent += 1
        self._last_act_s = self._now()
        # camera frame -> action published, as this node sees it (the latency budget is 100 ms)
        frame_to_action_ms = self._frame_to_action_ms.add((self._now() - stamp_s) * 1e3)
        self.diag.report("actor", diagnostics.OK, "acting", weights_version=self.policy.version,
                         transitions_sent=self.transitions_sent, dropped_steps=self.loop.recorder.dropped_steps,
                         waits_for_learner=self.learner_waits,
                         frame_to_action_p50_ms=f"{frame_to_action_ms:.1f}", policy_compute_p50_ms=f"{compute_ms:.1f}")

    def _end_episode(self, summary) -> None:
        if summary.end == "failed_to_act" or summary.transitions == 0:  # not a try of the policy: not in its rates
            text = (f"episode {summary.episode_id} stopped after {summary.steps} steps: the mux reported none of the last "
                    f"{self.loop.recorder.max_unexecuted_steps} actions (is the mux running, alone on its topics?)"
                    if summary.end == "failed_to_act" else
                    f"episode {summary.episode_id} ({summary.end}) recorded no transition: not counted")
            self.get_logger().warning(text)
            self.diag.report("actor", diagnostics.ERROR if summary.end == "failed_to_act" else diagnostics.WARN, text,
                             publish_now=True, weights_version=self.policy.version, transitions_sent=self.transitions_sent)
            return
        self.metrics.add(EpisodeRecord(summary.success, summary.duration_s, summary.steps, summary.intervention_steps,
                                       summary.total_reward, summary.episode_id))
        report = {**self.metrics.summary(), "end": summary.end, "weights_version": self.policy.version}
        self._metrics_pub.publish(String(data=json.dumps(report, sort_keys=True)))
        self.get_logger().info(
            f"episode {summary.episode_id}: {summary.end} after {summary.steps} steps ({summary.transitions} recorded), "
            f"{summary.intervention_steps} intervened; success rate {self.metrics.success_rate:.2f} (last {len(self.metrics.recent)})"
        )
        if not summary.last_step_recorded and summary.success:
            self.get_logger().warning(
                f"episode {summary.episode_id}: the step that reached success was not executed as sent (mux held or "
                "its report was lost), so no terminal transition carries this success to the learner")

    def _send_loop(self) -> None:
        while True:
            msg = self._outbox.get()
            if msg is None:
                return
            self._publishing_since = time.monotonic()
            try:
                self._transition_pub.publish(msg)
                self.published += 1
            except Exception as exc:  # noqa: BLE001 - the context is going away; the spool still has it
                self.get_logger().warning(f"could not publish a transition ({type(exc).__name__}: {exc}); kept for resending")
            self._publishing_since = None

    def drain(self, spin_for) -> None:
        """Stopping (node_main): act no more; wait up to drain_timeout_s for the learner to confirm
        what it has not confirmed yet, resending it (``spin_for(seconds)`` runs the callbacks)."""
        self._draining = True
        end = time.monotonic() + self.conf.value.drain_timeout_s
        while len(self.spool) and time.monotonic() < end and self._learner_answers(self._now()):
            spin_for(0.1)  # (a learner that stopped answering is not waited for)
        if len(self.spool):
            self.get_logger().warning(f"exiting; as last heard from the learner: {self._delivery_text(self._now())} "
                                      f"(sent {self.transitions_sent} in session {self.session})")
        else:
            self.get_logger().info(f"the learner confirmed all {self.transitions_sent} transition(s) sent in session "
                                   f"{self.session}")

    def destroy_node(self) -> None:
        self._outbox.put(None)
        self._sender.join(timeout=2.0)
        self.policy.close()  # the frozen encoder's helper threads (encoder_threads > 1)
        super().destroy_node()


# what `ros2 run` starts and what compose_nodes builds when this node shares a process
NODE_CLASS = ActorNode


def main(args=None) -> int:
    return run_node(NODE_CLASS, args)


if __name__ == "__main__":
    raise SystemExit(main())
