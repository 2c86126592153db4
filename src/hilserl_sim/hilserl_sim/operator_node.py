"""scripted_operator node: a person with a SpaceMouse, for unattended HIL runs.

Per arm namespace it publishes ``spacenav/twist`` (geometry_msgs/Twist, each
component in [-1, 1], in the frame the mux expects: ``twist_frame``) and
``spacenav/joy`` (sensor_msgs/Joy: axes = the same 6 numbers, buttons
[close, open] pressed for one sample, like the two-button SpaceMouse; any
motion above the mux's dead zone or a press is an intervention).

It sees what a person sees, i.e. the true scene: ``/sim/privileged_state``
from sim_node (never given to a policy). ``mode``:
- ``demonstrate``: always in control (teleoperated demonstrations);
- ``assist``: watches ``policy/action`` and intervenes when the policy strays,
  with a probability that falls as ``/sim/success`` episodes accumulate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Dict, Tuple

import numpy as np
from geometry_msgs.msg import Twist
from rclpy.node import Node
from sensor_msgs.msg import Joy
from std_msgs.msg import Bool, String

from hilserl_core.config import param
from hilserl_core.intervention import MuxConfig
from hilserl_interfaces import actions, qos, topics
from hilserl_interfaces.node_main import run_node
from hilserl_interfaces.params import NodeConfig

from .env import ArmAction
from .operator import OperatorConfig, ScriptedOperator, _quat_to_R
from .robot import ArmState
from .sim_node import PRIVILEGED_TOPIC, SUCCESS_TOPIC
from .tasks import make_task, task_names


@dataclass(frozen=True)
class OperatorNodeConfig:
    task: str = param("pick_cube", "task the simulator runs (the operator's script)", choices=tuple(task_names()))
    mode: str = param("demonstrate", "demonstrate: always in control; assist: intervene when the policy strays",
                      choices=("demonstrate", "assist"))
    twist_frame: str = param("base", "frame of the published twist (must equal the mux's operator_frame)", choices=("base", "ee"))
    operator: OperatorConfig = field(default_factory=OperatorConfig)
    mux: MuxConfig = field(default_factory=MuxConfig)


def _arrays(x):
    """JSON lists of numbers back to numpy arrays (recursively)."""
    if isinstance(x, dict):
        return {k: _arrays(v) for k, v in x.items()}
    if isinstance(x, list) and x and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in x):
        return np.asarray(x, dtype=float)
    if isinstance(x, list):
        return [_arrays(v) for v in x]
    return x


class _TaskView:
    """What the scripted experts read from a task, fed from /sim/privileged_state."""

    def __init__(self, name: str):
        task = make_task(name)
        self.name, self.config = task.name, task.config
        self._privileged: Dict = {}

    def privileged_state(self):
        return self._privileged


class _EnvView:
    def __init__(self, task: str, mux: MuxConfig):
        self.task = _TaskView(task)
        self.mux = mux
        self.arm_names: Tuple[str, ...] = ()
        self.gripper_closed: Dict[str, bool] = {}
        self.anchor: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}


class OperatorNode(Node):
    def __init__(self, **node_kwargs):
        super().__init__("scripted_operator", **node_kwargs)
        self.conf = NodeConfig(self, OperatorNodeConfig)
        c = self.conf.value
        self.view = _EnvView(c.task, c.mux)
        self.operator = None
        self.pubs = {}
        self.policy: Dict[str, ArmAction] = {}
        self.samples = 0
        self.create_subscription(String, PRIVILEGED_TOPIC, self._on_state, qos.COMMAND)
        self.create_subscription(Bool, SUCCESS_TOPIC, self._on_success, qos.EVENTS)
        self._last_success = False

    def _setup(self, arms) -> None:
        c = self.conf.value
        self.view.arm_names = tuple(arms)
        self.operator = ScriptedOperator(self.view, c.operator)
        for arm in arms:
            self.pubs[arm] = (self.create_publisher(Twist, f"{arm}/{topics.SPACENAV_TWIST}", qos.COMMAND),
                              self.create_publisher(Joy, f"{arm}/{topics.SPACENAV_JOY}", qos.COMMAND))
            self.create_subscription(Joy, f"{arm}/{topics.POLICY_ACTION}", lambda m, a=arm: self._on_policy(a, m), qos.COMMAND)

    def _on_policy(self, arm: str, msg: Joy) -> None:
        try:
            a = actions.from_joy(msg)
        except ValueError:
            return
        self.policy[arm] = ArmAction(a.action, {0: 1.0, 2: -1.0}.get(a.gripper, 0.0))

    def _on_success(self, msg: Bool) -> None:
        # An episode counts as a policy success on the rising edge of the ground-truth flag.
        if msg.data and not self._last_success and self.operator is not None:
            self.operator.record_episode(True)
        self._last_success = bool(msg.data)

    def _on_state(self, msg: String) -> None:
        if not self.context.ok():  # shutting down (SIGINT/SIGTERM): publish nothing more
            return
        data = _arrays(json.loads(msg.data))
        if data.get("task") != self.view.task.name:
            self.get_logger().error(f"simulator runs {data.get('task')!r} but this operator scripts {self.view.task.name!r}")
            return
        if self.operator is None:
            self._setup(list(data["state"]))
        v = self.view
        v.task._privileged = data["privileged"]
        v.gripper_closed = {a: bool(x) for a, x in data["gripper_closed"].items()}
        v.anchor = {a: (np.asarray(p), np.asarray(q)) for a, (p, q) in data["anchor"].items()}
        obs = {"state": {a: ArmState(data["sim_time"], s["position"], s["quat"], s["twist"], np.zeros(6), np.zeros(2),
                                     np.zeros(2), np.zeros(2), np.zeros(7)) for a, s in data["state"].items()}}
        if self.conf.value.mode == "demonstrate":
            out = self.operator.demonstrate(obs)
            self.operator.to_actions(out)  # bookkeeping of its own presses
        else:
            policy = {a: self.policy.get(a, ArmAction()) for a in v.arm_names}
            _, _, out = self.operator.act(obs, policy)
        for arm in v.arm_names:
            twist = np.asarray(out.twist[arm], dtype=float)
            if self.conf.value.twist_frame == "base":
                R = _quat_to_R(obs["state"][arm].quat)
                twist = np.concatenate((R @ twist[:3], R @ twist[3:]))
                m = np.abs(twist).max()
                twist = twist / m if m > 1.0 else twist
            toggle = out.buttons[arm][0]
            close = int(toggle and not v.gripper_closed[arm])
            open_ = int(toggle and v.gripper_closed[arm])
            t = Twist()
            t.linear.x, t.linear.y, t.linear.z, t.angular.x, t.angular.y, t.angular.z = (float(x) for x in twist)
            joy = Joy()
            joy.header.stamp = self.get_clock().now().to_msg()
            joy.axes = [float(x) for x in twist]
            joy.buttons = [close, open_]
            self.pubs[arm][0].publish(t)
            self.pubs[arm][1].publish(joy)
        self.samples += 1


def main(args=None) -> int:
    return run_node(lambda: OperatorNode(), args)


if __name__ == "__main__":
    raise SystemExit(main())
