"""Gripper bridge (one per arm, in the arm's namespace): ``gripper/command`` -> franka_gripper's
``move`` / ``grasp`` actions, franka_gripper's joint states -> ``gripper/joint_states``.

Subscribes ``gripper/command`` (std_msgs/Float64, 0 open .. 1 closed, from the intervention
mux) and ``<gripper_namespace>/joint_states`` (franka_gripper's finger joints); sends goals to
``<gripper_namespace>/move`` and ``<gripper_namespace>/grasp`` (franka_msgs/action/Move,
Grasp) and publishes ``gripper/joint_states`` (sensor_msgs/JointState, ``<arm>_finger_joint1/2``,
each finger at half the opening, as the simulator does). Which goal, when, and what a failure
means is ``hilserl_core.robot.gripper_bridge`` (one goal per change of command, none while one
is active, retries, timeouts). Diagnostics: ``gripper`` (OK / WARN server missing or bad
commands / ERROR a goal failed, with franka's error text, until a goal succeeds) and
``joint_states`` (WARN while none come or some are malformed).

The action types exist only on a full ROS install with franka_ros2 (franka_msgs); they are
imported when the node starts. Tests pass ``actions=`` a stand-in with the same interface.
"""

from __future__ import annotations

from typing import Callable

from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64

from hilserl_core.formats.config import ConfigError
from hilserl_core.robot.gripper_bridge import GRASP, MOVE, GripperBridge, GripperBridgeConfig, GripperGoal, forward_joint_state
from hilserl_interfaces import diagnostics, qos, topics
from hilserl_interfaces.node_main import run_node
from hilserl_interfaces.params import NodeConfig

ResultCallback = Callable[[int, bool, str], None]  # (seq, success, error text)


class FrankaGripperActions:
    """franka_gripper's action servers behind ``ready(kind)``, ``send(goal, on_rejected, on_result)``, ``cancel(seq)``."""

    def __init__(self, node: Node, namespace: str) -> None:
        try:
            from franka_msgs.action import Grasp, Move
        except ImportError as exc:
            raise ConfigError("gripper_bridge_node needs franka_msgs (franka_ros2), which is not installed here: run it on the "
                              "robot's full ROS 2 install (docker/), see docs/real_robot.md") from exc
        from rclpy.action import ActionClient

        self.types = {MOVE: Move, GRASP: Grasp}
        ns = namespace.rstrip("/")
        self.clients = {kind: ActionClient(node, t, f"{ns}/{kind}") for kind, t in self.types.items()}
        self._handles = {}

    def ready(self, kind: str) -> bool:
        return self.clients[kind].server_is_ready()

    def send(self, goal: GripperGoal, on_rejected: Callable[[int, str], None], on_result: ResultCallback) -> None:
        t = self.types[goal.kind]
        g = t.Goal()
        g.width, g.speed = float(goal.width_m), float(goal.speed_mps)
        if goal.kind == GRASP:
            g.force = float(goal.force_n)
            g.epsilon.inner, g.epsilon.outer = float(goal.epsilon_inner_m), float(goal.epsilon_outer_m)
        future = self.clients[goal.kind].send_goal_async(g)

        def accepted(fut) -> None:
            exc = fut.exception()
            handle = fut.result() if exc is None else None
            if handle is None or not handle.accepted:
                on_rejected(goal.seq, str(exc) if exc is not None else "not accepted by franka_gripper")
                return
            self._handles[goal.seq] = handle
            handle.get_result_async().add_done_callback(lambda rf: done(rf))

        def done(rf) -> None:
            self._handles.pop(goal.seq, None)
            exc = rf.exception()
            if exc is not None:
                on_result(goal.seq, False, f"no result: {exc}")
                return
            res = rf.result().result
            on_result(goal.seq, bool(res.success), str(res.error))

        future.add_done_callback(accepted)

    def cancel(self, seq: int) -> None:
        handle = self._handles.pop(seq, None)
        if handle is not None:
            handle.cancel_goal_async()


class GripperBridgeNode(Node):
    def __init__(self, actions=None, **node_kwargs):
        super().__init__("gripper_bridge", **node_kwargs)
        self.conf = NodeConfig(self, GripperBridgeConfig)
        c = self.conf.value
        self.bridge = GripperBridge(c)
        self.diag = diagnostics.Diagnostics(self)
        self.arm = self.get_namespace().strip("/").split("/")[-1] or "arm"
        self.actions = actions if actions is not None else FrankaGripperActions(self, c.gripper_namespace)
        self.forwarded = 0
        self.bad_joint_states = 0
        self._last_joint_error = ""
        self._joint_received_s = None
        self._joint_pub = self.create_publisher(JointState, topics.GRIPPER_JOINT_STATES, qos.SENSOR)
        self.create_subscription(Float64, topics.GRIPPER_COMMAND, self._on_command, qos.COMMAND)
        self.create_subscription(JointState, c.gripper_namespace.rstrip("/") + "/joint_states", self._on_joint_state, qos.SENSOR)
        self.create_timer(0.05, self._tick)
        self.create_timer(0.5, self._report)

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_command(self, msg: Float64) -> None:
        now = self._now()
        if not self.bridge.on_command(msg.data, now):
            self.get_logger().warning(self.bridge.last_rejection, throttle_duration_sec=5.0)
        self._tick()  # a changed command goes out at once

    def _tick(self) -> None:
        now, b = self._now(), self.bridge
        timed_out = b.check_timeout(now)
        if timed_out is not None:
            self.actions.cancel(timed_out.seq)
            self._failed()
        pending = b.pending
        goal = b.poll(now, self.actions.ready(pending.kind) if pending is not None else False)
        if goal is not None:
            self.actions.send(goal, self._on_rejected, self._on_result)

    def _on_rejected(self, seq: int, reason: str) -> None:
        self.bridge.on_rejected(seq, reason, self._now())
        self._failed()

    def _on_result(self, seq: int, success: bool, error: str) -> None:
        before = self.bridge.failed
        self.bridge.on_result(seq, success, error, self._now())
        if self.bridge.failed != before:
            self._failed()
        else:
            self._report()

    def _failed(self) -> None:
        self.get_logger().error(f"gripper: {self.bridge.last_error}")
        level, text, values = self.bridge.status()
        self.diag.report("gripper", level, text, publish_now=True, **values)

    def _on_joint_state(self, msg: JointState) -> None:
        try:
            names, pos, vel, eff = forward_joint_state(self.arm, list(msg.name), list(msg.position), list(msg.velocity),
                                                       list(msg.effort), self.conf.value.max_width_m)
        except ValueError as exc:
            self.bad_joint_states += 1
            self._last_joint_error = str(exc)
            return
        out = JointState()
        out.header.frame_id = msg.header.frame_id
        out.header.stamp = msg.header.stamp if (msg.header.stamp.sec or msg.header.stamp.nanosec) else self.get_clock().now().to_msg()
        out.name, out.position, out.velocity, out.effort = names, pos, vel, eff
        self._joint_pub.publish(out)
        self.forwarded += 1
        self._joint_received_s = self._now()

    def _report(self) -> None:
        level, text, values = self.bridge.status()
        self.diag.report("gripper", level, text, **values)
        now = self._now()
        jv = {"forwarded": self.forwarded, "malformed": self.bad_joint_states}
        if self._joint_received_s is None or now - self._joint_received_s > 1.0:
            self.diag.report("joint_states", diagnostics.WARN, "no joint states from franka_gripper in the last second"
                             + (f" (last malformed: {self._last_joint_error})" if self._last_joint_error else ""), **jv)
        elif self.bad_joint_states:
            self.diag.report("joint_states", diagnostics.WARN, f"forwarding; some malformed: {self._last_joint_error}", **jv)
        else:
            self.diag.report("joint_states", diagnostics.OK, "forwarding", **jv)


NODE_CLASS = GripperBridgeNode


def main(args=None) -> int:
    return run_node(NODE_CLASS, args)


if __name__ == "__main__":
    raise SystemExit(main())
