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


# -- the runner, with small real programs standing in for nodes ------------------------

NODE_PROGRAM = textwrap.dedent(
    """
    import signal, sys, time
    args = sys.argv[1:]
    name = args[args.index("-r") + 1].split(":=")[1]
    mode = {modes!r}.get(name, "spin")
    stop = []
    signal.signal(signal.SIGINT, lambda *a: stop.append(1))
    print(name, "up", " ".join(args), flush=True)
    if mode.startswith("exit"):
        time.sleep(0.5)
        sys.exit(int(mode[4:]))
    while not stop:
        time.sleep(0.02)
    print(name, "clean shutdown", flush=True)
    """
)


def _runner(tmp_path, modes):
    doc = {
        "nodes": [
            {"name": "a", "package": "p", "executable": "x"},
            {"name": "b", "package": "p", "executable": "x", "namespace": "left", "parameters": {"k": 1.5}},
        ]
    }
    cfg = _write_cfg(tmp_path, doc)
    prog = tmp_path / "fake_node.py"
    prog.write_text(NODE_PROGRAM.format(modes=modes))
    exe = tmp_path / "x"
    exe.write_text(f"#!/bin/sh\nexec {sys.executable} {prog} \"$@\"\n")
    exe.chmod(0o755)
    out = io.StringIO()
    return GraphRunner(G.load_graph("demo", cfg_dir=cfg), resolve=lambda pkg, ex: str(tmp_path / ex), out=out), out


def test_runner_starts_nodes_with_their_ros_args_and_stops_them_cleanly(tmp_path):
    runner, out = _runner(tmp_path, {})
    runner.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and out.getvalue().count(" up ") < 2:
        time.sleep(0.05)
    assert runner.poll() is None
    runner.shutdown()
    text = out.getvalue()
    assert "[/left/b] b up --ros-args -r __node:=b -r __ns:=/left -p k:=1.5" in text
    assert "[/a] a clean shutdown" in text and "[/left/b] b clean shutdown" in text
    assert all(e.returncode == 0 and e.expected for e in runner.exits)


def test_a_dying_required_node_stops_the_graph_with_its_status(tmp_path):
    runner, out = _runner(tmp_path, {"b": "exit3"})
    runner.start()
    code = runner.wait(timeout_s=20)
    assert code == 3
    assert "required node /left/b exited with status 3" in out.getvalue()
    assert "[/a] a clean shutdown" in out.getvalue()


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
