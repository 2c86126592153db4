"""Build a ``launch`` LaunchDescription from a graph description (full ROS 2 installs).

The launch files in ``launch/`` are two lines each: they name a setup and call
``launch_description(setup)``. Graph arguments become launch arguments
(``ros2 launch hilserl bringup_dual_arm.launch.py task:=handover``), resolved at
launch time, so launch and ``hilserl launch`` expand the same description the
same way. ``launch``/``launch_ros`` are imported only here, only when called.
"""

from __future__ import annotations

from typing import Any, Dict, List

from .graph import NodeSpec, load_graph


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
    }


def launch_description(setup: str):
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction, Shutdown
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    defaults = load_graph(setup)

    def expand(context, *args, **kwargs):  # noqa: ARG001
        overrides = {name: LaunchConfiguration(name).perform(context) for name, _ in defaults.arguments}
        graph = load_graph(setup, overrides)
        actions = []
        for spec in graph.nodes:
            kw = node_kwargs(spec)
            if spec.required:
                kw["on_exit"] = Shutdown(reason=f"required node {spec.fqn} exited")
            actions.append(Node(**kw))
        return actions

    declared = [
        DeclareLaunchArgument(name, default_value=value, description=f"graph argument of {setup}")
        for name, value in defaults.arguments
    ]
    return LaunchDescription(declared + [OpaqueFunction(function=expand)])
