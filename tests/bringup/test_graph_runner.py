"""Graph descriptions, the process runner, and their error messages."""

import io
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import yaml

from hilserl import graph as G
from hilserl.runner import GraphRunner


def _write_cfg(tmp_path, graph_doc, params=None):
    (tmp_path / "graphs").mkdir()
    (tmp_path / "params").mkdir()
    (tmp_path / "graphs" / "demo.yaml").write_text(yaml.safe_dump(graph_doc))
    for name, doc in (params or {}).items():
        (tmp_path / "params" / name).write_text(yaml.safe_dump(doc))
    return tmp_path


DEMO = {
    "description": "two arms, two cameras each",
    "arguments": {"task": "handover", "steps": 100},
    "arms": ["left", "right"],
    "cameras": ["wrist", "side"],
    "nodes": [
        {"name": "sim", "package": "hilserl_sim", "executable": "sim_node", "parameters": {"task": "{task}", "max_steps": "{steps}"}},
        {
            "name": "crop_{camera}",
            "package": "hilserl_perception",
            "executable": "crop_node",
            "namespace": "{arm}",
            "for_each": ["arm", "camera"],
            "params_files": ["crop.yaml"],
            "parameters": {"camera": "{camera}", "roi": {"x": 0, "width": 128}, "flip": False, "gain": 0.5},
            "remappings": {"image_raw": "cameras/{camera}/image_raw"},
        },
        {"name": "recorder", "package": "hilserl", "executable": "rec", "condition": "{task}" + "_off", "required": False},
        {"name": "handover_helper", "package": "hilserl", "executable": "h", "condition": "{task} == handover"},
        {"name": "not_handover", "package": "hilserl", "executable": "h", "condition": "{task} != handover"},
    ],
}


def test_expansion_substitution_and_argv(tmp_path):
    cfg = _write_cfg(tmp_path, DEMO, {"crop.yaml": {"/**": {"ros__parameters": {"out_size": 128}}}})
    g = G.load_graph("demo", {"task": "peg_insertion"}, cfg_dir=cfg)
    assert [n.fqn for n in g.nodes] == ["/sim", "/left/crop_wrist", "/left/crop_side", "/right/crop_wrist", "/right/crop_side", "/not_handover"]
    assert "/handover_helper" in [n.fqn for n in G.load_graph("demo", cfg_dir=cfg).nodes]
    sim = g.node("/sim")
    assert sim.parameter_dict() == {"task": "peg_insertion", "max_steps": 100}  # whole-string placeholder keeps int type
    crop = g.node("/right/crop_side")
    assert crop.parameter_dict() == {"camera": "side", "roi.x": 0, "roi.width": 128, "flip": False, "gain": 0.5}
    assert crop.remappings == (("image_raw", "cameras/side/image_raw"),)
    assert crop.params_files == (str(cfg / "params" / "crop.yaml"),)
    argv = G.node_argv(crop)
    assert argv[:5] == ["--ros-args", "-r", "__node:=crop_side", "-r", "__ns:=/right"]
    assert ["--params-file", str(cfg / "params" / "crop.yaml")] == argv[5:7]
    assert "camera:='side'" in argv and "flip:=false" in argv and "gain:=0.5" in argv and "roi.x:=0" in argv
    assert argv[-2:] == ["-r", "image_raw:=cameras/side/image_raw"]


@pytest.mark.parametrize(
    "mutate, pattern",
    [
        (lambda d: d["nodes"][0].pop("package"), r"nodes\[0\]: missing 'package'"),
        (lambda d: d["nodes"][0].update(colour="red"), r"unknown key\(s\) colour"),
        (lambda d: d["nodes"][1].update(for_each="robot"), "for_each 'robot' must be one of arm, camera"),
        (lambda d: d["nodes"][0]["parameters"].update(x="{nope}"), r"unknown placeholder '\{nope\}'"),
        (lambda d: d["nodes"][1].update(name="crop"), "duplicate node names /left/crop"),
        (lambda d: d["nodes"][1].update(params_files=["missing.yaml"]), "parameters file .*missing.yaml not found"),
        (lambda d: d["nodes"][0].update(name="bad-name"), "must be letters, digits and underscores"),
        (lambda d: d.update(choices={"colour": ["red"]}), "choices for 'colour', which is not an argument"),
        (lambda d: d.update(choices={"task": []}), "choices.task must be a non-empty list"),
        (lambda d: d.update(choices={"task": {"values": ["a"], "because": "x"}}), r"choices.task: unknown key\(s\) because"),
        (lambda d: d.update(choices={"task": ["peg_insertion"]}), r"task:=handover is not allowed \(choices: peg_insertion\)"),
    ],
)
def test_malformed_descriptions_name_the_problem(tmp_path, mutate, pattern):
    doc = yaml.safe_load(yaml.safe_dump(DEMO))
    mutate(doc)
    cfg = _write_cfg(tmp_path, doc, {"crop.yaml": {}})
    with pytest.raises(G.GraphError, match=pattern):
        G.load_graph("demo", cfg_dir=cfg)


def test_unknown_graph_and_argument(tmp_path):
    cfg = _write_cfg(tmp_path, DEMO, {"crop.yaml": {}})
    with pytest.raises(G.GraphError, match="no graph 'nope'.*available: demo"):
        G.load_graph("nope", cfg_dir=cfg)
    with pytest.raises(G.GraphError, match="has no argument 'taks'; arguments: steps, task"):
        G.load_graph("demo", {"taks": "x"}, cfg_dir=cfg)
    assert G.parse_overrides(["a:=1", "b:=x:=y"]) == {"a": "1", "b": "x:=y"}
    with pytest.raises(G.GraphError, match="name:=value"):
        G.parse_overrides(["a=1"])


def test_argument_choices_refuse_other_values_and_say_why(tmp_path):
    doc = yaml.safe_load(yaml.safe_dump(DEMO))
    doc["choices"] = {"task": {"values": ["handover", "peg_insertion"], "why": "two-arm tasks only"}, "steps": [100, 200]}
    cfg = _write_cfg(tmp_path, doc, {"crop.yaml": {}})
    g = G.load_graph("demo", {"steps": "200"}, cfg_dir=cfg)
    assert dict(g.choices) == {"task": ("handover", "peg_insertion"), "steps": ("100", "200")}
    with pytest.raises(G.GraphError, match=r"task:=pick_cube is not allowed: two-arm tasks only \(choices: handover, peg_insertion\)"):
        G.load_graph("demo", {"task": "pick_cube"}, cfg_dir=cfg)
    with pytest.raises(G.GraphError, match=r"steps:=150 is not allowed \(choices: 100, 200\)"):
        G.load_graph("demo", {"steps": "150"}, cfg_dir=cfg)


# -- the runner, with small real programs standing in for nodes ------------------------

NODE_PROGRAM = textwrap.dedent(
    """
    import signal, sys, time
    args = sys.argv[1:]
    name = args[args.index("-r") + 1].split(":=")[1]
    mode = {modes!r}.get(name, "spin")
    if mode == "starting":  # a long import, before any signal handler (as a node importing torch)
        time.sleep(30)
    stop = []
    signal.signal(signal.SIGINT, (lambda *a: None) if mode == "ignore_sigint" else (lambda *a: stop.append(1)))
    if mode != "ignore_sigint":
        signal.signal(signal.SIGTERM, lambda *a: stop.append(1))  # as hilserl nodes do (signals.stop_on_signals)
    print(name, "up", " ".join(args), flush=True)
    if mode == "refuse":  # what run_node prints for a refused configuration, and its status
        print("[/left/" + name + "] configuration error: learner.yaml: unknown parameter 'updates_per_transtion'", flush=True)
        sys.exit(2)
    if mode.startswith("exit"):
        time.sleep(0.5)
        sys.exit(int(mode[4:]))
    while not stop:
        time.sleep(0.02)
    if mode == "slow_stop":  # a final job after the signal (as the learner's last checkpoint)
        time.sleep(1.5)
    print(name, "clean shutdown", flush=True)
    """
)


TWO_NODES = {
    "nodes": [
        {"name": "a", "package": "p", "executable": "x"},
        {"name": "b", "package": "p", "executable": "x", "namespace": "left", "parameters": {"k": 1.5}},
    ]
}


def _runner(tmp_path, modes, doc=TWO_NODES, executables=("x",)):
    """A runner over ``doc`` whose executables all run NODE_PROGRAM, and the stream it reports to."""
    cfg = _write_cfg(tmp_path, doc)
    prog = tmp_path / "fake_node.py"
    prog.write_text(NODE_PROGRAM.format(modes=modes))
    for name in executables:
        exe = tmp_path / name
        exe.write_text(f"#!/bin/sh\nexec {sys.executable} {prog} \"$@\"\n")
        exe.chmod(0o755)
    out = io.StringIO()
    return GraphRunner(G.load_graph("demo", cfg_dir=cfg), resolve=lambda pkg, ex: str(tmp_path / ex), out=out), out


def _start_and_stop(runner, out, processes_up, timeout=10.0):
    """Start, wait until ``processes_up`` fake programs have printed that they are up, check that
    nothing died meanwhile, shut down; the runner's output."""
    runner.start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and out.getvalue().count(" up ") < processes_up:
        time.sleep(0.05)
    assert runner.poll() is None
    runner.shutdown()
    return out.getvalue()


def test_runner_starts_nodes_with_their_ros_args_and_stops_them_cleanly(tmp_path):
    runner, out = _runner(tmp_path, {})
    text = _start_and_stop(runner, out, 2)
    assert "[/left/b] b up --ros-args -r __node:=b -r __ns:=/left -p k:=1.5" in text
    assert "[/a] a clean shutdown" in text and "[/left/b] b clean shutdown" in text
    assert all(e.returncode == 0 and e.expected for e in runner.exits)


def test_a_node_that_ignores_sigint_is_named_and_terminated(tmp_path):
    runner, out = _runner(tmp_path, {"b": "ignore_sigint"})
    runner.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and out.getvalue().count(" up ") < 2:
        time.sleep(0.05)
    runner.shutdown(sigint_timeout_s=0.5)
    assert "[hilserl] /left/b still running 0.5 s after SIGINT: sending SIGTERM" in out.getvalue()
    assert {e.spec.fqn: e.returncode for e in runner.exits} == {"/a": 0, "/left/b": -signal.SIGTERM}


def test_each_node_gets_its_own_shutdown_timeout_before_the_next_signal(tmp_path):
    """A node that needs time to stop (the learner's final checkpoint) is waited for as long as its
    shutdown_timeout says; one with a short timeout is escalated on its own schedule."""
    doc = {"nodes": [{"name": "a", "package": "p", "executable": "x", "shutdown_timeout": 10},
                     {"name": "b", "package": "p", "executable": "x", "namespace": "left", "shutdown_timeout": 0.5}]}
    runner, out = _runner(tmp_path, {"a": "slow_stop", "b": "slow_stop"}, doc=doc)
    assert runner.graph.node("/a").shutdown_timeout_s == 10.0 and runner.graph.node("/left/b").shutdown_timeout_s == 0.5
    text = _start_and_stop(runner, out, 2)
    assert "[hilserl] /left/b still running 0.5 s after SIGINT: sending SIGTERM" in text
    assert "/a still running" not in text and "a clean shutdown" in text
    assert {e.spec.fqn: e.returncode for e in runner.exits} == {"/a": 0, "/left/b": 0}  # b stops on SIGTERM too


@pytest.mark.parametrize("value", [0, -1, "soon", True])
def test_a_shutdown_timeout_that_is_not_a_positive_number_is_refused(tmp_path, value):
    doc = {"nodes": [{"name": "a", "package": "p", "executable": "x", "shutdown_timeout": value}]}
    with pytest.raises(G.GraphError, match="shutdown_timeout must be a number of seconds > 0"):
        G.load_graph("demo", cfg_dir=_write_cfg(tmp_path, doc))


def test_a_dying_required_node_stops_the_graph_with_its_status(tmp_path):
    runner, out = _runner(tmp_path, {"b": "exit3"})
    runner.start()
    code = runner.wait(timeout_s=20)
    assert code == 3
    assert "required node /left/b exited with status 3" in out.getvalue()
    assert "[/a] a clean shutdown" in out.getvalue()


def test_a_failed_node_is_said_once_and_nodes_still_starting_leave_no_traceback(tmp_path):
    runner, out = _runner(tmp_path, {"a": "starting", "b": "exit2"})
    runner.start()
    assert runner.wait(timeout_s=20) == 2
    text = out.getvalue()
    assert text.count("required node /left/b exited with status 2") == 1
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    assert {e.spec.fqn: e.returncode for e in runner.exits}["/a"] == -signal.SIGTERM


def test_missing_executable_fails_before_anything_starts(tmp_path, monkeypatch):
    from hilserl.runner import find_executable

    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path))
    with pytest.raises(G.GraphError, match="executable 'nope' of package 'hilserl_x' not found"):
        find_executable("hilserl_x", "nope")


def test_cli_runner_process_exits_zero_on_ctrl_c(tmp_path):
    """`hilserl launch` as a real process: SIGINT -> nodes stopped, exit status 0."""
    runner, _ = _runner(tmp_path, {})
    lib = tmp_path / "prefix" / "lib" / "p"
    lib.mkdir(parents=True)
    (lib / "x").symlink_to(tmp_path / "x")
    env = dict(os.environ, AMENT_PREFIX_PATH=str(tmp_path / "prefix"), HILSERL_CONFIG_DIR=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-m", "hilserl.cli", "launch", "demo"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and sum(" up " in line for line in lines) < 2:
        lines.append(proc.stdout.readline())
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, "".join(lines) + rest
    assert "clean shutdown" in rest


# -- composed processes (`process:`) ------------------------------------------------------

def test_nodes_sharing_a_process_are_one_compose_command_with_each_nodes_own_arguments(tmp_path):
    from hilserl_interfaces.compose import parse_compose_argv

    doc = yaml.safe_load(yaml.safe_dump(DEMO))
    doc["arguments"]["together"] = "hot"
    doc["nodes"][1]["process"] = "{together}"  # the four crop nodes
    doc["nodes"][3]["process"] = "{together}"  # handover_helper
    cfg = _write_cfg(tmp_path, doc, {"crop.yaml": {}})
    g = G.load_graph("demo", cfg_dir=cfg)
    procs = G.processes(g)
    assert [p.key for p in procs] == ["/sim", "hot"]  # recorder and not_handover are switched off by their conditions
    hot = [p for p in procs if p.key == "hot"][0]
    assert [n.fqn for n in hot.nodes] == ["/left/crop_wrist", "/left/crop_side", "/right/crop_wrist", "/right/crop_side", "/handover_helper"]
    package, executable, argv = G.process_command(hot)
    assert (package, executable) == (G.COMPOSE_PACKAGE, G.COMPOSE_EXECUTABLE)
    sections = parse_compose_argv(argv)
    assert [(s.package, s.executable) for s in sections] == [(n.package, n.executable) for n in hot.nodes]
    assert [list(s.ros_args) for s in sections] == [G.node_argv(n) for n in hot.nodes]  # unchanged per node
    # an empty process value (the default argument) leaves every node in its own process
    g1 = G.load_graph("demo", {"together": ""}, cfg_dir=cfg)
    assert [p.key for p in G.processes(g1)] == [n.fqn for n in g1.nodes]
    assert G.process_command(G.processes(g1)[1])[2] == G.node_argv(g1.nodes[1])
    doc["nodes"][0]["process"] = "bad name"
    cfg2 = tmp_path / "bad"
    cfg2.mkdir()
    with pytest.raises(G.GraphError, match="process 'bad name' must be letters"):
        G.load_graph("demo", cfg_dir=_write_cfg(cfg2, doc, {"crop.yaml": {}}))


def test_compose_arguments_round_trip_and_malformed_ones_are_named():
    from hilserl_interfaces.compose import compose_argv, parse_compose_argv

    a = ["--ros-args", "-r", "__node:=a", "-p", "x:=1"]
    b = ["--ros-args", "-r", "__node:=b", "-r", "__ns:=/left"]
    argv = compose_argv([("pkg_a", "exe_a", a), ("pkg_b", "exe_b", b)])
    assert argv == ["pkg_a/exe_a", *a, "--", "pkg_b/exe_b", *b, "--"]
    assert [(s.package, s.executable, list(s.ros_args)) for s in parse_compose_argv(argv)] == [("pkg_a", "exe_a", a), ("pkg_b", "exe_b", b)]
    # a process-wide section launch may append after the last node is split off, not parsed as a node
    from hilserl_interfaces.compose import split_process_args

    tail = ["--ros-args", "--log-level", "warn"]
    assert split_process_args(argv + tail) == (argv, tail)
    assert split_process_args(argv) == (argv, [])
    for bad, pattern in ((["pkg_a/exe_a", "-r", "x"], "must be followed by --ros-args"),
                         (["pkg_a/exe_a", "--ros-args", "-r", "__node:=a"], "must end with --"),
                         (["nonsense"], "expected <package>/<executable>"),
                         ([], "no nodes")):
        with pytest.raises(ValueError, match=pattern):
            parse_compose_argv(bad)


def test_runner_starts_a_composed_group_as_one_process_and_stops_it(tmp_path):
    doc = {"nodes": [
        {"name": "a", "package": "p", "executable": "x", "process": "both"},
        {"name": "b", "package": "p", "executable": "x", "namespace": "left", "process": "both"},
        {"name": "c", "package": "p", "executable": "x"},
    ]}
    runner, out = _runner(tmp_path, {}, doc, executables=("x", G.COMPOSE_EXECUTABLE))
    assert [p.key for p in runner.processes] == ["both", "/c"]
    text = _start_and_stop(runner, out, 2)
    assert "started both: /a, /left/b in one process" in text
    # one process got both nodes' sections (the fake program prints its arguments)
    assert "p/x --ros-args -r __node:=a -r __ns:=/ -- p/x --ros-args -r __node:=b -r __ns:=/left --" in text
    assert text.count("clean shutdown") == 2  # the composed process and /c
    assert sorted(e.spec.fqn for e in runner.exits) == ["/a", "/c", "/left/b"] and all(e.returncode == 0 for e in runner.exits)


# -- respawn ---------------------------------------------------------------------------------

def _respawning(b_extra, a_extra=None):
    doc = yaml.safe_load(yaml.safe_dump(TWO_NODES))
    doc["nodes"][1].update(b_extra)
    doc["nodes"][0].update(a_extra or {})
    return doc


def _poll_until(runner, condition, timeout=20.0):
    """Poll (which respawns) until ``condition()``; no required node may stop the graph meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert runner.poll() is None
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_respawn_settings_are_read_checked_and_shared_by_a_composed_process(tmp_path):
    doc = yaml.safe_load(yaml.safe_dump(DEMO))
    doc["arguments"]["again"] = "true"
    doc["nodes"][0].update(respawn="{again}", respawn_delay=1.5)
    doc["nodes"][1].update(process="hot", respawn=True, respawn_delay=0.5, condition="{arm} == left")
    doc["nodes"][3].update(process="hot", respawn=False)
    g = G.load_graph("demo", cfg_dir=_write_cfg(tmp_path, doc, {"crop.yaml": {}}))
    assert (g.node("/sim").respawn, g.node("/sim").respawn_delay) == (True, 1.5)
    assert (g.node("/handover_helper").respawn, g.node("/handover_helper").respawn_delay) == (False, 0.0)
    procs = {p.key: p for p in G.processes(g)}
    assert procs["hot"].respawn and procs["hot"].respawn_delay == 0.5  # any member: the whole process
    assert not G.processes(G.load_graph("demo", {"again": "false"}, cfg_dir=tmp_path))[0].respawn
    for change, pattern in (({"respawn": "sometimes"}, "respawn must be true or false, got 'sometimes'"),
                            ({"respawn_delay": -1}, "respawn_delay must be a number of seconds >= 0, got -1"),
                            ({"respawn_delay": "soon"}, "respawn_delay must be a number of seconds >= 0"),
                            ({"respwan": True}, r"unknown key\(s\) respwan \(did you mean 'respawn'\?\)")):
        bad = yaml.safe_load(yaml.safe_dump(DEMO))
        bad["nodes"][0].update(change)
        other = tmp_path / f"bad_{next(iter(change))}_{len(pattern)}"
        other.mkdir()
        with pytest.raises(G.GraphError, match=pattern):
            G.load_graph("demo", cfg_dir=_write_cfg(other, bad, {"crop.yaml": {}}))


def test_the_learner_respawns_in_every_graph():
    from pathlib import Path

    cfg = Path(__file__).resolve().parents[2] / "config"
    for setup in G.available_graphs(cfg):
        learner = G.load_graph(setup, cfg_dir=cfg).node("/learner")
        assert learner.respawn and learner.respawn_delay > 0, setup


def test_a_respawning_node_that_exits_is_started_again_after_its_delay(tmp_path):
    runner, out = _runner(tmp_path, {"b": "exit3"}, _respawning({"respawn": True, "respawn_delay": 1.0}))
    runner.start()
    try:
        assert _poll_until(runner, lambda: len(runner.respawned) == 1)
        assert runner.pid("/left/b") is None  # down for the delay
        first_exit = time.monotonic()
        assert _poll_until(runner, lambda: runner.pid("/left/b") is not None)
        assert time.monotonic() - first_exit > 0.8
        assert _poll_until(runner, lambda: len(runner.respawned) == 2)
        assert runner.pid("/a") is not None  # the rest of the graph kept running
    finally:
        runner.shutdown()
    text = out.getvalue()
    assert "[hilserl] /left/b exited with status 3; respawning it in 1 s (respawn 1)" in text
    assert "[hilserl] /left/b exited with status 3; respawning it in 1 s (respawn 2)" in text
    assert text.count("[/left/b] b up ") >= 2
    assert "shutting the graph down" not in text
    assert [e.returncode for e in runner.respawned] == [3, 3]


def test_a_respawning_node_killed_with_sigkill_comes_back_each_time(tmp_path):
    runner, out = _runner(tmp_path, {}, _respawning({"respawn": True}))
    runner.start()
    try:
        pids = []
        for i in range(3):
            assert _poll_until(runner, lambda: out.getvalue().count("[/left/b] b up ") == i + 1)
            pids.append(runner.pid("/left/b"))
            os.kill(pids[-1], signal.SIGKILL)
            assert _poll_until(runner, lambda: len(runner.respawned) == i + 1)
        assert _poll_until(runner, lambda: out.getvalue().count("[/left/b] b up ") == 4)
        assert len(set(pids + [runner.pid("/left/b")])) == 4
    finally:
        runner.shutdown()
    assert out.getvalue().count("[hilserl] /left/b was killed by signal 9 (SIGKILL); respawning it in 0 s") == 3
    assert [e.returncode for e in runner.respawned] == [-signal.SIGKILL] * 3
    # stopping the graph stops the respawned node cleanly, and nothing is respawned then
    assert {e.spec.fqn: e.returncode for e in runner.exits} == {"/a": 0, "/left/b": 0}
    assert runner.poll() is None and runner.pid("/left/b") is None and len(runner.respawned) == 3


def test_nothing_is_respawned_while_the_graph_shuts_down(tmp_path):
    runner, out = _runner(tmp_path, {"a": "exit3"}, _respawning({"respawn": True}, {"required": False}))
    runner.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and out.getvalue().count(" up ") < 2:
        time.sleep(0.05)
    runner.shutdown()
    time.sleep(0.2)
    assert runner.poll() is None
    assert runner.respawned == [] and runner.pid("/left/b") is None
    assert "respawning" not in out.getvalue()


def test_a_composed_process_with_a_respawning_member_is_restarted_whole(tmp_path):
    doc = {"nodes": [
        {"name": "a", "package": "p", "executable": "x", "process": "both"},
        {"name": "b", "package": "p", "executable": "x", "namespace": "left", "process": "both", "respawn": True},
        {"name": "c", "package": "p", "executable": "x"},
    ]}
    runner, out = _runner(tmp_path, {}, doc, executables=("x", G.COMPOSE_EXECUTABLE))
    runner.start()
    try:
        assert _poll_until(runner, lambda: out.getvalue().count(" up ") == 2)
        first = runner.pid("both")
        assert runner.pid("/a") == runner.pid("/left/b") == first
        os.kill(first, signal.SIGKILL)
        assert _poll_until(runner, lambda: out.getvalue().count("[both] a up ") == 2)
        assert runner.pid("/a") == runner.pid("/left/b") == runner.pid("both") != first
    finally:
        runner.shutdown()
    assert "[hilserl] both was killed by signal 9 (SIGKILL); respawning it in 0 s (respawn 1)" in out.getvalue()


def test_a_refused_configuration_is_not_respawned_and_its_reason_is_the_last_line(tmp_path):
    runner, out = _runner(tmp_path, {"a": "starting", "b": "refuse"}, _respawning({"respawn": True}))
    runner.start()
    assert runner.wait(timeout_s=20) == 2
    lines = out.getvalue().strip().splitlines()
    assert "[hilserl] /left/b exited with status 2 (a refused configuration): not respawning it" in lines
    assert runner.respawned == []
    assert lines[-1] == ("[hilserl] /left/b exited with status 2: [/left/b] configuration error: learner.yaml: "
                         "unknown parameter 'updates_per_transtion'")
    assert "Traceback" not in out.getvalue()


def test_a_failed_node_s_reason_comes_after_the_other_nodes_shutdown_output(tmp_path):
    runner, out = _runner(tmp_path, {"b": "refuse"})
    runner.start()
    assert runner.wait(timeout_s=20) == 2
    lines = out.getvalue().strip().splitlines()
    assert lines.index("[/a] a clean shutdown") < len(lines) - 1
    assert lines[-1].startswith("[hilserl] /left/b exited with status 2: [/left/b] configuration error: "), lines


def test_a_crash_loop_is_not_respawned_forever(tmp_path):
    from hilserl.runner import CRASH_LOOP_EXITS

    runner, out = _runner(tmp_path, {"b": "exit3"}, _respawning({"respawn": True}))
    runner.start()
    assert runner.wait(timeout_s=60) == 3
    text = out.getvalue()
    assert len(runner.respawned) == CRASH_LOOP_EXITS - 1
    assert f"[hilserl] /left/b exited with status 3 {CRASH_LOOP_EXITS} times in a row within 5 s of its start: not respawning it" in text
    assert "required node /left/b exited with status 3; shutting the graph down" in text


def test_a_real_node_refusing_a_misspelled_key_stops_the_graph_with_that_line_last(tmp_path):
    """Real mux nodes (run_node): the one with a misspelled key exits 2 and its one line (file, key,
    closest name) ends the runner's output, after the other node's shutdown."""
    pytest.importorskip("rclpy", reason="rclpy (ROS 2 Kilted wheels) not installed; run scripts/setup.sh")
    from hilserl.runner import find_executable

    try:
        find_executable("hilserl_teleop", "mux_node")
    except G.GraphError:
        pytest.skip("hilserl_teleop is not built (scripts/setup.sh)")
    doc = {"nodes": [
        {"name": "intervention_mux", "package": "hilserl_teleop", "executable": "mux_node", "namespace": "{arm}",
         "for_each": "arm", "params_files": ["mux_{arm}.yaml"]},
    ], "arms": ["left", "right"]}
    cfg = _write_cfg(tmp_path, doc, {
        "mux_left.yaml": {"/**": {"ros__parameters": {"mux": {"speed_scale": 1.0}}}},
        "mux_right.yaml": {"/**": {"ros__parameters": {"mux": {"sped_scale": 1.0}}}},
    })
    out = io.StringIO()
    runner = GraphRunner(G.load_graph("demo", cfg_dir=cfg), out=out)
    runner.start()
    assert runner.wait(timeout_s=60) == 2
    lines = out.getvalue().strip().splitlines()
    bad = cfg / "params" / "mux_right.yaml"
    assert lines[-1] == (f"[hilserl] /right/intervention_mux exited with status 2: [/right/intervention_mux] configuration "
                         f"error: {bad}: unknown parameter 'mux.sped_scale' (did you mean 'mux.speed_scale'?) "
                         f"for /right/intervention_mux"), out.getvalue()
    assert "Traceback" not in out.getvalue()
    assert sum("configuration error" in line for line in lines) == 2  # said by the node, repeated last


def test_a_graph_whose_nodes_already_run_in_the_domain_is_refused_before_anything_starts(tmp_path):
    """Two graphs in one ROS domain mix their messages (a bag of one task with the other's frames):
    the command-line runner looks first and refuses, naming the nodes and the domain."""
    import rclpy

    runner, out = _runner(tmp_path, {})
    runner.check_network = True
    ctx = rclpy.context.Context()
    rclpy.init(args=[], context=ctx)
    other = rclpy.create_node("b", namespace="left", context=ctx)  # /left/b of "another graph"
    try:
        with pytest.raises(G.GraphError, match=rf"another graph is running in ROS_DOMAIN_ID {os.environ['ROS_DOMAIN_ID']}: /left/b"):
            runner.start()
        assert runner._procs == {} and " up " not in out.getvalue()
    finally:
        other.destroy_node()
        rclpy.shutdown(context=ctx)
    (tmp_path / "again").mkdir()
    runner2, out2 = _runner(tmp_path / "again", {})
    runner2.check_network = True
    assert "clean shutdown" in _start_and_stop(runner2, out2, 2)  # alone in the domain: starts
