"""Actions on the wire, as sensor_msgs/Joy (a policy is a virtual joystick).

``policy/action`` (actor -> mux) and ``mux/executed`` (mux -> actor) are both
sensor_msgs/Joy:

- ``axes``: the normalised continuous action in ``[-1, 1]``: a twist
  ``[vx, vy, vz, wx, wy, wz]`` in the current end-effector frame, or a wrench in
  wrench mode (same order, force then torque).
- ``buttons[0]``: the gripper action, 0 = open, 1 = stay, 2 = close
  (-1 = this arm has no gripper).
- ``buttons[1]`` (``mux/executed`` only): who acted: 0 policy, 1 operator, 2 hold.
- ``header.stamp``: for ``policy/action`` the stamp of the observation the policy
  acted on; ``mux/executed`` copies the stamp of the policy action it answered
  (or carries its own time when the operator or a hold acted without one), so
  the actor pairs each executed action with its observation.
- ``header.frame_id``: the frame of the axes (``<arm>_ee``).

Standard messages keep bags readable with any ROS 2 install and plottable in rqt.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sensor_msgs.msg import Joy

from hilserl_core.formats import msgconv
from hilserl_core.robot.intervention import GRIPPER_CLOSE, GRIPPER_NONE, GRIPPER_OPEN, GRIPPER_STAY, Source

_GRIPPER_ACTIONS = (GRIPPER_NONE, GRIPPER_OPEN, GRIPPER_STAY, GRIPPER_CLOSE)


@dataclass
class ActionMsg:
    action: np.ndarray  # float [6]
    gripper: int  # 0 open, 1 stay, 2 close, -1 none
    stamp_s: float
    source: Source = Source.POLICY
    frame_id: str = ""


def to_joy(a: ActionMsg, executed: bool = False) -> Joy:
    msg = Joy()
    msgconv.seconds_to_stamp(msg.header.stamp, a.stamp_s)
    msg.header.frame_id = a.frame_id
    msg.axes = [float(x) for x in np.asarray(a.action, dtype=float)]
    msg.buttons = [int(a.gripper), int(a.source)] if executed else [int(a.gripper)]
    return msg


def from_joy(msg: Joy) -> ActionMsg:
    axes = np.asarray(msg.axes, dtype=float)
    if axes.shape != (6,):
        raise ValueError(f"action message must have 6 axes, got {axes.shape[0]}")
    buttons = list(msg.buttons)
    gripper = int(buttons[0]) if buttons else GRIPPER_NONE
    if gripper not in _GRIPPER_ACTIONS:
        raise ValueError(f"gripper action {gripper} is not -1 (none), 0 (open), 1 (stay) or 2 (close)")
    source = Source(int(buttons[1])) if len(buttons) > 1 else Source.POLICY
    return ActionMsg(axes, gripper, msgconv.stamp_to_seconds(msg.header.stamp), source, msg.header.frame_id)
