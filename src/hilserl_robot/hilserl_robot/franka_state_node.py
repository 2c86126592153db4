"""Robot state adapter (one per arm, in the arm's namespace): franka_robot_state_broadcaster ->
``current_pose``, ``current_twist``, ``external_wrench``.

Subscribes ``robot_state_topic`` (franka_msgs/FrankaRobotState, default
``franka_robot_state_broadcaster/robot_state`` relative to the arm's namespace) and publishes,
at ``publish_rate_hz``, the newest converted sample as the simulator does: PoseStamped (TCP in
the base frame), TwistStamped (TCP twist, base axes, estimated from the poses) and
WrenchStamped (``O_F_ext_hat_K`` about the TCP, base axes), all with ``header.frame_id =
base_frame_id`` and the stamp of the robot-state message. The conversion is
``hilserl_core.robot.franka_state``.

Nothing is published while the robot state is older than ``stale_after_s`` (the actor then
waits, as for any stale input). Diagnostics (``state``): OK while fresh; WARN while stale or
when samples were refused (NaN, not a rigid transform; with the count and the last reason);
ERROR while franka reports reflex, user stop or automatic error recovery.

franka_msgs exists only on a full ROS install with franka_ros2; it is imported when the node
starts (a clear configuration error without it).
"""

from __future__ import annotations

from geometry_msgs.msg import PoseStamped, TwistStamped, WrenchStamped
from rclpy.node import Node

from hilserl_core.formats.config import ConfigError
from hilserl_core.robot.franka_state import FrankaStateConfig, FrankaStateConverter, robot_mode_problem, sample_from_msg
from hilserl_core.robot.franka_state import FrankaStateError
from hilserl_interfaces import diagnostics, qos, topics
from hilserl_interfaces.node_main import run_node
from hilserl_interfaces.params import NodeConfig


def franka_robot_state_type():
    try:
        from franka_msgs.msg import FrankaRobotState
    except ImportError as exc:
        raise ConfigError("franka_state_node needs franka_msgs (franka_ros2), which is not installed here: run it on the "
                          "robot's full ROS 2 install (docker/), see docs/real_robot.md") from exc
    return FrankaRobotState


class FrankaStateNode(Node):
    def __init__(self, state_type=None, **node_kwargs):
        """``state_type``: the subscribed message type (default franka_msgs/FrankaRobotState)."""
        super().__init__("franka_state", **node_kwargs)
        self.conf = NodeConfig(self, FrankaStateConfig)
        c = self.conf.value
        self.converter = FrankaStateConverter(c)
        self.diag = diagnostics.Diagnostics(self)
        self._stamp = None
        self._published_time_s = None
        self.published = 0
        self._pose_pub = self.create_publisher(PoseStamped, topics.CURRENT_POSE, qos.SENSOR)
        self._twist_pub = self.create_publisher(TwistStamped, topics.CURRENT_TWIST, qos.SENSOR)
        self._wrench_pub = self.create_publisher(WrenchStamped, topics.EXTERNAL_WRENCH, qos.SENSOR)
        msg_type = state_type if state_type is not None else franka_robot_state_type()
        self.create_subscription(msg_type, c.robot_state_topic, self.on_state, qos.SENSOR)
        self.create_timer(1.0 / c.publish_rate_hz, self._publish)
        self.create_timer(0.5, self._report)

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def on_state(self, msg) -> None:
        try:
            sample = sample_from_msg(msg)
        except FrankaStateError as exc:
            self.converter.rejected += 1
            self.converter.last_error = str(exc)
            return
        if self.converter.on_sample(sample, self._now()) is not None:
            header = getattr(msg, "header", None)
            stamp = getattr(header, "stamp", None)
            self._stamp = stamp if stamp is not None and (stamp.sec or stamp.nanosec) else self.get_clock().now().to_msg()

    def _publish(self) -> None:
        conv = self.converter
        if not conv.fresh(self._now()) or conv.latest.time_s == self._published_time_s:
            return  # stale (nothing published: the actor waits), or nothing new since the last publish
        s = conv.latest
        p, t, w = topics.arm_state_msgs(self._stamp, self.conf.value.base_frame_id, s.position, s.quat, s.twist, s.wrench)
        self._pose_pub.publish(p)
        self._twist_pub.publish(t)
        self._wrench_pub.publish(w)
        self._published_time_s = s.time_s
        self.published += 1

    def _report(self) -> None:
        conv, now = self.converter, self._now()
        values = {"published": self.published, "rejected": conv.rejected, "twist_restarts": conv.twist.restarts}
        mode = robot_mode_problem(conv.robot_mode)
        if mode:
            self.diag.report("state", diagnostics.ERROR, mode, **values)
        elif conv.latest is None:
            self.diag.report("state", diagnostics.WARN, f"no robot state yet on {self.resolve_topic_name(self.conf.value.robot_state_topic)}",
                             **values)
        elif not conv.fresh(now):
            self.diag.report("state", diagnostics.WARN, f"robot state is {now - conv.received_s:.2f} s old (> stale_after_s): "
                             "publishing nothing", **values)
        elif conv.rejected:
            self.diag.report("state", diagnostics.WARN, f"{conv.rejected} robot-state sample(s) refused; last: {conv.last_error}",
                             **values)
        else:
            self.diag.report("state", diagnostics.OK, "publishing", **values)


NODE_CLASS = FrankaStateNode


def main(args=None) -> int:
    return run_node(NODE_CLASS, args)


if __name__ == "__main__":
    raise SystemExit(main())
