"""The `main()` of every hilserl node: init, build, spin, clean shutdown.

A configuration error (a parameter outside its schema, of a type that cannot be
converted, refused by its ROS descriptor, or any ValueError raised while a node
is being built from its parameters, such as a workspace box whose corners have
the wrong length or min > max) is printed as one line naming the problem, and
the process exits with status 2 so the graph runner / launch reports the node as
dead instead of it running with a guessed value. A ValueError raised while a
node is built names the source line it came from; once the nodes spin, an
exception escaping a callback still ends the process with its traceback.

The same one line and status 2 for what comes before: a ``--params-file`` that is
missing, not valid YAML (file and line) or not laid out as a ROS params file is
refused before ``rclpy.init`` (whose own error is a 20-line traceback), and a key
no parameter of the node has is refused by ``params.NodeConfig`` with the file and
the closest valid name. The line starts with the node's full name from its
``--ros-args`` (``[/learner] configuration error: ...``); the graph runner repeats
it as the last line of its output when the node stops the graph.

numpy's BLAS is limited to ``blas_threads`` (default 1) before the node is built:
OpenBLAS worker threads busy-wait between products, and on a small shared machine
each crop node burned half a core or more that way (see ``threads``).

Executor (environment variable ``HILSERL_EXECUTOR``): ``events`` (the default) spins with
rclpy's C++ ``EventsExecutor`` where the installed rclpy has it (Kilted and newer), else
with the ``SingleThreadedExecutor``; ``single`` forces the latter. The Python executor
rebuilds its wait set (every subscription, timer and parameter service) on each wake-up:
in the dual-arm latency benchmark that was a fifth of the actor's CPU time and several
milliseconds per hop (docs/BENCHMARKS.md). The EventsExecutor is driven through
``spin_once`` in a loop, never ``spin()``: in rclpy 9.1 its ``spin()`` busy-waits at
100% of a core even with no node attached (measured), while ``spin_once`` sleeps. The
loop ends when the context shuts down. A node that asks for more than one thread gets
the ``MultiThreadedExecutor`` either way.

Ctrl-C and SIGTERM set a flag that the spin loop checks between callbacks (every
executor kind); the nodes are closed and destroyed and only then is the context shut
down. With rclpy's own signal handler the context was invalidated in the middle of a
callback (the simulator's 1 kHz-physics tick publishing state), which printed a
"publisher's context is invalid" traceback on every Ctrl-C.

``run_nodes`` builds several nodes in one process and spins them in one executor
(``compose_nodes``, see ``compose``); ``run_node`` is the one-node case. A node's
``companion_nodes`` (nodes it composes itself, like the simulator's scripted
operator) are spun by the same executor.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from typing import Callable, List, Optional, Sequence

import rclpy
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.signals import SignalHandlerOptions

from hilserl_core.formats.config import ConfigError

from . import params
from .signals import stop_on_signals
from .threads import limit_blas_threads

EXECUTOR_ENV = "HILSERL_EXECUTOR"
EXECUTOR_CHOICES = ("events", "single")
_SPIN_ONCE_TIMEOUT_S = 0.1  # how often the events loop looks at the context between events


def executor_kind(threads: int = 1) -> str:
    """The executor this process will spin: ``multi``, ``events`` or ``single`` (see the module doc)."""
    if threads > 1:
        return "multi"
    choice = os.environ.get(EXECUTOR_ENV, "events").strip().lower() or "events"
    if choice not in EXECUTOR_CHOICES:
        raise ConfigError(f"environment {EXECUTOR_ENV}={choice!r}: expected one of {', '.join(EXECUTOR_CHOICES)}")
    if choice == "events" and _events_executor_class() is None:
        return "single"  # older rclpy (e.g. Jazzy): no EventsExecutor
    return choice


def _events_executor_class():
    try:
        from rclpy.experimental import EventsExecutor
    except ImportError:
        return None
    return EventsExecutor


def make_executor(threads: int = 1):
    kind = executor_kind(threads)
    if kind == "multi":
        return MultiThreadedExecutor(num_threads=threads)
    if kind == "events":
        return _events_executor_class()()
    return SingleThreadedExecutor()


def spin(executor, stop: Optional[threading.Event] = None) -> None:
    """Spin until ``stop`` is set or the context shuts down (``spin_once`` in a loop: see the module doc)."""
    context = executor.context
    while context.ok() and not (stop is not None and stop.is_set()):
        executor.spin_once(timeout_sec=_SPIN_ONCE_TIMEOUT_S)


_CONFIG_ERRORS = (ConfigError, InvalidParameterValueException, InvalidParameterTypeException)
RCLError = _rclpy.RCLError  # what rcl raises for a command line or params file it cannot parse


def _build(factory: Callable[[], "rclpy.node.Node"]) -> "rclpy.node.Node":
    """``factory()``; a ValueError raised while building is the node refusing its configuration."""
    try:
        return factory()
    except _CONFIG_ERRORS:
        raise
    except ValueError as exc:  # e.g. WorkspaceBox: min_position_m of the wrong length, or min > max
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        raise ConfigError(f"{exc} (raised at {os.path.basename(frame.filename)}:{frame.lineno})") from exc


def _node_args(factory, process_args: Sequence[str]) -> List[str]:
    """The command line a node is built from: its own section when composed, else the process's."""
    section = getattr(factory, "section", None)  # compose._Factory: node-local --ros-args
    return list(section.ros_args) if section is not None else list(process_args)


def _label(factory, argv: Sequence[str]) -> str:
    """The node's full name for error lines: a factory's label (compose), else ``__node``/``__ns``
    from its ``--ros-args`` remappings, else the factory's name."""
    label = getattr(factory, "label", None)
    if label:
        return label
    remaps = dict(v.split(":=", 1) for flag, v in params._ros_arg_pairs(argv) if flag in ("-r", "--remap") and ":=" in v)
    name = remaps.get("__node") or remaps.get("__name")
    if name:
        return remaps.get("__ns", "/").rstrip("/") + "/" + name
    return getattr(factory, "__name__", "node")


def _rcl_error_text(exc: Exception) -> str:
    """rcl's message without the C source locations it appends (``, at /project/src/parser.c:271``)."""
    return " ".join(str(exc).split(", at ")[0].split())


def _check_params_files(factories, process_args: Sequence[str]) -> Optional[str]:
    """The first ``--params-file`` of the command line (or of a composed node's section) that is
    missing, not YAML or not a params file, as the one line to print; None when all read."""
    for factory in factories:
        argv = _node_args(factory, process_args)
        files = params.params_files(argv) + [f for f in params.params_files(process_args) if f not in argv]
        for path in files:
            try:
                params.read_params_file(path)
            except ConfigError as exc:
                return f"[{_label(factory, argv)}] configuration error: {exc}"
    return None


def run_nodes(factories: Sequence[Callable[[], "rclpy.node.Node"]], args: Optional[List[str]] = None, threads: int = 1,
              blas_threads: int = 1) -> int:
    limit_blas_threads(blas_threads)
    process_args = list(sys.argv if args is None else args)
    problem = _check_params_files(factories, process_args)
    if problem is None:
        try:
            rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
        except RCLError as exc:  # arguments rcl cannot parse: one line, not rclpy's traceback
            problem = f"[{_label(factories[0], process_args)}] configuration error: {_rcl_error_text(exc)}"
    if problem is not None:
        print(problem, file=sys.stderr, flush=True)
        return 2
    nodes = []
    building = None
    with stop_on_signals() as stop:  # held through the clean-up too: a second Ctrl-C cannot cut it short
        try:
            executor = make_executor(threads)
            for factory in factories:
                building = factory
                with params.node_arguments(_node_args(factory, process_args)):
                    node = _build(factory)
                building = None
                nodes.append(node)
                executor.add_node(node)
                for companion in getattr(node, "companion_nodes", ()):  # nodes composed into this process
                    executor.add_node(companion)
            spin(executor, stop)
            _drain(nodes, executor)
            return 0
        except (*_CONFIG_ERRORS, RCLError) as exc:  # schema check, ROS range or type, _build, or rcl's arguments
            text = _rcl_error_text(exc) if isinstance(exc, RCLError) else str(exc)
            who = building if building is not None else factories[0]  # e.g. HILSERL_EXECUTOR, before any node
            print(f"[{_label(who, _node_args(who, process_args))}] configuration error: {text}", file=sys.stderr, flush=True)
            return 2
        except ExternalShutdownException:  # the context was shut down from elsewhere
            return 0
        finally:
            for node in reversed(nodes):
                close = getattr(node, "close", None)
                if callable(close):
                    close()
                for companion in getattr(node, "companion_nodes", ()):
                    companion.destroy_node()
                node.destroy_node()
            if rclpy.ok():
                rclpy.shutdown()


def _drain(nodes, executor) -> None:
    """After a stop: let each node with a ``drain(spin_for)`` finish what it owes others (the actor
    waits for the learner to confirm what it sent), spinning the executor meanwhile."""
    def spin_for(seconds: float) -> None:
        end = time.monotonic() + seconds
        while executor.context.ok() and time.monotonic() < end:
            executor.spin_once(timeout_sec=min(_SPIN_ONCE_TIMEOUT_S, max(0.0, end - time.monotonic())))

    for node in nodes:
        drain = getattr(node, "drain", None)
        if callable(drain):
            drain(spin_for)


def run_node(factory: Callable[[], "rclpy.node.Node"], args: Optional[List[str]] = None, threads: int = 1,
             blas_threads: int = 1) -> int:
    return run_nodes([factory], args, threads, blas_threads)
