"""The launch files (for a full ROS 2 install) and the `hilserl launch` runner start the
same nodes with the same parameters, and every parameter in config/ fits the schema
of the node that receives it.

`launch`/`launch_ros` are not installable here, so the launch files run against small
recording stand-ins for the parts of their API they use (Node, OpaqueFunction,
DeclareLaunchArgument, ...). What the stand-ins record is compared with what the
runner passes on the command line (`--ros-args`), parsed back the way rcl parses it.
"""

import ast
import importlib.util
import sys
import types
from pathlib import Path

import pytest
import yaml

from hilserl import graph as G
from hilserl.launch_support import demo_topics

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = ROOT / "launch"
CONFIG = ROOT / "config"

# packages from other ROS repositories that graphs start (camera drivers, spacenav): no source
# here, so no schema; their parameters and topics are checked in test_real_graphs.py
EXTERNAL_PACKAGES = {"realsense2_camera", "usb_cam", "spacenav"}
# hilserl executables that start a tool (rviz2, rqt) rather than a node: no parameter schema
VIEWERS = {("hilserl", "rviz_viewer"), ("hilserl", "rqt_viewer")}

LAUNCH_FILES = {
    "sim_single_arm.launch.py": "sim_single_arm",
    "sim_dual_arm.launch.py": "sim_dual_arm",
    "bringup_single_arm.launch.py": "real_single_arm",
    "bringup_dual_arm.launch.py": "real_dual_arm",
}


# -- recording stand-ins for the launch API ---------------------------------------------------
class _Action:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class LaunchDescription:
    def __init__(self, actions=None):
        self.actions = list(actions or [])

    def add_action(self, action):
        self.actions.append(action)


class DeclareLaunchArgument(_Action):
    @property
    def name(self):
        return self.args[0]


class OpaqueFunction(_Action):
    pass


class LaunchConfiguration:
    def __init__(self, name):
        self.name = name

    def perform(self, context):
        return context.launch_configurations[self.name]


class Node(_Action):
    pass


def fake_launch_modules():
    mods = {name: types.ModuleType(name) for name in (
        "launch", "launch.actions", "launch.substitutions", "launch.launch_description_sources",
        "launch_ros", "launch_ros.actions", "launch_ros.substitutions")}
    mods["launch"].LaunchDescription = LaunchDescription
    a = mods["launch.actions"]
    a.DeclareLaunchArgument, a.OpaqueFunction = DeclareLaunchArgument, OpaqueFunction
    a.Shutdown = a.ExecuteProcess = a.IncludeLaunchDescription = _Action
    mods["launch.substitutions"].LaunchConfiguration = LaunchConfiguration
    mods["launch.substitutions"].PathJoinSubstitution = _Action
    mods["launch.launch_description_sources"].PythonLaunchDescriptionSource = _Action
    mods["launch_ros.actions"].Node = Node
    mods["launch_ros.substitutions"].FindPackageShare = _Action
    return mods


def run_launch_file(path, monkeypatch, overrides=None):
    for name, mod in fake_launch_modules().items():
        monkeypatch.setitem(sys.modules, name, mod)
    spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ld = module.generate_launch_description()
    context = types.SimpleNamespace(launch_configurations={})
    for act in ld.actions:
        if isinstance(act, DeclareLaunchArgument):
            context.launch_configurations[act.name] = act.kwargs.get("default_value")
    context.launch_configurations.update(overrides or {})
    started = []
    for act in ld.actions:
        if isinstance(act, OpaqueFunction):
            produced = act.kwargs["function"](context)
            for a in produced:
                a.from_graph = True  # started for the graph description (not franka's hardware and controllers)
            started += produced
        elif isinstance(act, Node):
            started.append(act)
    return ld, context, started


# -- parse the runner's --ros-args back, as rcl does -------------------------------------------
def parse_ros_args(argv):
    assert argv[0] == "--ros-args"
    out = {"files": [], "params": {}, "remaps": {}}
    i = 1
    while i < len(argv):
        flag, value = argv[i], argv[i + 1]
        if flag == "--params-file":
            out["files"].append(value)
        elif flag == "-p":
            k, v = value.split(":=", 1)
            out["params"][k] = yaml.safe_load(v)
        elif flag == "-r":
            k, v = value.split(":=", 1)
            if k == "__node":
                out["name"] = v
            elif k == "__ns":
                out["namespace"] = v
            else:
                out["remaps"][k] = v
        i += 2
    return out


def hilserl_nodes(started):
    """The nodes a launch file starts for its graph description (hilserl's and the drivers it names)."""
    return [n.kwargs for n in started if isinstance(n, Node) and getattr(n, "from_graph", False)]


def launched_nodes(started):
    """Every hilserl node a launch description starts, by full name: ``(package, executable,
    ros-args as parsed, process key)``. A composed process (compose_nodes) is opened up
    into its members; a plain launch_ros Node is turned into the --ros-args launch_ros
    would pass (name, namespace, parameter files, inline parameters, remappings)."""
    from hilserl_interfaces.compose import parse_compose_argv

    out = {}
    for kw in hilserl_nodes(started):
        if (kw["package"], kw["executable"]) == (G.COMPOSE_PACKAGE, G.COMPOSE_EXECUTABLE):
            # launch must not name the composed process: launch_ros would rename every member
            assert "name" not in kw and "namespace" not in kw and "parameters" not in kw
            sections = parse_compose_argv(kw["arguments"])
            for sec in sections:
                args = parse_ros_args(list(sec.ros_args))
                fqn = (args["namespace"].rstrip("/") or "") + "/" + args["name"]
                out[fqn] = (sec.package, sec.executable, args, "composed:" + ",".join(sorted(
                    (parse_ros_args(list(x.ros_args))["name"]) for x in sections)))
            continue
        files = [p for p in kw["parameters"] if isinstance(p, str)]
        inline = {k: v for p in kw["parameters"] if isinstance(p, dict) for k, v in p.items()}
        fqn = (kw["namespace"].rstrip("/") or "") + "/" + kw["name"]
        args = {"name": kw["name"], "namespace": kw["namespace"], "files": files, "params": inline, "remaps": dict(kw["remappings"])}
        out[fqn] = (kw["package"], kw["executable"], args, fqn)
    return out


@pytest.mark.parametrize("hot_path_process", ["", "hot_path"])
@pytest.mark.parametrize("launch_file, setup", sorted(LAUNCH_FILES.items()))
def test_launch_file_and_runner_start_the_same_nodes_with_the_same_parameters(launch_file, setup, hot_path_process, monkeypatch):
    from hilserl.runner import GraphRunner

    overrides = {"hot_path_process": hot_path_process}
    _, _, started = run_launch_file(LAUNCH / launch_file, monkeypatch, overrides)
    from_launch = launched_nodes(started)
    graph = G.load_graph(setup, overrides)
    assert sorted(from_launch) == sorted(n.fqn for n in graph.nodes)
    # what the runner would execute, process by process
    commands = GraphRunner(graph, resolve=lambda pkg, exe: f"{pkg}/{exe}").commands()
    runner_args = {}
    for proc in G.processes(graph):
        cmd = commands[proc.key]
        if proc.composed:
            from hilserl_interfaces.compose import parse_compose_argv

            assert cmd[0] == f"{G.COMPOSE_PACKAGE}/{G.COMPOSE_EXECUTABLE}"
            for spec, sec in zip(proc.nodes, parse_compose_argv(cmd[1:])):
                runner_args[spec.fqn] = parse_ros_args(list(sec.ros_args))
        else:
            runner_args[proc.nodes[0].fqn] = parse_ros_args(cmd[1:])
    for spec in graph.nodes:
        package, executable, kw, _ = from_launch[spec.fqn]
        argv = runner_args[spec.fqn]
        assert (package, executable) == (spec.package, spec.executable)
        assert (argv["name"], argv["namespace"]) == (kw["name"], kw["namespace"])
        assert argv["files"] == kw["files"]
        assert argv["params"] == kw["params"], spec.fqn
        assert argv["remaps"] == kw["remaps"]
    hot = {fqn for fqn, v in from_launch.items() if v[3].startswith("composed:")}
    if hot_path_process:  # crop nodes, muxes and the actor in one process, nothing else
        expected = {n.fqn for n in graph.nodes if n.executable in ("crop_node", "mux_node", "actor_node")}
        assert hot == expected and len(expected) >= 4
        assert len({from_launch[f][3] for f in hot}) == 1
    else:
        assert not hot


@pytest.mark.parametrize("hot_path_process", ["", "hot_path"])
@pytest.mark.parametrize("launch_file, setup", sorted(LAUNCH_FILES.items()))
def test_launch_files_respawn_what_the_graph_respawns_and_shut_down_on_the_other_required_nodes(
        launch_file, setup, hot_path_process, monkeypatch):
    _, _, started = run_launch_file(LAUNCH / launch_file, monkeypatch, {"hot_path_process": hot_path_process})
    graph = G.load_graph(setup, {"hot_path_process": hot_path_process})
    launched = hilserl_nodes(started)
    procs = G.processes(graph)
    assert len(launched) == len(procs)
    for proc, kw in zip(procs, launched):  # launch starts the graph's processes in order
        if proc.respawn:
            assert (kw["respawn"], kw["respawn_delay"]) == (True, proc.respawn_delay), proc.key
            assert "on_exit" not in kw, proc.key  # a Shutdown on exit would stop launch at every respawn
        else:
            assert "respawn" not in kw and "respawn_delay" not in kw, proc.key
            assert ("on_exit" in kw) == proc.required, proc.key
        # the time from SIGINT to SIGTERM, as the runner gives it (launch's default is the same 5 s)
        assert float(kw.get("sigterm_timeout", G.DEFAULT_SHUTDOWN_TIMEOUT_S)) == proc.shutdown_timeout_s, proc.key
    learner = [kw for kw in launched if kw.get("name") == "learner"]
    assert learner and learner[0]["respawn"] is True and learner[0]["respawn_delay"] > 0
    assert float(learner[0]["sigterm_timeout"]) >= 60  # its final checkpoint (GBs of buffers) is not cut off


def test_launch_arguments_reach_the_nodes_like_runner_overrides(monkeypatch):
    _, _, started = run_launch_file(LAUNCH / "sim_single_arm.launch.py", monkeypatch, {"task": "peg_insertion", "operator": "demo"})
    sim = [kw for kw in hilserl_nodes(started) if kw["name"] == "sim"][0]
    params = {k: v for p in sim["parameters"] if isinstance(p, dict) for k, v in p.items()}
    runner = G.load_graph("sim_single_arm", {"task": "peg_insertion", "operator": "demo"}).node("/sim")
    assert params["task"] == "peg_insertion" and params["operator.mode"] == "demo"
    assert parse_ros_args(G.node_argv(runner))["params"] == params


def test_launch_arguments_declare_the_graphs_choices(monkeypatch):
    ld, _, _ = run_launch_file(LAUNCH / "sim_single_arm.launch.py", monkeypatch)
    declared = {a.name: a.kwargs.get("choices") for a in ld.actions if isinstance(a, DeclareLaunchArgument)}
    assert declared["reward"] == ["sim", "classifier"] and declared["task"] is None
    assert declared == {name: (list(c) if c else None) for name, c in
                        ((n, dict(G.load_graph("sim_single_arm").choices).get(n)) for n in declared)}


def test_real_bringup_adds_franka_hardware_and_controllers(monkeypatch):
    pytest.importorskip("ament_index_python", reason="ament_index_python wheel not installed")
    for name, n_arms in (("bringup_single_arm.launch.py", 1), ("bringup_dual_arm.launch.py", 2)):
        ld, _, started = run_launch_file(LAUNCH / name, monkeypatch)
        spawners = [n.kwargs for n in started if isinstance(n, Node) and n.kwargs.get("package") == "controller_manager"]
        assert spawners and spawners[0]["arguments"][0] == "cartesian_impedance_controller"
        controllers = Path(spawners[0]["arguments"][-1])
        assert controllers.name == ("controllers_single_arm.yaml" if n_arms == 1 else "controllers_dual_arm.yaml")
        doc = yaml.safe_load((CONFIG / controllers.name).read_text())
        assert len(doc["cartesian_impedance_controller"]["ros__parameters"]["arms"]) == n_arms
        ip_args = [a.name for a in ld.actions if isinstance(a, DeclareLaunchArgument) and a.name.startswith("robot_ip")]
        assert len(ip_args) == n_arms


def test_record_demos_runs_the_graph_without_learning_and_records_its_topics(monkeypatch):
    _, _, started = run_launch_file(LAUNCH / "record_demos.launch.py", monkeypatch, {"setup": "sim_dual_arm", "bag": "demos/x"})
    names = {kw["name"] for kw in hilserl_nodes(started)}
    assert "actor" not in names and "learner" not in names and "intervention_mux" in names
    record = [a for a in started if not isinstance(a, Node)][0]
    cmd = record.kwargs["cmd"]
    assert cmd[:6] == ["ros2", "bag", "record", "-s", "mcap", "-o"] and cmd[6] == "demos/x"
    assert "/right/cameras/front/image_cropped" in cmd and "/left/mux/executed" in cmd
    topics = demo_topics(G.load_graph("sim_dual_arm", {"learning": "false"}))
    assert cmd[7:7 + len(topics)] == topics  # then --custom-data: setup, arms, cameras, crops (as hilserl record writes)
    assert cmd[7 + len(topics)] == "--custom-data" and "hilserl.setup=sim_dual_arm" in cmd


# -- every node a graph names exists, and its parameters fit its schema ---------------------------
def _console_scripts(package):
    tree = ast.parse((ROOT / "src" / package / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for k, v in zip(node.keys, node.values):
                if isinstance(k, ast.Constant) and k.value == "console_scripts":
                    return {s.value.split("=")[0].strip(): s.value.split("=")[1].strip() for s in v.elts}
    return {}


def _schema(entry_point):
    """The schema the node passes to NodeConfig (its declared parameters)."""
    import re

    module = entry_point.partition(":")[0]
    mod = importlib.import_module(module)
    found = re.search(r"NodeConfig\(self, (\w+)", Path(mod.__file__).read_text())
    assert found, f"{module}: no NodeConfig(self, <Schema>) call"
    return getattr(mod, found.group(1))


def _merge(a, b):
    for k, v in b.items():
        a[k] = _merge(a.get(k, {}), v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
    return a


def _schema_variants():
    for setup in sorted(G.available_graphs(CONFIG)):
        yield setup, {}
        args = dict(G.load_graph(setup, cfg_dir=CONFIG).arguments)
        monitoring = {k: "true" for k in ("rviz", "rqt") if k in args}  # the monitoring nodes, off by default
        if monitoring:
            yield setup, monitoring


@pytest.mark.parametrize("setup, overrides", list(_schema_variants()),
                         ids=lambda v: v if isinstance(v, str) else ",".join(f"{k}:={x}" for k, x in v.items()) or "defaults")
def test_every_graph_node_exists_and_its_parameters_fit_its_schema(setup, overrides):
    from hilserl_core.formats import config as cfg

    graph = G.load_graph(setup, overrides, cfg_dir=CONFIG)
    for spec in graph.nodes:
        if spec.package in EXTERNAL_PACKAGES:
            assert not (ROOT / "src" / spec.package).exists()
            continue
        scripts = _console_scripts(spec.package)
        if (spec.package, spec.executable) in VIEWERS:
            assert spec.executable in scripts, f"{setup}: {spec.package} has no executable '{spec.executable}'"
            continue
        assert spec.executable in scripts, f"{setup}: {spec.package} has no executable '{spec.executable}'"
        schema = _schema(scripts[spec.executable])
        merged = {}
        for f in spec.params_files:
            doc = yaml.safe_load(Path(f).read_text()) or {}
            for key in ("/**", spec.fqn, spec.name):
                if key in doc:
                    _merge(merged, doc[key]["ros__parameters"])
        _merge(merged, cfg.nest(spec.parameter_dict()))
        cfg.from_mapping(schema, merged, f"{setup}: {spec.fqn}")  # raises ConfigError naming the bad key


@pytest.mark.parametrize("setup", sorted(G.available_graphs(CONFIG)))
def test_actor_learner_and_reward_classifier_share_the_encoder_settings(setup):
    """They must compute the same features: one encoder_dtype (and weights file) for all three,
    from one graph argument whose choices are the encoder's."""
    from hilserl_core.vision.encoders import ENCODER_DTYPES

    raw = yaml.safe_load((CONFIG / "graphs" / f"{setup}.yaml").read_text())
    assert list(raw["choices"]["encoder_dtype"]) == list(ENCODER_DTYPES)
    for dtype in ("int8", "float32"):
        args = {"encoder_dtype": dtype, **({"reward": "classifier"} if "reward" in raw["arguments"] else {})}  # sim: start the classifier
        graph = G.load_graph(setup, args, cfg_dir=CONFIG)
        users = {spec.executable: spec.parameter_dict() for spec in graph.nodes
                 if spec.executable in ("actor_node", "learner_node", "reward_node")}
        assert set(users) == {"actor_node", "learner_node", "reward_node"}, setup
        assert {p["encoder_dtype"] for p in users.values()} == {dtype}
        assert len({p["encoder_weights"] for p in users.values()}) == 1
