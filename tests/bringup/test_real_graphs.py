"""The real-robot graphs, read as a lab would run them: every topic the actor needs has a
publisher among the graph's nodes; the camera drivers, their remappings and parameters
resolve to the topics the crop nodes read; RViz and rqt show topics the graph publishes.

No ROS graph runs here: what each executable publishes is the table PUBLISHES below. For
hilserl's own nodes the table is checked against their source (every ``create_publisher`` /
``create_service`` the source makes, resolved through ``hilserl_interfaces.topics``); for
drivers from other ROS packages (RealSense, usb_cam, spacenav) it holds the topics their
documentation and source name, and the parameters they declare (``EXTERNAL_PARAMETERS``).
Topic names resolve as rcl resolves them: relative names under the node's namespace,
``~/`` under its full name, then the node's remappings.
"""

import ast
import json
import re
from pathlib import Path

import pytest
import yaml
from test_launch_files import EXTERNAL_PACKAGES, LAUNCH, Node, launched_nodes, run_launch_file

from hilserl import graph as G
from hilserl.recording import _node_parameters
from hilserl.viewers import display_topics, expand_rviz_config, parse_ros_parameters
from hilserl_core.robot.actor_loop import ARM_INPUTS
from hilserl_interfaces import topics

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config"
REAL = ("real_single_arm", "real_dual_arm")
ALL = tuple(sorted(G.available_graphs(CONFIG)))

# (package, executable) -> what it publishes. Relative names resolve in the node's namespace;
# "{camera}" is the node's `camera` parameter, "{arm}" each of its `arms`.
PUBLISHES = {
    ("hilserl_teleop", "spacemouse_node"): ["spacenav/twist", "spacenav/joy", "/diagnostics"],
    ("hilserl_teleop", "mux_node"): ["target_pose", "target_wrench", "gripper/command", "mux/executed", "/diagnostics"],
    ("hilserl_teleop", "workspace_marker_node"): ["workspace_marker"],
    ("hilserl_teleop", "metrics_rates_node"): ["/metrics/success_rate", "/metrics/intervention_rate", "/metrics/cycle_time_s"],
    ("hilserl_perception", "crop_node"): ["cameras/{camera}/image_cropped", "/diagnostics"],
    ("hilserl_reward", "reward_node"): ["/reward/probability", "/reward/success", "/diagnostics"],
    ("hilserl_policy", "actor_node"): ["/{arm}/policy/action", "/learner/transitions", "/metrics/episodes", "/reward/reset",
                                       "/diagnostics"],
    ("hilserl_learner", "learner_node"): ["/learner/policy_weights", "/learner/transition_acks", "/diagnostics"],
    # hilserl_robot (state, gripper, resets on the robot PC)
    ("hilserl_robot", "franka_state_node"): ["current_pose", "current_twist", "external_wrench", "/diagnostics"],
    ("hilserl_robot", "gripper_bridge_node"): ["gripper/joint_states", "/diagnostics"],
    ("hilserl_robot", "reset_node"): ["/{arm}/policy/action", "/diagnostics"],
    # the simulator: every arm's state, the scripted operator's SpaceMouse, ground truth (its
    # raw camera images and episode marks have names built at run time, left out here)
    ("hilserl_sim", "sim_node"): ["/{arm}/current_pose", "/{arm}/current_twist", "/{arm}/external_wrench",
                                  "/{arm}/gripper/joint_states", "/{arm}/spacenav/twist", "/{arm}/spacenav/joy", "/sim/success",
                                  "/reward/success", "/diagnostics"],
    # viewers: no topics of their own
    ("hilserl", "rviz_viewer"): [],
    ("hilserl", "rqt_viewer"): [],
    # other ROS packages: realsense2_camera names its topics under the node (4.54 and newer,
    # "~/color/image_raw") or its namespace (older); usb_cam and spacenav relative to the namespace
    ("realsense2_camera", "realsense2_camera_node"): ["~/color/image_raw", "~/color/camera_info", "color/image_raw",
                                                      "color/camera_info"],
    ("usb_cam", "usb_cam_node_exe"): ["image_raw", "camera_info"],
    ("spacenav", "spacenav_node"): ["spacenav/twist", "spacenav/joy", "spacenav/offset", "spacenav/rot_offset"],
}
# (package, executable) -> services it offers (a parameter name in braces: that parameter's value)
SERVES = {("hilserl_robot", "reset_node"): ["{service}"]}

# topics that come from outside the graph: the franka_ros2 launch's robot_state_publisher
FROM_OUTSIDE = {"/robot_description"}

# parameters the other packages' nodes declare (realsense-ros 4.5x, usb_cam 0.8), with their types:
# rclcpp refuses a value of another type
EXTERNAL_PARAMETERS = {
    ("realsense2_camera", "realsense2_camera_node"): {
        "serial_no": str, "camera_name": str, "enable_color": bool, "enable_depth": bool, "enable_infra1": bool,
        "enable_infra2": bool, "enable_gyro": bool, "enable_accel": bool, "pointcloud.enable": bool,
        "rgb_camera.color_profile": str, "initial_reset": bool},
    ("usb_cam", "usb_cam_node_exe"): {
        "video_device": str, "camera_name": str, "frame_id": str, "framerate": float, "image_width": int,
        "image_height": int, "pixel_format": str, "io_method": str},
}


# -- name resolution ---------------------------------------------------------------------------
def resolve(name: str, spec: G.NodeSpec) -> str:
    ns = "" if spec.namespace == "/" else spec.namespace
    if name.startswith("~/"):
        return f"{ns}/{spec.name}/{name[2:]}"
    return name if name.startswith("/") else f"{ns}/{name}"


def resolve_remapped(name: str, spec: G.NodeSpec) -> str:
    full = resolve(name, spec)
    for match, replacement in spec.remappings:
        if resolve(match, spec) == full:
            return resolve(replacement, spec)
    return full


def _expand(name: str, params: dict) -> list:
    if "{arm}" in name:
        return [name.replace("{arm}", arm) for arm in params.get("arms", ())]
    return [name.replace("{camera}", str(params.get("camera", "")))]


def published(graph: G.Graph) -> dict:
    """topic -> full names of the nodes that publish it."""
    out = {}
    for spec in graph.nodes:
        key = (spec.package, spec.executable)
        assert key in PUBLISHES, f"{graph.setup}: {spec.fqn} runs {key}, which the table PUBLISHES does not know"
        params = _node_parameters(spec)
        for name in PUBLISHES[key]:
            for topic in _expand(name, params):
                owners = out.setdefault(resolve_remapped(topic, spec), [])
                if spec.fqn not in owners:  # RealSense: both names (old and new versions) land on image_raw
                    owners.append(spec.fqn)
    return out


def served(graph: G.Graph) -> dict:
    out = {}
    for spec in graph.nodes:
        params = _node_parameters(spec)
        for name in SERVES.get((spec.package, spec.executable), []):
            out.setdefault(resolve_remapped(name.format(**params), spec), []).append(spec.fqn)
    return out


def actor_needs(actor: G.NodeSpec) -> list:
    """The topics the actor subscribes to (hilserl_policy/actor_node.py), for its arms and cameras."""
    p = _node_parameters(actor)
    needs = []
    for arm in p["arms"]:
        needs += [f"/{arm}/{topic}" for topic, _ in ARM_INPUTS.values()]
        needs.append(f"/{arm}/mux/executed")
    needs += [topics.cropped_topic(entry) for entry in p["cameras"]]
    return needs + [topics.REWARD_SUCCESS, topics.POLICY_WEIGHTS]


def test_actor_needs_match_its_subscriptions():
    src = (ROOT / "src/hilserl_policy/hilserl_policy/actor_node.py").read_text()
    assert re.search(r"for name, msg_type in \(\(\"pose\", PoseStamped\), \(\"twist\", TwistStamped\), "
                     r"\(\"wrench\", WrenchStamped\), \(\"gripper\", JointState\)\)", src)
    assert 'ARM_INPUTS[name]' in src and 'ns + "mux/executed"' in src
    for expr in ("topics.cropped_topic(entry)", "topics.REWARD_SUCCESS", "topics.POLICY_WEIGHTS"):
        assert f"create_subscription({{}}, {expr}".format("Image" if "cropped" in expr else
                                                           "Joy" if "REWARD" in expr else "UInt8MultiArray") in src, expr
    assert set(ARM_INPUTS) == {"pose", "twist", "wrench", "gripper"}


VARIANTS = [(setup, args) for setup in REAL for args in (
    {}, {"hot_path_process": "hot_path"}, {"rviz": "true", "rqt": "true"},
    {"camera_left_wrist": "usb_cam", "camera_left_side": "usb_cam"})] + [
    ("real_single_arm", {"spacemouse_driver": "spacenav"}),
    ("real_dual_arm", {"camera_right_wrist": "usb_cam", "camera_left_side": "usb_cam"})]


@pytest.mark.parametrize("setup, args", VARIANTS, ids=lambda v: v if isinstance(v, str) else ",".join(f"{k}:={x}" for k, x in v.items()) or "defaults")
def test_every_topic_the_actor_needs_has_a_publisher(setup, args):
    graph = G.load_graph(setup, args, cfg_dir=CONFIG)
    pubs = published(graph)
    actor = next(n for n in graph.nodes if n.executable == "actor_node")
    missing = [t for t in actor_needs(actor) if t not in pubs]
    assert not missing, f"{setup} {args}: nothing in the graph publishes {', '.join(missing)}"
    # the state of every arm comes from hilserl_robot, once
    for arm in graph.arms:
        for topic in ("current_pose", "current_twist", "external_wrench", "gripper/joint_states"):
            assert len(pubs[f"/{arm}/{topic}"]) == 1, (topic, pubs[f"/{arm}/{topic}"])
        assert pubs[f"/{arm}/mux/executed"] == [f"/{arm}/intervention_mux"]
        # the mux's own inputs: measured pose, operator, policy
        for topic in ("current_pose", "spacenav/twist", "spacenav/joy", "policy/action"):
            assert f"/{arm}/{topic}" in pubs, topic
    # the reset service the actor calls is offered, for all the actor's arms
    service = _node_parameters(actor)["reset_service"]
    assert service and served(graph).get(service) == ["/robot/reset"], served(graph)
    reset = graph.node("/robot/reset")
    assert list(_node_parameters(reset)["arms"]) == list(_node_parameters(actor)["arms"]) == list(graph.arms)


@pytest.mark.parametrize("setup", REAL)
def test_learner_remote_leaves_the_learner_to_another_host_and_keeps_the_robot_side(setup):
    def executables(args):
        return sorted(n.executable for n in G.load_graph(setup, args, cfg_dir=CONFIG).nodes)

    here, remote = executables({}), executables({"learner": "remote"})
    assert here.count("learner_node") == 1
    # the learner, and nothing else, is left to the GPU host (docs/docker.md)
    assert sorted(remote + ["learner_node"]) == here
    # what the actor then misses is what the remote learner publishes, and only that
    graph = G.load_graph(setup, {"learner": "remote"}, cfg_dir=CONFIG)
    actor = next(n for n in graph.nodes if n.executable == "actor_node")
    assert [t for t in actor_needs(actor) if t not in published(graph)] == [topics.POLICY_WEIGHTS]
    # without learning there is neither an actor nor a learner, wherever the learner would run
    for learner in ("here", "remote"):
        idle = executables({"learning": "false", "learner": learner})
        assert "actor_node" not in idle and "learner_node" not in idle


def test_conditions_joined_by_and_hold_only_when_every_part_does():
    assert G._truthy("true and here == here")
    assert not G._truthy("true and remote == here")
    assert not G._truthy("false and here == here")
    assert G._truthy("1 and a != b and yes")


@pytest.mark.parametrize("setup", REAL)
def test_every_crop_node_reads_a_camera_driver_for_each_driver_choice(setup):
    base = G.load_graph(setup, cfg_dir=CONFIG)
    cameras = [f"{a}_{c}" for a in base.arms for c in base.cameras]
    for driver in ("realsense", "usb_cam"):
        graph = G.load_graph(setup, {f"camera_{c}": driver for c in cameras}, cfg_dir=CONFIG)
        pubs = published(graph)
        crops = [n for n in graph.nodes if n.executable == "crop_node"]
        assert len(crops) == len(cameras)
        for crop in crops:
            raw = resolve_remapped(topics.camera_raw(_node_parameters(crop)["camera"]), crop)
            owners = pubs.get(raw, [])
            assert len(owners) == 1, f"{setup} {driver}: {raw} published by {owners}"
            driver_node = graph.node(owners[0])
            assert driver_node.namespace == raw.rsplit("/", 1)[0]  # /<arm>/cameras/<camera>
            assert driver_node.package == ("realsense2_camera" if driver == "realsense" else "usb_cam")
    # a mix: one camera by usb_cam, the others RealSense; and none: the image comes from elsewhere
    mixed = G.load_graph(setup, {f"camera_{cameras[0]}": "usb_cam", f"camera_{cameras[-1]}": "none"}, cfg_dir=CONFIG)
    drivers = sorted((n.namespace, n.package) for n in mixed.nodes if n.package in ("realsense2_camera", "usb_cam"))
    arm0, cam0 = cameras[0].split("_")
    armN, camN = cameras[-1].split("_")
    assert (f"/{arm0}/cameras/{cam0}", "usb_cam") in drivers
    assert not [d for d in drivers if d[0] == f"/{armN}/cameras/{camN}"]
    assert len(drivers) == len(cameras) - 1
    assert f"/{armN}/cameras/{camN}/image_raw" not in published(mixed)


@pytest.mark.parametrize("setup", REAL)
def test_camera_driver_parameters_are_ones_the_drivers_declare_with_their_types(setup):
    base = G.load_graph(setup, cfg_dir=CONFIG)
    cameras = [f"{a}_{c}" for a in base.arms for c in base.cameras]
    for driver in ("realsense", "usb_cam"):
        args = {f"camera_{c}": driver for c in cameras}
        args.update({f"serial_{c}": str(100000000000 + i) for i, c in enumerate(cameras)})  # all digits, as RealSense serials are
        args.update({f"video_device_{c}": f"/dev/v4l/by-id/usb-cam-{c}-video-index0" for c in cameras})
        graph = G.load_graph(setup, args, cfg_dir=CONFIG)
        seen = set()
        for spec in graph.nodes:
            declared = EXTERNAL_PARAMETERS.get((spec.package, spec.executable))
            if declared is None:
                continue
            params = _node_parameters(spec)
            for name, value in params.items():
                assert name in declared, f"{spec.fqn}: {spec.executable} declares no parameter '{name}'"
                assert type(value) is declared[name], (spec.fqn, name, value)
            cam = spec.namespace.split("/")[1] + "_" + spec.namespace.split("/")[3]
            assert params["camera_name"] == cam
            if driver == "realsense":
                # realsense2_camera strips one leading "_": the serial reaches it as the string given
                assert params["serial_no"] == "_" + args[f"serial_{cam}"]
            else:
                assert params["video_device"] == args[f"video_device_{cam}"]
            seen.add(cam)
        assert seen == set(cameras)
    default = next(n for n in base.nodes if n.package == "realsense2_camera")
    assert _node_parameters(default)["serial_no"] == "_"  # empty after the driver strips "_": the first camera found


@pytest.mark.parametrize("setup", REAL)
def test_each_camera_has_its_own_roi_section_in_the_crop_parameters(setup):
    from hilserl.recording import crops

    graph = G.load_graph(setup, cfg_dir=CONFIG)
    doc = yaml.safe_load((CONFIG / "params" / "perception_real.yaml").read_text())
    for spec in graph.nodes:
        if spec.executable == "crop_node":
            assert set(doc[spec.fqn]["ros__parameters"]["roi"]) == {"x", "y", "width", "height"}, spec.fqn
    assert set(crops(graph)) == {f"{a}/{c}" for a in graph.arms for c in graph.cameras}


@pytest.mark.parametrize("setup", REAL)
def test_spacemice_are_chosen_by_serial_when_given(setup):
    base = G.load_graph(setup, cfg_dir=CONFIG)
    args = {"spacemouse_serial": "A1B2C3D4"} if setup == "real_single_arm" else {
        "spacemouse_serial_left": "A1B2C3D4", "spacemouse_serial_right": "'0042'"}
    graph = G.load_graph(setup, args, cfg_dir=CONFIG)
    serials = {n.namespace: _node_parameters(n)["serial"] for n in graph.nodes if n.executable == "spacemouse_node"}
    expected = {"/left": "A1B2C3D4"} if setup == "real_single_arm" else {"/left": "A1B2C3D4", "/right": "0042"}
    assert serials == expected  # an all-digit serial given quoted stays a string
    assert {_node_parameters(n)["serial"] for n in base.nodes if n.executable == "spacemouse_node"} == {""}


# -- monitoring ----------------------------------------------------------------------------------
@pytest.mark.parametrize("setup", ALL)
def test_rviz_shows_topics_the_graph_publishes(setup):
    assert not [n for n in G.load_graph(setup, cfg_dir=CONFIG).nodes if n.executable in ("rviz_viewer", "rqt_viewer")]
    graph = G.load_graph(setup, {"rviz": "true"}, cfg_dir=CONFIG)
    rviz = graph.node("/rviz")
    params = parse_ros_parameters(G.node_argv(rviz))  # what the wrapper reads
    doc = yaml.safe_load((CONFIG / params["config"]).read_text())
    config = expand_rviz_config(doc, params["arms"], params["cameras"])
    shown = display_topics(config)
    pubs = published(graph)
    missing = [t for t in shown if t not in pubs and t not in FROM_OUTSIDE]
    assert not missing, f"{setup}: RViz shows {missing}, which nothing in the graph publishes"
    for arm in graph.arms:
        for t in ("current_pose", "target_pose", "workspace_marker"):
            assert f"/{arm}/{t}" in shown
    assert {t for t in shown if t.endswith("image_cropped")} == {topics.cropped_topic(f"{a}/{c}") for a in graph.arms for c in graph.cameras}
    assert "/robot_description" in shown
    vm = config["Visualization Manager"]
    assert vm["Global Options"]["Fixed Frame"] == f"{graph.arms[0]}_base"
    # the poses are stamped in the arm's base frame: the mux's frame, which the marker node shares
    for arm in graph.arms:
        marker, mux = graph.node(f"/{arm}/workspace_marker"), graph.node(f"/{arm}/intervention_mux")
        assert _node_parameters(marker) == _node_parameters(mux)  # same box, same frames


def test_the_rviz_file_is_the_single_arm_config_as_it_stands():
    doc = yaml.safe_load((CONFIG / "rviz" / "hilserl.rviz").read_text())
    graph = G.load_graph("real_single_arm", {"rviz": "true"}, cfg_dir=CONFIG)
    params = dict(graph.node("/rviz").parameters)
    assert expand_rviz_config(doc, params["arms"], params["cameras"]) == doc
    classes = {d["Class"] for d in doc["Visualization Manager"]["Displays"]}
    assert {"rviz_default_plugins/RobotModel", "rviz_default_plugins/Pose", "rviz_default_plugins/Marker",
            "rviz_default_plugins/Image"} <= classes


def _perspective_values(node, out):
    for key, value in (node.get("keys") or {}).items():
        if isinstance(value, dict) and value.get("type") == "repr":
            out[key] = ast.literal_eval(value["repr"])
    for name, group in (node.get("groups") or {}).items():
        _perspective_values(group, out.setdefault(name, {}))
    return out


@pytest.mark.parametrize("setup", ALL)
def test_rqt_perspective_plots_topics_the_graph_publishes(setup):
    graph = G.load_graph(setup, {"rqt": "true"}, cfg_dir=CONFIG)
    rqt = graph.node("/rqt")
    path = CONFIG / parse_ros_parameters(G.node_argv(rqt))["perspective"]
    values = _perspective_values(json.loads(path.read_text()), {})  # a perspective is JSON; values are Python reprs
    plugins = values["pluginmanager"]["running-plugins"]
    assert set(plugins) == {"rqt_plot/Plot", "rqt_runtime_monitor/RuntimeMonitor", "rqt_reconfigure/Param"}
    for plugin, instances in plugins.items():
        for i in instances:
            assert f"plugin__{plugin.replace('/', '__')}__{i}" in values["pluginmanager"]
    plotted = values["pluginmanager"]["plugin__rqt_plot__Plot__1"]["plugin"]["topics"]
    assert plotted == ["/metrics/success_rate/data", "/metrics/intervention_rate/data"]
    pubs = published(graph)
    for field in plotted:
        assert field.rsplit("/", 1)[0] in pubs, field
    assert "/diagnostics" in pubs  # what the runtime monitor shows
    assert pubs["/metrics/episodes"] == ["/actor"]


# -- the table against the nodes' source ---------------------------------------------------------
def _console_script_module(package, executable):
    from test_launch_files import _console_scripts

    setup_py = ROOT / "src" / package / "setup.py"
    assert setup_py.is_file(), f"package {package} is not in src/ (its nodes are named in the real graphs)"
    scripts = _console_scripts(package)
    assert executable in scripts, f"{package} has no executable '{executable}' (named in the real graphs); it has {sorted(scripts)}"
    module = scripts[executable].partition(":")[0]
    return ROOT / "src" / package / (module.replace(".", "/") + ".py")


_CALL = re.compile(r"create_(publisher|service)\(\s*[\w.\[\]]+\s*,\s*([^,]+?)\s*,", re.S)


def _names_in_source(path: Path):
    """(publisher names, service names, unresolved expressions) of a node's source."""
    src = path.read_text()
    consts = dict(re.findall(r"^([A-Z_]+) = \"([^\"]+)\"", src, re.M))
    pubs, services, unresolved = set(), set(), []
    for kind, expr in _CALL.findall(src):
        expr = expr.strip()
        term = expr.split("+")[-1].strip()  # ns + topics.X: the relative part
        name = None
        if re.fullmatch(r"[\"'][^\"']*[\"']", term):
            name = term[1:-1]
        elif re.fullmatch(r"topics\.[A-Z_]+", term):
            name = getattr(topics, term.split(".")[1])
        elif re.fullmatch(r"topics\.camera_(cropped|raw)\(\w+\)", term):
            name = topics.CAMERA_CROPPED if "cropped" in term else topics.CAMERA_RAW
        elif term in consts:
            name = consts[term]
        if name is None:
            unresolved.append(expr)
        else:
            (pubs if kind == "publisher" else services).add(("/{arm}/" + name) if "+" in expr and not name.startswith("/") else name)
    if "diagnostics.Diagnostics(self" in src:
        pubs.add(topics.DIAGNOSTICS)
    return pubs, services, unresolved, src


@pytest.mark.parametrize("key", sorted(k for k in PUBLISHES if k[0].startswith("hilserl")), ids="/".join)
def test_the_publisher_table_matches_the_node_source(key):
    path = _console_script_module(*key)
    pubs, services, unresolved, src = _names_in_source(path)
    table = set(PUBLISHES[key])
    # names the source builds at run time (a parameter, a loop): the table's entry must be in the source as text
    dynamic = {t for t in table - pubs if unresolved and (f'"{t}"' in src or f"'{t}'" in src)}
    assert table - dynamic == pubs, f"{path}: publishes {sorted(pubs)} (+ unresolved {unresolved}), the table says {sorted(table)}"
    for name in SERVES.get(key, []):
        param = name.strip("{}")
        assert re.search(rf"create_service\(\s*\w+\s*,\s*c(onf\.value)?\.{param}\b", src), f"{path}: no service from '{param}'"


# -- launch files start what the graphs describe ---------------------------------------------------
@pytest.mark.parametrize("launch_file, setup", [("bringup_single_arm.launch.py", "real_single_arm"),
                                                ("bringup_dual_arm.launch.py", "real_dual_arm")])
def test_launch_files_start_the_drivers_viewers_and_robot_nodes(launch_file, setup, monkeypatch):
    args = {"rviz": "true", "rqt": "true", "camera_left_side": "usb_cam"}
    _, _, started = run_launch_file(LAUNCH / launch_file, monkeypatch, args)
    from_launch = launched_nodes(started)
    graph = G.load_graph(setup, args, cfg_dir=CONFIG)
    assert sorted(from_launch) == sorted(n.fqn for n in graph.nodes)
    packages = {v[0] for v in from_launch.values()}
    assert {"realsense2_camera", "usb_cam", "hilserl_robot", "hilserl"} <= packages
    rs = [kw for kw in (a.kwargs for a in started if isinstance(a, Node)) if kw.get("package") == "realsense2_camera"]
    assert rs and all(dict(kw["remappings"]) for kw in rs)
    assert EXTERNAL_PACKAGES >= {"realsense2_camera", "usb_cam", "spacenav"}


@pytest.mark.parametrize("driver", ["realsense", "usb_cam"])
def test_rcl_resolves_the_driver_topic_names_with_the_graph_remappings_as_the_table_does(driver):
    """rclpy stand-ins for the drivers, built with the graph's name, namespace and remappings, create
    publishers under the drivers' own topic names: rcl puts them where resolve_remapped says."""
    rclpy = pytest.importorskip("rclpy")
    from rclpy.node import Node as RclNode
    from sensor_msgs.msg import CameraInfo, Image

    graph = G.load_graph("real_dual_arm", {f"camera_{a}_{c}": driver for a in ("left", "right") for c in ("wrist", "side")},
                         cfg_dir=CONFIG)
    ctx = rclpy.context.Context()
    rclpy.init(context=ctx)
    try:
        for spec in (n for n in graph.nodes if n.package in ("realsense2_camera", "usb_cam")):
            argv = G.node_argv(spec)
            remaps = [x for i, x in enumerate(argv[1:], 1) if argv[i - 1] == "-r" and not x.startswith("__")]
            node = RclNode(spec.name, namespace=spec.namespace, context=ctx, use_global_arguments=False,
                           cli_args=["--ros-args"] + [a for r in remaps for a in ("-r", r)])
            try:
                expected = set()
                for name in PUBLISHES[(spec.package, spec.executable)]:
                    pub = node.create_publisher(CameraInfo if name.endswith("camera_info") else Image, name, 1)
                    assert pub.topic_name == resolve_remapped(name, spec), name
                    expected.add(pub.topic_name)
                assert expected == {f"{spec.namespace}/image_raw", f"{spec.namespace}/camera_info"}
            finally:
                node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)
