"""Monitoring helpers (rviz:=true, rqt:=true): the workspace box's edges, the episode metrics as
numbers for rqt_plot (also as a running node), and the commands the viewer wrappers start."""

import itertools
import json
import time
from pathlib import Path

import pytest
import yaml

from hilserl import viewers
from hilserl.graph import GraphError, load_graph, node_argv
from hilserl_core.rl.metrics import EpisodeMetrics, EpisodeRecord
from hilserl_teleop.metrics_rates_node import RATE_TOPICS, rates_from_summary
from hilserl_teleop.workspace_marker_node import box_edges

ROOT = Path(__file__).resolve().parents[2]


def test_box_edges_are_the_twelve_edges_of_the_box():
    lo, hi = (0.25, -0.35, 0.02), (0.75, 0.35, 0.55)
    points = box_edges(lo, hi)
    assert len(points) == 24
    edges = {frozenset((points[i], points[i + 1])) for i in range(0, 24, 2)}
    assert len(edges) == 12
    corners = set(itertools.product(*zip(lo, hi)))
    assert set(points) == corners
    for a, b in (tuple(e) for e in edges):
        assert sum(u != v for u, v in zip(a, b)) == 1  # along one axis
    for c in corners:
        assert sum(c in e for e in edges) == 3
    with pytest.raises(ValueError):
        box_edges((0, 0, 1), (1, 1, 0))


def _summary(successes, interventions):
    m = EpisodeMetrics(window=10)
    for ok, inter in zip(successes, interventions):
        m.add(EpisodeRecord(success=ok, steps=10, intervention_steps=inter, duration_s=2.0))
    return m.to_json()


def test_rates_come_from_the_actor_summary():
    rates = rates_from_summary(_summary([True, False, True, True], [5, 0, 0, 0]))
    assert rates["/metrics/success_rate"] == pytest.approx(0.75)
    assert rates["/metrics/intervention_rate"] == pytest.approx(5 / 40)
    assert rates["/metrics/cycle_time_s"] == pytest.approx(2.0)
    assert set(rates) <= set(RATE_TOPICS.values())
    assert rates_from_summary(EpisodeMetrics().to_json()) == {}  # no episode yet: nothing to plot
    with pytest.raises(ValueError):
        rates_from_summary("[1, 2]")
    with pytest.raises(ValueError):
        rates_from_summary("not json")


def test_metrics_rates_node_republishes_the_summary_as_float32():
    rclpy = pytest.importorskip("rclpy")
    from rclpy.executors import SingleThreadedExecutor
    from std_msgs.msg import Float32, String

    from hilserl_interfaces import qos
    from hilserl_teleop.metrics_rates_node import MetricsRatesNode

    ctx = rclpy.context.Context()
    rclpy.init(context=ctx)
    try:
        node = MetricsRatesNode(context=ctx)
        peer = rclpy.create_node("actor_stand_in", context=ctx)
        got = {}
        for topic in RATE_TOPICS.values():
            peer.create_subscription(Float32, topic, lambda m, t=topic: got.__setitem__(t, m.data), qos.EVENTS)
        pub = peer.create_publisher(String, "/metrics/episodes", qos.EVENTS)
        ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(node)
        ex.add_node(peer)
        text = _summary([True, True, False, False], [0, 10, 0, 0])
        deadline = time.monotonic() + 10
        while len(got) < 3 and time.monotonic() < deadline:
            pub.publish(String(data=text))
            ex.spin_once(timeout_sec=0.05)
        assert got["/metrics/success_rate"] == pytest.approx(0.5)
        assert got["/metrics/intervention_rate"] == pytest.approx(0.25)
        ex.shutdown()
        node.destroy_node()
        peer.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)


def test_viewer_commands_open_the_config_files(monkeypatch, tmp_path):
    monkeypatch.setattr(viewers, "_tool", lambda package, executable, fallback: f"/opt/ros/bin/{executable}")
    monkeypatch.setattr(viewers.tempfile, "gettempdir", lambda: str(tmp_path))
    graph = load_graph("real_dual_arm", {"rviz": "true", "rqt": "true"})
    rviz_args = node_argv(graph.node("/rviz"))
    command, expanded = viewers.rviz_command(rviz_args)
    assert command[:2] == ["/opt/ros/bin/rviz2", "-d"] and command[2] == expanded and Path(expanded).parent == tmp_path
    shown = viewers.display_topics(yaml.safe_load(Path(expanded).read_text()))
    assert "/right/workspace_marker" in shown and "/right/cameras/side/image_cropped" in shown
    rqt = viewers.rqt_command(node_argv(graph.node("/rqt")))
    assert rqt[0] == "/opt/ros/bin/rqt_gui" and rqt[1] == "--perspective-file"
    assert Path(rqt[2]).resolve() == (ROOT / "config" / "rqt" / "hilserl.perspective").resolve()
    json.loads(Path(rqt[2]).read_text())
    # without arms/cameras (rviz_viewer by hand): the file as it is
    command, expanded = viewers.rviz_command([])
    assert expanded is None and Path(command[2]).resolve() == (ROOT / "config" / "rviz" / "hilserl.rviz").resolve()
    with pytest.raises(GraphError, match="no such rqt perspective"):
        viewers.rqt_command(["--ros-args", "-p", "perspective:=rqt/missing.perspective"])


def test_a_missing_viewer_is_named(monkeypatch):
    monkeypatch.setenv("AMENT_PREFIX_PATH", "")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(GraphError, match="rviz2 is not installed"):
        viewers._tool("rviz2", "rviz2", "rviz2")
    assert viewers.rviz_main(["--ros-args", "-p", "config:=rviz/hilserl.rviz"]) == 2


def test_workspace_marker_node_without_visualization_msgs_is_one_configuration_error():
    rclpy = pytest.importorskip("rclpy")
    try:
        import visualization_msgs.msg  # noqa: F401
        pytest.skip("visualization_msgs is installed here")
    except ImportError:
        pass
    from hilserl_core.formats.config import ConfigError
    from hilserl_teleop.workspace_marker_node import WorkspaceMarkerNode

    ctx = rclpy.context.Context()
    rclpy.init(context=ctx)
    try:
        with pytest.raises(ConfigError, match="visualization_msgs is not installed"):
            WorkspaceMarkerNode(context=ctx)
    finally:
        rclpy.shutdown(context=ctx)
