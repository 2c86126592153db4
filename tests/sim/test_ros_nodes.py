"""sim_node and scripted_operator as real processes over DDS on loopback."""

import math
import os
import subprocess
import sys
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from geometry_msgs.msg import PoseStamped, Twist, WrenchStamped  # noqa: E402
from rclpy.node import Node  # noqa: E402
from sensor_msgs.msg import Image, JointState, Joy  # noqa: E402

from hilserl_core import msgconv  # noqa: E402
from hilserl_interfaces import qos  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def _start(module, *params):
    args = [sys.executable, "-m", module, "--ros-args"]
    for p in params:
        args += ["-p", p]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ))


class Probe(Node):
    def __init__(self):
        super().__init__("sim_probe")
        self.msgs = {}
        for name, typ, topic, q in [
            ("pose", PoseStamped, "/arm/current_pose", qos.SENSOR),
            ("wrench", WrenchStamped, "/arm/external_wrench", qos.SENSOR),
            ("gripper", JointState, "/arm/gripper/joint_states", qos.SENSOR),
            ("wrist", Image, "/arm/cameras/wrist/image_raw", qos.SENSOR),
            ("front", Image, "/arm/cameras/front/image_raw", qos.SENSOR),
            ("diag", DiagnosticArray, "/diagnostics", qos.EVENTS),
            ("spacenav_twist", Twist, "/arm/spacenav/twist", qos.COMMAND),
            ("spacenav_joy", Joy, "/arm/spacenav/joy", qos.COMMAND),
        ]:
            self.msgs[name] = []
            self.create_subscription(typ, topic, lambda m, n=name: self.msgs[n].append(m), q)
        self.target_pub = self.create_publisher(PoseStamped, "/arm/target_pose", qos.COMMAND)

    def spin_until(self, cond, timeout_s):
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            rclpy.spin_once(self, timeout_sec=0.05)
            if cond():
                return True
        return False

    def send_target(self, pos, quat):
        msg = PoseStamped()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = "arm_base"
        msgconv.fill_pose(msg.pose, np.asarray(pos, float), np.asarray(quat, float))
        self.target_pub.publish(msg)


def test_sim_node_speaks_the_real_topics_and_the_operator_drives_spacenav():
    procs = [_start("hilserl_sim.sim_node", "task:=pick_cube", "seed:=1")]
    rclpy.init()
    probe = Probe()
    try:
        assert probe.spin_until(lambda: probe.msgs["pose"] and probe.msgs["wrist"] and probe.msgs["front"]
                                and probe.msgs["gripper"] and probe.msgs["wrench"], 60), \
            {k: len(v) for k, v in probe.msgs.items()}
        img = probe.msgs["wrist"][-1]
        assert (img.width, img.height, img.encoding) == (128, 128, "rgb8")
        assert probe.msgs["pose"][-1].header.frame_id == "arm_base"
        assert len(probe.msgs["gripper"][-1].position) == 2

        # target_pose moves the arm (through the impedance controller with reference limiting).
        p0, q0 = msgconv.pose_to_arrays(probe.msgs["pose"][-1].pose)
        goal = p0 + np.array([0.0, 0.0, 0.06])
        end = time.monotonic() + 20
        while time.monotonic() < end:
            probe.send_target(goal, q0)
            probe.spin_until(lambda: False, 0.1)
            p, _ = msgconv.pose_to_arrays(probe.msgs["pose"][-1].pose)
            if np.linalg.norm(p - goal) < 0.005:
                break
        assert np.linalg.norm(p - goal) < 0.005, (p, goal)

        # A NaN target: the sim keeps running, holds, and says why on /diagnostics.
        probe.msgs["diag"].clear()
        probe.send_target([math.nan, 0.0, 0.3], q0)

        def holding_reported():
            for arr in probe.msgs["diag"]:
                for st in arr.status:
                    if "arm controller" in st.name and "NaN" in st.message:
                        return True
            return False

        assert probe.spin_until(holding_reported, 15)
        n = len(probe.msgs["pose"])
        assert probe.spin_until(lambda: len(probe.msgs["pose"]) > n + 5, 10)  # still publishing

        # The scripted operator (a separate process) demonstrates through spacenav topics.
        procs.append(_start("hilserl_sim.operator_node", "task:=pick_cube", "mode:=demonstrate"))
        assert probe.spin_until(lambda: len(probe.msgs["spacenav_joy"]) >= 5, 60)
        joys = probe.msgs["spacenav_joy"]
        assert all(len(j.axes) == 6 and len(j.buttons) == 2 for j in joys)
        assert all(max(abs(a) for a in j.axes) <= 1.0 + 1e-9 for j in joys)
        assert any(max(abs(a) for a in j.axes) > 0.05 for j in joys)  # it moves the mouse (an intervention)
        assert probe.msgs["spacenav_twist"]
    finally:
        probe.destroy_node()
        rclpy.shutdown()
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                out, _ = p.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                out, _ = p.communicate()
            if p.returncode not in (0, -15, None):
                print(out)
