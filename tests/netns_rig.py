"""Two simulated hosts for ROS 2 tests: two Linux network namespaces joined by a veth pair.

"Robot side" ``a`` and "learner side" ``b`` each get their own network stack (``lo`` plus one
end of a veth link, 10.200.<n>.1/24 and 10.200.<n>.2/24); DDS traffic between them can only
cross that link, which :meth:`NetnsPair.cut` breaks and :meth:`NetnsPair.restore` mends.

Discovery settings that work across the veth and only across it (measured with Fast DDS 3.2.2
from the PyPI wheels; tests/ros/test_netns_rig.py):

- ``FASTDDS_BUILTIN_TRANSPORTS=UDPv4``: no shared-memory transport, whose /dev/shm is shared
  by all network namespaces of a machine. (Measured: with Fast DDS's default transports the cut
  still stopped every message, but UDPv4 only leaves no doubt.)
- ``ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET`` and ``ROS_STATIC_PEERS=<the other side's address>``
  (unicast discovery as well as multicast). Measured: SUBNET without static peers also works;
  LOCALHOST (what tests/conftest.py sets) with the static peer also discovered across the veth
  (static peers are contacted whatever the range); OFF with the static peer found nothing
  within 15 s.
- the same ``ROS_DOMAIN_ID`` on both sides (this pytest process's, from tests/conftest.py).
- each namespace its own /etc/machine-id (``/etc/netns/<ns>/machine-id``, which
  ``ip netns exec`` mounts over /etc/machine-id), as two hosts would have.
- processes start only once both veth ends are operationally up (:meth:`NetnsPair.up` waits):
  Fast DDS lists the interfaces once, and a participant that started earlier announced only
  127.0.0.1 and was never reached.

Usage (as root, where ``ip netns`` works; otherwise the test is skipped with the reason)::

    from netns_rig import netns_pair

    def test_two_hosts(tmp_path):
        with netns_pair() as rig:
            talker = rig.popen("a", [sys.executable, "-u", "talker.py"], stdout=subprocess.PIPE)
            listener = rig.popen("b", [sys.executable, "-u", "listener.py"], stdout=subprocess.PIPE)
            ...
            rig.cut()          # or rig.cut("down"); or `with rig.cut_for(5.0): ...`
            rig.restore()

or the pytest fixture ``netns_rig`` (``from netns_rig import netns_rig`` in the test module).
Namespaces, the link and every process started with :meth:`NetnsPair.popen` are removed when
the ``with`` block ends, whether the test passed or not, at interpreter exit, and (for
namespaces left by a killed test process) the next time a rig is created.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import re
import shutil
import signal
import subprocess
import time
import weakref

import pytest

NAME_PREFIX = "hilserl"
_NAME_RE = re.compile(rf"^{NAME_PREFIX}-(\d+)-\d+-[ab]$")
_counter = itertools.count()
_live: weakref.WeakSet[NetnsPair] = weakref.WeakSet()

# Environment variables that would point Fast DDS elsewhere than the settings of the rig.
_DROPPED_ENV = (
    "ROS_LOCALHOST_ONLY",
    "FASTDDS_DEFAULT_PROFILES_FILE",
    "FASTRTPS_DEFAULT_PROFILES_FILE",
    "RMW_FASTRTPS_USE_QOS_FROM_XML",
    "SKIP_DEFAULT_XML",
    "FASTDDS_ENVIRONMENT_FILE",
    "ROS_DISCOVERY_SERVER",
    "ROS_SECURITY_ENABLE",
)


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check, timeout=20)


def unavailable_reason() -> str | None:
    """Why a rig cannot be built on this machine (None when it can)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "network namespaces need root (this test creates two with `ip netns add`)"
    if shutil.which("ip") is None:
        return "iproute2's `ip` command is not installed"
    probe = f"{NAME_PREFIX}-{os.getpid()}-probe-a"
    try:
        res = _run("ip", "netns", "add", probe, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`ip netns add` failed: {exc}"
    if res.returncode != 0:
        return f"`ip netns add` is unavailable here: {res.stderr.strip() or res.returncode}"
    _run("ip", "netns", "del", probe, check=False)
    return None


def skip_unless_available() -> None:
    """pytest.skip with the reason when no rig can be built (printed with -rs, on in pytest.ini)."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"netns rig: {reason}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_namespaces() -> list[str]:
    """Delete rig namespaces whose creating process is gone (a test killed with SIGKILL)."""
    res = _run("ip", "netns", "list", check=False)
    removed = []
    for line in res.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = _NAME_RE.match(name)
        if m and not _pid_alive(int(m.group(1))):
            _kill_namespace_pids(name)
            _run("ip", "netns", "del", name, check=False)
            _remove_etc_dir(name)
            removed.append(name)
    return removed


def _etc_dir(ns: str) -> str:
    return os.path.join("/etc/netns", ns)


def _write_machine_id(ns: str) -> None:
    """Give namespace ``ns`` its own /etc/machine-id: `ip netns exec` bind-mounts the files of
    /etc/netns/<ns>/ over /etc, and Fast DDS derives the host part of its GUIDs from that file."""
    os.makedirs(_etc_dir(ns), exist_ok=True)
    with open(os.path.join(_etc_dir(ns), "machine-id"), "w") as f:
        f.write(os.urandom(16).hex() + "\n")


def _remove_etc_dir(ns: str) -> None:
    shutil.rmtree(_etc_dir(ns), ignore_errors=True)


def _kill_namespace_pids(ns: str) -> None:
    """End the processes still inside namespace ``ns`` (only processes this rig started live there)."""
    res = _run("ip", "netns", "pids", ns, check=False)
    pids = [int(p) for p in res.stdout.split() if p.isdigit()]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and any(_pid_alive(p) for p in pids):
            time.sleep(0.05)
        pids = [p for p in pids if _pid_alive(p)]
        if not pids:
            return


class NetnsPair:
    """Two network namespaces ``a`` and ``b`` joined by a veth pair; see the module docstring.

    Attributes: ``ns`` ({"a": name, "b": name}), ``dev`` ({"a": "veth_a", "b": "veth_b"}, each
    inside its own namespace), ``addr`` ({"a": "10.200.<n>.1", "b": "10.200.<n>.2"}),
    ``domain_id`` (the ROS_DOMAIN_ID of both sides), ``cut_mode`` (None while the link is up).
    """

    def __init__(self, domain_id: int | None = None, static_peers: bool = True,
                 discovery_range: str = "SUBNET", transports: str | None = "UDPv4",
                 extra_env: dict[str, str] | None = None, own_machine_id: bool = True):
        n = next(_counter)
        pid = os.getpid()
        self.ns = {side: f"{NAME_PREFIX}-{pid}-{n}-{side}" for side in "ab"}
        self.dev = {"a": "veth_a", "b": "veth_b"}
        subnet = 1 + (pid * 7 + n) % 250
        self.addr = {"a": f"10.200.{subnet}.1", "b": f"10.200.{subnet}.2"}
        if domain_id is None:
            domain_id = int(os.environ.get("ROS_DOMAIN_ID") or 1 + pid % 100)
        self.domain_id = domain_id
        self.static_peers = static_peers
        self.discovery_range = discovery_range
        self.transports = transports
        self.extra_env = dict(extra_env or {})
        self.own_machine_id = own_machine_id
        self.cut_mode: str | None = None
        self.procs: list[subprocess.Popen] = []
        self._up = False

    # -- set-up and tear-down -------------------------------------------------------------
    def up(self) -> NetnsPair:
        remove_stale_namespaces()
        _live.add(self)
        self._up = True
        try:
            a, b = self.ns["a"], self.ns["b"]
            _run("ip", "netns", "add", a)
            _run("ip", "netns", "add", b)
            if self.own_machine_id:
                for ns in (a, b):
                    _write_machine_id(ns)
            _run("ip", "-n", a, "link", "add", self.dev["a"], "type", "veth",
                 "peer", "name", self.dev["b"], "netns", b)
            for side in "ab":
                ns, dev = self.ns[side], self.dev[side]
                _run("ip", "-n", ns, "addr", "add", f"{self.addr[side]}/24", "dev", dev)
                _run("ip", "-n", ns, "link", "set", "lo", "up")
                _run("ip", "-n", ns, "link", "set", dev, "up")
            self.wait_link_up()
        except BaseException:
            self.down()
            raise
        return self

    def down(self) -> None:
        """Stop the processes started in the namespaces, then delete both (and so the link)."""
        if not self._up:
            return
        self._up = False
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 3.0
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            if proc.poll() is None:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=2.0)
        for ns in self.ns.values():
            _kill_namespace_pids(ns)
            _run("ip", "netns", "del", ns, check=False)
            _remove_etc_dir(ns)
        _live.discard(self)

    def link_state(self) -> dict[str, str]:
        """The kernel's operational state of each veth end ("UP", "DOWN", "LOWERLAYERDOWN", ...)."""
        out = {}
        for side in "ab":
            res = _run("ip", "-n", self.ns[side], "-o", "link", "show", "dev", self.dev[side], check=False)
            m = re.search(r" state (\S+)", res.stdout)
            out[side] = m.group(1) if m else "?"
        return out

    def wait_link_up(self, timeout_s: float = 10.0) -> float:
        """Wait until both veth ends are operationally up; returns the seconds it took.

        The kernel reports a veth's carrier up to about a second after `ip link set up`
        (linkwatch), and Fast DDS lists the network interfaces once, when a participant starts,
        skipping the ones not running: a process started before this returns announces only
        127.0.0.1 and is never reached from the other side.
        """
        t0 = time.monotonic()
        while True:
            state = self.link_state()
            if all(v == "UP" for v in state.values()):
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout_s:
                raise RuntimeError(f"veth pair not up after {timeout_s} s: {state}")
            time.sleep(0.02)

    def __enter__(self) -> NetnsPair:  # noqa: PYI034
        return self.up()

    def __exit__(self, *exc) -> None:
        self.down()

    # -- what runs on each side -----------------------------------------------------------
    @staticmethod
    def other(side: str) -> str:
        return {"a": "b", "b": "a"}[side]

    def env(self, side: str, base: dict[str, str] | None = None) -> dict[str, str]:
        """The environment for a ROS 2 process on ``side`` ("a" or "b")."""
        env = dict(os.environ if base is None else base)
        for key in _DROPPED_ENV:
            env.pop(key, None)
        env["ROS_DOMAIN_ID"] = str(self.domain_id)
        env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = self.discovery_range
        if self.static_peers:
            env["ROS_STATIC_PEERS"] = self.addr[self.other(side)]
        else:
            env.pop("ROS_STATIC_PEERS", None)
        if self.transports:
            env["FASTDDS_BUILTIN_TRANSPORTS"] = self.transports
        else:
            env.pop("FASTDDS_BUILTIN_TRANSPORTS", None)
        env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.extra_env)
        return env

    def command(self, side: str, argv: list[str]) -> list[str]:
        """``argv`` prefixed to run inside the namespace of ``side``."""
        return ["ip", "netns", "exec", self.ns[side], *map(str, argv)]

    def popen(self, side: str, argv: list[str], env: dict[str, str] | None = None,
              **kwargs) -> subprocess.Popen:
        """Start ``argv`` in the namespace of ``side`` with :meth:`env` (or ``env``); it is
        stopped (SIGINT, then SIGKILL after 3 s) when the rig goes down."""
        if not self._up:
            raise RuntimeError("netns rig is not up")
        kwargs.setdefault("start_new_session", True)
        proc = subprocess.Popen(self.command(side, argv), env=self.env(side) if env is None else env,
                                **kwargs)
        self.procs.append(proc)
        return proc

    def run(self, side: str, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        """Run ``argv`` to completion in the namespace of ``side`` (text output captured)."""
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        kwargs.setdefault("timeout", 60)
        check = kwargs.pop("check", False)
        return subprocess.run(self.command(side, argv), check=check, env=kwargs.pop("env", None) or self.env(side),
                              **kwargs)

    # -- breaking the link ----------------------------------------------------------------
    def cut(self, mode: str = "loss") -> None:
        """Break the link between the two sides.

        ``mode="loss"``: every packet either side sends on the veth is dropped silently, the link
        stays up (a switch or radio that stops forwarding). This kernel has no netem module, so
        the drop is a token-bucket qdisc whose bucket (1 byte) is smaller than any packet.
        ``mode="down"``: the veth is set down (a pulled cable): both ends lose carrier and their
        subnet route, and sends fail with ENETUNREACH.
        """
        if self.cut_mode is not None:
            raise RuntimeError(f"link already cut ({self.cut_mode})")
        if mode == "loss":
            for side in "ab":
                _run("ip", "netns", "exec", self.ns[side], "tc", "qdisc", "add", "dev", self.dev[side],
                     "root", "tbf", "rate", "1kbit", "burst", "1", "latency", "1ms")
        elif mode == "down":
            _run("ip", "-n", self.ns["a"], "link", "set", self.dev["a"], "down")
        else:
            raise ValueError(f"cut mode {mode!r}: expected 'loss' or 'down'")
        self.cut_mode = mode

    def restore(self) -> None:
        """Mend the link broken by :meth:`cut`."""
        if self.cut_mode == "loss":
            for side in "ab":
                _run("ip", "netns", "exec", self.ns[side], "tc", "qdisc", "del", "dev", self.dev[side], "root")
        elif self.cut_mode == "down":
            _run("ip", "-n", self.ns["a"], "link", "set", self.dev["a"], "up")
        self.cut_mode = None

    @contextlib.contextmanager
    def cut_for(self, seconds: float | None = None, mode: str = "loss"):
        """``with rig.cut_for(5.0): ...``: the link is cut inside the block (which lasts at least
        ``seconds`` when given) and restored after it, also on error."""
        t0 = time.monotonic()
        self.cut(mode)
        try:
            yield self
            if seconds is not None:
                time.sleep(max(0.0, seconds - (time.monotonic() - t0)))
        finally:
            self.restore()

    def dropped_packets(self) -> dict[str, int]:
        """Packets each side's cut dropped so far (mode "loss" only; 0 otherwise)."""
        out = {}
        for side in "ab":
            res = _run("ip", "netns", "exec", self.ns[side], "tc", "-s", "qdisc", "show", "dev",
                       self.dev[side], check=False)
            m = re.search(r"dropped (\d+)", res.stdout) if "tbf" in res.stdout else None
            out[side] = int(m.group(1)) if m else 0
        return out


@contextlib.contextmanager
def netns_pair(**kwargs):
    """Context manager: a :class:`NetnsPair` that is up inside the block; skips the calling test
    (pytest.skip, reason printed with -rs) when this machine cannot build one."""
    skip_unless_available()
    with NetnsPair(**kwargs) as rig:
        yield rig


@pytest.fixture
def netns_rig():
    """pytest fixture: a :class:`NetnsPair` with the default settings (import it into the test
    module: ``from netns_rig import netns_rig``)."""
    with netns_pair() as rig:
        yield rig


@atexit.register
def _down_all() -> None:
    for rig in list(_live):
        with contextlib.suppress(Exception):
            rig.down()
