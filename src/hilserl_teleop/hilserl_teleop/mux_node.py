"""Intervention mux node (one per arm): the ONLY publisher of controller targets.

Subscribes (arm namespace): ``current_pose``, ``policy/action`` (sensor_msgs/Joy,
see hilserl_interfaces.actions), ``spacenav/twist`` and ``spacenav/joy`` (from
the SpaceMouse driver, the ROS ``spacenav`` package, or the scripted operator).
Publishes: ``target_pose`` (twist mode) or ``target_wrench`` (wrench mode),
``gripper/command`` (std_msgs/Float64, 0 open .. 1 closed; once per open or close, so the
gripper keeps what a reset or the last command left and a starting mux never opens a gripper
that holds something) and ``mux/executed``
(what was executed and who acted, for the actor's transitions, one per step).

The mux must be the only publisher of the arm's targets. When another node publishes on
either target topic (in either mode) it does not exit: it reports ERROR on diagnostics
("targets", naming the other publishers) and STOPS publishing (targets, gripper command and
``mux/executed``) until it is the only one again, then re-anchors its hold at the measured
pose and goes on. Stopping is the safe choice: the simulator and the hilserl controllers hold
the arm while a target topic has two publishers (``control.SinglePublisherGuard``), so
commands from the mux would be dropped anyway, and the silence of ``mux/executed`` tells the
actor that the mux is not acting (the same signal as a dead mux).

Diagnostics (``/diagnostics``, hardware id ``/<arm>/intervention_mux``): ``targets`` (OK / ERROR
as above), ``inputs`` (WARN while no ``current_pose`` has come or the last one is older than
``pose_timeout_s``, OK again when it is fresh), ``policy`` and ``operator`` (rejected policy
actions and operator twists: NaN/Inf, wrong length, beyond ``mux.input_limit``; WARN naming
the source and the count until ``mux.rejection_quiet_s`` pass without one, then OK) and
``source`` (who acted; WARN while holding, with the reason).

A step runs when a policy action arrives (lowest latency), and on a timer at
``control_rate_hz`` while no policy action has come for 1.5 periods (operator-only
teleoperation, demo recording, holding). The logic is hilserl_core.robot.intervention.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from geometry_msgs.msg import PoseStamped, Twist, WrenchStamped
from rclpy.node import Node
from sensor_msgs.msg import Joy
from std_msgs.msg import Float64

from hilserl_core.formats import msgconv
from hilserl_core.formats.config import param
from hilserl_core.robot.intervention import InterventionMux, MuxConfig, Source, input_age_limit
from hilserl_interfaces import actions, diagnostics, qos, topics
from hilserl_interfaces.node_main import run_node
from hilserl_interfaces.params import NodeConfig


@dataclass(frozen=True)
class MuxNodeConfig:
    base_frame_id: str = param("base", "frame of current_pose and target_pose")
    ee_frame_id: str = param("ee", "end-effector frame (frame of actions and target_wrench)")
    has_gripper: bool = param(True, "this arm has a gripper driven through gripper/command")
    pose_timeout_s: float = param(0.5, "current_pose older than this is reported stale (WARN on diagnostics)", units="s",
                                  low=0.01, high=60.0, live=True)
    mux: MuxConfig = field(default_factory=MuxConfig)


class MuxNode(Node):
    def __init__(self, **node_kwargs):
        super().__init__("intervention_mux", **node_kwargs)
        self.conf = NodeConfig(self, MuxNodeConfig, on_change=lambda old, new: self.mux.set_config(new.mux))
        c = self.conf.value
        self.mux = InterventionMux(c.mux, has_gripper=c.has_gripper)
        self.diag = diagnostics.Diagnostics(self)
        self._pose = None
        self._pose_received_s = -float("inf")
        self._last_policy_step_s = -1.0
        self._conflict = ""  # why the mux is not publishing ("" while it is the only publisher of its targets)
        self.steps = {s: 0 for s in Source}
        self._target_pub = self.create_publisher(PoseStamped, topics.TARGET_POSE, qos.COMMAND)
        self._wrench_pub = self.create_publisher(WrenchStamped, topics.TARGET_WRENCH, qos.COMMAND)
        self._gripper_pub = self.create_publisher(Float64, topics.GRIPPER_COMMAND, qos.COMMAND)
        self._executed_pub = self.create_publisher(Joy, "mux/executed", qos.EVENTS)
        self.create_subscription(PoseStamped, topics.CURRENT_POSE, self._on_pose, qos.SENSOR)
        self.create_subscription(Joy, topics.POLICY_ACTION, self._on_policy, qos.COMMAND)
        self.create_subscription(Twist, topics.SPACENAV_TWIST, self._on_twist, qos.COMMAND)
        self.create_subscription(Joy, topics.SPACENAV_JOY, self._on_joy, qos.COMMAND)
        self.create_timer(1.0 / c.mux.control_rate_hz, self._on_timer)
        self.create_timer(0.1, self._check_single_publisher)
        self.create_timer(0.2, self._report_inputs)

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_pose(self, msg: PoseStamped) -> None:
        self._pose = msgconv.pose_to_arrays(msg.pose)
        self._pose_received_s = self._now()

    def _on_policy(self, msg: Joy) -> None:
        now = self._now()
        try:
            a = actions.from_joy(msg)
        except ValueError as exc:
            self.mux.reject_policy(f"rejected a malformed policy/action: {exc}", now)
            ok = False
        else:
            ok = self.mux.on_policy(a.action, a.gripper, a.stamp_s, now)
        if not ok:
            self._report_source("policy", now, publish_now=True)
            return
        self._last_policy_step_s = now
        self._step(now)

    def _on_twist(self, msg: Twist) -> None:
        now = self._now()
        before = self.mux.rejected_operator
        self.mux.on_operator_twist(msgconv.vector6_from_twist(msg), now)
        if self.mux.rejected_operator != before:
            self._report_source("operator", now, publish_now=before == 0)

    def _report_source(self, source: str, now: float, publish_now: bool = False) -> None:
        level, text, values = self.mux.rejections.status(source, now)
        self.diag.report(source, level, text, publish_now=publish_now, **values)

    def _report_inputs(self) -> None:
        """Statuses that must return to OK when their cause clears, refreshed whether or not the mux steps."""
        now = self._now()
        for source in ("policy", "operator"):
            self._report_source(source, now)
        age = now - self._pose_received_s
        if self._pose is None:
            self.diag.report("inputs", diagnostics.WARN, "no current_pose yet: holding nothing, publishing nothing")
        elif age > self.conf.value.pose_timeout_s:
            self.diag.report("inputs", diagnostics.WARN, f"current_pose is {age:.2f} s old (> pose_timeout_s "
                             f"{self.conf.value.pose_timeout_s} s): is the robot state publisher running?")
        else:
            self.diag.report("inputs", diagnostics.OK, "current_pose fresh")

    def _on_joy(self, msg: Joy) -> None:
        self.mux.on_operator_buttons(list(msg.buttons), self._now())

    def _on_timer(self) -> None:
        # Without a policy driving the steps (teleoperation, demos, holding), the timer
        # steps at the control rate; while policy actions arrive, they drive every step.
        # In lockstep the simulator's frames pace the policy actions and the world stands still
        # between them: a timer step would move the target meanwhile (the operator's twist twice).
        now, c = self._now(), self.conf.value.mux
        if now - self._last_policy_step_s > input_age_limit(1.5 / c.control_rate_hz, c.lockstep):
            self._step(now)

    def _step(self, now: float) -> None:
        if self._conflict:  # another publisher on a target topic: publish nothing (see the module docstring)
            return
        if self._pose is None:
            self.diag.report("inputs", diagnostics.WARN, "no current_pose yet: holding nothing, publishing nothing")
            return
        c = self.conf.value
        d = self.mux.step(now, *self._pose)
        self.steps[d.source] += 1
        stamp = self.get_clock().now().to_msg()
        if d.wrench_ee is not None:
            w = WrenchStamped()
            w.header.stamp, w.header.frame_id = stamp, c.ee_frame_id
            msgconv.fill_wrench(w.wrench, d.wrench_ee)
            self._wrench_pub.publish(w)
        elif d.target_pos is not None:
            p = PoseStamped()
            p.header.stamp, p.header.frame_id = stamp, c.base_frame_id
            msgconv.fill_pose(p.pose, d.target_pos, d.target_quat)
            self._target_pub.publish(p)
        if d.gripper_closure is not None:
            self._gripper_pub.publish(Float64(data=float(d.gripper_closure)))
        executed = actions.ActionMsg(
            d.executed_action, d.gripper_action, d.policy_stamp_s if d.policy_stamp_s is not None else now, d.source, c.ee_frame_id
        )
        self._executed_pub.publish(actions.to_joy(executed, executed=True))
        level = diagnostics.OK if d.source != Source.HOLD else diagnostics.WARN
        self.diag.report("source", level, d.reason or d.source.name.lower(),
                         **{s.name.lower(): n for s, n in self.steps.items()})

    def other_publishers(self, topic: str) -> list:
        """``/namespace/name`` of every node other than this one publishing on ``topic``."""
        me = (self.get_name(), self.get_namespace())
        return sorted(
            ("/" + "/".join(x for x in (i.node_namespace.strip("/"), i.node_name) if x))
            for i in self.get_publishers_info_by_topic(self.resolve_topic_name(topic))
            if (i.node_name, i.node_namespace) != me
        )

    def _check_single_publisher(self) -> None:
        # Both target topics in both modes: a controller (the simulator's included) may follow
        # target_pose in wrench mode too, so another target_pose publisher is never harmless.
        problems = []
        for topic in (topics.TARGET_POSE, topics.TARGET_WRENCH):
            if self.count_publishers(topic) > 1:
                others = self.other_publishers(topic) or ["(an unnamed node)"]
                problems.append(f"{len(others)} other publisher(s) on {self.resolve_topic_name(topic)}: {', '.join(others)}")
        text = "; ".join(problems)
        if text and text != self._conflict:
            full = (f"{text}. The mux must be the only publisher of its targets: it publishes nothing (no target, "
                    "gripper command or mux/executed) until they are gone; the controller holds the arm meanwhile")
            self.diag.report("targets", diagnostics.ERROR, full, publish_now=True)
            self.get_logger().error(full)
        elif not text and self._conflict:
            self.mux.forget_target()  # someone else held (or moved) the arm meanwhile: re-anchor at the measured pose
            self.diag.report("targets", diagnostics.OK, "the only publisher of its targets again; publishing", publish_now=True)
            self.get_logger().info(f"no other publisher on the target topics any more ({self._conflict}): publishing again")
        elif not text and self.diag.level("targets") < 0:
            self.diag.report("targets", diagnostics.OK, "the only publisher of its targets")
        self._conflict = text


# what `ros2 run` starts and what compose_nodes builds when this node shares a process
NODE_CLASS = MuxNode


def main(args=None) -> int:
    return run_node(NODE_CLASS, args)


if __name__ == "__main__":
    raise SystemExit(main())
