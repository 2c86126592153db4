"""Soak: `hilserl train` for an hour while the learner is killed with SIGKILL every 10 minutes.

The runner respawns the learner; it resumes from its newest checkpoint and takes back from its
transition log what that checkpoint lacks, and the actor resends what was never confirmed. At
the end the actor is stopped first (it waits for the learner to confirm what it sent), then the
graph. Measured:

- transitions lost: the actor's count (its last log line) minus what the learner's final
  checkpoint holds of that actor session (its delivery ledger), target 0;
- duplicates: transitions_received in the final checkpoint beyond the actor's count, target 0;
- memory: the resident memory of every process of the graph, sampled every 10 s; the growth
  after both buffers are full (``--rl-capacity``, default 12000 transitions: full after about
  20 minutes at 10 Hz; ``--demo-capacity``, default 3000: the 20 demo episodes and the
  interventions, which go into both buffers, fill it sooner) as MB per hour, from the medians
  of the first and last 5 minutes after the buffers filled (the first learner progress line
  from which neither buffer's count grows: both within 2 % of their largest), leaving out the 2 minutes after each restart of the learner
  (restarts included: a restarted learner loads its checkpoint and log); and within each
  learner process's life after the fill (median and largest over those lives); target flat.
  A buffer that is still filling grows the learner by the size of what it stores, so the
  growth is only a leak measure once both are full.

Reproduce (after scripts/setup.sh; takes --minutes plus the demo recording on first use):
    cd /work/main && source scripts/env.sh && python benchmarks/soak.py
    (options: --minutes 60 --kill-every-min 10 --rl-capacity 12000 --demo-capacity 3000 --run DIR, graph arguments
     after --, e.g. -- task:=pick_cube)

Writes RUN/soak.csv (time, memory per process, learner buffer) and RUN/soak.png; the last line
is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import signal
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import machine  # noqa: E402  (benchmarks/machine.py)
from hilserl_core.accel.allocator import resident_mb  # noqa: E402


def children(pid: int) -> dict:
    """pid -> command line of the processes whose parent is ``pid``."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                out[int(entry)] = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
    return out


def role(cmdline: str) -> str:
    for name in ("learner_node", "actor_node", "sim_node", "reward_node", "mux_node", "crop_node", "operator"):
        if name in cmdline:
            return name
    return "other"


class Soak(threading.Thread):
    def __init__(self, minutes: float, kill_every_s: float, sample_s: float = 10.0) -> None:
        super().__init__(daemon=True, name="soak")
        self.end_s = minutes * 60.0
        self.kill_every_s, self.sample_s = kill_every_s, sample_s
        self.samples = []  # (t_s, total_mb, {role: mb})
        self.kills = []  # t_s of each SIGKILL
        self.stopped_actor = False
        self.t0 = time.monotonic()
        self.wall0 = time.time()  # the node logs' clock, for buffers_full_s

    def run(self) -> None:
        next_kill, next_sample = self.kill_every_s, 0.0
        while True:
            t = time.monotonic() - self.t0
            procs = children(os.getpid())
            if t >= next_sample:
                by_role = {}
                for pid, cmd in procs.items():
                    by_role[role(cmd)] = by_role.get(role(cmd), 0.0) + resident_mb(pid)
                self.samples.append((t, sum(by_role.values()) + resident_mb(), by_role))
                next_sample += self.sample_s
            if t >= self.end_s:
                actor = [pid for pid, cmd in procs.items() if "actor_node" in cmd]
                print(f"[soak] {t / 60:.1f} min: stopping the actor (it waits for the learner to confirm)", flush=True)
                for pid in actor:
                    os.killpg(pid, signal.SIGINT)
                self.stopped_actor = True
                return  # hilserl train stops the graph once the actor has exited
            if t >= next_kill:
                learner = [pid for pid, cmd in procs.items() if "learner_node" in cmd]
                for pid in learner:
                    os.killpg(pid, signal.SIGKILL)
                if learner:
                    self.kills.append(t)
                    print(f"[soak] {t / 60:.1f} min: SIGKILL learner (pid {learner[0]}), kill {len(self.kills)}", flush=True)
                next_kill += self.kill_every_s
            time.sleep(1.0)


_BUFFERS = re.compile(r"\[(\d+\.\d+)\] \[learner\]: updates .*?buffers demo (\d+) / rl (\d+)")


def buffers_full_s(log: str, wall0: float) -> float:
    """Seconds from ``wall0`` to the first learner progress line in ``log`` from which neither
    buffer grows any more: both at 98 % or more of the largest count they reach in the run (their
    plateau; a full buffer counts fewer transitions than its capacity, as its slots also hold
    each episode's last observation). inf if there are no progress lines."""
    points = [(float(m.group(1)), int(m.group(2)), int(m.group(3))) for m in _BUFFERS.finditer(log)]
    if not points:
        return float("inf")
    top_demo, top_rl = max(p[1] for p in points), max(p[2] for p in points)
    for t, demo, rl in points:
        if demo >= 0.98 * top_demo and rl >= 0.98 * top_rl:
            return t - wall0
    return float("inf")


def growth_within_runs_mb_per_h(samples, kills, fill_s):
    """Growth of each learner process's lifetime after the buffer filled (from 2 min after its
    start to the next kill): the median over lifetimes of (last fifth - first fifth) per hour,
    and the largest; a restart itself shows up in ``growth_mb_per_h`` only."""
    bounds = [fill_s] + [k for k in kills if k > fill_s] + [samples[-1][0] + 1.0 if samples else fill_s]
    rates = []
    for a, b in zip(bounds, bounds[1:]):
        start = a if a == fill_s else a + 120.0
        pts = [(t, mb) for t, mb, _ in samples if start <= t < b - 5.0]
        if len(pts) < 6:
            continue
        n = max(3, len(pts) // 5)
        dt_h = (statistics.median([t for t, _ in pts[-n:]]) - statistics.median([t for t, _ in pts[:n]])) / 3600.0
        rates.append((statistics.median([mb for _, mb in pts[-n:]]) - statistics.median([mb for _, mb in pts[:n]])) / dt_h)
    return (statistics.median(rates), max(rates)) if rates else (None, None)


def growth_mb_per_h(samples, kills, fill_s):
    """Memory growth after the buffer filled: medians of the first and last 5 minutes after
    ``fill_s``, without the 2 minutes after each kill."""
    def quiet(t):
        return t >= fill_s and not any(k <= t < k + 120.0 for k in kills)
    pts = [(t, mb) for t, mb, _ in samples if quiet(t)]
    if len(pts) < 4 or pts[-1][0] - pts[0][0] < 600.0:
        return None, None, None
    first = [mb for t, mb in pts if t < pts[0][0] + 300.0]
    last = [mb for t, mb in pts if t > pts[-1][0] - 300.0]
    a, b = statistics.median(first), statistics.median(last)
    hours = (statistics.median([t for t, _ in pts if t > pts[-1][0] - 300.0])
             - statistics.median([t for t, _ in pts if t < pts[0][0] + 300.0])) / 3600.0
    return (b - a) / hours, a, b


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setup", default="sim_single_arm")
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--kill-every-min", type=float, default=10.0)
    ap.add_argument("--rl-capacity", type=int, default=12000)
    ap.add_argument("--demo-capacity", type=int, default=3000)
    ap.add_argument("--run", default="runs/soak")
    ap.add_argument("graph_args", nargs="*", metavar="name:=value")
    a = ap.parse_args()
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    from hilserl.graph import parse_overrides
    from hilserl.train import run_train
    from hilserl_core.rl.learner import checkpoints

    run = Path(a.run)
    if run.exists():
        print(f"{run} exists: a soak starts from nothing (give --run another directory)", file=sys.stderr)
        return 2
    print(machine.summary(machine.describe()), flush=True)
    soak = Soak(a.minutes, a.kill_every_min * 60.0)
    soak.start()
    args = {**parse_overrides(a.graph_args), "steps": str(10 ** 7), "run": str(run)}
    run_train(a.setup, args, node_params={"learner_node": {"learner.rl_capacity": a.rl_capacity,
                                                           "learner.demo_capacity": a.demo_capacity}})
    soak.join(timeout=5.0)

    log = (run / "graph.log").read_text()
    m = re.findall(r"confirmed all (\d+) transition\(s\) sent in session (\w+)|\(sent (\d+) in session (\w+)\)", log)
    if not m:
        print("no final line from the actor in graph.log", file=sys.stderr)
        return 1
    g = m[-1]
    sent, session = (int(g[0]), g[1]) if g[0] else (int(g[2]), g[3])
    final = checkpoints(run / "checkpoints")[0]
    meta = json.loads((final / "learner.json").read_text())
    mine = [s for s in meta["delivery"]["ledger"] if s["session"] == session]
    stored = (mine[0]["through"] + 1 + len(mine[0]["above"])) if mine else 0
    demos = int(meta.get("demos_added", 0))  # demo files: counted apart from transitions_received
    received = int(meta["transitions_received"])
    fill_s = buffers_full_s(log, soak.wall0)
    growth, before, after = growth_mb_per_h(soak.samples, soak.kills, fill_s)
    within, within_max = growth_within_runs_mb_per_h(soak.samples, soak.kills, fill_s)

    with open(run / "soak.csv", "w", newline="") as f:
        roles = sorted({r for _, _, by in soak.samples for r in by})
        w = csv.writer(f)
        w.writerow(["t_s", "total_mb"] + [f"{r}_mb" for r in roles])
        for t, total, by in soak.samples:
            w.writerow([f"{t:.0f}", f"{total:.1f}"] + [f"{by.get(r, 0.0):.1f}" for r in roles])
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(8, 4))
        ts = [t / 60 for t, _, _ in soak.samples]
        ax.plot(ts, [mb for _, mb, _ in soak.samples], label="all processes")
        for r in roles:
            ax.plot(ts, [by.get(r, 0.0) for _, _, by in soak.samples], label=r, lw=0.8)
        for k in soak.kills:
            ax.axvline(k / 60, color="k", ls=":", lw=0.8)
        ax.axvline(min(fill_s, ts[-1] * 60) / 60, color="r", ls="--", lw=0.8, label="both buffers full")
        ax.set_xlabel("minutes (dotted: learner SIGKILL)")
        ax.set_ylabel("resident memory, MB")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(run / "soak.png", dpi=100)
    except ImportError:
        pass

    figures = {
        "minutes": round(soak.samples[-1][0] / 60, 1) if soak.samples else 0.0, "learner_kills": len(soak.kills),
        "started_unix_s": round(soak.wall0, 1),
        "transitions_sent": sent, "transitions_stored": stored, "transitions_lost": sent - stored,
        "duplicates_stored": max(0, received - sent),
        "rl_capacity": a.rl_capacity, "demo_capacity": a.demo_capacity,
        "buffers_full_min": round(fill_s / 60, 1) if fill_s != float("inf") else None,
        "memory_growth_after_full_mb_per_h": None if growth is None else round(growth, 1),
        "memory_growth_within_learner_run_mb_per_h": None if within is None else round(within, 1),
        "memory_growth_within_learner_run_max_mb_per_h": None if within_max is None else round(within_max, 1),
        "memory_after_full_mb": None if before is None else round(before, 1),
        "memory_end_mb": None if after is None else round(after, 1),
    }
    print(f"[soak] final checkpoint {final}: {received} transitions received (demos {demos}); actor sent {sent} "
          f"in session {session}; stored of it {stored}")
    print("reproduce: cd /work/main && source scripts/env.sh && python benchmarks/soak.py " + " ".join(sys.argv[1:]))
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
