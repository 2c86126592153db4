"""Graph descriptions: which nodes a setup runs, with what parameters.

One YAML file per setup in ``config/graphs/`` is the single description that both
the ``ros2 launch`` files (``launch/*.launch.py``, on a full ROS 2 install) and the
``hilserl launch`` process runner (here, without ``launch``) turn into running
nodes. Format::

    description: Simulated single Franka arm, scripted operator.
    arguments:                  # overridable as `name:=value` on either command line
      task: pick_cube
    choices:                    # optional: the values an argument may take
      task: [pick_cube, peg_insertion]
      # or, with the reason shown when a value is refused:
      # driver: {values: [hid], why: "spacenavd serves one device"}
    arms: [left]                # expands `for_each: arm` entries
    cameras: [wrist, side]      # expands `for_each: camera` / `[arm, camera]` entries
    nodes:
      - name: crop_{arm}_{camera}
        package: hilserl_perception
        executable: crop_node
        namespace: /{arm}
        for_each: [arm, camera]
        params_files: [perception.yaml]      # relative to config/params/
        parameters: {camera: "{camera}"}     # inline, after the files
        remappings: {image_raw: "cameras/{camera}/image_raw"}

        process: hot_path                    # optional: share one process (see below)

``{arm}``, ``{camera}`` and ``{<argument>}`` are substituted in every string.
``condition`` keeps a node only when it holds: a true-ish value (``true``, ``1``),
a comparison such as ``"{reward} == classifier"``, or several joined by ``and``
(``"{learning} and {learner} == here"``).
A ``params_files`` entry is a standard ROS 2 parameters file (``/**:`` or node
names with ``ros__parameters``), so ``ros2 run ... --ros-args --params-file`` and
``ros2 param load`` use the same files. This module imports no ROS.

``respawn`` (true/false, default false) and ``respawn_delay`` (seconds, default 0), as
``ros2 launch`` offers them: a node with respawn set is restarted after the delay when
it exits on its own (not while the graph shuts down), instead of stopping the graph
(``hilserl.runner``; launch_ros ``Node(respawn=, respawn_delay=)`` in the launch
files). A node that exits with status 2, the status of a refused configuration
(``hilserl_interfaces.node_main``), is not restarted: it would refuse again. In a
composed process (below) the whole process is restarted when any member has respawn
set, after the longest of the members' delays; the other members restart with it.

``shutdown_timeout`` (seconds, default 5) is how long a node may take to stop after the
first signal (SIGINT, or SIGTERM when a required node died) before it is sent the next
one: the learner's final checkpoint of a few GB needs more than the default. A composed
process gets its members' longest (launch_ros ``Node(sigterm_timeout=)`` in the launch files).

``process`` composes nodes: every node with the same (non-empty, after substitution)
``process`` value runs in one process that spins them in one executor
(``hilserl_interfaces.compose``, ``ros2 run hilserl_interfaces compose_nodes``), the
Python counterpart of a ComposableNodeContainer (which loads C++ nodes only). Each
node keeps its name, namespace, parameters and remappings: it is built with exactly
the ``--ros-args`` it would get as a process of its own. An empty value, or a group of
one, is an ordinary process.
"""

from __future__ import annotations

import dataclasses

import itertools
import os
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import yaml

from hilserl_core.formats.config import ConfigError, did_you_mean, flatten, read_yaml_file, yaml_error_text

__all__ = [
    "GraphError",
    "NodeSpec",
    "Graph",
    "config_dir",
    "available_graphs",
    "load_graph",
    "node_argv",
    "Process",
    "processes",
    "process_command",
    "parse_overrides",
]

DEFAULT_SHUTDOWN_TIMEOUT_S = 5.0  # as launch's sigterm_timeout: SIGINT, then SIGTERM after this long
_NODE_KEYS = {"name", "package", "executable", "namespace", "for_each", "params_files", "parameters", "remappings", "required",
              "condition", "process", "respawn", "respawn_delay", "shutdown_timeout"}
# the executable that runs a composed process (hilserl_interfaces.compose)
COMPOSE_PACKAGE, COMPOSE_EXECUTABLE = "hilserl_interfaces", "compose_nodes"
_TOP_KEYS = {"description", "arguments", "choices", "arms", "cameras", "nodes"}
_EXPANDABLE = ("arm", "camera")


class GraphError(ValueError):
    """A graph description is malformed; the message names the file and the entry."""


@dataclass(frozen=True)
class NodeSpec:
    """One node to start, fully resolved (what `ros2 run` / launch_ros.Node need)."""

    name: str
    package: str
    executable: str
    namespace: str = "/"
    params_files: Tuple[str, ...] = ()
    parameters: Tuple[Tuple[str, Any], ...] = ()
    remappings: Tuple[Tuple[str, str], ...] = ()
    required: bool = True
    process: str = ""  # nodes with the same non-empty value share one process
    respawn: bool = False  # restart it when it exits on its own (as launch_ros Node(respawn=True))
    respawn_delay: float = 0.0  # seconds between its exit and the restart
    shutdown_timeout_s: float = DEFAULT_SHUTDOWN_TIMEOUT_S  # from the first stop signal to the next one

    @property
    def fqn(self) -> str:
        return ("" if self.namespace == "/" else self.namespace) + "/" + self.name

    def parameter_dict(self) -> Dict[str, Any]:
        return dict(self.parameters)


@dataclass(frozen=True)
class Graph:
    setup: str
    description: str
    path: Path
    arguments: Tuple[Tuple[str, str], ...]
    arms: Tuple[str, ...]
    cameras: Tuple[str, ...]
    nodes: Tuple[NodeSpec, ...] = field(default_factory=tuple)
    choices: Tuple[Tuple[str, Tuple[str, ...]], ...] = ()  # (argument, allowed values) where restricted

    def node(self, fqn: str) -> NodeSpec:
        for n in self.nodes:
            if n.fqn == fqn:
                return n
        raise KeyError(f"{fqn} is not in graph '{self.setup}'; nodes: {', '.join(n.fqn for n in self.nodes)}")


def config_dir() -> Path:
    """The workspace ``config/`` directory.

    ``HILSERL_CONFIG_DIR`` wins; else the installed share directory of the
    ``hilserl`` package (ament index), else the source tree this file lives in.
    """
    env = os.environ.get("HILSERL_CONFIG_DIR")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "config" / "graphs").is_dir():
            return parent / "config"
        share = parent / "share" / "hilserl" / "config"
        if (share / "graphs").is_dir():
            return share
    raise GraphError("cannot find the hilserl config/ directory; set HILSERL_CONFIG_DIR")


def available_graphs(cfg_dir: Optional[Path] = None) -> List[str]:
    cfg_dir = cfg_dir or config_dir()
    return sorted(p.stem for p in (cfg_dir / "graphs").glob("*.yaml"))


class _Subst(string.Formatter):
    def __init__(self, where: str):
        self.where = where

    def get_value(self, key, args, kwargs):
        if key not in kwargs:
            raise GraphError(f"{self.where}: unknown placeholder '{{{key}}}'; known: {', '.join(sorted(kwargs))}")
        return kwargs[key]


def _substitute(value: Any, env: Mapping[str, str], where: str) -> Any:
    if isinstance(value, str):
        out = _Subst(where).format(value, **env)
        return _typed(out) if value.startswith("{") and value.endswith("}") and value.count("{") == 1 else out
    if isinstance(value, list):
        return [_substitute(v, env, where) for v in value]
    if isinstance(value, dict):
        return {_substitute(k, env, where): _substitute(v, env, where) for k, v in value.items()}
    return value


# YAML 1.1 words that PyYAML reads as booleans but YAML 1.2 (and ROS 2 parameter files) do not:
# `operator:=off` is the word "off", a choice, not false
_YAML11_BOOLEAN_WORDS = {"on", "off", "yes", "no", "y", "n"}


def _typed(text: str) -> Any:
    """A whole-string placeholder keeps the argument's YAML type (`{steps}` -> 100), with YAML 1.2
    booleans (only true/false): `off`, `on`, `yes`, `no` stay words."""
    if not text.strip() or text.strip().lower() in _YAML11_BOOLEAN_WORDS:
        return text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_overrides(items: Sequence[str]) -> Dict[str, str]:
    """``["task:=peg_insertion", ...]`` -> dict (the `ros2 launch` argument syntax)."""
    out = {}
    for item in items:
        if ":=" not in item:
            raise GraphError(f"argument '{item}' must look like name:=value")
        k, v = item.split(":=", 1)
        out[k.strip()] = v
    return out


def _check_keys(entry: Mapping, allowed: set, where: str) -> None:
    unknown = sorted(set(entry) - allowed, key=str)
    if unknown:
        named = ", ".join(f"{k}{did_you_mean(str(k), allowed)}" for k in unknown)
        raise GraphError(f"{where}: unknown key(s) {named}; allowed: {', '.join(sorted(allowed))}")


def _argument_choices(doc: Any, arguments: Mapping[str, str], where: str) -> Dict[str, Tuple[Tuple[str, ...], str]]:
    """The ``choices`` mapping: argument -> (allowed values, why), checked against the arguments."""
    if doc is None:
        return {}
    if not isinstance(doc, Mapping):
        raise GraphError(f"{where}: choices must map argument names to lists of values")
    out = {}
    for name, spec in doc.items():
        name = str(name)
        if name not in arguments:
            raise GraphError(f"{where}: choices for '{name}', which is not an argument")
        why = ""
        if isinstance(spec, Mapping):
            _check_keys(spec, {"values", "why"}, f"{where}: choices.{name}")
            spec, why = spec.get("values"), str(spec.get("why", ""))
        if not isinstance(spec, (list, tuple)) or not spec:
            raise GraphError(f"{where}: choices.{name} must be a non-empty list of values")
        out[name] = (tuple(str(v) for v in spec), why)  # converted as the arguments are
    return out


def _resolve_auto(arguments: Mapping[str, str], where: str) -> Dict[str, str]:
    """Arguments whose ``auto`` depends on the simulated task (``hilserl_sim.tasks``):
    ``episode_steps`` is its own time limit at the actor's 10 Hz, ``grasp_critic`` whether the
    policy drives the grippers (not where the task holds its object from the start)."""
    out = dict(arguments)
    auto = [k for k in ("episode_steps", "grasp_critic") if out.get(k) == "auto"]
    if not auto:
        return out
    from hilserl_sim.tasks import TASKS

    task = out.get("task", "")
    if task not in TASKS:
        raise GraphError(f"{where}: {auto[0]}:=auto needs a simulated task; task:={task} is not one of {', '.join(sorted(TASKS))}")
    if "episode_steps" in auto:
        out["episode_steps"] = str(int(round(TASKS[task].Config().time_limit_s * 10.0)))
    if "grasp_critic" in auto:
        out["grasp_critic"] = str(TASKS[task].gripper_actions).lower()
    return out


def load_graph(setup: str, overrides: Optional[Mapping[str, str]] = None, cfg_dir: Optional[Path] = None) -> Graph:
    """Load and expand ``config/graphs/<setup>.yaml`` into resolved NodeSpecs."""
    cfg_dir = Path(cfg_dir or config_dir())
    path = cfg_dir / "graphs" / f"{setup}.yaml"
    if not path.is_file():
        raise GraphError(f"no graph '{setup}' ({path} missing); available: {', '.join(available_graphs(cfg_dir)) or 'none'}")
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise GraphError(yaml_error_text(path, exc)) from None
    if not isinstance(doc, Mapping):
        raise GraphError(f"{path}: a graph description is a mapping (description, arguments, nodes, ...)")
    _check_keys(doc, _TOP_KEYS, str(path))
    arguments = {str(k): str(v) for k, v in (doc.get("arguments") or {}).items()}
    for k, v in (overrides or {}).items():
        if k not in arguments:
            raise GraphError(f"graph '{setup}' has no argument '{k}'; arguments: {', '.join(sorted(arguments)) or 'none'}")
        arguments[k] = str(v)
    choices = _argument_choices(doc.get("choices"), arguments, str(path))
    for k, (allowed, why) in choices.items():
        if arguments[k] not in allowed:
            reason = f": {why}" if why else ""
            raise GraphError(f"graph '{setup}': {k}:={arguments[k]} is not allowed{reason} (choices: {', '.join(allowed)})")
    arms = tuple(doc.get("arms") or ())
    cameras = tuple(doc.get("cameras") or ())
    resolved = _resolve_auto(arguments, str(path))
    nodes: List[NodeSpec] = []
    for i, entry in enumerate(doc.get("nodes") or []):
        where = f"{path}: nodes[{i}]"
        if not isinstance(entry, Mapping):
            raise GraphError(f"{where}: must be a mapping")
        _check_keys(entry, _NODE_KEYS, where)
        for key in ("name", "package", "executable"):
            if key not in entry:
                raise GraphError(f"{where}: missing '{key}'")
        for_each = entry.get("for_each") or []
        for_each = [for_each] if isinstance(for_each, str) else list(for_each)
        for dim in for_each:
            if dim not in _EXPANDABLE:
                raise GraphError(f"{where}: for_each '{dim}' must be one of {', '.join(_EXPANDABLE)}")
        domains = [arms if d == "arm" else cameras for d in for_each]
        for combo in itertools.product(*domains):
            env = dict(resolved)
            env.update(zip(for_each, combo))
            cond = entry.get("condition")
            if cond is not None and not _truthy(_substitute(str(cond), env, where)):
                continue
            nodes.append(_resolve(entry, env, cfg_dir, where))
    fqns = [n.fqn for n in nodes]
    dupes = sorted({f for f in fqns if fqns.count(f) > 1})
    if dupes:
        raise GraphError(f"{path}: duplicate node names {', '.join(dupes)} (two nodes with one name break `ros2 param`)")
    return Graph(
        setup=setup,
        description=str(doc.get("description", "")),
        path=path,
        arguments=tuple(sorted(arguments.items())),
        choices=tuple(sorted((k, allowed) for k, (allowed, _) in choices.items())),
        arms=arms,
        cameras=cameras,
        nodes=tuple(nodes),
    )


def _truthy(value: Any) -> bool:
    """A condition: ``a == b``, ``a != b`` (after substitution), a true-ish word, or several
    of them joined by `` and ``."""
    text = str(value).strip()
    if " and " in text:
        return all(_truthy(part) for part in text.split(" and "))
    for op in ("==", "!="):
        if f" {op} " in text:
            left, right = (part.strip() for part in text.split(f" {op} ", 1))
            return (left == right) if op == "==" else (left != right)
    return text.lower() in ("1", "true", "yes", "on")


_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def _resolve(entry: Mapping, env: Mapping[str, str], cfg_dir: Path, where: str) -> NodeSpec:
    e = _substitute(dict(entry), env, where)
    name = str(e["name"])
    if not _NAME_RE.match(name):
        raise GraphError(f"{where}: node name '{name}' must be letters, digits and underscores")
    ns = str(e.get("namespace", "/")) or "/"
    if not ns.startswith("/"):
        ns = "/" + ns
    files = []
    for f in e.get("params_files") or []:
        p = (cfg_dir / "params" / f) if not os.path.isabs(f) else Path(f)
        if not p.is_file():
            raise GraphError(f"{where} ({name}): parameters file {p} not found")
        try:  # a syntax error is found here, before any node starts (one line: file and line)
            read_yaml_file(p, "parameters file")
        except ConfigError as exc:
            raise GraphError(f"{where} ({name}): {exc}") from None
        files.append(str(p))
    params = e.get("parameters") or {}
    if not isinstance(params, Mapping):
        raise GraphError(f"{where} ({name}): parameters must be a mapping")
    remaps = e.get("remappings") or {}
    process = str(e.get("process") or "")
    if process and not _NAME_RE.match(process):
        raise GraphError(f"{where} ({name}): process '{process}' must be letters, digits and underscores")
    respawn = e.get("respawn", False)
    if isinstance(respawn, str) and respawn.strip().lower() in ("true", "false"):  # from a `{argument}`
        respawn = respawn.strip().lower() == "true"
    if not isinstance(respawn, bool):
        raise GraphError(f"{where} ({name}): respawn must be true or false, got {respawn!r}")
    delay = e.get("respawn_delay", 0.0)
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not 0.0 <= float(delay) < float("inf"):
        raise GraphError(f"{where} ({name}): respawn_delay must be a number of seconds >= 0, got {delay!r}")
    stop_s = e.get("shutdown_timeout", DEFAULT_SHUTDOWN_TIMEOUT_S)
    if isinstance(stop_s, bool) or not isinstance(stop_s, (int, float)) or not 0.0 < float(stop_s) < float("inf"):
        raise GraphError(f"{where} ({name}): shutdown_timeout must be a number of seconds > 0, got {stop_s!r}")
    return NodeSpec(
        name=name,
        package=str(e["package"]),
        executable=str(e["executable"]),
        namespace=ns.rstrip("/") or "/",
        params_files=tuple(files),
        parameters=tuple(sorted(flatten(params).items())),
        remappings=tuple(sorted((str(k), str(v)) for k, v in remaps.items())),
        required=bool(e.get("required", True)),
        process=process,
        respawn=respawn,
        respawn_delay=float(delay),
        shutdown_timeout_s=float(stop_s),
    )


def _param_literal(value: Any) -> str:
    """A value as `-p name:=<yaml>` expects it (ROS parses it as YAML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_param_literal(v) for v in value) + "]"
    if isinstance(value, str):
        return yaml.safe_dump(value, default_style="'").strip().removesuffix("\n...")
    return repr(value) if isinstance(value, float) else str(value)


def pop_whole_numbers(args: Dict[str, str], defaults: Mapping[str, int], command: str) -> Dict[str, int]:
    """Take the tool options ``defaults`` names out of ``args`` as whole numbers (GraphError otherwise)."""
    out = {}
    for name, default in defaults.items():
        value = args.pop(name, str(default))
        try:
            out[name] = int(value)
        except ValueError:
            raise GraphError(f"{name}:={value} is not a whole number (hilserl {command})") from None
    return out


def with_node_parameters(graph: Graph, executable: str, changes: Mapping[str, Any]) -> Graph:
    """``graph`` with ``changes`` merged into the inline parameters of every node run by ``executable``
    (what a tool sets beyond the graph's arguments: evaluation, baselines)."""
    nodes = []
    for n in graph.nodes:
        if n.executable == executable:
            params = dict(n.parameters)
            params.update(changes)
            n = dataclasses.replace(n, parameters=tuple(sorted(params.items())))
        nodes.append(n)
    return dataclasses.replace(graph, nodes=tuple(nodes))


def with_run_node_parameters(graph: Graph, node_params: Optional[Mapping[str, Mapping[str, Any]]]) -> Graph:
    """``graph`` with a run's ``node_params`` (executable -> parameters; ``hilserl train``'s and its
    config.yaml's ``node_parameters``) merged in; an executable the graph does not run is an error."""
    executables = {n.executable for n in graph.nodes}
    for executable, changes in (node_params or {}).items():
        if executable not in executables:
            raise GraphError(f"node parameters for '{executable}': graph '{graph.setup}' runs no such executable "
                             f"(it runs {', '.join(sorted(executables))})")
        graph = with_node_parameters(graph, executable, changes)
    return graph


def node_argv(spec: NodeSpec) -> List[str]:
    """The ``--ros-args`` a node process needs, exactly what `ros2 run`/launch would pass."""
    argv = ["--ros-args", "-r", f"__node:={spec.name}", "-r", f"__ns:={spec.namespace}"]
    for f in spec.params_files:
        argv += ["--params-file", f]
    for k, v in spec.parameters:
        argv += ["-p", f"{k}:={_param_literal(v)}"]
    for src, dst in spec.remappings:
        argv += ["-r", f"{src}:={dst}"]
    return argv


@dataclass(frozen=True)
class Process:
    """One process of a graph: a single node, or nodes composed into one process."""

    key: str  # the node's full name, or the ``process`` value of a composed group
    nodes: Tuple[NodeSpec, ...]

    @property
    def composed(self) -> bool:
        return len(self.nodes) > 1

    @property
    def required(self) -> bool:
        return any(n.required for n in self.nodes)

    @property
    def respawn(self) -> bool:
        """Restarted when it exits on its own: any member has respawn set (the others restart with it)."""
        return any(n.respawn for n in self.nodes)

    @property
    def respawn_delay(self) -> float:
        return max((n.respawn_delay for n in self.nodes if n.respawn), default=0.0)

    @property
    def shutdown_timeout_s(self) -> float:
        """How long it may take to stop after the first signal: its members' longest."""
        return max(n.shutdown_timeout_s for n in self.nodes)


def processes(graph: Graph) -> List[Process]:
    """The graph's processes in start order (a composed group starts where its first node is)."""
    groups: Dict[str, List[NodeSpec]] = {}
    order: List[str] = []
    for spec in graph.nodes:
        key = spec.process or spec.fqn
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(spec)
    return [Process(k, tuple(groups[k])) for k in order]


def process_command(proc: Process) -> Tuple[str, str, List[str]]:
    """``(package, executable, arguments)`` that start ``proc`` (what `ros2 run` would be given)."""
    if not proc.composed:
        spec = proc.nodes[0]
        return spec.package, spec.executable, node_argv(spec)
    from hilserl_interfaces.compose import compose_argv  # pure Python, no ROS import

    return COMPOSE_PACKAGE, COMPOSE_EXECUTABLE, compose_argv([(s.package, s.executable, node_argv(s)) for s in proc.nodes])
