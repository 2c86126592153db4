"""`hilserl train`'s record without starting a graph: a stand-in graph runner, and a fake actor,
learner and arm on DDS publishing episode reports, learner diagnostics (with the training
analysis) and the arm's pose at executed steps. The run directory gets learner.csv,
ee_positions.csv, TensorBoard scalars, analysis.png and visitation.png; a second call resumes."""

import contextlib
import csv
import json
import threading
import time

import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import Joy
from std_msgs.msg import String

from hilserl import runner, train
from hilserl_interfaces import qos


class _NoGraph:
    def __init__(self, graph, out=None, check_network=False):
        self.graph = graph

    def start(self):
        pass

    def poll(self):
        return None

    def shutdown(self, *args, **kwargs):
        pass


def _fake_graph(stop: threading.Event, episode_steps: int = 40):
    """An actor, a learner and the left arm, publishing until ``stop``."""
    ctx = rclpy.context.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("fake_graph", context=ctx)
    episodes = node.create_publisher(String, "/metrics/episodes", qos.EVENTS)
    diag = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
    pose = node.create_publisher(PoseStamped, "/left/current_pose", qos.SENSOR)
    executed = node.create_publisher(Joy, "/left/mux/executed", qos.EVENTS)
    tick, updates = 0, 0
    try:
        while not stop.is_set():
            tick += 1
            msg = PoseStamped()
            msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = 0.4 + 0.001 * tick, 0.0, 0.2
            pose.publish(msg)
            time.sleep(0.005)
            executed.publish(Joy())
            if tick % 5 == 0:
                updates += 50
                values = {"updates": updates, "weights_version": tick // 5, "rlpd/critic_loss": 0.5,
                          "analysis_updates": updates - updates % 100, "rlpd/q_action_variance": 0.01,
                          "rlpd/policy_mean_abs": 0.3, "rlpd/policy_std": 0.2}
                diag.publish(DiagnosticArray(status=[DiagnosticStatus(
                    name="/learner: learner", values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])]))
            if tick % 20 == 0:
                episodes.publish(String(data=json.dumps({"weights_version": 1, "last_episode": {
                    "steps": episode_steps, "success": tick % 40 == 0, "intervention_steps": 0 if tick % 60 else 5,
                    "duration_s": episode_steps / 10, "episode_return": 1.0}})))
            time.sleep(0.01)
    finally:
        node.destroy_node()
        rclpy.shutdown(context=ctx)


@contextlib.contextmanager
def _fake_graph_running(monkeypatch):
    """``hilserl train`` starts no graph; the fake one publishes until the block ends."""
    monkeypatch.setattr(runner, "GraphRunner", _NoGraph)
    stop = threading.Event()
    fake = threading.Thread(target=_fake_graph, args=(stop,), daemon=True)
    fake.start()
    try:
        yield
    finally:
        stop.set()
        fake.join(10)


@pytest.mark.ros
def test_train_writes_the_learner_record_tensorboard_and_analysis_plots_and_resumes(tmp_path, monkeypatch):
    run = tmp_path / "run"
    said = []
    with _fake_graph_running(monkeypatch):
        for steps in (120, 240):  # the second call resumes
            status = train.run_train("sim_single_arm", {"steps": str(steps), "run": str(run), "demos": "none",
                                                        "progress_s": "1"}, say=said.append)
            assert status == 0, said
    episodes = list(csv.DictReader(open(run / "episodes.csv")))
    learner = list(csv.DictReader(open(run / "learner.csv")))
    assert len(learner) == len(episodes) >= 6 and int(episodes[-1]["env_steps"]) >= 240
    assert [r["env_steps"] for r in learner] == [r["env_steps"] for r in episodes]
    assert float(learner[-1]["rlpd/q_action_variance"]) == 0.01 and float(learner[-1]["updates_per_s"]) > 0
    poses = list(csv.DictReader(open(run / "ee_positions.csv")))
    assert len(poses) > 20 and {p["arm"] for p in poses} == {"left"} and float(poses[0]["z"]) == 0.2
    assert (run / "analysis.png").is_file() and (run / "visitation.png").is_file()
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 2  # one per session
    assert "tensorboard --logdir" in said[-1] and "analysis.png" in said[-1]


@pytest.mark.ros
def test_ctrl_c_before_the_budget_returns_interrupted_and_keeps_the_record(tmp_path, monkeypatch):
    """Ctrl-C stops training with ``INTERRUPTED`` (not 0: callers must not evaluate or tabulate a run
    that did not reach its budget), after writing what it has; the same call resumes it."""
    import os
    import signal

    run = tmp_path / "run"
    said = []

    def say(line):
        said.append(line)
        if "env steps," in line and "/100000" in line and int(line.split("/")[0].split()[-1]) > 0:
            os.kill(os.getpid(), signal.SIGINT)  # a person's Ctrl-C once some episodes are in

    with _fake_graph_running(monkeypatch):
        status = train.run_train("sim_single_arm", {"steps": "100000", "run": str(run), "demos": "none", "progress_s": "1"},
                                 say=say)
    assert status == train.INTERRUPTED, said
    assert any("interrupted at" in line and "resumes" in line for line in said), said
    summary = json.loads((run / "summary.json").read_text())
    assert 0 < summary["env_steps"] < 100000
