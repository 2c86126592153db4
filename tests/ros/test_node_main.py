"""run_node's executor: which one is chosen, and that a node process under it receives,
sleeps when idle, stops on SIGTERM and dies loudly on a failing callback."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from hilserl_core.formats.config import ConfigError

pytest.importorskip("rclpy", reason="rclpy (ROS 2 Kilted wheels) not installed; run scripts/setup.sh")

from hilserl_interfaces import node_main  # noqa: E402

# A node run by run_node: echoes /nm_test/ping to /nm_test/pong; with FAIL=1 its timer raises.
ECHO_NODE = textwrap.dedent(
    """
    import os, sys, time
    from rclpy.node import Node
    from std_msgs.msg import String
    from hilserl_interfaces.node_main import executor_kind, run_node

    class Echo(Node):
        def __init__(self, **kw):
            super().__init__("nm_echo", **kw)
            pub = self.create_publisher(String, "/nm_test/pong", 10)
            self.tick_pub = self.create_publisher(String, "/nm_test/tick", 10)
            self.create_subscription(String, "/nm_test/ping", lambda m: pub.publish(String(data="pong:" + m.data)), 10)
            self.create_timer(0.01 if os.environ.get("SLOW") == "1" else 0.1, self._tick)
            print("executor", executor_kind(), flush=True)

        def _tick(self):
            if os.environ.get("FAIL") == "1":
                raise RuntimeError("timer callback failed on purpose")
            if os.environ.get("SLOW") == "1":  # busy almost all the time, like the simulator's tick
                print("in callback", flush=True)
                time.sleep(0.3)
                self.tick_pub.publish(String(data="tick"))

    sys.exit(run_node(Echo))
    """
)


def _cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start(env_extra: dict) -> subprocess.Popen:
    env = {**os.environ, **env_extra}
    return subprocess.Popen([sys.executable, "-c", ECHO_NODE], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_executor_choice(monkeypatch):
    has_events = node_main._events_executor_class() is not None
    monkeypatch.delenv(node_main.EXECUTOR_ENV, raising=False)
    assert node_main.executor_kind() == ("events" if has_events else "single")
    monkeypatch.setenv(node_main.EXECUTOR_ENV, "single")
    assert node_main.executor_kind() == "single"
    assert node_main.executor_kind(threads=2) == "multi"
    monkeypatch.setenv(node_main.EXECUTOR_ENV, "fast")
    with pytest.raises(ConfigError, match="HILSERL_EXECUTOR='fast': expected one of events, single"):
        node_main.executor_kind()


@pytest.mark.parametrize("kind", ["events", "single"])
def test_node_process_receives_idles_and_stops_on_sigterm(kind, ros_context, spin_until):
    if kind == "events" and node_main._events_executor_class() is None:
        pytest.skip("this rclpy has no EventsExecutor (added in Kilted)")
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from std_msgs.msg import String

    proc = _start({node_main.EXECUTOR_ENV: kind})
    try:
        node = Node("nm_probe", context=ros_context)
        ex = SingleThreadedExecutor(context=ros_context)
        ex.add_node(node)
        got = []
        node.create_subscription(String, "/nm_test/pong", lambda m: got.append(m.data), 10)
        ping = node.create_publisher(String, "/nm_test/ping", 10)
        n = [0]

        def answered():
            n[0] += 1
            ping.publish(String(data=str(n[0])))
            return bool(got)

        assert spin_until(ex, answered, 30.0), "the node never answered a ping"
        assert got[0].startswith("pong:")
        # idle (a 10 Hz timer only): the executor must sleep, not spin (rclpy 9.1's EventsExecutor.spin() took a core)
        time.sleep(0.5)
        c0, w0 = _cpu_seconds(proc.pid), time.monotonic()
        time.sleep(2.0)
        share = (_cpu_seconds(proc.pid) - c0) / (time.monotonic() - w0)
        assert share < 0.3, f"an idle node took {share:.2f} of a core"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert f"executor {kind}" in out
        ex.shutdown()
        node.destroy_node()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_a_failing_callback_ends_the_process_with_an_error():
    proc = _start({"FAIL": "1"})
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode not in (0, None)
    assert "timer callback failed on purpose" in err


def test_a_bad_executor_choice_is_one_line_and_exit_2():
    proc = _start({node_main.EXECUTOR_ENV: "fast"})
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "HILSERL_EXECUTOR='fast': expected one of events, single" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_a_callback_lets_it_finish_and_exits_cleanly(sig):
    # rclpy's own handler shut the context down under a running callback, whose next
    # publish then failed with a traceback (seen on Ctrl-C of the simulator)
    proc = _start({"SLOW": "1"})
    try:
        seen = 0
        deadline = time.monotonic() + 30
        while seen < 3 and time.monotonic() < deadline:  # well inside the spin loop
            seen += proc.stdout.readline().startswith("in callback")
        time.sleep(0.1)  # inside a 0.3 s callback
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert seen == 3
    assert proc.returncode == 0, err
    assert "Exception" not in err and "context is invalid" not in err, err


# A node built from a schema (like the mux): a float, a float list checked by a WorkspaceBox.
CONFIGURED_NODE = textwrap.dedent(
    """
    import sys
    from dataclasses import dataclass
    from typing import Tuple
    from rclpy.node import Node
    from hilserl_core.formats import config as cfg
    from hilserl_core.robot.control import WorkspaceBox
    from hilserl_interfaces.node_main import run_node
    from hilserl_interfaces.params import NodeConfig

    @dataclass(frozen=True)
    class Conf:
        speed_scale: float = cfg.param(1.0, "operator twist gain", low=0.0, high=5.0, live=True)
        min_position_m: Tuple[float, ...] = cfg.param((0.25, -0.35, 0.02), "lower corner", units="m")

    class Configured(Node):
        def __init__(self, **kw):
            super().__init__("nm_configured", **kw)
            c = NodeConfig(self, Conf).value
            WorkspaceBox(c.min_position_m, (0.75, 0.35, 0.55))
            print("speed_scale", repr(c.speed_scale), "min_position_m", list(c.min_position_m), flush=True)
            self.create_timer(0.05, self.context.try_shutdown)  # started fine: end the process

    sys.exit(run_node(Configured))
    """
)


@pytest.mark.parametrize("yaml_body, rc, expect", [
    ("speed_scale: 1", 0, "speed_scale 1.0 min_position_m [0.25, -0.35, 0.02]"),
    ("min_position_m: [0, 0, 0]", 0, "speed_scale 1.0 min_position_m [0.0, 0.0, 0.0]"),
    ("speed_scale: fast", 2, "configuration error: {params} (parameters of /nm_configured): speed_scale = 'fast' has the "
                             "wrong type: expected a number (double)"),
    ("speed_scale: 9", 2, "configuration error: {params} (parameters of /nm_configured): speed_scale = 9.0 is out of range"),
    ("min_position_m: [0.9, 0.0, 0.0]", 2, "configuration error: WorkspaceBox min_position_m [0.9, 0.0, 0.0] must be <= "
                                           "max_position_m"),
    ("min_position_m: [0.1, 0.0]", 2, "configuration error: WorkspaceBox min/max_position_m must be 3 finite numbers"),
], ids=["int_for_float", "ints_for_float_list", "string_for_float", "out_of_range", "min_above_max", "wrong_length"])
def test_parameters_from_a_params_file_are_converted_or_refused_in_one_line(tmp_path, yaml_body, rc, expect):
    params = tmp_path / "params.yaml"
    params.write_text("/**:\n  ros__parameters:\n    " + yaml_body + "\n")
    out = subprocess.run([sys.executable, "-c", CONFIGURED_NODE, "--ros-args", "--params-file", str(params)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == rc, out.stderr
    assert expect.format(params=params) in (out.stdout if rc == 0 else out.stderr), out.stdout + out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    if rc:
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
