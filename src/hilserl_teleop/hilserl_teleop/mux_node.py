"""Intervention mux node (one per arm): the ONLY publisher of controller targets.

Subscribes (arm namespace): ``current_pose``, ``policy/action`` (sensor_msgs/Joy,
see hilserl_interfaces.actions), ``spacenav/twist`` and ``spacenav/joy`` (from
the SpaceMouse driver, the ROS ``spacenav`` package, or the scripted operator).
Publishes: ``target_pose`` (twist mode) or ``target_wrench`` (wrench mode),
``gripper/command`` (std_msgs/Float64, 0 open .. 1 closed) and ``mux/executed``
(what was executed and who acted, for the actor's transitions). It stops (exit
code 3) when another node publishes on either target topic, in either mode.

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
from hilserl_core.robot.intervention import InterventionMux, MuxConfig, Source
from hilserl_interfaces import actions, diagnostics, qos, topics
from hilserl_interfaces.node_main import run_node
from hilserl_interfaces.params import NodeConfig


@dataclass(frozen=True)
class MuxNodeConfig:
    base_frame_id: str = param("base", "frame of current_pose and target_pose")
    ee_frame_id: str = param("ee", "end-effector frame (frame of actions and target_wrench)")
    has_gripper: bool = param(True, "this arm has a gripper driven through gripper/command")
    mux: MuxConfig = field(default_factory=MuxConfig)


class MuxNode(Node):
    def __init__(self, **node_kwargs):
        super().__init__("intervention_mux", **node_kwargs)
        self.conf = NodeConfig(self, MuxNodeConfig, on_change=lambda old, new: self.mux.set_config(new.mux))
        c = self.conf.value
        self.mux = InterventionMux(c.mux, has_gripper=c.has_gripper)
        self.diag = diagnostics.Diagnostics(self)
        self._pose = None
        self._last_policy_step_s = -1.0
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
        self.create_timer(1.0, self._check_single_publisher)

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_pose(self, msg: PoseStamped) -> None:
        self._pose = msgconv.pose_to_arrays(msg.pose)

    def _on_policy(self, msg: Joy) -> None:
        now = self._now()
        try:
            a = actions.from_joy(msg)
            ok = self.mux.on_policy(a.action, a.gripper, a.stamp_s, now)
        except ValueError as exc:
            self.mux.rejected += 1
            self.mux.last_reason, ok = str(exc), False
        if not ok:
            self.diag.report("policy", diagnostics.WARN, self.mux.last_reason, rejected=self.mux.rejected)
            return
        self._last_policy_step_s = now
        self._step(now)

    def _on_twist(self, msg: Twist) -> None:
        self.mux.on_operator_twist(msgconv.vector6_from_twist(msg), self._now())

    def _on_joy(self, msg: Joy) -> None:
        self.mux.on_operator_buttons(list(msg.buttons), self._now())

    def _on_timer(self) -> None:
        # Without a policy driving the steps (teleoperation, demos, holding), the timer
        # steps at the control rate; while policy actions arrive, they drive every step.
        now = self._now()
        if now - self._last_policy_step_s > 1.5 / self.conf.value.mux.control_rate_hz:
            self._step(now)

    def _step(self, now: float) -> None:
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

    def _check_single_publisher(self) -> None:
        # Both target topics in both modes: a controller (the simulator's included) may follow
        # target_pose in wrench mode too, so another target_pose publisher is never harmless.
        for topic in (topics.TARGET_POSE, topics.TARGET_WRENCH):
            n = self.count_publishers(topic)
            if n > 1:
                text = f"{n - 1} other publisher(s) on {self.resolve_topic_name(topic)}: the mux must be the only one; refusing to run"
                self.diag.report("targets", diagnostics.ERROR, text)
                self.diag.publish()
                self.get_logger().fatal(text)
                raise SystemExit(3)


# what `ros2 run` starts and what compose_nodes builds when this node shares a process
NODE_CLASS = MuxNode


def main(args=None) -> int:
    return run_node(NODE_CLASS, args)


if __name__ == "__main__":
    raise SystemExit(main())
