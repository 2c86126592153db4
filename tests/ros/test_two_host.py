"""Two hosts: the robot side of the simulated single-arm graph (sim, crop nodes, mux, actor) in
network namespace "a", the learner in namespace "b", joined by a veth pair (tests/netns_rig.py,
discovery configured for that link). After a few hundred transitions the link is cut for 30 s
(longer than Fast DDS's participant lease, so the two sides forget each other and must
rediscover) and restored. The robot side keeps running through the cut.

Checked: the actor keeps acting and spooling during the cut and its "delivery" diagnostic goes
WARN; no acknowledgement crosses the cut; after the restore the learner acknowledges everything,
including what the actor sent during the cut (resent); the final checkpoint's delivery ledger
holds the actor's stream contiguous through its last sequence number with nothing above, and
``transitions_received`` is the number the actor produced (nothing lost, nothing twice); the actor
ends with the newest weights the learner published (weight broadcasts are frozen through the
learner's live ``learner.weights_period_s`` once delivery caught up, so "newest" is well defined).

An observer process in namespace "a" (beside the actor, as a tool on the robot host would be)
writes what it sees as JSON lines: the actor's transitions (session, sequence number), the acks
that reach the robot side, the weight versions that reach it, the actor's diagnostics and
whether the learner's ack publisher is known to the robot side's graph. The test prints the
measured times (rediscovery after the restore, when the sides forgot each other) and how many
transitions were resent.
"""

import itertools
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from netns_rig import netns_pair
from test_graph_e2e import small_config

from hilserl import graph as G
from hilserl.runner import find_executable
from hilserl_core.rl.learner import WEIGHTS_VERSION_FILE, checkpoints, read_weights_version

pytestmark = [pytest.mark.ros, pytest.mark.slow]

BEFORE_CUT_TRANSITIONS = 200  # transitions the observer saw before the cut
CUT_S = 30.0
ACK_GRACE_S = 0.5  # an ack already in flight when the link is cut may still land just after
STARTUP_BOUND_S = 150.0
RECOVERY_BOUND_S = 60.0  # restore -> everything sent before it acknowledged

OBSERVER = r"""
import json, sys, time
import rclpy
from rclpy.executors import ExternalShutdownException
from diagnostic_msgs.msg import DiagnosticArray
from std_msgs.msg import String, UInt8MultiArray
from hilserl_core.formats import wire
from hilserl_interfaces import payload, qos, topics

out = open(sys.argv[1], "a", buffering=1)
def emit(kind, **rec):
    rec["k"], rec["t"] = kind, time.monotonic()
    out.write(json.dumps(rec) + "\n")

rclpy.init()
node = rclpy.create_node("two_host_observer")

def on_transition(msg):
    arrays, meta = payload.decode(msg)
    emit("tx", s=wire.transition_session(meta), q=int(meta["sequence"]))

def on_weights(msg):
    emit("w", v=wire.arrays_to_weights(*payload.decode(msg))[1])

def on_acks(msg):
    emit("ack", **json.loads(msg.data))

WATCHED = ("/actor: delivery", "/actor: weights", "/actor: actor", "/learner: learner")
def on_diag(msg):
    for st in msg.status:
        if st.name in WATCHED:
            emit("diag", n=st.name, l=st.level[0], m=st.message, v={kv.key: kv.value for kv in st.values})

node.create_subscription(UInt8MultiArray, topics.TRANSITIONS, on_transition, qos.TRANSITIONS)
node.create_subscription(UInt8MultiArray, topics.POLICY_WEIGHTS, on_weights, qos.LATCHED)
node.create_subscription(String, topics.TRANSITION_ACKS, on_acks, qos.ACKS)
node.create_subscription(DiagnosticArray, topics.DIAGNOSTICS, on_diag, qos.EVENTS)

known = [None]
def graph_check():  # is the learner's ack publisher in this side's graph (lease expiry / rediscovery)
    n = node.count_publishers(topics.TRANSITION_ACKS)
    if n != known[0]:
        known[0] = n
        emit("graph", ack_publishers=n)
node.create_timer(0.25, graph_check)
emit("ready")
try:
    rclpy.spin(node)
except (KeyboardInterrupt, ExternalShutdownException):
    pass
"""

SET_PARAM = r"""
import sys
import rclpy
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient

target, name, value = sys.argv[1], sys.argv[2], float(sys.argv[3])
rclpy.init()
node = rclpy.create_node("two_host_param")
client = AsyncParameterClient(node, target)
if not client.wait_for_services(timeout_sec=20.0):
    sys.exit("parameter services of " + target + " not found")
fut = client.set_parameters([Parameter(name, value=value)])
rclpy.spin_until_future_complete(node, fut, timeout_sec=20.0)
res = fut.result()
if res is None or not res.results[0].successful:
    sys.exit("set " + name + " failed: " + (res.results[0].reason if res else "timeout"))
print("set", name, value)
"""


class Record:
    """The observer's JSON lines, read again on each poll."""

    def __init__(self, path: Path):
        self.path = path
        self._pos = 0
        self.recs = []

    def poll(self):
        with open(self.path) as f:
            f.seek(self._pos)
            chunk = f.read()
        end = chunk.rfind("\n") + 1  # only whole lines
        self._pos += len(chunk[:end].encode())
        for line in chunk[:end].splitlines():
            if line.strip():
                self.recs.append(json.loads(line))
        return self.recs

    def of(self, kind, since=float("-inf"), until=float("inf")):
        return [r for r in self.recs if r["k"] == kind and since <= r["t"] < until]

    def sent(self):
        """{(session, seq): times seen} of the actor's transitions (first sends and resends)."""
        out = {}
        for r in self.of("tx"):
            out[(r["s"], r["q"])] = out.get((r["s"], r["q"]), 0) + 1
        return out

    def acked_through(self, session, since=float("-inf")):
        for r in reversed(self.of("ack", since)):
            for s in r["streams"]:
                if s["session"] == session:
                    return s["through"]
        return -1

    def diag(self, name, since=float("-inf")):
        return [r for r in self.of("diag", since) if r["n"] == name]


def loop_stats(rec, session, a, b):
    """The actor's transitions first sent in [a, b) per second, the longest gap between them and
    between the actor's diagnostics (a 1 s timer of its executor) as they reached the observer."""
    seen, first = set(), []
    for r in rec.of("tx"):
        if r["s"] == session and r["q"] not in seen:
            seen.add(r["q"])
            if a <= r["t"] < b:
                first.append(r["t"])
    diag = [r["t"] for r in rec.diag("/actor: delivery", a) if r["t"] < b]

    def longest(ts):
        return max((y - x for x, y in itertools.pairwise(ts)), default=float("nan"))

    return (f"{len(first) / (b - a):.1f} transitions/s, longest gap {longest(first):.1f} s "
            f"(diagnostics {longest(diag):.1f} s)")


def tail(path: Path, n=4000) -> str:
    try:
        return path.read_text()[-n:]
    except OSError:
        return ""


def test_robot_and_learner_on_two_hosts_survive_a_30s_link_cut(tmp_path):
    t_start = time.monotonic()
    cfg = small_config(tmp_path)
    params = cfg / "params" / "learner.yaml"
    doc = yaml.safe_load(params.read_text())
    doc["/**"]["ros__parameters"]["log_period_s"] = 5.0
    params.write_text(yaml.safe_dump(doc))
    ckpt = tmp_path / "ckpt"
    graph = G.load_graph("sim_single_arm", {"checkpoint_dir": str(ckpt), "operator": "assist"}, cfg_dir=cfg)
    procs = G.processes(graph)
    assert not any(p.composed for p in procs)
    sides = {p.key: ("b" if p.key == "/learner" else "a") for p in procs}
    assert sorted(sides.values()).count("b") == 1 and "/actor" in sides, sides
    argv = {}
    for p in procs:
        package, executable, args = G.process_command(p)
        argv[p.key] = [find_executable(package, executable)] + args
    (tmp_path / "observer.py").write_text(OBSERVER)
    (tmp_path / "set_param.py").write_text(SET_PARAM)
    logs = tmp_path / "logs"
    logs.mkdir()
    obs_path = tmp_path / "observer.jsonl"
    obs_path.touch()
    rec = Record(obs_path)
    report = []

    with netns_pair() as rig:
        files, nodes = [], {}

        def start(key, side, cmd):
            f = open(logs / f"{key.strip('/').replace('/', '_')}.log", "w")  # noqa: SIM115 (closed at the end)
            files.append(f)
            nodes[key] = rig.popen(side, cmd, stdout=f, stderr=subprocess.STDOUT)

        def log_of(key):
            return tail(logs / f"{key.strip('/').replace('/', '_')}.log")

        def wait(pred, timeout_s, what):
            t0 = time.monotonic()
            while time.monotonic() - t0 < timeout_s:
                rec.poll()
                dead = {k: p.returncode for k, p in nodes.items() if p.poll() is not None and k not in stopped}
                assert not dead, f"{what}: node(s) stopped: {dead}\n" + "\n".join(
                    f"--- {k} ---\n{log_of(k)}" for k in dead)
                if pred():
                    return time.monotonic() - t0
                time.sleep(0.2)
            return None

        stopped = set()
        try:
            start("observer", "a", [sys.executable, "-u", tmp_path / "observer.py", obs_path])
            for p in procs:
                start(p.key, sides[p.key], argv[p.key])

            # -- a few hundred transitions flow, the learner acknowledges them, weights reach the actor
            def session():
                ss = {s for s, _ in rec.sent()}
                assert len(ss) <= 1, ss  # one actor process all along
                return next(iter(ss), None)

            def flowing():
                s = session()
                return (s is not None and len(rec.sent()) >= BEFORE_CUT_TRANSITIONS
                        and rec.acked_through(s) >= BEFORE_CUT_TRANSITIONS // 2 and rec.of("w"))

            took = wait(flowing, STARTUP_BOUND_S, "start")
            assert took is not None, (f"{len(rec.sent())} transitions, acks {rec.of('ack')[-1:]}\n--- actor ---\n"
                                      f"{log_of('/actor')}\n--- learner ---\n{log_of('/learner')}")
            sid = session()
            report.append(f"start: {len(rec.sent())} transitions, acked through {rec.acked_through(sid)} "
                          f"{time.monotonic() - t_start:.1f} s after the test began")
            versions_before = [r["v"] for r in rec.of("w")]

            # -- cut the link for CUT_S; the robot side goes on acting and spooling
            t_cut = time.monotonic()
            rig.cut("loss")
            warned = None
            while time.monotonic() - t_cut < CUT_S:
                rec.poll()
                if warned is None:
                    w = [r for r in rec.diag("/actor: delivery", t_cut) if r["l"] == 1 and "no acknowledgement" in r["m"]]
                    warned = w[0] if w else None
                assert all(p.poll() is None for p in nodes.values()), {k: p.returncode for k, p in nodes.items()}
                time.sleep(0.5)
            dropped = rig.dropped_packets()
            rec.poll()
            t_restore = time.monotonic()
            rig.restore()
            sent_in_cut = [q for s, q in rec.sent() if s == sid]
            last_before_restore = max(sent_in_cut)
            in_cut = [r for r in rec.of("tx", t_cut, t_restore)]
            acks_in_cut = rec.of("ack", t_cut + ACK_GRACE_S, t_restore)
            assert not acks_in_cut, f"{len(acks_in_cut)} acks crossed the cut link: {acks_in_cut[:2]}"
            assert len(in_cut) >= 0.5 * CUT_S * 5, f"the actor sent only {len(in_cut)} transitions during the cut"
            assert warned is not None, ("the actor's delivery diagnostic did not go WARN during the cut: "
                                        f"{rec.diag('/actor: delivery', t_cut)[-3:]}")
            graph_ev = rec.of("graph", t_cut, t_restore)
            forgot = next((r["t"] - t_cut for r in graph_ev if r["ack_publishers"] == 0), None)
            spooled_at_end = rec.diag("/actor: delivery", t_cut)[-1]["v"].get("spooled")
            # how the robot side's loop fared: first sends per second, longest silence of the actor
            # (its diagnostics come every second from a timer), before the cut and in two parts of it
            lease_end = t_cut + forgot if forgot is not None else t_restore
            loop = {name: loop_stats(rec, sid, a, b) for name, (a, b) in {
                "20 s before the cut": (t_cut - 20, t_cut), "cut until the lease expired": (t_cut, lease_end),
                "rest of the cut": (lease_end, t_restore)}.items() if b - a > 2}
            report.append(
                f"cut {t_restore - t_cut:.1f} s (packets dropped a/b {dropped['a']}/{dropped['b']}): actor sent "
                f"{len(in_cut)} transitions, delivery WARN {warned['t'] - t_cut:.1f} s after the cut "
                f"('{warned['m']}'), spooled {spooled_at_end} at the end; robot side forgot the learner's ack "
                f"publisher {f'{forgot:.1f} s after the cut' if forgot is not None else 'never (lease not expired)'}")

            report.append("robot side's loop: " + "; ".join(f"{k}: {v}" for k, v in loop.items()))

            # -- after the restore: rediscovery, then everything sent so far is acknowledged (resent)
            took = wait(lambda: rec.of("ack", t_restore), RECOVERY_BOUND_S, "rediscovery")
            assert took is not None, f"no ack reached the robot side within {RECOVERY_BOUND_S} s of the restore"
            first_ack = rec.of("ack", t_restore)[0]["t"] - t_restore
            rediscovered = next((r["t"] - t_restore for r in rec.of("graph", t_restore) if r["ack_publishers"] > 0), None)
            took = wait(lambda: rec.acked_through(sid) >= last_before_restore, RECOVERY_BOUND_S, "recovery")
            assert took is not None, (f"acks stuck at {rec.acked_through(sid)} < {last_before_restore} "
                                      f"{RECOVERY_BOUND_S} s after the restore; delivery: "
                                      f"{rec.diag('/actor: delivery')[-1:]}\n--- actor ---\n{log_of('/actor')}")
            caught_up = time.monotonic() - t_restore
            took = wait(lambda: [r["v"] for r in rec.of("w", t_restore)], 20, "weights after the restore")
            assert took is not None, "no new weights reached the robot side after the restore"
            new_versions = [r["v"] for r in rec.of("w", t_restore)]
            assert max(new_versions) > max(versions_before), (versions_before, new_versions)

            # -- freeze weight broadcasts, so the newest published version stays the newest
            res = rig.run("b", [sys.executable, tmp_path / "set_param.py", "/learner", "learner.weights_period_s", "3600"])
            assert res.returncode == 0, res.stdout + res.stderr
            time.sleep(0.5)  # a broadcast already under way when the parameter changed
            newest = read_weights_version(ckpt / WEIGHTS_VERSION_FILE)

            def actor_version():
                w = rec.diag("/actor: weights")
                return w[-1]["m"] if w else None

            took = wait(lambda: actor_version() == f"policy weights v{newest}", 20, "newest weights")
            assert took is not None, (newest, actor_version(), rec.of("w")[-3:])

            # -- stop the actor (Ctrl-C): it acts no more, waits for the learner to confirm what it sent
            # (drain), and says so
            stopped.add("/actor")
            nodes["/actor"].send_signal(signal.SIGINT)
            nodes["/actor"].wait(timeout=30)
            assert nodes["/actor"].returncode == 0, log_of("/actor")
            rec.poll()
            actor_log = (logs / "actor.log").read_text()
            m = re.search(r"the learner confirmed all (\d+) transition\(s\) sent in session (\w+)", actor_log)
            assert m and m.group(2) == sid, actor_log[-3000:]
            produced = int(m.group(1))
            took = wait(lambda: rec.acked_through(sid) == produced - 1, 10, "final acks")
            assert took is not None, (rec.acked_through(sid), produced)
            sent = rec.sent()
            seen = sorted(q for s, q in sent if s == sid)
            # the observer matched the actor's writer a moment after the actor's first transitions
            missed = sorted(set(range(produced)) - set(seen))
            assert seen[-1] == produced - 1 and all(q < 50 for q in missed), (missed[:10], len(seen), produced)
            actor_final = actor_version()
            resent = sum(n > 1 for n in sent.values())
            delivery = rec.diag("/actor: delivery")[-1]["v"]
            learner_diag = rec.diag("/learner: learner")[-1]["v"]

            # -- stop the learner (Ctrl-C): final checkpoint
            stopped.add("/learner")
            nodes["/learner"].send_signal(signal.SIGINT)
            nodes["/learner"].wait(timeout=60)
            assert nodes["/learner"].returncode == 0, log_of("/learner")
            newest_at_end = read_weights_version(ckpt / WEIGHTS_VERSION_FILE)
            for key, proc in nodes.items():
                if proc.poll() is None:
                    stopped.add(key)
                    proc.send_signal(signal.SIGINT)
            for key, proc in nodes.items():
                proc.wait(timeout=20)
        finally:
            for f in files:
                f.close()
            print("\n" + "\n".join(f"two hosts: {line}" for line in report))

    bad = {k: p.returncode for k, p in nodes.items() if p.returncode != 0}
    assert not bad, f"nodes did not stop cleanly: {bad}"
    new_versions = [r["v"] for r in rec.of("w", t_restore)]
    final = checkpoints(ckpt)[0]
    meta = json.loads((final / "learner.json").read_text())
    assert meta["transitions_received"] == produced, (meta["transitions_received"], produced)
    assert [(s["session"], s["through"], s["above"]) for s in meta["delivery"]["ledger"]] == [(sid, produced - 1, [])]
    assert actor_final == f"policy weights v{newest_at_end}", (actor_final, newest_at_end)
    assert resent > 0, "nothing was resent: the cut did not hit in-flight transitions"

    report.append(
        f"restore: first ack on the robot side {first_ack:.2f} s after it (learner's ack publisher back in the "
        f"robot side's graph {f'{rediscovered:.2f} s' if rediscovered is not None else '?'}), everything sent "
        f"until the restore (through {last_before_restore}) acknowledged {caught_up:.1f} s after it")
    report.append(
        f"resent: {resent} transitions seen twice or more on the robot side (actor's count: {delivery.get('resent')}); "
        f"produced {produced}, stored {meta['transitions_received']}, duplicates refused by the learner "
        f"{learner_diag.get('duplicate_transitions')}; weights v{max(versions_before)} before the cut, "
        f"v{min(new_versions)}..v{max(new_versions)} after it, actor ended with v{newest_at_end} (= newest)")
    report.append(f"total {time.monotonic() - t_start:.1f} s")
    print("\n".join(f"two hosts: {line}" for line in report[-3:]))
