"""After /sim/reset (which sets MuJoCo's clock back to 0) the simulator node keeps publishing
at its rates: camera frames, /sim/success and the diagnostics' real-time factor."""

import time

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2 Kilted wheels) not installed; run scripts/setup.sh")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Bool  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from hilserl_interfaces import qos, topics  # noqa: E402
from hilserl_sim.ros_sim_node import SimNode  # noqa: E402

pytestmark = pytest.mark.ros

CAMERA_HZ = 10.0


def _spin_until(ex, predicate, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not predicate():
        ex.spin_once(timeout_sec=0.02)
    return predicate()


def _sim_status(msg):
    for s in msg.status:
        if s.name.endswith(": sim"):
            return s.message, {kv.key: kv.value for kv in s.values}
    return None


def test_frames_success_and_real_time_factor_continue_right_after_a_reset():
    ctx = rclpy.context.Context()
    rclpy.init(context=ctx)
    sim = peer = ex = None
    try:
        sim = SimNode(context=ctx, parameter_overrides=[Parameter("task", value="pick_cube"),
                                                        Parameter("image_size", value=32),
                                                        Parameter("camera_rate_hz", value=CAMERA_HZ)])
        peer = rclpy.create_node("reset_watcher", context=ctx)
        frames, successes, diags = [], [], []
        # sim.sim.time is the episode's clock; read it when each message arrives
        peer.create_subscription(Image, "/left/cameras/front/image_raw",
                                 lambda m: frames.append(sim.sim.time), qos.SENSOR)
        peer.create_subscription(Bool, "/sim/success", lambda m: successes.append(sim.sim.time), qos.EVENTS)
        peer.create_subscription(DiagnosticArray, topics.DIAGNOSTICS,
                                 lambda m: diags.append(_sim_status(m)), qos.EVENTS)
        reset = peer.create_client(Trigger, "/sim/reset")
        ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(sim)
        ex.add_node(peer)

        # a first episode of ~1.2 s, with at least one diagnostics report
        assert _spin_until(ex, lambda: sim.sim.time >= 1.2 and any(diags), 30), (sim.sim.time, len(diags))
        assert len(frames) >= 8
        assert float([d for d in diags if d][-1][1]["real_time_factor"]) > 0
        first_episode_s = sim.sim.time

        assert reset.wait_for_service(timeout_sec=5)
        fut = reset.call_async(Trigger.Request())
        assert _spin_until(ex, fut.done, 10) and fut.result().success
        n_frames, n_success, n_diags = len(frames), len(successes), len(diags)
        t_reset = sim.sim.time
        assert t_reset < 0.5  # the episode clock restarted

        # frames and success keep coming at the camera rate: within ~2 periods of the reset ...
        two_periods = 2.0 / CAMERA_HZ
        assert _spin_until(ex, lambda: len(frames) > n_frames and len(successes) > n_success, 5)
        assert frames[n_frames] <= t_reset + two_periods + 0.02, (t_reset, frames[n_frames:])
        assert successes[n_success] <= t_reset + two_periods + 0.02
        # ... and go on at that rate
        assert _spin_until(ex, lambda: sim.sim.time >= t_reset + 0.6, 10)
        assert len(frames) - n_frames >= 5, frames[n_frames:]

        # the real-time factor counts the simulated time of every episode, not only this one
        assert _spin_until(ex, lambda: any(d and "episode 1" in d[0] for d in diags[n_diags:]), 5)
        report = [d for d in diags[n_diags:] if d and "episode 1" in d[0]][-1][1]
        assert float(report["sim_time_s"]) >= first_episode_s + float(report["episode_time_s"]) - 0.1, report
        assert float(report["real_time_factor"]) > 0
        assert report["last_episode_reached"] == "-"  # (the scene before the first reset is no episode)

        # the next reset ends episode 1, in which nothing touched the cube: no stage of pick_cube reached
        fut = reset.call_async(Trigger.Request())
        assert _spin_until(ex, fut.done, 10) and fut.result().success
        n_diags = len(diags)
        assert _spin_until(ex, lambda: any(d and "episode 2" in d[0] for d in diags[n_diags:]), 5)
        assert [d for d in diags[n_diags:] if d and "episode 2" in d[0]][-1][1]["last_episode_reached"] == "none"
    finally:
        if ex is not None:
            ex.shutdown()
        if sim is not None:
            sim.close()
        for node in (sim, peer):
            if node is not None:
                node.destroy_node()
        rclpy.shutdown(context=ctx)
