"""sim_node: the MuJoCo stand-in for the robot(s), behind the real stack's topics.

Per arm namespace ``<arm>/`` (ARCHITECTURE.md "Topics per arm"):
publishes ``cameras/<cam>/image_raw`` (rgb8, at ``image_rate_hz``), ``current_pose``,
``current_twist``, ``external_wrench`` (base frame, at ``state_rate_hz``) and
``gripper/joint_states``; subscribes ``target_pose``, ``target_wrench`` (EE axes)
and ``gripper/command`` (std_msgs/Float64, 0 open .. 1 closed).
Global: ``/diagnostics`` (why an arm holds: stale/NaN/out-of-range commands),
``/sim/success`` (ground truth, evaluation only), ``/sim/privileged_state``
(JSON ground truth for the scripted operator; never for a policy), and
``/sim/reset`` (std_msgs/UInt32 seed) to start a new randomized episode.

Physics advances ``1 / state_rate_hz`` of simulated time per timer tick; when
the machine is slower than real time, simulated time runs slower (stamps are
ROS time; command ages are measured in ROS time and applied in sim time).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np
from geometry_msgs.msg import PoseStamped, TwistStamped, WrenchStamped
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, Float64, String, UInt32

from hilserl_core import msgconv
from hilserl_core.config import param
from hilserl_interfaces import diagnostics, qos, topics
from hilserl_interfaces.node_main import run_node
from hilserl_interfaces.params import NodeConfig

from .robot import GRIPPER_MAX_WIDTH_M
from .tasks import make_task, task_names

PRIVILEGED_TOPIC = "/sim/privileged_state"
SUCCESS_TOPIC = "/sim/success"
RESET_TOPIC = "/sim/reset"


@dataclass(frozen=True)
class SimNodeConfig:
    task: str = param("pick_cube", "hilserl_sim task to simulate", choices=tuple(task_names()))
    arm_names: str = param("", "comma-separated arm namespaces (empty: 'arm' for one arm, 'left,right' for two)")
    seed: int = param(0, "seed of the first randomized reset", low=0)
    image_size: int = param(128, "rendered camera images are image_size x image_size", units="px", low=16, high=1024)
    cameras: Tuple[str, ...] = param(("wrist", "front"), "cameras published per arm (wrist, front)")
    state_rate_hz: float = param(50.0, "simulated-time rate of physics chunks and state messages", units="Hz", low=1.0, high=500.0)
    image_rate_hz: float = param(10.0, "camera and privileged-state rate", units="Hz", low=0.5, high=60.0)
    base_frame_suffix: str = param("_base", "frame_id of poses is <arm><suffix>")


def to_jsonable(x):
    if isinstance(x, dict):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (np.ndarray, list, tuple)):
        return [to_jsonable(v) for v in x]
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer, int)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        return float(x)
    return x


class SimNode(Node):
    def __init__(self, **node_kwargs):
        super().__init__("sim", **node_kwargs)
        self.conf = NodeConfig(self, SimNodeConfig)
        c = self.conf.value
        self.task = make_task(c.task)
        names = [n.strip() for n in c.arm_names.split(",") if n.strip()] or None
        self.sim = self.task.build(names, image_size=(c.image_size, c.image_size))
        self.arms = self.sim.arm_names
        self.rng = np.random.default_rng(c.seed)
        self.task.reset(self.rng)
        self.diag = diagnostics.Diagnostics(self)
        self.chunk_s = 1.0 / c.state_rate_hz
        self.image_every = max(1, int(round(c.state_rate_hz / c.image_rate_hz)))
        self.ticks = 0
        self.cameras = {arm: [(cam, f"{arm}/{cam}") for cam in c.cameras] for arm in self.arms}
        for arm in self.arms:
            for cam, key in self.cameras[arm]:
                self.sim._camera_id(key)  # a bad camera name fails at start, listing valid ones
        self.pubs: Dict[str, Dict[str, object]] = {}
        for arm in self.arms:
            p = {
                "pose": self.create_publisher(PoseStamped, f"{arm}/{topics.CURRENT_POSE}", qos.SENSOR),
                "twist": self.create_publisher(TwistStamped, f"{arm}/{topics.CURRENT_TWIST}", qos.SENSOR),
                "wrench": self.create_publisher(WrenchStamped, f"{arm}/{topics.EXTERNAL_WRENCH}", qos.SENSOR),
                "gripper": self.create_publisher(JointState, f"{arm}/{topics.GRIPPER_JOINT_STATES}", qos.SENSOR),
            }
            for cam, _ in self.cameras[arm]:
                p["cam/" + cam] = self.create_publisher(Image, f"{arm}/{topics.camera_raw(cam)}", qos.SENSOR)
            self.pubs[arm] = p
            self.create_subscription(PoseStamped, f"{arm}/{topics.TARGET_POSE}", lambda m, a=arm: self._on_pose(a, m), qos.COMMAND)
            self.create_subscription(WrenchStamped, f"{arm}/{topics.TARGET_WRENCH}", lambda m, a=arm: self._on_wrench(a, m), qos.COMMAND)
            self.create_subscription(Float64, f"{arm}/{topics.GRIPPER_COMMAND}", lambda m, a=arm: self._on_gripper(a, m), qos.COMMAND)
        self.success_pub = self.create_publisher(Bool, SUCCESS_TOPIC, qos.EVENTS)
        self.privileged_pub = self.create_publisher(String, PRIVILEGED_TOPIC, qos.COMMAND)
        self.create_subscription(UInt32, RESET_TOPIC, self._on_reset, qos.EVENTS)
        self.create_timer(self.chunk_s, self._tick)
        self.get_logger().info(f"simulating {c.task} with arms {list(self.arms)}")

    # ------------------------------------------------------------------ commands
    def _sim_stamp(self, header_stamp) -> float:
        """The command's stamp in simulated time: its age (ROS time) before now."""
        age = self.get_clock().now().nanoseconds * 1e-9 - msgconv.stamp_to_seconds(header_stamp)
        return self.sim.time - max(age, 0.0) if np.isfinite(age) else float("nan")

    def _on_pose(self, arm: str, msg: PoseStamped) -> None:
        pos, quat = msgconv.pose_to_arrays(msg.pose)
        self.sim.arms[arm].command_pose(pos, quat, stamp_s=self._sim_stamp(msg.header.stamp))

    def _on_wrench(self, arm: str, msg: WrenchStamped) -> None:
        self.sim.arms[arm].command_wrench(msgconv.vector6_from_wrench(msg.wrench), stamp_s=self._sim_stamp(msg.header.stamp))

    def _on_gripper(self, arm: str, msg: Float64) -> None:
        closure = float(msg.data)
        if not np.isfinite(closure) or closure < -1e-6 or closure > 1 + 1e-6:
            self.sim.arms[arm].command_gripper(float("nan"))  # rejected, with a reason in diagnostics
            return
        self.sim.arms[arm].command_gripper(GRIPPER_MAX_WIDTH_M * (1.0 - min(max(closure, 0.0), 1.0)))

    def _on_reset(self, msg: UInt32) -> None:
        self.rng = np.random.default_rng(int(msg.data))
        self.task.reset(self.rng)
        self.get_logger().info(f"reset {self.task.name} with seed {msg.data}")

    # ------------------------------------------------------------------ publishing
    def _tick(self) -> None:
        if not self.context.ok():  # shutting down: publish nothing more
            return
        self.sim.step(self.chunk_s)
        self.ticks += 1
        now = self.get_clock().now().to_msg()
        states = {}
        for arm in self.arms:
            st = self.sim.arm_state(arm)
            states[arm] = st
            p = self.pubs[arm]
            frame = arm + self.conf.value.base_frame_suffix
            pose = PoseStamped()
            pose.header.stamp, pose.header.frame_id = now, frame
            msgconv.fill_pose(pose.pose, st.position, st.quat)
            p["pose"].publish(pose)
            tw = TwistStamped()
            tw.header.stamp, tw.header.frame_id = now, frame
            msgconv.fill_twist(tw.twist, st.twist)
            p["twist"].publish(tw)
            wr = WrenchStamped()
            wr.header.stamp, wr.header.frame_id = now, frame
            msgconv.fill_wrench(wr.wrench, st.wrench)
            p["wrench"].publish(wr)
            js = JointState()
            js.header.stamp = now
            js.name = [f"{arm}_finger_joint1", f"{arm}_finger_joint2"]
            js.position = [float(x) for x in st.gripper_position]
            js.velocity = [float(x) for x in st.gripper_velocity]
            js.effort = [float(x) for x in st.gripper_effort]
            p["gripper"].publish(js)
        if self.ticks % self.image_every:
            return
        keys = [key for arm in self.arms for _, key in self.cameras[arm]]
        images = self.sim.render(keys)
        for arm in self.arms:
            for cam, key in self.cameras[arm]:
                img = Image()
                img.header.stamp, img.header.frame_id = now, f"{arm}_{cam}_camera"
                msgconv.fill_image(img, images[key])
                self.pubs[arm]["cam/" + cam].publish(img)
            d = self.sim.arms[arm].diagnostics()
            level = diagnostics.WARN if d["holding"] else diagnostics.OK
            self.diag.report(f"{arm} controller", level, d["last_reason"] or "tracking", mode=d["mode"],
                             holding=d["holding"], counts=json.dumps(d["reason_counts"]))
        success = bool(self.task.success())
        self.success_pub.publish(Bool(data=success))
        self.privileged_pub.publish(String(data=json.dumps(to_jsonable({
            "task": self.task.name,
            "sim_time": self.sim.time,
            "success": success,
            "privileged": self.task.privileged_state(),
            "gripper_closed": {a: self.sim.arms[a].gripper_width_cmd < 0.5 * GRIPPER_MAX_WIDTH_M for a in self.arms},
            "anchor": {a: [self.sim.arms[a].target_pos, self.sim.arms[a].target_quat] for a in self.arms},
            "state": {a: {"position": s.position, "quat": s.quat, "twist": s.twist} for a, s in states.items()},
        }))))

    def close(self) -> None:
        self.sim.close()


def main(args=None) -> int:
    return run_node(lambda: SimNode(), args)


if __name__ == "__main__":
    raise SystemExit(main())
