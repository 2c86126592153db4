"""Several hilserl nodes in one process: the Python analogue of a ComposableNodeContainer.

``rclcpp_components`` containers load C++ nodes only. For our Python nodes the same
thing is a process that builds several nodes, each with its *own* ``--ros-args``
(name, namespace, parameter files, ``-p`` overrides, remappings: exactly what it
would get as a process of its own), and spins them all in one executor. Names,
topics, parameters and parameter services are unchanged; what changes is that one
process and one executor carry the messages between them, instead of a process per
node competing for the cores (on a machine with few cores the hot path camera -> crop ->
actor -> mux is mostly scheduling of those processes).

Command line (``ros2 run hilserl_interfaces compose_nodes ...`` or a launch_ros
``Node`` with these ``arguments``)::

    compose_nodes <package>/<executable> --ros-args <that node's args> -- \\
                  <package>/<executable> --ros-args <that node's args> -- ...

``<package>/<executable>`` names the node as ``ros2 run`` would; the node class is the
``NODE_CLASS`` of the module that executable's entry point runs. Node sections are
never given to ``rclpy.init`` (rcl would apply every ``__node`` remap to every node).
A ``--ros-args`` section after the last node (what launch may append for the whole
process) goes to ``rclpy.init``; the nodes ignore process-wide arguments.
"""

from __future__ import annotations

import importlib
import re
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import List, Optional, Sequence, Tuple

__all__ = ["NodeSection", "compose_argv", "parse_compose_argv", "split_process_args", "node_class", "main"]

_TARGET = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)/([A-Za-z0-9_.-]+)$")


@dataclass(frozen=True)
class NodeSection:
    package: str
    executable: str
    ros_args: Tuple[str, ...]  # starts with --ros-args


def compose_argv(sections: Sequence[Tuple[str, str, Sequence[str]]]) -> List[str]:
    """The ``compose_nodes`` arguments for ``(package, executable, node_argv)`` triples."""
    argv: List[str] = []
    for package, executable, ros_args in sections:
        ros_args = list(ros_args)
        if not ros_args or ros_args[0] != "--ros-args" or "--" in ros_args:
            raise ValueError(f"{package}/{executable}: node arguments must be one --ros-args section, got {ros_args}")
        argv += [f"{package}/{executable}", *ros_args, "--"]
    return argv


def parse_compose_argv(argv: Sequence[str]) -> List[NodeSection]:
    """Inverse of ``compose_argv``; a ValueError names what is malformed."""
    sections: List[NodeSection] = []
    i, argv = 0, list(argv)
    while i < len(argv):
        m = _TARGET.match(argv[i])
        if m is None:
            raise ValueError(f"expected <package>/<executable>, got '{argv[i]}' (argument {i})")
        if i + 1 >= len(argv) or argv[i + 1] != "--ros-args":
            raise ValueError(f"{argv[i]}: must be followed by --ros-args")
        try:
            end = argv.index("--", i + 2)
        except ValueError:
            raise ValueError(f"{argv[i]}: its --ros-args section must end with --") from None
        sections.append(NodeSection(m.group(1), m.group(2), tuple(argv[i + 1 : end])))
        i = end + 1
    if not sections:
        raise ValueError("no nodes given")
    return sections


def split_process_args(argv: Sequence[str]) -> Tuple[List[str], List[str]]:
    """``(node sections, process-wide --ros-args)``: the latter is a trailing ``--ros-args``
    section that follows a ``--`` (or starts the command line)."""
    argv = list(argv)
    for i, a in enumerate(argv):
        if a == "--ros-args" and (i == 0 or argv[i - 1] == "--"):
            return argv[:i], argv[i:]
    return argv, []


def node_class(package: str, executable: str):
    """The Node class that ``ros2 run <package> <executable>`` would build."""
    norm = package.replace("-", "_").lower()
    for ep in entry_points(group="console_scripts", name=executable):
        dist = (ep.dist.name if ep.dist is not None else "").replace("-", "_").lower()
        if dist == norm or ep.value.split(".", 1)[0] == norm:
            module = importlib.import_module(ep.value.partition(":")[0])
            cls = getattr(module, "NODE_CLASS", None)
            if cls is None:
                raise ValueError(f"{package}/{executable}: {module.__name__} has no NODE_CLASS, it cannot be composed")
            return cls
    raise ValueError(f"no executable '{executable}' in package '{package}' (console_scripts entry points)")


def main(argv: Optional[List[str]] = None) -> int:
    from .node_main import run_nodes

    argv = list(sys.argv[1:] if argv is None else argv)
    argv, process_args = split_process_args(argv)
    try:
        sections = parse_compose_argv(argv)
        classes = [node_class(s.package, s.executable) for s in sections]
    except ValueError as exc:
        print(f"compose_nodes: {exc}", file=sys.stderr, flush=True)
        return 2
    # rclpy.init never sees the node sections: they must stay node-local
    program = sys.argv[0] if sys.argv else "compose_nodes"
    return run_nodes([_Factory(cls, s) for cls, s in zip(classes, sections)], args=[program, *process_args])


class _Factory:
    """Builds one node with only its own arguments (no process-wide ones)."""

    def __init__(self, cls, section: NodeSection):
        self.cls, self.section = cls, section
        args = section.ros_args
        name = next((a.split(":=", 1)[1] for a in args if a.startswith("__node:=")), cls.__name__)
        ns = next((a.split(":=", 1)[1] for a in args if a.startswith("__ns:=")), "/")
        self.label = ns.rstrip("/") + "/" + name

    def __call__(self):
        return self.cls(cli_args=list(self.section.ros_args), use_global_arguments=False)


if __name__ == "__main__":
    raise SystemExit(main())
