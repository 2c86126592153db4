"""ROS 2 over a link between two simulated hosts (tests/netns_rig.py), and what a cut does to it.

A talker in namespace "a" publishes std_msgs/String "<seq> <publish time>" at RATE_HZ with
RELIABLE QoS; a listener in namespace "b" prints each message with its arrival time (both use
CLOCK_MONOTONIC, which network namespaces share). The test checks that messages cross the veth,
that none arrive while the link is cut (so nothing went through shared memory past the cut),
and that they arrive again within RECONNECT_BOUND_S after the link is restored, for both a
silent cut ("loss") and a link set down ("down"). It prints the measured times and whether the
reliable writer delivered the messages published during the cut after the restore.
"""

import subprocess
import sys
import threading
import time

import pytest
from netns_rig import netns_pair

pytestmark = pytest.mark.ros

RATE_HZ = 20.0
CUT_S = 4.0
DISCOVERY_BOUND_S = 20.0
RECONNECT_BOUND_S = 15.0
# Messages already in flight when the link goes down may still land just after the cut.
CUT_GRACE_S = 0.25

TALKER = r"""
import sys, time
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy, HistoryPolicy
from std_msgs.msg import String

rate, depth = float(sys.argv[1]), int(sys.argv[2])
rclpy.init()
node = rclpy.create_node("netns_talker")
qos = QoSProfile(depth=depth, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
pub = node.create_publisher(String, "netns_chatter", qos)
seq = 0
def tick():
    global seq
    pub.publish(String(data=f"{seq} {time.monotonic():.6f}"))
    print(f"pub {seq} {time.monotonic():.6f} {pub.get_subscription_count()}", flush=True)
    seq += 1
node.create_timer(1.0 / rate, tick)
try:
    rclpy.spin(node)
except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
    pass
"""

LISTENER = r"""
import sys, time
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy, HistoryPolicy
from std_msgs.msg import String

depth = int(sys.argv[1])
rclpy.init()
node = rclpy.create_node("netns_listener")
qos = QoSProfile(depth=depth, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
def on_msg(msg):
    seq, t_pub = msg.data.split()
    print(f"rx {seq} {t_pub} {time.monotonic():.6f}", flush=True)
node.create_subscription(String, "netns_chatter", on_msg, qos)
print(f"ready {time.monotonic():.6f}", flush=True)
try:
    rclpy.spin(node)
except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
    pass
"""


class Lines:
    """Collects a process's stdout lines in a thread, for polling from the test."""

    def __init__(self, proc):
        self.proc = proc
        self.lines = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self):
        for line in self.proc.stdout:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    def snapshot(self):
        with self._lock:
            return list(self.lines)

    def rx(self):
        """(seq, t_pub, t_rx) of every message received so far."""
        out = []
        for line in self.snapshot():
            parts = line.split()
            if len(parts) == 4 and parts[0] == "rx":
                out.append((int(parts[1]), float(parts[2]), float(parts[3])))
        return out

    def wait_for(self, predicate, timeout_s):
        """Poll until ``predicate(self.rx())`` holds; returns the time it took or None."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            if predicate(self.rx()):
                return time.monotonic() - t0
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        return None


def start_pair(rig, tmp_path, depth):
    (tmp_path / "talker.py").write_text(TALKER)
    (tmp_path / "listener.py").write_text(LISTENER)
    common = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
    talker = rig.popen("a", [sys.executable, "-u", tmp_path / "talker.py", RATE_HZ, depth], **common)
    listener = rig.popen("b", [sys.executable, "-u", tmp_path / "listener.py", depth], **common)
    return Lines(talker), Lines(listener)


def cut_and_restore(rig, rx, mode, report):
    """Cut the link for CUT_S in ``mode``; check silence during it and recovery after it."""
    t_cut = time.monotonic()
    rig.cut(mode)
    time.sleep(CUT_S)
    dropped = rig.dropped_packets()
    t_restore = time.monotonic()
    rig.restore()
    during = [m for m in rx.rx() if t_cut + CUT_GRACE_S < m[2] < t_restore]
    assert not during, f"{mode}: {len(during)} messages arrived while the link was cut: {during[:5]}"
    took = rx.wait_for(lambda ms: any(t_pub > t_restore for _, t_pub, _ in ms), RECONNECT_BOUND_S)
    assert took is not None, f"{mode}: no message published after the restore arrived within {RECONNECT_BOUND_S} s"
    time.sleep(1.0)  # let a reliable writer catch up before reading what arrived
    msgs = rx.rx()
    published_in_cut = [m for m in msgs if t_cut + CUT_GRACE_S < m[1] < t_restore]
    first_after = min((t_rx for _, _, t_rx in msgs if t_rx > t_restore), default=None)
    report.append(
        f"{mode}: cut {t_restore - t_cut:.1f} s (packets dropped a/b {dropped['a']}/{dropped['b']}); "
        f"first message after restore {first_after - t_restore:.2f} s, first one published after it "
        f"{took:.2f} s; messages published during the cut delivered later: {len(published_in_cut)} "
        f"(~{int(CUT_S * RATE_HZ)} published)")
    return took


def test_talker_listener_across_veth_and_cut(tmp_path):
    report = []
    with netns_pair() as rig:
        t0 = time.monotonic()
        tx, rx = start_pair(rig, tmp_path, depth=200)
        took = rx.wait_for(lambda ms: len(ms) >= 5, DISCOVERY_BOUND_S)
        assert took is not None, (
            f"no messages crossed the veth within {DISCOVERY_BOUND_S} s\n"
            f"talker: {tx.snapshot()[-5:]}\nlistener: {rx.snapshot()[-5:]}")
        first_rx = rx.rx()[0][2]
        report.append(f"discovery: first message {first_rx - t0:.2f} s after starting both processes")
        time.sleep(1.0)

        for mode in ("loss", "down"):
            cut_and_restore(rig, rx, mode, report)

        seqs = [s for s, _, _ in rx.rx()]
        assert seqs == sorted(seqs), "messages arrived out of order"
        assert tx.proc.poll() is None and rx.proc.poll() is None
    print("\n" + "\n".join(f"netns rig: {line}" for line in report))
