"""Actor node (10 Hz): observations -> policy + grasp critic -> actions; transitions -> learner.

Per arm it reads ``current_pose``, ``current_twist``, ``external_wrench``,
``gripper/joint_states``, the cropped cameras and ``mux/executed``; globally
``/reward/success``, ``/learner/policy_weights`` and ``/episode/reset``. Each tick:

1. all inputs must be fresh (``max_input_age_s``): else no action, a diagnostic;
2. the previous step is closed with the action the mux reported as executed
   (``hilserl_core.robot.actor.EpisodeRecorder``) and sent to the learner;
3. the policy acts on the egocentric observation; one ``policy/action`` per arm,
   stamped with the observation time, so the mux's report pairs with it.

Episodes end on success (terminal), on the time limit or an operator reset
(``/episode/reset`` while an episode runs: a truncation); then the actor asks
``reset_service`` (the simulator's ``/sim/reset``) and starts the next episode
from the new pose. With ``reset_service`` empty (a robot where a person resets
the scene) it waits instead until the operator says the scene is ready with
another ``/episode/reset`` (``ros2 topic pub --once /episode/reset
std_msgs/msg/Empty``), also before the first episode. A reset signal that comes
while a reset is under way is ignored. New weights are swapped in between
ticks, whole.
"""

from __future__ import annotations

import json
import time
import traceback

import numpy as np
import torch
from geometry_msgs.msg import PoseStamped, TwistStamped, WrenchStamped
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState, Joy
from std_msgs.msg import Bool, Empty, String, UInt8MultiArray
from std_srvs.srv import Trigger

from hilserl_core.accel.threaded_encoder import resolve_encoder_threads
from hilserl_core.formats import config as cfg
from hilserl_core.formats import msgconv, tensorio, wire
from hilserl_core.rl.grasp_dqn import joint_index_to_gripper_actions
from hilserl_core.rl.metrics import EpisodeMetrics, EpisodeRecord
from hilserl_core.rl.policy import PolicyRunner, WeightsMismatch
from hilserl_core.robot import frames
from hilserl_core.robot.actor import (
    ActorConfig,
    EpisodeRecorder,
    LatestInputs,
    egocentric_observation,
)
from hilserl_core.robot.episode_cycle import EpisodeCycle, EpisodePhase, ExecutedJoin
from hilserl_core.vision.encoders import load_frozen_encoder
from hilserl_interfaces import actions, diagnostics, payload, qos, topics
from hilserl_interfaces.node_main import run_node
from hilserl_interfaces.params import NodeConfig

EPISODE_RESET = "/episode/reset"
GRIPPER_MAX_WIDTH_M = 0.08  # Franka Hand: fully open


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
        self.recorder = EpisodeRecorder(c.max_episode_steps, 1.0 / c.control_rate_hz, c.grasp_penalty, n_grippers=n_arms)
        self.metrics = EpisodeMetrics()
        self.inputs = LatestInputs()
        self.actor_id = c.actor_id or self.get_fully_qualified_name()
        self.sequence = 0
        self.cycle = EpisodeCycle(c.reset_timeout_s)  # reset -> resetting or operator -> waiting -> running
        self.join = ExecutedJoin(self.arms, c.use_grasp_critic)  # the mux reports of the step in flight
        self._reset_future = None

        self._action_pubs = {}
        for arm in self.arms:
            ns = f"/{arm}/"
            self.create_subscription(PoseStamped, ns + topics.CURRENT_POSE, lambda m, a=arm: self._put(f"{a}/pose", msgconv.pose_to_arrays(m.pose), m.header.stamp), qos.SENSOR)
            self.create_subscription(TwistStamped, ns + topics.CURRENT_TWIST, lambda m, a=arm: self._put(f"{a}/twist", msgconv.vector6_from_twist(m.twist), m.header.stamp), qos.SENSOR)
            self.create_subscription(WrenchStamped, ns + topics.EXTERNAL_WRENCH, lambda m, a=arm: self._put(f"{a}/wrench", msgconv.vector6_from_wrench(m.wrench), m.header.stamp), qos.SENSOR)
            self.create_subscription(JointState, ns + topics.GRIPPER_JOINT_STATES, lambda m, a=arm: self._put(f"{a}/gripper", min(1.0, sum(m.position) / GRIPPER_MAX_WIDTH_M), m.header.stamp), qos.SENSOR)
            self.create_subscription(Joy, ns + "mux/executed", lambda m, a=arm: self._on_executed(a, m), qos.EVENTS)
            self._action_pubs[arm] = self.create_publisher(Joy, ns + topics.POLICY_ACTION, qos.COMMAND)
        for entry, key in zip(c.cameras, self.cam_keys):
            self.create_subscription(Image, topics.cropped_topic(entry), lambda m, k=key: self._on_image(k, m), qos.SENSOR)
        self.create_subscription(Bool, topics.REWARD_SUCCESS, lambda m: self._put("success", bool(m.data), None), qos.EVENTS)
        self.create_subscription(UInt8MultiArray, topics.POLICY_WEIGHTS, self._on_weights, qos.LATCHED)
        self.create_subscription(Empty, EPISODE_RESET, self._on_operator_reset, qos.EVENTS)
        self._transition_pub = self.create_publisher(UInt8MultiArray, topics.TRANSITIONS, qos.TRANSITIONS)
        self._metrics_pub = self.create_publisher(String, topics.EPISODE_METRICS, qos.EVENTS)
        self._reward_reset_pub = self.create_publisher(Empty, "/reward/reset", qos.EVENTS)
        self._reset_client = self.create_client(Trigger, c.reset_service) if c.reset_service else None
        self.create_timer(1.0 / c.control_rate_hz, self._on_timer)
        self._last_obs_stamp = -1.0  # image time of the last observation acted on
        self._last_tick_s = -1.0
        self.transitions_sent = 0
        self.actions_sent = 0
        self._frame_to_action_ms: list = []
        self._compute_ms: list = []  # policy + grasp critic forward passes

    # -- inputs ---------------------------------------------------------------------------
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _put(self, key: str, value, stamp) -> None:
        # Stamps of zero (publishers that leave the header empty) count as "now".
        t = msgconv.stamp_to_seconds(stamp) if stamp is not None and (stamp.sec or stamp.nanosec) else self._now()
        self.inputs.put(key, value, t)

    def _on_image(self, key: str, msg: Image) -> None:
        try:
            self._put("image/" + key, msgconv.image_to_rgb(msg), msg.header.stamp)
        except ValueError as exc:
            self.diag.report("inputs", diagnostics.ERROR, f"{key}: {exc}")
            return
        if self.conf.value.trigger == "camera" and self._new_frames():
            self._tick()

    def _new_frames(self) -> bool:
        """Every camera has a frame about one control period newer than the last observation acted on.

        Measured in camera time, not wall time: a tick that ran late must not push the
        next frame set out (with a wall-clock rule the actor phase-locked ~80 ms late).
        """
        min_gap = 0.8 / self.conf.value.control_rate_hz if self._last_obs_stamp > 0 else 0.0
        got = [self.inputs.get("image/" + k) for k in self.cam_keys]
        return all(g is not None and g[1] >= self._last_obs_stamp + min_gap for g in got)

    def _on_timer(self) -> None:
        c = self.conf.value
        # camera trigger: the timer only covers resets and missing cameras (to say why nothing happens)
        if c.trigger == "timer" or self.cycle.phase is not EpisodePhase.RUNNING or self._now() - self._last_tick_s > 1.5 / c.control_rate_hz:
            self._tick()

    def _on_executed(self, arm: str, msg: Joy) -> None:
        try:
            a = actions.from_joy(msg)  # checks the axes and the gripper action
        except ValueError as exc:  # a malformed report: that step stays unexecuted (dropped), the actor goes on
            self.diag.report("executed", diagnostics.ERROR, f"ignored a malformed mux/executed from {arm}: {exc}")
            return
        step = self.join.report(arm, a.stamp_s, a.action, a.gripper, a.source)
        if step is None:
            return
        if step.arms_without_gripper and self.conf.value.use_grasp_critic:
            self.diag.report("grasp", diagnostics.WARN, f"the mux of {', '.join(step.arms_without_gripper)} reports no "
                             "gripper, but the grasp critic is on: that arm's gripper is recorded as 'stay' and the critic's "
                             "actions for it are never trained; set use_grasp_critic false (actor and learner) for arms "
                             "without a gripper")
        self.recorder.on_executed(self.join.pending_stamp, step.action, step.grasp_action, step.source)

    def _on_weights(self, msg: UInt8MultiArray) -> None:
        # Anyone on the graph can publish here, and the topic is transient-local: an exception
        # escaping this callback would kill the actor again after every restart. Decoding
        # raises TensorIOError/ValueError for a malformed payload; any other exception from
        # decoding is a decoder bug, reported the same way (the actor keeps its weights).
        try:
            arrays, meta = payload.decode(msg)
            arrays, version = wire.arrays_to_weights(arrays, meta)
        except (tensorio.TensorIOError, ValueError) as exc:
            self.diag.report("weights", diagnostics.ERROR, f"kept weights v{self.policy.version}: {exc}", publish_now=True)
            return
        except Exception as exc:  # noqa: BLE001 - last line of defence, see above
            self.get_logger().error(f"unexpected error decoding a policy weights payload:\n{traceback.format_exc()}")
            self.diag.report("weights", diagnostics.ERROR, f"kept weights v{self.policy.version}: unexpected "
                             f"{type(exc).__name__} decoding the payload: {exc}", publish_now=True)
            return
        try:
            self.policy.load_weights(arrays, version)  # checks names, shapes and dtypes before changing anything
        except (ValueError, WeightsMismatch) as exc:
            self.diag.report("weights", diagnostics.ERROR, f"kept weights v{self.policy.version}: {exc}", publish_now=True)
            return
        extra = {}
        published = meta.get("published_s")  # learner publish -> loaded here (same clock source on one machine; NTP across)
        if isinstance(published, (int, float)) and not isinstance(published, bool) and np.isfinite(published):
            extra["delivery_s"] = f"{self._now() - published:.4f}"
        self.diag.report("weights", diagnostics.OK, f"policy weights v{version}", publish_now=True, bytes=len(msg.data), **extra)

    def _on_operator_reset(self, _msg: Empty) -> None:
        self.cycle.operator_signal()  # cuts a running episode, or says the scene is ready; else ignored

    # -- the 10 Hz loop -------------------------------------------------------------------
    def _required(self) -> list:
        keys = [f"{a}/{k}" for a in self.arms for k in ("pose", "twist", "wrench", "gripper")]
        return keys + ["image/" + k for k in self.cam_keys] + ["success"]

    def _tick(self) -> None:
        self._last_tick_s = now = self._now()
        cycle = self.cycle
        if cycle.phase is EpisodePhase.RESET:
            if cycle.may_request_reset(now):
                self._request_reset()
            return
        if cycle.phase is EpisodePhase.OPERATOR and not cycle.operator_says_ready(now):
            return
        if cycle.phase is EpisodePhase.RESETTING:
            if not self._reset_answered():
                return
            cycle.scene_ready(self._now())
        c = self.conf.value
        values, why = self.inputs.snapshot(now, self._required(), c.max_input_age_s)
        if values is None:
            self.diag.report("inputs", diagnostics.WARN, why)
            return
        # The observation's time is its oldest camera frame; never act twice on the same frames.
        obs_stamp = self.inputs.oldest_stamp(["image/" + k for k in self.cam_keys])
        if obs_stamp <= self._last_obs_stamp:
            self.diag.report("inputs", diagnostics.OK, "waiting for new camera frames")
            return
        if cycle.phase is EpisodePhase.WAITING:
            # start poses must be measured after the reset finished
            if self.inputs.oldest_stamp([f"{a}/pose" for a in self.arms]) < cycle.reset_done_s:
                return
            self.recorder.max_episode_steps = c.max_episode_steps
            self.recorder.start_episode({a: frames.pose_to_matrix(*values[f"{a}/pose"]) for a in self.arms})
            self._reward_reset_pub.publish(Empty())
            self.inputs.put("success", False, now)  # no stale success from the last episode
            values["success"] = False
            cycle.episode_started()
        obs = egocentric_observation(
            {"image/" + k: values["image/" + k] for k in self.cam_keys},
            self.arms,
            self.recorder.start_pose,
            {a: values[f"{a}/pose"] for a in self.arms},
            {a: values[f"{a}/twist"] for a in self.arms},
            {a: values[f"{a}/wrench"] for a in self.arms},
            {a: values[f"{a}/gripper"] for a in self.arms},
        )
        success = bool(values["success"])
        self._last_obs_stamp = obs_stamp
        transition, summary = self.recorder.observe(obs, obs_stamp, float(success), success, cycle.take_cut())
        if summary is not None:
            self._send_transition(transition)
            self._end_episode(summary)
            return
        self._act(obs, obs_stamp)
        # the learner can wait a few milliseconds; the arm should not: act first, then send
        self._send_transition(transition)

    def _send_transition(self, transition) -> None:
        if transition is None:
            return
        self._transition_pub.publish(payload.encode(*wire.transition_to_arrays(transition, self.actor_id, self.sequence)))
        self.sequence += 1
        self.transitions_sent += 1

    def _act(self, obs, stamp_s: float) -> None:
        c = self.conf.value
        t0 = time.perf_counter()
        action, grasp = self.policy.act(obs, deterministic=c.deterministic, grasp_epsilon=0.0 if c.deterministic else c.grasp_epsilon)
        self._compute_ms.append((time.perf_counter() - t0) * 1e3)
        grippers = joint_index_to_gripper_actions(grasp, len(self.arms)) if grasp is not None else [1] * len(self.arms)
        self.join.sent(stamp_s)
        for i, arm in enumerate(self.arms):
            msg = actions.to_joy(actions.ActionMsg(action[6 * i : 6 * i + 6], int(grippers[i]), stamp_s, frame_id=f"{arm}_ee"))
            self._action_pubs[arm].publish(msg)
        self.actions_sent += 1
        # camera frame -> action published, as this node sees it (the latency budget is 100 ms)
        self._frame_to_action_ms.append((self._now() - stamp_s) * 1e3)
        del self._frame_to_action_ms[:-50], self._compute_ms[:-50]
        recent, compute = sorted(self._frame_to_action_ms), sorted(self._compute_ms)
        self.diag.report("actor", diagnostics.OK, "acting", weights_version=self.policy.version,
                         transitions_sent=self.transitions_sent, dropped_steps=self.recorder.dropped_steps,
                         frame_to_action_p50_ms=f"{recent[len(recent) // 2]:.1f}",
                         policy_compute_p50_ms=f"{compute[len(compute) // 2]:.1f}")

    def _end_episode(self, summary) -> None:
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
        self.join.clear()
        self.cycle.episode_ended()

    def _request_reset(self) -> None:
        self._reset_future = None
        if self._reset_client is None:  # a person resets the scene and says when it is ready
            self.cycle.wait_for_operator()
            self.get_logger().info(f"episode {self.recorder.episode_id + 1}: reset the scene, then publish {EPISODE_RESET} "
                                   f"(ros2 topic pub --once {EPISODE_RESET} std_msgs/msg/Empty)")
            self.diag.report("reset", diagnostics.WARN, f"waiting for the operator to reset the scene and publish {EPISODE_RESET}",
                             publish_now=True)
            return
        if not self._reset_client.service_is_ready():
            self.cycle.service_unavailable()
            self.diag.report("reset", diagnostics.WARN, f"waiting for {self.conf.value.reset_service}")
            return
        self._reset_future = self._reset_client.call_async(Trigger.Request())
        self.cycle.reset_requested(self._now())

    def _reset_answered(self) -> bool:
        """Whether the reset service answered success; a refusal, or no answer within
        ``reset_timeout_s``, sends the request again (the cycle goes back to RESET)."""
        fut, service, now = self._reset_future, self.conf.value.reset_service, self._now()
        if fut is not None and not fut.done():
            if not self.cycle.reset_timed_out(now):
                return False
            self._reset_client.remove_pending_request(fut)
            why = f"no answer from {service} after {self.cycle.waited_s(now):.0f} s (reset_timeout_s): asking again"
        else:
            exc = fut.exception() if fut is not None else None
            result = fut.result() if fut is not None and exc is None else None
            if result is not None and result.success:
                return True
            detail = str(exc) if exc is not None else (result.message if result is not None else "no request")
            why = f"{service} did not reset the scene ({detail}): asking again in {self.cycle.retry_s:.0f} s"
            self.cycle.reset_refused(now)
        self.get_logger().warning(why, throttle_duration_sec=10.0)
        self.diag.report("reset", diagnostics.WARN, why, publish_now=True)
        return False

    def destroy_node(self) -> None:
        self.policy.close()  # the frozen encoder's helper threads (encoder_threads > 1)
        super().destroy_node()


# what `ros2 run` starts and what compose_nodes builds when this node shares a process
NODE_CLASS = ActorNode


def main(args=None) -> int:
    return run_node(NODE_CLASS, args)


if __name__ == "__main__":
    raise SystemExit(main())
