"""spacemouse_driver in the real-robot graphs: `hid` starts hilserl's HID driver per arm,
`spacenav` starts the ROS spacenav package's spacenav_node in the arm's namespace (so it
publishes the spacenav/twist and spacenav/joy that the arm's mux reads), and the dual-arm
graph refuses `spacenav` when it loads (spacenavd serves one device, not one per arm).

The spacenav package is not installable here: the runner then fails before starting
anything, naming the missing executable, which is the expected outcome off the robot."""

from pathlib import Path

import pytest
import yaml
from test_launch_files import LAUNCH, Node, run_launch_file

from hilserl import graph as G
from hilserl.runner import GraphRunner
from hilserl_core.formats.config import from_mapping, to_dict
from hilserl_core.robot.intervention import MuxConfig
from hilserl_core.robot.spacemouse import SpaceMouseConfig
from hilserl_interfaces import topics

CONFIG = Path(__file__).resolve().parents[2] / "config"

# the parameters spacenav_node declares (joystick_drivers, spacenav/src/spacenav.cpp)
SPACENAV_PARAMS = {
    "full_scale": float, "zero_when_static": bool, "static_count_threshold": int,
    "static_trans_deadband": float, "static_rot_deadband": float,
    "linear_scale/x": float, "linear_scale/y": float, "linear_scale/z": float,
    "angular_scale/x": float, "angular_scale/y": float, "angular_scale/z": float,
}


def _params(spec):
    out = {}
    for f in spec.params_files:
        doc = yaml.safe_load(Path(f).read_text()) or {}
        for key in ("/**", spec.fqn, spec.name):
            out.update((doc.get(key) or {}).get("ros__parameters") or {})
    out.update(spec.parameter_dict())
    return out


def _drivers(graph):
    return sorted((n.fqn, n.package, n.executable) for n in graph.nodes if n.executable in ("spacemouse_node", "spacenav_node"))


def test_single_arm_spacenav_starts_spacenav_node_where_the_mux_listens():
    graph = G.load_graph("real_single_arm", {"spacemouse_driver": "spacenav"}, cfg_dir=CONFIG)
    assert _drivers(graph) == [("/left/spacenav", "spacenav", "spacenav_node")]
    spacenav, mux = graph.node("/left/spacenav"), graph.node("/left/intervention_mux")
    # spacenav_node publishes spacenav/twist and spacenav/joy relative to its namespace,
    # the mux subscribes to the same relative names in the same namespace: no remapping
    assert spacenav.namespace == mux.namespace == "/left" and not spacenav.remappings and not mux.remappings
    assert (topics.SPACENAV_TWIST, topics.SPACENAV_JOY) == ("spacenav/twist", "spacenav/joy")
    params = _params(spacenav)
    for name, value in params.items():
        assert name in SPACENAV_PARAMS, f"spacenav_node has no parameter '{name}'"
        assert type(value) is SPACENAV_PARAMS[name], (name, value)  # rclcpp rejects a wrong type
    # the same range as the HID driver: the mux's dead_zone and speed_scale mean the same
    hid = from_mapping(SpaceMouseConfig, _params(G.load_graph("real_single_arm", cfg_dir=CONFIG).node("/left/spacemouse")))
    assert params["full_scale"] == hid.full_scale
    assert params["zero_when_static"] is True
    mux = {**to_dict(MuxConfig()), **yaml.safe_load((CONFIG / "params" / "mux.yaml").read_text())["/**"]["ros__parameters"]["mux"]}
    assert params["static_trans_deadband"] == params["static_rot_deadband"] == mux["dead_zone"]
    # with no device event, spacenav_node republishes (zeros) every static_count_threshold
    # polls of 1 ms: that must come before the mux counts the operator input as stale
    assert params["static_count_threshold"] * 1e-3 < mux["operator_timeout_s"]


def test_hid_is_the_default_and_starts_no_spacenav_node():
    single = G.load_graph("real_single_arm", cfg_dir=CONFIG)
    assert _drivers(single) == [("/left/spacemouse", "hilserl_teleop", "spacemouse_node")]
    dual = G.load_graph("real_dual_arm", cfg_dir=CONFIG)
    assert _drivers(dual) == [("/left/spacemouse", "hilserl_teleop", "spacemouse_node"),
                              ("/right/spacemouse", "hilserl_teleop", "spacemouse_node")]


@pytest.mark.parametrize("driver", ["spacenav", "spacenv"])
def test_dual_arm_refuses_anything_but_hid_when_it_loads(driver):
    with pytest.raises(G.GraphError, match=f"spacemouse_driver:={driver} is not allowed: spacenavd serves one device, so the "
                                           "ROS spacenav package cannot give each arm its own SpaceMouse.*choices: hid"):
        G.load_graph("real_dual_arm", {"spacemouse_driver": driver}, cfg_dir=CONFIG)


def test_single_arm_names_the_drivers_when_one_is_misspelt():
    with pytest.raises(G.GraphError, match=r"spacemouse_driver:=spacenv is not allowed \(choices: hid, spacenav\)"):
        G.load_graph("real_single_arm", {"spacemouse_driver": "spacenv"}, cfg_dir=CONFIG)


def test_launch_files_start_spacenav_node_or_refuse_like_the_runner(monkeypatch):
    _, _, started = run_launch_file(LAUNCH / "bringup_single_arm.launch.py", monkeypatch, {"spacemouse_driver": "spacenav"})
    nodes = [a.kwargs for a in started if isinstance(a, Node) and a.kwargs.get("package") in ("spacenav", "hilserl_teleop")]
    drivers = sorted((kw["namespace"], kw["name"], kw["package"], kw["executable"]) for kw in nodes
                     if kw["executable"] in ("spacenav_node", "spacemouse_node"))
    assert drivers == [("/left", "spacenav", "spacenav", "spacenav_node")]
    spacenav = [kw for kw in nodes if kw["executable"] == "spacenav_node"][0]
    assert [Path(p).name for p in spacenav["parameters"]] == ["spacemouse_spacenav.yaml"] and not spacenav["remappings"]
    with pytest.raises(G.GraphError, match="spacemouse_driver:=spacenav is not allowed"):
        run_launch_file(LAUNCH / "bringup_dual_arm.launch.py", monkeypatch, {"spacemouse_driver": "spacenav"})


def test_runner_names_the_missing_spacenav_package_before_starting_anything():
    from hilserl.runner import find_executable

    graph = G.load_graph("real_single_arm", {"spacemouse_driver": "spacenav"}, cfg_dir=CONFIG)
    cmds = GraphRunner(graph, resolve=lambda pkg, exe: f"{pkg}/{exe}").commands()
    assert cmds["/left/spacenav"][:6] == ["spacenav/spacenav_node", "--ros-args", "-r", "__node:=spacenav", "-r", "__ns:=/left"]
    try:
        find_executable("spacenav", "spacenav_node")
        pytest.skip("the spacenav package is installed here")
    except G.GraphError:
        pass
    runner = GraphRunner(graph)  # resolves executables as `ros2 run` does
    with pytest.raises(G.GraphError, match="executable 'spacenav_node' of package 'spacenav' not found"):
        runner.start()
    assert not runner._procs  # nothing was started
