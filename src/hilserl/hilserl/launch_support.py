"""Build a ``launch`` LaunchDescription from a graph description (full ROS 2 installs).

The launch files in ``launch/`` are two lines each: they name a setup and call
``launch_description(setup)``. Graph arguments become launch arguments
(``ros2 launch hilserl bringup_dual_arm.launch.py task:=handover``), resolved at
launch time, so launch and ``hilserl launch`` expand the same description the
same way. ``launch``/``launch_ros`` are imported only here, only when called.

Nodes that share a ``process`` in the description become one launch_ros ``Node``
running ``hilserl_interfaces compose_nodes`` with every member's ``--ros-args`` as
its arguments (``launch_ros.actions.ComposableNodeContainer`` loads C++ components
only; this is its counterpart for Python nodes). That action gets no ``name`` or
``namespace``: launch would pass them as process-wide remappings and rename every
member.

A process with ``respawn`` in the description (a composed one: any member) gets launch_ros's
``respawn=True`` and ``respawn_delay``, and no ``Shutdown`` on exit (launch would run it on
every exit, respawned or not); a required process without respawn shuts launch down when it
exits, as the ``hilserl launch`` runner does. A process whose ``shutdown_timeout`` differs from
launch's 5 s gets it as ``sigterm_timeout`` (the time from SIGINT to SIGTERM).
"""

from __future__ import annotations

from typing import Any, Dict, List

from .graph import DEFAULT_SHUTDOWN_TIMEOUT_S, NodeSpec, Process, load_graph, process_command, processes


def _lifecycle_kwargs(proc: Process) -> Dict[str, Any]:
    kw: Dict[str, Any] = {"respawn": True, "respawn_delay": proc.respawn_delay} if proc.respawn else {}
    if proc.shutdown_timeout_s != DEFAULT_SHUTDOWN_TIMEOUT_S:  # launch's default sigterm_timeout is the same 5 s
        kw["sigterm_timeout"] = f"{proc.shutdown_timeout_s:g}"
    return kw


def node_kwargs(spec: NodeSpec) -> Dict[str, Any]:
    """launch_ros.actions.Node arguments for a NodeSpec (the runner's argv has the same content)."""
    parameters: List[Any] = list(spec.params_files)
    if spec.parameters:
        parameters.append(spec.parameter_dict())
    return {
        "package": spec.package,
        "executable": spec.executable,
        "name": spec.name,
        "namespace": spec.namespace,
        "parameters": parameters,
        "remappings": list(spec.remappings),
        "output": "screen",
        "emulate_tty": True,
        **_lifecycle_kwargs(Process(spec.fqn, (spec,))),
    }


def process_kwargs(proc: Process) -> Dict[str, Any]:
    """launch_ros.actions.Node arguments for a process of the graph (one node, or a composed group)."""
    if not proc.composed:
        return node_kwargs(proc.nodes[0])
    package, executable, args = process_command(proc)
    return {"package": package, "executable": executable, "arguments": args, "output": "screen", "emulate_tty": True,
            **_lifecycle_kwargs(proc)}


def launch_description(setup: str):
    from launch.actions import DeclareLaunchArgument, OpaqueFunction, Shutdown
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    from launch import LaunchDescription

    defaults = load_graph(setup)

    def expand(context, *args, **kwargs):  # noqa: ARG001
        overrides = {name: LaunchConfiguration(name).perform(context) for name, _ in defaults.arguments}
        graph = load_graph(setup, overrides)
        actions = []
        for proc in processes(graph):
            kw = process_kwargs(proc)
            if proc.required and not proc.respawn:
                kw["on_exit"] = Shutdown(reason=f"required node(s) {', '.join(n.fqn for n in proc.nodes)} exited")
            actions.append(Node(**kw))
        return actions

    choices = dict(defaults.choices)
    declared = [
        DeclareLaunchArgument(name, default_value=value, description=f"graph argument of {setup}",
                              **({"choices": list(choices[name])} if name in choices else {}))
        for name, value in defaults.arguments
    ]
    return LaunchDescription(declared + [OpaqueFunction(function=expand)])


def franka_actions(n_arms: int, controller: str = "cartesian_impedance_controller"):
    """Robot-side actions for the real bring-up: franka_ros2 hardware + hilserl controllers.

    Declares ``robot_ip`` (``robot_ip_left``/``robot_ip_right`` for two arms), includes
    franka_bringup's launch file (``franka_launch`` argument, default ``franka.launch.py``)
    and spawns ``controller`` with ``config/controllers_{single,dual}_arm.yaml``.
    """
    import os

    from ament_index_python.packages import get_package_share_directory
    from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
    from launch_ros.actions import Node
    from launch_ros.substitutions import FindPackageShare

    share = get_package_share_directory("hilserl")
    controllers = os.path.join(share, "config", "controllers_single_arm.yaml" if n_arms == 1 else "controllers_dual_arm.yaml")
    ip_args = ["robot_ip"] if n_arms == 1 else ["robot_ip_left", "robot_ip_right"]
    actions = [DeclareLaunchArgument(a, description="IP address of the Franka control box") for a in ip_args]
    actions.append(DeclareLaunchArgument("franka_launch", default_value="franka.launch.py",
                                         description="franka_bringup launch file that starts the hardware interface"))
    launch_args = {"robot_ip": LaunchConfiguration(ip_args[0]), "load_gripper": "true"}
    if n_arms == 2:
        launch_args["robot_ip_2"] = LaunchConfiguration(ip_args[1])
    actions.append(IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([FindPackageShare("franka_bringup"), "launch", LaunchConfiguration("franka_launch")])),
        launch_arguments=launch_args.items(),
    ))
    actions.append(Node(package="controller_manager", executable="spawner", output="screen",
                        arguments=[controller, "--param-file", controllers]))
    return actions


def demo_topics(graph) -> list:
    """The topics a demonstration bag records, for every arm and camera of a graph: the same
    list ``hilserl record`` writes (``hilserl.recording.topics``, from
    ``hilserl_core.formats.bags.recorded_topics``)."""
    from .recording import topic_names

    return topic_names(graph)


def record_command(graph, bag: str) -> list:
    """``ros2 bag record`` of a recording of ``graph`` into ``bag`` (MCAP), with the
    ``custom_data`` entries ``hilserl record`` writes (setup, arms, cameras, crops)."""
    from .recording import custom_data

    # --custom-data takes every KEY=VALUE after it, so it comes after the topics
    return (["ros2", "bag", "record", "-s", "mcap", "-o", bag] + demo_topics(graph)
            + ["--custom-data"] + [f"{key}={value}" for key, value in custom_data(graph).items()])


def record_demos_description():
    from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    from launch import LaunchDescription

    from .recording import record_graph

    def expand(context, *args, **kwargs):  # noqa: ARG001
        setup = LaunchConfiguration("setup").perform(context)
        defaults = load_graph(setup)
        given = context.launch_configurations
        overrides = {name: given[name] for name, _ in defaults.arguments if name in given}
        # demos: the operator drives, no actor or learner (in simulation the scripted operator
        # ends and resets the episodes); the same graph `hilserl record` runs
        graph = record_graph(setup, overrides)
        nodes = [Node(**process_kwargs(proc)) for proc in processes(graph)]
        bag = LaunchConfiguration("bag").perform(context)
        record = ExecuteProcess(cmd=record_command(graph, bag), output="screen")
        return nodes + [record]

    return LaunchDescription([
        DeclareLaunchArgument("setup", default_value="real_single_arm", description="graph to run (config/graphs)"),
        DeclareLaunchArgument("bag", default_value="demos/demo", description="output bag directory (rosbag2, MCAP)"),
        OpaqueFunction(function=expand),
    ])
