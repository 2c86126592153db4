"""Start a graph description as processes, without `ros2 launch`.

Each node runs as its own process with the same ``--ros-args`` that launch_ros
would give it (see ``graph.node_argv``); they find each other over DDS. Nodes that
share a ``process`` in the graph description run in one ``compose_nodes`` process,
each with those same arguments. Output lines are prefixed with the node name (the
process name for a composed process). Ctrl-C (SIGINT) or SIGTERM shuts every
node down (SIGINT, then SIGTERM, then SIGKILL after timeouts).

A node with ``respawn`` set in the description (a composed process: any member) that
exits on its own is started again after its ``respawn_delay``, with one line saying
so, and the graph keeps running; ``poll`` does it, so every loop that calls ``poll``
(``run``, ``wait``, ``hilserl train``, ``eval``, ``record``) respawns. Not while
shutting down, not after exit status 2 (a refused configuration: it would refuse
again), and not after a crash loop: ``CRASH_LOOP_EXITS`` exits in a row each within
``CRASH_LOOP_S`` seconds of its start (``ros2 launch`` would restart it forever). If a required node exits on its own and is not respawned, the rest are shut
down and the runner's exit status is that node's (non-zero when it died); the node's
last output line (a node that refuses its configuration says why in one line) is
repeated as the runner's last line, after the other nodes' shutdown output.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Deque, Dict, List, Optional, TextIO, Tuple

from hilserl_interfaces.signals import stop_on_signals

from .graph import Graph, GraphError, NodeSpec, Process, process_command, processes

__all__ = ["find_executable", "GraphRunner", "NodeExit", "CONFIG_ERROR_STATUS"]

# the exit status of a node that refused its configuration (hilserl_interfaces.node_main): never respawned
CONFIG_ERROR_STATUS = 2
_TAIL_LINES = 20  # output lines kept per process, for the reason a dead node gave
# a respawned process that exits this many times in a row, each time this soon after its start, stays down
CRASH_LOOP_EXITS, CRASH_LOOP_S = 5, 5.0


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
    last_line: str = ""  # the process's last output line: the one-line reason of a node that refused to start

    def how(self) -> str:
        code = self.returncode
        return f"exited with status {code}" if code >= 0 else f"was killed by signal {-code} ({_signal_name(-code)})"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "?"


@dataclass
class _Slot:
    """One running process of the graph: its Popen, output pump and last lines."""

    proc: subprocess.Popen
    pump: threading.Thread
    tail: Deque[str] = field(default_factory=lambda: collections.deque(maxlen=_TAIL_LINES))
    respawn_at: Optional[float] = None  # when a respawn is due (monotonic), while waiting for it
    respawns: int = 0
    settled: bool = False  # its exit has been dealt with for good (not required, not respawned)
    started_at: float = field(default_factory=time.monotonic)
    quick_exits: int = 0  # exits in a row within CRASH_LOOP_S of the start

    def last_line(self, wait_s: float = 1.0) -> str:
        """The last non-empty output line, once the pump has read what the process wrote."""
        if self.proc.poll() is not None:
            self.pump.join(timeout=wait_s)
        return next((line for line in reversed(self.tail) if line.strip()), "")


def nodes_already_running(graph: Graph, env: Dict[str, str], wait_s: float = 1.5) -> List[str]:
    """The graph's node names that are already on the network (discovery for up to ``wait_s``), in
    the ROS domain of ``env`` (the discovery range and peers are this process's)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    wanted = {spec.fqn for spec in graph.nodes}
    domain = env.get("ROS_DOMAIN_ID")
    ctx = rclpy.context.Context()
    try:
        rclpy.init(args=[], context=ctx, domain_id=int(domain) if domain else None)
        node = rclpy.create_node(f"hilserl_preflight_{os.getpid()}", context=ctx, start_parameter_services=False)
        executor = SingleThreadedExecutor(context=ctx)
        executor.add_node(node)
        end = time.monotonic() + wait_s
        found: set = set()
        while time.monotonic() < end and not found:
            executor.spin_once(timeout_sec=0.1)
            names = {(ns.rstrip("/") + "/" + name) for name, ns in node.get_node_names_and_namespaces()}
            found = names & wanted
        executor.shutdown()
        node.destroy_node()
        return sorted(found)
    finally:
        if rclpy.ok(context=ctx):
            rclpy.shutdown(context=ctx)


class GraphRunner:
    def __init__(
        self,
        graph: Graph,
        resolve: Callable[[str, str], str] = find_executable,
        out: TextIO = sys.stdout,
        env: Optional[Dict[str, str]] = None,
        check_network: bool = False,
    ):
        """``check_network``: before starting, look for nodes of this graph already running in the
        ROS domain (another graph: its messages would mix with this one's) and refuse to start."""
        self.graph = graph
        self.check_network = check_network
        self._resolve = resolve
        self._out = out
        self._env = dict(os.environ if env is None else env)
        self._procs: Dict[str, subprocess.Popen] = {}  # by node full name (members of a composed process share one)
        self._slots: Dict[str, _Slot] = {}  # by process key
        self._cmds: Dict[str, List[str]] = {}
        self.processes: List[Process] = processes(graph)
        self._threads: List[threading.Thread] = []
        self._lock = threading.Lock()
        self._stopping = False
        self.exits: List[NodeExit] = []  # how each node ended at shutdown
        self.respawned: List[NodeExit] = []  # each exit that was followed by a respawn

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
        self._cmds = self.commands()
        if self.check_network:
            found = nodes_already_running(self.graph, self._env)
            if found:
                domain = self._env.get("ROS_DOMAIN_ID") or "0"
                raise GraphError(
                    f"another graph is running in ROS_DOMAIN_ID {domain}: {', '.join(found)} already on the network, "
                    "and its messages would mix with this graph's; stop it, or run this one with another ROS_DOMAIN_ID")
        for proc_spec in self.processes:
            slot = self._launch(proc_spec)
            if proc_spec.composed:
                members = ", ".join(n.fqn for n in proc_spec.nodes)
                self._say(f"[hilserl] started {proc_spec.key}: {members} in one process (pid {slot.proc.pid})")
            else:
                self._say(f"[hilserl] started {proc_spec.key} (pid {slot.proc.pid})")

    def _launch(self, proc_spec: Process) -> _Slot:
        proc = subprocess.Popen(
            self._cmds[proc_spec.key],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=self._env,
            start_new_session=True,  # Ctrl-C reaches the runner, which stops nodes in order
            text=True,
            bufsize=1,
        )
        tail: Deque[str] = collections.deque(maxlen=_TAIL_LINES)
        t = threading.Thread(target=self._pump, args=(proc_spec.key, proc, tail), daemon=True)
        t.start()
        self._threads.append(t)
        previous = self._slots.get(proc_spec.key)
        slot = _Slot(proc, t, tail)
        if previous is not None:
            slot.respawns, slot.quick_exits = previous.respawns, previous.quick_exits
        self._slots[proc_spec.key] = slot
        for spec in proc_spec.nodes:
            self._procs[spec.fqn] = proc
        return slot

    def _pump(self, label: str, proc: subprocess.Popen, tail: Deque[str]) -> None:
        for line in proc.stdout:
            line = line.rstrip()
            tail.append(line)
            self._say(f"[{label}] {line}")

    def poll(self) -> Optional[NodeExit]:
        """The first required node that exited on its own and is not respawned, if any.

        Processes with respawn set are restarted here: an exit is noted (one line) and the
        process started again once its delay has passed, on a later call."""
        if self._stopping:
            return None
        now = time.monotonic()
        for proc_spec in self.processes:
            slot = self._slots.get(proc_spec.key)
            if slot is None:
                continue
            if slot.respawn_at is not None:
                if now >= slot.respawn_at:
                    self._launch(proc_spec)
                continue
            code = slot.proc.poll()
            if code is None or slot.settled:
                continue
            dead = NodeExit(proc_spec.nodes[0], code, expected=False)
            slot.quick_exits = slot.quick_exits + 1 if now - slot.started_at < CRASH_LOOP_S else 0
            looping = slot.quick_exits >= CRASH_LOOP_EXITS
            if proc_spec.respawn and code != CONFIG_ERROR_STATUS and not looping:
                slot.respawns += 1
                slot.respawn_at = now + proc_spec.respawn_delay
                self.respawned.append(dead)
                self._say(f"[hilserl] {proc_spec.key} {dead.how()}; respawning it in {proc_spec.respawn_delay:g} s "
                          f"(respawn {slot.respawns})")
                continue
            if proc_spec.respawn:
                why = (f"{slot.quick_exits} times in a row within {CRASH_LOOP_S:g} s of its start" if looping
                       else "(a refused configuration)")
                self._say(f"[hilserl] {proc_spec.key} {dead.how()} {why}: not respawning it")
            for spec in proc_spec.nodes:
                if spec.required:
                    return NodeExit(spec, code, expected=False, last_line=slot.last_line())
            slot.settled = True  # an optional node stays down
            if proc_spec.respawn and slot.last_line():
                self._say(f"[hilserl] {proc_spec.key}: {slot.last_line()}")
        return None

    def pid(self, key: str) -> Optional[int]:
        """The process id now running a node (full name) or a composed process (its key); None if none."""
        proc = self._slots[key].proc if key in self._slots else self._procs.get(key)
        return None if proc is None or proc.poll() is not None else proc.pid

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
        how = dead.how()
        self._say(f"[hilserl] required node {dead.spec.fqn} {how}; shutting the graph down")
        # SIGTERM, not SIGINT: a node still importing would print a KeyboardInterrupt traceback that
        # buries the one line that matters; a started node shuts down on either
        self.shutdown(first_signal=signal.SIGTERM)
        # the reason last, under the other nodes' shutdown output
        self._say(f"[hilserl] {dead.spec.fqn} {how}" + (f": {dead.last_line}" if dead.last_line else ""))
        # a clean exit (status 0) of a required node ends the run successfully (e.g. a finished job)
        return code if code > 0 else (1 if code < 0 else 0)

    def shutdown(self, sigint_timeout_s: Optional[float] = None, sigterm_timeout_s: float = 3.0,
                 first_signal: int = signal.SIGINT) -> None:
        """Stop every process: ``first_signal`` (SIGINT, or SIGTERM with ``sigterm_timeout_s`` more
        time), then, to each one still running after its own grace (its nodes' longest
        ``shutdown_timeout``, or ``sigint_timeout_s`` for all when given), SIGTERM, and SIGKILL
        ``sigterm_timeout_s`` later. A slow stop (a learner writing its final checkpoint) is
        waited for as long as its node asks, without holding up the others' escalation."""
        self._stopping = True
        members: Dict[int, Tuple[subprocess.Popen, Process]] = {}
        for proc in self.processes:
            p = self._procs.get(proc.nodes[0].fqn)
            if p is not None:
                members[id(p)] = (p, proc)
        ladder = [signal.SIGINT, signal.SIGTERM, signal.SIGKILL]
        if first_signal == signal.SIGTERM:
            ladder = ladder[1:]
        waits = {signal.SIGTERM: sigterm_timeout_s, signal.SIGKILL: 2.0}
        pending: Dict[int, Tuple[int, float, float]] = {}  # id -> (rung of the ladder, deadline, its wait)
        for key, (p, proc) in members.items():
            if p.poll() is not None:
                continue
            grace = sigint_timeout_s if sigint_timeout_s is not None else proc.shutdown_timeout_s
            wait = grace + (sigterm_timeout_s if ladder[0] == signal.SIGTERM else 0.0)
            self._kill(p, ladder[0])
            pending[key] = (0, time.monotonic() + wait, wait)
        while pending:
            now = time.monotonic()
            for key, (rung, deadline, wait) in list(pending.items()):
                p, proc = members[key]
                if p.poll() is not None or (now >= deadline and rung == len(ladder) - 1):
                    del pending[key]  # stopped, or SIGKILLed (reaped below)
                elif now >= deadline:  # say who needed more than a polite request (a slow or stuck shutdown)
                    sig = ladder[rung + 1]
                    self._say(f"[hilserl] {', '.join(sorted(n.fqn for n in proc.nodes))} still running {wait:g} s after {ladder[rung].name}: sending {sig.name}")
                    self._kill(p, sig)
                    pending[key] = (rung + 1, now + waits[sig], waits[sig])
            time.sleep(0.05)
        for spec in self.graph.nodes:
            proc = self._procs.get(spec.fqn)
            if proc is not None:
                self.exits.append(NodeExit(spec, proc.wait(), expected=True))
        for t in self._threads:
            t.join(timeout=1.0)

    @staticmethod
    def _kill(p: "subprocess.Popen", sig: int) -> None:
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass

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
