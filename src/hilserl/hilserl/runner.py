"""Start a graph description as processes, without `ros2 launch`.

Each node runs as its own process with the same ``--ros-args`` that launch_ros
would give it (see ``graph.node_argv``); they find each other over DDS. Nodes that
share a ``process`` in the graph description run in one ``compose_nodes`` process,
each with those same arguments. Output lines are prefixed with the node name (the
process name for a composed process). Ctrl-C (SIGINT) or SIGTERM shuts every
node down (SIGINT, then SIGTERM, then SIGKILL after timeouts). If a required
node exits on its own, the rest are shut down and the runner's exit status is
that node's (non-zero when it died).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, TextIO

from hilserl_interfaces.signals import stop_on_signals

from .graph import Graph, GraphError, NodeSpec, Process, process_command, processes

__all__ = ["find_executable", "GraphRunner", "NodeExit"]


def find_executable(package: str, executable: str) -> str:
    """``<prefix>/lib/<package>/<executable>`` from AMENT_PREFIX_PATH, as `ros2 run` finds it."""
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    for prefix in prefixes:
        candidate = Path(prefix) / "lib" / package / executable
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise GraphError(
        f"executable '{executable}' of package '{package}' not found under AMENT_PREFIX_PATH "
        f"({len(prefixes)} prefixes); build with scripts/setup.sh and `source scripts/env.sh`"
    )


@dataclass
class NodeExit:
    spec: NodeSpec
    returncode: int
    expected: bool  # exited because the runner asked it to


class GraphRunner:
    def __init__(
        self,
        graph: Graph,
        resolve: Callable[[str, str], str] = find_executable,
        out: TextIO = sys.stdout,
        env: Optional[Dict[str, str]] = None,
    ):
        self.graph = graph
        self._resolve = resolve
        self._out = out
        self._env = dict(os.environ if env is None else env)
        self._procs: Dict[str, subprocess.Popen] = {}  # by node full name (members of a composed process share one)
        self.processes: List[Process] = processes(graph)
        self._threads: List[threading.Thread] = []
        self._lock = threading.Lock()
        self._stopping = False
        self.exits: List[NodeExit] = []

    def _say(self, text: str) -> None:
        with self._lock:
            self._out.write(text + "\n")
            self._out.flush()

    def commands(self) -> Dict[str, List[str]]:
        """The argv of every process, by process key (a node's full name, or a composed
        group's ``process``); executables are resolved first, so a missing one fails before any start."""
        out = {}
        for proc in self.processes:
            package, executable, args = process_command(proc)
            out[proc.key] = [self._resolve(package, executable)] + args
        return out

    def start(self) -> None:
        cmds = self.commands()
        for proc_spec in self.processes:
            proc = subprocess.Popen(
                cmds[proc_spec.key],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=self._env,
                start_new_session=True,  # Ctrl-C reaches the runner, which stops nodes in order
                text=True,
                bufsize=1,
            )
            for spec in proc_spec.nodes:
                self._procs[spec.fqn] = proc
            label = proc_spec.key
            t = threading.Thread(target=self._pump, args=(label, proc), daemon=True)
            t.start()
            self._threads.append(t)
            if proc_spec.composed:
                members = ", ".join(n.fqn for n in proc_spec.nodes)
                self._say(f"[hilserl] started {label}: {members} in one process (pid {proc.pid})")
            else:
                self._say(f"[hilserl] started {label} (pid {proc.pid})")

    def _pump(self, fqn: str, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self._say(f"[{fqn}] {line.rstrip()}")

    def poll(self) -> Optional[NodeExit]:
        """The first required node that exited on its own, if any."""
        for spec in self.graph.nodes:
            proc = self._procs.get(spec.fqn)
            if proc is not None and proc.poll() is not None and not self._stopping:
                if spec.required:
                    return NodeExit(spec, proc.returncode, expected=False)
        return None

    def wait(self, timeout_s: Optional[float] = None, poll_s: float = 0.1) -> int:
        """Run until a required node exits, or ``timeout_s`` passes (then shut down, status 0)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while deadline is None or time.monotonic() < deadline:
            dead = self.poll()
            if dead is not None:
                return self._on_required_exit(dead)
            time.sleep(poll_s)
        self.shutdown()
        return 0

    def _on_required_exit(self, dead: NodeExit) -> int:
        code = dead.returncode
        how = f"exited with status {code}" if code >= 0 else f"was killed by signal {-code}"
        self._say(f"[hilserl] required node {dead.spec.fqn} {how}; shutting the graph down")
        # SIGTERM, not SIGINT: a node still importing would print a KeyboardInterrupt traceback that
        # buries the one line that matters; a started node shuts down on either
        self.shutdown(first_signal=signal.SIGTERM)
        # a clean exit (status 0) of a required node ends the run successfully (e.g. a finished job)
        return code if code > 0 else (1 if code < 0 else 0)

    def shutdown(self, sigint_timeout_s: float = 5.0, sigterm_timeout_s: float = 3.0, first_signal: int = signal.SIGINT) -> None:
        self._stopping = True
        unique = list({id(p): p for p in self._procs.values()}.values())
        previous = None
        steps = [(signal.SIGINT, sigint_timeout_s), (signal.SIGTERM, sigterm_timeout_s), (signal.SIGKILL, 2.0)]
        if first_signal == signal.SIGTERM:
            steps = steps[1:]
            steps[0] = (signal.SIGTERM, sigint_timeout_s + sigterm_timeout_s)
        for sig, timeout in steps:
            alive = [p for p in unique if p.poll() is None]
            if not alive:
                break
            if previous is not None:  # say who needed more than a polite request (a slow or stuck shutdown)
                names = sorted(fqn for fqn, p in self._procs.items() if p in alive)
                self._say(f"[hilserl] {', '.join(names)} still running {previous[1]:g} s after {previous[0].name}: sending {sig.name}")
            previous = (sig, timeout)
            for p in alive:
                try:
                    os.killpg(p.pid, sig)
                except ProcessLookupError:
                    pass
            end = time.monotonic() + timeout
            while time.monotonic() < end and any(p.poll() is None for p in alive):
                time.sleep(0.05)
        for spec in self.graph.nodes:
            proc = self._procs.get(spec.fqn)
            if proc is not None:
                self.exits.append(NodeExit(spec, proc.wait(), expected=True))
        for t in self._threads:
            t.join(timeout=1.0)

    def run(self) -> int:
        """Start, wait, and turn SIGINT/SIGTERM into an orderly shutdown (status 0)."""
        with stop_on_signals() as stop:
            self.start()
            while not stop.is_set():
                dead = self.poll()
                if dead is not None:
                    return self._on_required_exit(dead)
                stop.wait(0.1)
            self._say("[hilserl] shutting down")
            self.shutdown()
            return 0
