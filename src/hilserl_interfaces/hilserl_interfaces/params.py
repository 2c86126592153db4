"""ROS parameters from hilserl_core.config schemas.

``NodeConfig(node, MuxConfig)`` declares every field of the schema as a ROS
parameter, with a descriptor built from the declaration (description, units,
range, read-only unless the field is marked ``live``), reads the values the node
was started with (YAML params file or ``-p``), validates them through the same
schema as ``config/*.yaml``, and keeps ``.value`` up to date when a user changes
a live parameter with ``ros2 param set``. A value outside the schema is rejected
with the schema's reason, and the node keeps its previous configuration.
"""

from __future__ import annotations

import typing
from typing import Any, Callable, Generic, Optional, Type, TypeVar

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType, SetParametersResult
from rclpy.parameter import Parameter

from hilserl_core import config as cfg

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
        for name, spec in self._specs.items():
            if spec.default is None:
                # Optional fields without a default: declare typed, unset.
                node.declare_parameter(name, Parameter.Type(_ros_type(spec.type)), descriptor(spec))
            else:
                node.declare_parameter(name, _ros_default(spec.default), descriptor(spec))
        flat = {name: node.get_parameter(name).value for name in self._specs}
        # Raises cfg.ConfigError naming the parameter and its range: the node must not start.
        self.value: C = cfg.from_mapping(schema, cfg.nest(flat), self._source)
        node.add_on_set_parameters_callback(self._on_set)

    def _on_set(self, params) -> SetParametersResult:
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


__all__ = ["NodeConfig", "descriptor", "field_names"]
