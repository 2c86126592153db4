"""Reset node: the robot's start-pose reset service, the simulator's ``/sim/reset`` for real arms.

Offers ``service`` (std_srvs/Trigger, default ``/robot/reset``: the actor's ``reset_service``).
A request samples a start pose per arm (``hilserl_core.robot.reset_planner``), sets the
gripper (open / keep / close), moves every arm along a speed-limited path to its start pose,
waits for the operator's go (``go_topic``, default ``/episode/reset``, or a button on
``go_joy_topic``) and then answers ``success: true``. A timeout, an unreachable start (the arm
stops short), no measured pose or no go in time answers ``success: false`` with the reason,
and the same reason is on diagnostics (``reset``: ERROR, until the next reset starts); the
actor asks again. A request that comes while a reset is under way (the actor's ``reset_timeout_s``
ran out) joins it: both get its outcome.

How it moves the arm without a second publisher on ``target_pose`` (the intervention mux
stops, and the controllers hold the arm, while a target topic has two publishers):

- ``via: mux`` (twist mode): the node publishes ``<arm>/policy/action`` like the actor, which
  is idle between episodes: normalised twists in the current EE frame that make the mux step
  its target to the next waypoint. The mux stays the only target publisher, clips to its
  workspace box, and the operator's SpaceMouse overrides a reset at any time.
- ``via: anchor`` (wrench mode, where policy actions are wrenches): waypoints on
  ``<arm>/<anchor_topic>``, which the WrenchController reads as its ``anchor_topics`` (its soft
  holding impedance pulls the arm there); zero-wrench policy actions carry the gripper.

The service callback is a coroutine: it waits for the outcome without blocking the executor,
so the node runs in any executor and can share a process with other nodes.
"""

from __future__ import annotations

import time
from typing import Dict, List, Optional, Tuple

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import Joy
from std_msgs.msg import Empty
from std_srvs.srv import Trigger

from hilserl_core.formats import msgconv
from hilserl_core.robot.reset_planner import ButtonEdge, ResetConfig, ResetPhase, ResetProcedure
from hilserl_interfaces import actions, diagnostics, qos, topics
from hilserl_interfaces.node_main import run_node
from hilserl_interfaces.params import NodeConfig


class _Outcome:
    """Awaitable outcome of a reset for the service coroutine.

    rclpy resumes a waiting coroutine on every turn of the executor (the EventsExecutor at once:
    a reset that waits minutes for the operator burned ~37% of a core); a short sleep before each
    yield keeps that near the node's idle load, at the price of up to ``pause_s`` delay for the
    node's other callbacks while a reset is under way.
    """

    def __init__(self, pause_s: float = 0.005) -> None:
        self.result: Optional[Tuple[bool, str]] = None
        self.pause_s = pause_s

    def __await__(self):
        while self.result is None:
            time.sleep(self.pause_s)
            yield
        return self.result


class ResetNode(Node):
    def __init__(self, **node_kwargs):
        super().__init__("reset", **node_kwargs)
        self.conf = NodeConfig(self, ResetConfig, on_change=lambda old, new: setattr(self.procedure, "config", new))
        c = self.conf.value
        self.procedure = ResetProcedure(c)  # ConfigError for ranges outside the box
        self.diag = diagnostics.Diagnostics(self)
        self._poses: Dict[str, Tuple[np.ndarray, np.ndarray, float]] = {}
        self._waiters: List[_Outcome] = []
        self.outcomes: List[Tuple[bool, str]] = []
        self._action_pubs, self._anchor_pubs = {}, {}
        for arm in c.arms:
            ns = f"/{arm}/"
            self.create_subscription(PoseStamped, ns + topics.CURRENT_POSE, lambda m, a=arm: self._on_pose(a, m), qos.SENSOR)
            self._action_pubs[arm] = self.create_publisher(Joy, ns + topics.POLICY_ACTION, qos.COMMAND)
            if c.via == "anchor":
                topic = c.anchor_topic if c.anchor_topic.startswith("/") else ns + c.anchor_topic
                self._anchor_pubs[arm] = self.create_publisher(PoseStamped, topic, qos.COMMAND)
        if c.go_topic:
            self.create_subscription(Empty, c.go_topic, lambda _m: self._go("go_topic"), qos.EVENTS)
        if c.go_joy_topic:
            self._go_button = ButtonEdge(c.go_button)
            topic = c.go_joy_topic if c.go_joy_topic.startswith("/") else f"/{c.arms[0]}/{c.go_joy_topic}"
            self.create_subscription(Joy, topic, self._on_go_joy, qos.COMMAND)
        # Its own group: the coroutine stays "executing" while it waits, and in the node's default
        # (mutually exclusive) group it would keep the control timer from running.
        self.create_service(Trigger, c.service, self._on_reset, callback_group=ReentrantCallbackGroup())
        self.create_timer(1.0 / c.control_rate_hz, self._step)
        self.diag.report("reset", diagnostics.OK, f"idle: {c.service} resets {', '.join(c.arms)}")

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # -- inputs ---------------------------------------------------------------------------
    def _on_pose(self, arm: str, msg: PoseStamped) -> None:
        pos, quat = msgconv.pose_to_arrays(msg.pose)
        if np.all(np.isfinite(pos)) and np.all(np.isfinite(quat)) and np.linalg.norm(quat) > 1e-6:
            self._poses[arm] = (pos, quat, self._now())

    def _go(self, source: str) -> None:
        if self.procedure.operator_go():
            self.get_logger().info(f"operator's go ({source})")

    def _on_go_joy(self, msg: Joy) -> None:
        if self._go_button.update(list(msg.buttons)):
            self._go("go_joy_topic")

    def _measured(self, now: float) -> Dict[str, Optional[Tuple[np.ndarray, np.ndarray]]]:
        out = {}
        for arm in self.conf.value.arms:
            p = self._poses.get(arm)
            out[arm] = (p[0], p[1]) if p is not None and now - p[2] <= self.conf.value.pose_timeout_s else None
        return out

    # -- the service ------------------------------------------------------------------------
    async def _on_reset(self, request, response):
        if not self.procedure.busy:
            self.procedure.start(self._now())
            goals = "; ".join(f"{a} {np.round(p, 3).tolist()}" for a, (p, _q) in self.procedure.goals.items())
            self.get_logger().info(f"reset {self.procedure.count}: to {goals}")
            self.diag.report("reset", diagnostics.OK, f"reset {self.procedure.count}: started", publish_now=True)
        else:
            self.get_logger().info("reset requested again while one is under way: answering with its outcome")
        waiter = _Outcome()
        self._waiters.append(waiter)
        success, message = await waiter
        response.success, response.message = success, message
        return response

    def _step(self) -> None:
        proc = self.procedure
        if not proc.busy:
            return
        now = self._now()
        out = proc.step(now, self._measured(now))
        self._publish(out, now)
        if out.finished:
            ok = out.phase is ResetPhase.DONE
            self.outcomes.append((ok, out.message))
            if ok:
                self.get_logger().info(out.message)
                self.diag.report("reset", diagnostics.OK, out.message, publish_now=True, resets=proc.count)
            else:
                self.get_logger().error(f"reset failed: {out.message}")
                self.diag.report("reset", diagnostics.ERROR, f"reset {proc.count} failed: {out.message}", publish_now=True,
                                 resets=proc.count)
            waiters, self._waiters = self._waiters, []
            for w in waiters:
                w.result = (ok, out.message)
        else:  # progress; a WARN while the arms wait for the operator's go
            level = diagnostics.WARN if out.phase is ResetPhase.WAITING_GO else diagnostics.OK
            self.diag.report("reset", level, f"reset {proc.count}: {out.message}", resets=proc.count)

    def _publish(self, out, now: float) -> None:
        c = self.conf.value
        for arm, cmd in out.commands.items():
            if cmd.waypoint is not None and arm in self._anchor_pubs:
                p = PoseStamped()
                p.header.stamp = self.get_clock().now().to_msg()
                p.header.frame_id = c.base_frame_id.replace("{arm}", arm)
                msgconv.fill_pose(p.pose, *cmd.waypoint)
                self._anchor_pubs[arm].publish(p)
            if cmd.action is not None:
                msg = actions.ActionMsg(np.asarray(cmd.action, dtype=float), int(cmd.gripper), now, frame_id=f"{arm}_ee")
                self._action_pubs[arm].publish(actions.to_joy(msg))


NODE_CLASS = ResetNode


def main(args=None) -> int:
    return run_node(NODE_CLASS, args)


if __name__ == "__main__":
    raise SystemExit(main())
