"""ROS parameters from hilserl_core.formats.config schemas.

``NodeConfig(node, MuxConfig)`` declares every field of the schema as a ROS
parameter, with a descriptor built from the declaration (description, units,
range, read-only unless the field is marked ``live``), reads the values the node
was started with (YAML params file or ``-p``), validates them through the same
schema as ``config/*.yaml``, and keeps ``.value`` up to date when a user changes
a live parameter with ``ros2 param set``. A value outside the schema is rejected
with the schema's reason, and the node keeps its previous configuration.

Types follow the schema's own coercion (``config._coerce``), not ROS's strict
typing: an integer given for a float parameter (``speed_scale: 1`` or
``min_position_m: [0, 0, 0]`` in a params file, ``ros2 param set ... 2``) is
taken as that float, and an integral float for an integer parameter as that
integer; the ROS parameter always keeps its declared type. A value that cannot
be converted stops the node at start-up with one :class:`~hilserl_core.formats.config.ConfigError`
line naming the parameter and the expected type, and is refused by
``ros2 param set`` with that reason.

An optional field whose default is ``None`` is declared typed and unset; it reads
as ``None`` until a value is given (``ros2 param set`` or a params file).

Strict: every parameter a hilserl node takes is a field of its schema, so a value
given for any other name (a misspelled key in a params file, a stray ``-p``) stops
the node at start-up with one line naming where it came from, the key and the
closest valid name (``learner.yaml: unknown parameter 'updates_per_transtion' for
/learner (did you mean 'updates_per_transition'?)``). The node's ``--ros-args``
(known while ``node_main.run_nodes`` builds it, see :func:`node_arguments`) say
which params file a value came from, so errors name that file.
"""

from __future__ import annotations

import array
import contextlib
import contextvars
import re
import typing
from typing import Any, Callable, Dict, Generic, Iterator, List, Optional, Sequence, Type, TypeVar

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType, SetParametersResult
from rclpy.exceptions import InvalidParameterTypeException, ParameterUninitializedException
from rclpy.parameter import Parameter

from hilserl_core.formats import config as cfg

C = TypeVar("C")

_SCALAR_TYPES = {
    bool: ParameterType.PARAMETER_BOOL,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    str: ParameterType.PARAMETER_STRING,
}
_ARRAY_TYPES = {
    bool: ParameterType.PARAMETER_BOOL_ARRAY,
    int: ParameterType.PARAMETER_INTEGER_ARRAY,
    float: ParameterType.PARAMETER_DOUBLE_ARRAY,
    str: ParameterType.PARAMETER_STRING_ARRAY,
}


_TYPE_WORDS = {
    ParameterType.PARAMETER_BOOL: "true/false (bool)",
    ParameterType.PARAMETER_INTEGER: "an integer",
    ParameterType.PARAMETER_DOUBLE: "a number (double)",
    ParameterType.PARAMETER_STRING: "a string",
    ParameterType.PARAMETER_BOOL_ARRAY: "a list of true/false (bool array)",
    ParameterType.PARAMETER_INTEGER_ARRAY: "a list of integers (integer array)",
    ParameterType.PARAMETER_DOUBLE_ARRAY: "a list of numbers (double array)",
    ParameterType.PARAMETER_STRING_ARRAY: "a list of strings (string array)",
}


def _ros_type(tp: Any) -> int:
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _ros_type(args[0])
    if origin in (tuple, list):
        args = typing.get_args(tp)
        return _ARRAY_TYPES[args[0] if args else float]
    if tp in _SCALAR_TYPES:
        return _SCALAR_TYPES[tp]
    raise TypeError(f"no ROS parameter type for {tp!r}")


def descriptor(spec: cfg.ParamSpec) -> ParameterDescriptor:
    """The ROS descriptor a user sees in ``ros2 param describe``."""
    text = spec.description
    if spec.units:
        text += f" [{spec.units}]"
    text += f"; valid: {spec.range_text()}"
    text += "; live (ros2 param set takes effect at once)" if spec.live else "; restart to change"
    d = ParameterDescriptor(
        name=spec.name,
        type=_ros_type(spec.type),
        description=text,
        read_only=not spec.live,
    )
    # ROS ranges need both ends; one-sided ranges are enforced by the schema check alone.
    if spec.low is not None and spec.high is not None:
        if d.type == ParameterType.PARAMETER_DOUBLE:
            d.floating_point_range = [FloatingPointRange(from_value=float(spec.low), to_value=float(spec.high), step=0.0)]
        elif d.type == ParameterType.PARAMETER_INTEGER:
            d.integer_range = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high), step=0)]
    return d


def _ros_default(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _short(value: Any) -> str:
    text = repr(list(value) if isinstance(value, (tuple, list, array.array)) else value)
    return text if len(text) <= 80 else text[:77] + "..."


def ros_value(spec: cfg.ParamSpec, value: Any, where: str) -> Any:
    """``value`` (params file, ``-p``, ``ros2 param set``) in the parameter's declared ROS type.

    Converted as the schema converts YAML (an int for a float, an integral float for an
    int); raises :class:`cfg.ConfigError` naming the parameter and the expected type.
    """
    want = _ros_type(spec.type)
    try:
        if Parameter.Type.from_parameter_value(value).value == want:
            return value
    except TypeError:
        pass
    expected = f"expected {_TYPE_WORDS.get(want, 'another type')} ({spec.description})"
    try:
        converted = _ros_default(cfg._coerce(value, spec.type, where))
    except cfg.ConfigError:
        raise cfg.ConfigError(f"{where} = {_short(value)} has the wrong type: {expected}") from None
    try:
        ok = Parameter.Type.from_parameter_value(converted).value == want
    except TypeError:
        ok = False
    if not ok:
        raise cfg.ConfigError(f"{where} = {_short(value)} has the wrong type: {expected}")
    return converted


# -- where a node's parameter values come from ------------------------------------------------

_NODE_ARGS: "contextvars.ContextVar[Optional[List[str]]]" = contextvars.ContextVar("hilserl_node_args", default=None)
COMMAND_LINE = "command line (-p)"


@contextlib.contextmanager
def node_arguments(argv: Optional[Sequence[str]]) -> Iterator[None]:
    """While a node is built: the command line it was given (its ``--ros-args`` sections)."""
    token = _NODE_ARGS.set(None if argv is None else list(argv))
    try:
        yield
    finally:
        _NODE_ARGS.reset(token)


def _ros_arg_pairs(argv: Sequence[str]) -> Iterator[tuple]:
    """``(flag, value)`` of the flags inside ``--ros-args`` sections (up to ``--`` or the end)."""
    inside, argv, i = False, list(argv), 0
    while i < len(argv):
        a = argv[i]
        if a == "--ros-args":
            inside = True
        elif a == "--":
            inside = False
        elif inside and i + 1 < len(argv) and a in ("--params-file", "-p", "--param", "-r", "--remap"):
            yield a, argv[i + 1]
            i += 1
        i += 1


def params_files(argv: Sequence[str]) -> List[str]:
    """The ``--params-file`` paths of a command line, in order."""
    return [v for flag, v in _ros_arg_pairs(argv) if flag == "--params-file"]


def read_params_file(path: str) -> dict:
    """A ROS 2 params file as a mapping ``{node pattern: {"ros__parameters": {...}}}``; a missing
    file, a YAML syntax error or another layout is one :class:`cfg.ConfigError` line naming the file."""
    doc = cfg.read_yaml_file(path, "params file")
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise cfg.ConfigError(f"{path}: a params file maps node names (or /**) to ros__parameters, got {type(doc).__name__}")
    for key, section in doc.items():
        if not isinstance(section, dict) or not isinstance(section.get("ros__parameters", {}), dict):
            raise cfg.ConfigError(f"{path}: '{key}' must hold a ros__parameters mapping")
        extra = sorted(set(section) - {"ros__parameters"}, key=str)
        if extra:  # rcl reads nested node names here; ours never use them: a misplaced key
            raise cfg.ConfigError(f"{path}: '{key}' has key(s) {', '.join(map(str, extra))} beside ros__parameters "
                                  f"(parameters belong under ros__parameters)")
    return doc


def _pattern_matches(pattern: str, fqn: str) -> bool:
    """Whether a params file's node key (``/**``, ``/**/name``, ``/ns/*``, ``name``) applies to ``fqn``."""
    tokens = [t for t in str(pattern).strip("/").split("/") if t]
    regex = "".join("(?:/[^/]+)*" if t == "**" else "/[^/]+" if t == "*" else "/" + re.escape(t) for t in tokens)
    return re.fullmatch(regex or "/", fqn) is not None


def parameter_sources(fqn: str, argv: Sequence[str]) -> Dict[str, str]:
    """Parameter name -> where the node ``fqn`` gets its value: the last params file that sets it
    for this node, or :data:`COMMAND_LINE` for ``-p`` (which wins over files, as in rcl)."""
    out: Dict[str, str] = {}
    for path in params_files(argv):
        for key, section in read_params_file(path).items():
            if _pattern_matches(key, fqn):
                for name in cfg.flatten(section.get("ros__parameters") or {}):
                    out[name] = path
    for flag, value in _ros_arg_pairs(argv):
        if flag in ("-p", "--param") and ":=" in value:
            out[value.split(":=", 1)[0]] = COMMAND_LINE
    return out


class NodeConfig(Generic[C]):
    """A node's configuration, declared as ROS parameters and kept current."""

    def __init__(
        self,
        node,
        schema: Type[C],
        on_change: Optional[Callable[[C, C], None]] = None,
    ):
        self._node = node
        self._schema = schema
        self._specs = {s.name: s for s in cfg.describe(schema)}
        self._on_change = on_change
        self._source = f"parameters of {node.get_fully_qualified_name()}"
        self._refused: dict = {}  # name -> reason, from _pre_set to _on_set of the same request
        argv = _NODE_ARGS.get()
        fqn = node.get_fully_qualified_name()
        self._sources = parameter_sources(fqn, argv) if argv is not None else {}
        # rclpy keeps the values of params files and -p here; they are read and converted before
        # declaring, since rclpy itself refuses an int for a double with a traceback.
        overrides = getattr(node, "_parameter_overrides", {})
        self._refuse_unknown(overrides, fqn)
        for name, spec in self._specs.items():
            desc = descriptor(spec)
            value = spec.default
            ignore_override = False
            if name in overrides:
                value = overrides[name].value
                ignore_override = True
                if value is None and spec.default is not None:  # what rcl makes of `[]` or `null`
                    raise cfg.ConfigError(
                        f"{self._where(name)} has no value (an empty list or null in a params file cannot be "
                        f"typed by ROS); leave it out for the default {_short(spec.default)} ({spec.description})")
                if value is not None:
                    value = ros_value(spec, value, self._where(name))
                    # the schema's range first: ROS's descriptor check would refuse it without the file
                    cfg._check_range(spec, cfg._coerce(value, spec.type, self._where(name)), self._where(name))
            try:
                if value is None:
                    # Optional field without a value: declared typed and unset (reads as None).
                    node.declare_parameter(name, Parameter.Type(desc.type), desc, ignore_override=ignore_override)
                else:
                    node.declare_parameter(name, _ros_default(value), desc, ignore_override=ignore_override)
            except InvalidParameterTypeException as exc:  # an override rclpy found and we did not
                raise cfg.ConfigError(f"{self._where(name)}: {exc}") from exc
        flat = {name: self._get(name) for name in self._specs}
        # Raises cfg.ConfigError naming the parameter and its range: the node must not start.
        try:
            self.value: C = cfg.from_mapping(schema, cfg.nest(flat), self._source)
        except cfg.ConfigError:
            for name in self._sources:  # a value from a params file: say which file (else the schema's line)
                if name in self._specs and flat.get(name) is not None:
                    spec, where = self._specs[name], self._where(name)
                    cfg._check_range(spec, cfg._coerce(flat[name], spec.type, where), where)
            raise
        if hasattr(node, "add_pre_set_parameters_callback"):  # rclpy >= Iron
            node.add_pre_set_parameters_callback(self._pre_set)
        node.add_on_set_parameters_callback(self._on_set)

    def _where(self, name: str) -> str:
        """``<params file> (parameters of /node): name``, or ``parameters of /node: name`` when the
        value came from elsewhere (``-p``, a default, ``ros2 param set``)."""
        source = self._sources.get(name)
        if source and source != COMMAND_LINE:
            return f"{source} ({self._source}): {name}"
        return f"{self._source}: {name}"

    def _refuse_unknown(self, overrides: dict, fqn: str) -> None:
        """A value given for a name that is neither in the schema nor a parameter rclpy declared
        itself (``use_sim_time``) stops the node: a typo must not leave the default in force."""
        unknown = sorted(n for n in overrides if n not in self._specs and not self._node.has_parameter(n))
        if not unknown:
            return
        valid = set(self._specs)
        by_source: Dict[str, List[str]] = {}
        for name in unknown:
            by_source.setdefault(self._sources.get(name, self._source), []).append(
                f"'{name}'{cfg.did_you_mean(name, valid)}")
        raise cfg.ConfigError("; ".join(
            f"{source}: unknown parameter{'s' if len(names) > 1 else ''} {', '.join(names)}"
            + ("" if source == self._source else f" for {fqn}") for source, names in by_source.items()))

    def _get(self, name: str) -> Any:
        try:
            return self._node.get_parameter(name).value
        except ParameterUninitializedException:  # an optional field left unset
            return None

    def _pre_set(self, params) -> list:
        """Convert a set request's values to the declared types before rclpy checks them.

        rclpy compares the type before any on-set callback runs and refuses with a bare
        "Wrong parameter type, expected '3' got '2'". Here an int for a double becomes the
        double; a value that cannot be converted is swapped for the current value and its
        reason is kept, and :meth:`_on_set` refuses it with that reason. Returns the whole
        list, as rclpy concatenates what each pre-set callback returns: one NodeConfig per node.
        """
        self._refused = {}
        out = []
        for p in params:
            spec = self._specs.get(p.name)
            if spec is None or p.type_ == Parameter.Type.NOT_SET:
                out.append(p)
                continue
            try:
                out.append(Parameter(p.name, value=ros_value(spec, p.value, f"{self._source}: {p.name}")))
            except cfg.ConfigError as exc:
                current = self._get(p.name)
                if current is None:  # nothing to stand in: rclpy's own type check refuses it
                    out.append(p)
                else:
                    self._refused[p.name] = str(exc)
                    out.append(Parameter(p.name, value=current))
        return out

    def _on_set(self, params) -> SetParametersResult:
        refused, self._refused = self._refused, {}
        for p in params:
            if p.name in refused:
                return SetParametersResult(successful=False, reason=refused[p.name])
        ours = {p.name: p.value for p in params if p.name in self._specs}
        if not ours:
            return SetParametersResult(successful=True)
        flat = {**cfg.flatten(cfg.to_dict(self.value)), **ours}
        try:
            new = cfg.from_mapping(self._schema, cfg.nest(flat), self._source)
        except cfg.ConfigError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        old, self.value = self.value, new
        if self._on_change is not None:
            self._on_change(old, new)
        return SetParametersResult(successful=True)

    def live_parameter_names(self) -> list:
        return [n for n, s in self._specs.items() if s.live]


def field_names(schema: type) -> list:
    """Dotted parameter names a schema declares (what a params YAML may contain)."""
    return [s.name for s in cfg.describe(schema)]


__all__ = ["COMMAND_LINE", "NodeConfig", "descriptor", "field_names", "node_arguments", "parameter_sources", "params_files",
           "read_params_file", "ros_value"]
