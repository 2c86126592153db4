"""Camera -> controller-target latency through crop, actor and mux, and weight broadcast cost.

Starts the real nodes over DDS on loopback (crop node per camera, actor, intervention
mux per arm, learner) from a graph description like the launch files use: each node a
process of its own, or with ``--compose`` the crop nodes, actor and muxes in one
``compose_nodes`` process (the graph's ``process:`` option, as ``hot_path_process``
does in config/graphs). This script plays camera driver and robot: on a 10 Hz timer
it publishes raw camera images (all cameras of a frame set with one stamp) and robot
state, and measures, for every frame set, the time from publishing the images to the
mux's report that it sent the controller target for the action chosen on those frames
(``mux/executed`` is published right after ``target_pose``, in the same callback, and
carries the observation's image stamp). Stamps are matched to the nanosecond stamp
published, within 10 us (the nodes carry stamps as float seconds).

``--breakdown`` also subscribes to the cropped images and policy actions and splits
each answered frame set into hops as this observer sees them: camera publish -> last
cropped image of the arm (crop), -> policy action (actor: inputs, policy, grasp
critic, publish), -> mux/executed (mux); plus the actor's own policy-compute p50 from
its diagnostics and, for frame sets never answered, the hop where they stopped. The
observer's own scheduling adds to each hop (the three hops add up to the end-to-end
figure, ±1-2 ms of ordering noise).

The latency phase runs ``--repeats`` times (default 3), the graph started afresh each
time, and every percentile reported is the median over the runs (each run's p50 and p99
are in the JSON too): on a shared machine one run's p99 swings by several milliseconds.

Weights: size of the learner's policy-weights message and the time from the
learner publishing it to the actor having loaded it (the actor's diagnostics
report the version it uses; its transient-local subscription is reliable).

    python benchmarks/latency.py                 # dual arm, 2 cameras per arm
    python benchmarks/latency.py --arms 1 --frames 200
    python benchmarks/latency.py --arms 2 --compose --breakdown --no-weights
    python benchmarks/latency.py --encoder-dtype int8   # int8 frozen encoder (graph argument encoder_dtype)
    python benchmarks/latency.py --breakdown --encoder-dtype int8 --encoder-threads 2   # two cores for the actor's frames

The last line is one JSON object with the figures (with the 1-minute load average:
the machine may be shared).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(150 + os.getpid() % 50))

import machine  # noqa: E402  (benchmarks/machine.py)
import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from geometry_msgs.msg import PoseStamped, TwistStamped, WrenchStamped  # noqa: E402
from sensor_msgs.msg import Image, JointState, Joy  # noqa: E402
from std_msgs.msg import UInt8MultiArray  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from hilserl import graph as G  # noqa: E402
from hilserl.runner import GraphRunner  # noqa: E402
from hilserl_core.accel import fused_heads
from hilserl_core.formats import (
    msgconv,
    wire,  # noqa: E402
)
from hilserl_core.robot import frames
from hilserl_core.accel.threaded_encoder import resolve_encoder_threads  # noqa: E402
from hilserl_core.vision.encoders import ENCODER_DTYPES, load_frozen_encoder, resolve_encoder_dtype  # noqa: E402
from hilserl_interfaces import actions, node_main, payload, qos, topics  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ARM_NAMES = ["left", "right"]
RESET_SERVICE = "/latency_driver/reset"  # the driver plays the robot: its "scene" is ready at once
CAMERAS = ["wrist", "side"]
# the targets of the node-graph issue: camera -> controller target p99, and per weight update
TARGET_P99_MS = 25.0
TARGET_WEIGHTS_BYTES = 4_000_000
TARGET_DELIVERY_S = 0.5


def verdict(figures: dict) -> dict:
    """Each target: True (met), False (missed) or None (not measured in this run)."""
    w, d = figures["weights_bytes"], figures["weights_delivery_max_s"]
    return {
        "latency_p99_le_25ms": figures["latency_p99_ms"] <= TARGET_P99_MS,
        "weights_le_4MB": None if w is None else w <= TARGET_WEIGHTS_BYTES,
        "weights_delivery_lt_0.5s": None if d is None else d < TARGET_DELIVERY_S,
    }


def write_graph(cfg: Path, arms: list, compose: bool = False, encoder_dtype: str = "auto", actor_threads: int = 0,
                encoder_threads: int = 0) -> None:
    cams = [f"{a}/{c}" for a in arms for c in CAMERAS]
    hot = {"process": "hot_path"} if compose else {}  # crop nodes, actor and muxes in one process
    doc = {
        "description": "latency benchmark: crop, actor, mux (and a learner for the weight figures)",
        "arguments": {"with_learner": "false"},
        "arms": arms,
        "cameras": CAMERAS,
        "nodes": [
            {"name": "crop_{camera}", "package": "hilserl_perception", "executable": "crop_node", "namespace": "/{arm}",
             "for_each": ["arm", "camera"], "params_files": ["perception_real.yaml"], "parameters": {"camera": "{camera}"}, **hot},
            {"name": "intervention_mux", "package": "hilserl_teleop", "executable": "mux_node", "namespace": "/{arm}",
             "for_each": "arm", "params_files": ["mux.yaml"], **hot},
            {"name": "actor", "package": "hilserl_policy", "executable": "actor_node", "params_files": ["agent.yaml", "actor.yaml"],
             "parameters": {"arms": arms, "cameras": cams, "reset_service": RESET_SERVICE, "max_episode_steps": 100000,
                            "encoder_dtype": encoder_dtype, "encoder_threads": encoder_threads,
                            **({"torch_threads": actor_threads} if actor_threads else {})}, **hot},
            {"name": "learner", "package": "hilserl_learner", "executable": "learner_node", "params_files": ["agent.yaml", "learner.yaml"],
             "condition": "{with_learner}",
             # no operator here, so no demo data: online-only batches, a modest update rate on this shared CPU
             "parameters": {"arms": arms, "cameras": cams, "encoder_dtype": encoder_dtype, "checkpoint_dir": "", "learner.weights_period_s": 1.0,
                            "learner.demo_fraction": 0.0, "learner.learning_starts": 20, "learner.updates_per_transition": 0.2}},
        ],
    }
    (cfg / "graphs" / "latency.yaml").write_text(yaml.safe_dump(doc))


class Driver:
    """Camera driver + robot + observer."""

    def __init__(self, arms, raw, breakdown=False):
        self.node = rclpy.create_node("latency_driver")
        n = self.node
        self.arms = arms
        self.pubs = {}
        for a in arms:
            for c in CAMERAS:
                self.pubs[f"{a}/{c}"] = n.create_publisher(Image, f"/{a}/cameras/{c}/image_raw", qos.COMMAND)
            self.pubs[a] = {
                "pose": n.create_publisher(PoseStamped, f"/{a}/current_pose", qos.COMMAND),
                "twist": n.create_publisher(TwistStamped, f"/{a}/current_twist", qos.COMMAND),
                "wrench": n.create_publisher(WrenchStamped, f"/{a}/external_wrench", qos.COMMAND),
                "gripper": n.create_publisher(JointState, f"/{a}/gripper/joint_states", qos.COMMAND),
            }
            n.create_subscription(Joy, f"/{a}/mux/executed", lambda m, a=a: self.on_executed(a, m), qos.EVENTS)
            if breakdown:  # arrival of each intermediate message, keyed by the image stamp it carries
                for c in CAMERAS:
                    n.create_subscription(Image, f"/{a}/cameras/{c}/image_cropped",
                                          lambda m, k=f"{a}/{c}": self.on_hop(k, m.header.stamp), qos.SENSOR)
                n.create_subscription(Joy, f"/{a}/policy/action", lambda m, a=a: self.on_hop(f"{a}/action", m.header.stamp), qos.COMMAND)
        self.success = n.create_publisher(Joy, topics.REWARD_SUCCESS, qos.EVENTS)
        n.create_service(Trigger, RESET_SERVICE, lambda req, resp: setattr(resp, "success", True) or resp)
        n.create_subscription(UInt8MultiArray, "/learner/policy_weights", self.on_weights, qos.LATCHED)
        n.create_subscription(DiagnosticArray, "/diagnostics", self.on_diag, qos.EVENTS)
        rng = np.random.default_rng(0)
        self.frames = [rng.integers(0, 256, (raw, raw, 3), dtype=np.uint8) for _ in range(4)]
        self.published = {}  # stamp (ns) -> wall time of publishing
        self.by_ms = {}  # stamp // 1 ms -> stamp (ns), for matching stamps that went through float seconds
        self.latency = {a: [] for a in arms}
        self.measuring = False
        self.measured_stamps = []
        self.actor_compute_ms = []  # the actor's own p50 of its policy forward passes, as it reports them
        self.answered = {a: [] for a in arms}  # (stamp, wall time of mux/executed)
        self.hops = {}  # stamp -> {hop key: wall time of arrival at this observer}
        self.weights = {}  # version -> (bytes, receive wall time at the observer)
        self.delivery = {}  # version -> learner publish -> actor loaded, as the actor measured it

    def now(self):
        return self.node.get_clock().now()

    def publish(self, i):
        t = self.now()
        stamp = t.to_msg()
        key = t.nanoseconds
        for a in self.arms:
            p = PoseStamped()
            p.header.stamp = stamp
            msgconv.fill_pose(p.pose, [0.5, 0.0, 0.3], frames.quat_from_euler_xyz(np.pi, 0, 0))
            self.pubs[a]["pose"].publish(p)
            tw = TwistStamped()
            tw.header.stamp = stamp
            self.pubs[a]["twist"].publish(tw)
            wr = WrenchStamped()
            wr.header.stamp = stamp
            self.pubs[a]["wrench"].publish(wr)
            self.pubs[a]["gripper"].publish(JointState(header=p.header, name=["a", "b"], position=[0.04, 0.04]))
        self.success.publish(topics.reward_success_msg(False, 0.0, stamp))  # the verdict on this frame set, at once
        self.published[key] = time.monotonic()
        self.by_ms[key // 1_000_000] = key
        if self.measuring:
            self.measured_stamps.append(key)
        for k, pub in self.pubs.items():
            if "/" in k:
                msg = Image()
                msg.header.stamp = stamp
                msgconv.fill_image(msg, self.frames[i % 4], "rgb8")
                pub.publish(msg)

    def on_executed(self, arm, msg):
        actions.from_joy(msg)  # a malformed report raises here
        k = self.frame_key(msg.header.stamp)
        if k is not None:
            now = time.monotonic()
            self.latency[arm].append(now - self.published[k])
            self.answered[arm].append((k, now))

    def frame_key(self, stamp):
        """The published frame set a stamp names. Stamps pass through float seconds in the
        nodes (about 0.2 us resolution at today's epoch), so match to the nanosecond key
        within 10 us; rounding both to microseconds instead missed ~10% of the frame sets."""
        ns = stamp.sec * 1_000_000_000 + stamp.nanosec
        ms = ns // 1_000_000
        for bucket in (ms, ms - 1, ms + 1):
            k = self.by_ms.get(bucket)
            if k is not None and abs(k - ns) < 10_000:
                return k
        return None

    def on_hop(self, key, stamp):
        k = self.frame_key(stamp)
        if k is not None:
            self.hops.setdefault(k, {})[key] = time.monotonic()

    def hop_breakdown(self, stamps):
        """Median ms per hop over frame sets that were answered: camera publish -> last cropped
        image of the arm seen here, -> policy action, -> mux/executed."""
        rows = {"crop": [], "actor": [], "mux": []}
        total = []
        for a in self.arms:
            for k, t_exec in stamps.get(a, []):
                h = self.hops.get(k, {})
                cams = [h.get(f"{a}/{c}") for c in CAMERAS]
                t_act = h.get(f"{a}/action")
                if None in cams or t_act is None:
                    continue
                t0 = self.published[k]
                rows["crop"].append(max(cams) - t0)
                rows["actor"].append(t_act - max(cams))
                rows["mux"].append(t_exec - t_act)
                total.append(t_exec - t0)
        out = {f"{name}_ms": {"p50": round(float(np.percentile(v, 50)) * 1e3, 2), "p90": round(float(np.percentile(v, 90)) * 1e3, 2)}
               for name, v in rows.items() if v}
        if total:  # where the slowest 5% of actions lost their time: each hop's median over them
            slow = np.asarray(total) >= np.percentile(total, 95)
            out["slowest_5pct_ms"] = {name: round(float(np.median(np.asarray(v)[slow])) * 1e3, 2) for name, v in rows.items()}
        # frame sets published while measuring that got no mux/executed: where they stopped
        done = {k for a in self.arms for k, _ in stamps.get(a, [])}
        lost = {"no_cropped_image": 0, "no_policy_action": 0, "no_executed": 0}
        for k in self.measured_stamps:
            if k in done:
                continue
            h = self.hops.get(k, {})
            if any(f"{a}/{c}" not in h for a in self.arms for c in CAMERAS):
                lost["no_cropped_image"] += 1
            elif any(f"{a}/action" not in h for a in self.arms):
                lost["no_policy_action"] += 1
            else:
                lost["no_executed"] += 1
        out["unanswered"] = lost
        if self.actor_compute_ms:  # median of the actor's reported p50s over the run
            out["actor_policy_compute_ms"] = {"p50": round(statistics.median(self.actor_compute_ms), 2)}
        return out

    def live_deliveries(self) -> dict:
        """version -> delivery time of the updates after v1 (v1 is sent before the actor exists: a late joiner)."""
        return {v: d for v, d in self.delivery.items() if v > 1}

    def on_weights(self, msg):
        _, version = wire.arrays_to_weights(*payload.decode(msg))
        self.weights.setdefault(version, (len(msg.data), time.monotonic()))

    def on_diag(self, msg):
        for s in msg.status:
            if s.name.endswith("/actor: actor"):
                values = {kv.key: kv.value for kv in s.values}
                if "policy_compute_p50_ms" in values:
                    self.actor_compute_ms.append(float(values["policy_compute_p50_ms"]))
            if s.name.endswith("/actor: weights"):
                v = s.message.rsplit("v", 1)[-1]
                values = {kv.key: kv.value for kv in s.values}
                if v.isdigit() and "delivery_s" in values:
                    self.delivery.setdefault(int(v), float(values["delivery_s"]))


# how long the weights phase waits for 3 updates after the first (learner start, 20 transitions, training)
WEIGHTS_WAIT_S = 150


def run_phase(cfg: Path, arms: list, raw: int, frames: int, with_learner: bool, breakdown: bool = False) -> Driver:
    """Start the graph, drive it with camera frames at 10 Hz, return the driver's records."""
    log = io.StringIO()
    runner = GraphRunner(G.load_graph("latency", {"with_learner": str(with_learner).lower()}, cfg_dir=cfg), out=log)
    drv = Driver(arms, raw, breakdown)
    ex = node_main.make_executor()  # the nodes' executor (HILSERL_EXECUTOR), so the observer adds as little
    ex.add_node(drv.node)
    runner.start()
    i = 0

    def tick():
        nonlocal i
        if not driving:
            return
        drv.publish(i)
        i += 1
        if with_learner is False and i % 50 == 0 and measuring:
            print(f"[latency]   {i - first}/{frames} frame sets", flush=True)

    # the camera clock is a timer in this process's executor: no busy polling that would take
    # CPU from the nodes under test on a small machine
    drv.node.create_timer(0.1, tick)
    driving = False

    def drive(until, stop=lambda: False):
        nonlocal driving
        driving = True
        while time.monotonic() < until and not stop():
            if runner.poll() is not None:
                raise RuntimeError("a node died:\n" + log.getvalue()[-3000:])
            ex.spin_once(timeout_sec=0.05)
        driving = False

    measuring, first = False, 0
    try:
        print(f"[latency] {len(runner.graph.nodes)} nodes in {len(runner.processes)} processes starting; warming up ...", flush=True)
        drive(time.monotonic() + 120, lambda: all(len(v) >= 10 for v in drv.latency.values()))
        if not all(drv.latency.values()):
            raise RuntimeError("no actions came back during warm-up:\n" + log.getvalue()[-3000:])
        if with_learner:
            print("[latency] measuring weight broadcasts (learner training on the actor's transitions) ...", flush=True)
            drive(time.monotonic() + WEIGHTS_WAIT_S, lambda: len(drv.live_deliveries()) >= 3)
            got = sorted(drv.live_deliveries())
            if len(got) < 3:  # reported as not measured; say why, with what the nodes printed
                print(f"[latency] weights: {len(got)} of 3 updates after v1 reached the actor in {WEIGHTS_WAIT_S} s "
                      f"(versions published and seen: {sorted(drv.weights)}, delivered: {sorted(drv.delivery)}); "
                      f"the graph's output:\n{log.getvalue()[-4000:]}", file=sys.stderr, flush=True)
        else:
            for v in list(drv.latency.values()) + list(drv.answered.values()):
                v.clear()
            print(f"[latency] measuring {frames} frame sets at 10 Hz ...", flush=True)
            measuring, first = True, i
            drv.measuring = True
            drive(time.monotonic() + frames * 0.1 + 0.05)
            drv.measuring = False
            end = time.monotonic() + 2.0
            while time.monotonic() < end:
                ex.spin_once(timeout_sec=0.01)
    finally:
        runner.shutdown()
        ex.shutdown()
        drv.node.destroy_node()
    return drv


def run_latency(drv: Driver, n_arms: int) -> dict:
    """One latency run's camera -> controller-target figures (ms) over its measured frame sets."""
    measured = set(drv.measured_stamps)
    lat = np.array([t - drv.published[k] for v in drv.answered.values() for k, t in v if k in measured]) * 1e3
    if not len(lat):
        raise RuntimeError("no frame set measured was answered")
    return {"latency_ms": lat, "expected": len(measured) * n_arms, "p50": float(np.percentile(lat, 50)),
            "p90": float(np.percentile(lat, 90)), "p99": float(np.percentile(lat, 99)), "max": float(lat.max())}


def encoder_pass_ms(images: int, repeats: int = 30, encoder_dtype: str = "auto") -> tuple:
    """Median time of one frozen ResNet-10 pass over ``images`` 128 px images, one torch thread
    (as the actor runs it): the compute floor of the actor's hop on this machine; and what the
    setting runs here (``ResNet10Encoder.forward_path``)."""
    import torch

    encoder = load_frozen_encoder(compute_dtype=encoder_dtype)
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (images, 128, 128, 3), dtype=np.uint8))
    return machine.one_thread_median_s(lambda: encoder(x), repeats) * 1e3, encoder.forward_path()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arms", type=int, choices=(1, 2), default=2)
    ap.add_argument("--frames", type=int, default=300, help="frame sets to measure (10 Hz)")
    ap.add_argument("--raw", type=int, default=128, help="raw camera image side in pixels (the simulator renders 128)")
    ap.add_argument("--breakdown", action="store_true", help="also time each hop (crop, actor, mux) by observing the intermediate topics")
    ap.add_argument("--compose", action="store_true", help="run crop nodes, actor and muxes in one process (graph `process:`)")
    ap.add_argument("--no-weights", action="store_true", help="skip the weight-broadcast phase (latency only)")
    ap.add_argument("--repeats", type=int, default=3,
                    help="latency runs, each with the graph started afresh; every percentile reported is the median over them")
    ap.add_argument("--encoder-dtype", choices=ENCODER_DTYPES, default="auto",
                    help="the actor's (and learner's) frozen-encoder precision, graph argument encoder_dtype")
    ap.add_argument("--actor-threads", type=int, default=0, help="the actor's torch_threads (default: config/params/actor.yaml)")
    ap.add_argument("--encoder-threads", type=int, default=0,
                    help="the actor's encoder_threads: threads sharing out each step's frames for the frozen encoder, each on its own core "
                         "(0 = the actor's auto: 2 with 4+ CPUs, else 1)")
    args = ap.parse_args(argv)
    arms = ARM_NAMES[: args.arms]
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
    cmd = f"python benchmarks/latency.py --arms {args.arms} --frames {args.frames} --raw {args.raw} --repeats {args.repeats}"
    cmd += " --compose" * args.compose + " --breakdown" * args.breakdown + " --no-weights" * args.no_weights
    cmd += f" --encoder-dtype {args.encoder_dtype}" * (args.encoder_dtype != "auto") + f" --actor-threads {args.actor_threads}" * bool(args.actor_threads)
    cmd += f" --encoder-threads {args.encoder_threads}" * (args.encoder_threads != 0)
    for env in (node_main.EXECUTOR_ENV, fused_heads.ENV, "HILSERL_NATIVE"):  # inherited by every node process
        if os.environ.get(env):
            cmd = f"{env}={os.environ[env]} {cmd}"
    host = machine.describe()
    pass_ms, encoder_forward = encoder_pass_ms(len(arms) * len(CAMERAS), encoder_dtype=args.encoder_dtype)
    host[f"encoder_pass_{len(arms) * len(CAMERAS)}_images_ms"] = round(pass_ms, 2)
    print(f"[latency] {machine.summary(host)}; frozen ResNet-10 ({args.encoder_dtype}: {encoder_forward}) over {len(arms) * len(CAMERAS)} images, one thread, "
          f"alone: {host[f'encoder_pass_{len(arms) * len(CAMERAS)}_images_ms']} ms", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="hilserl_latency_"))
    cfg = tmp / "config"
    shutil.copytree(ROOT / "config", cfg)
    write_graph(cfg, arms, args.compose, args.encoder_dtype, args.actor_threads, args.encoder_threads)
    rclpy.init()
    try:
        # Phase 1: latency with crop, actor and mux (on a robot the learner runs on another machine),
        # `repeats` times, each with the graph started afresh.
        runs = []
        for r in range(args.repeats):
            if args.repeats > 1:
                print(f"[latency] run {r + 1}/{args.repeats}", flush=True)
            runs.append(run_phase(cfg, arms, args.raw, args.frames, with_learner=False, breakdown=args.breakdown))
        # Phase 2: weight broadcasts from a learner training on this machine.
        w_drv = None if args.no_weights else run_phase(cfg, arms, args.raw, args.frames, with_learner=True)
    finally:
        rclpy.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)

    per_run = [run_latency(drv, len(arms)) for drv in runs]
    lat = np.concatenate([r["latency_ms"] for r in per_run])
    answered = len(lat) / sum(r["expected"] for r in per_run)
    median_run = sorted(range(len(runs)), key=lambda i: per_run[i]["p99"])[len(runs) // 2]  # the run with the median p99
    live = w_drv.live_deliveries() if w_drv else {}
    sizes = [w_drv.weights[v][0] for v in live if v in w_drv.weights] if w_drv else []
    figures = {
        "arms": len(arms),
        "cameras_per_arm": len(CAMERAS),
        "raw_image_px": args.raw,
        "frames": args.frames,
        "composed": args.compose,
        "encoder_dtype": args.encoder_dtype,
        "encoder_forward": encoder_forward,  # what the setting runs here
        "actor_torch_threads": args.actor_threads or "default",
        "actor_encoder_threads": resolve_encoder_threads(args.encoder_threads, len(arms) * len(CAMERAS)),  # as the actor resolves it
        "executor": node_main.executor_kind(),
        "fused_heads": fused_heads.enabled(),  # the actor's image heads (fused_heads.py)
        "answered_fraction": round(answered, 3),
        "repeats": args.repeats,
        # each percentile: the median over the runs (each run's own figure in *_runs)
        **{f"latency_{q}_ms": round(statistics.median(r[q] for r in per_run), 2) for q in ("p50", "p90", "p99")},
        "latency_max_ms": round(float(lat.max()), 2),
        **{f"latency_{q}_ms_runs": [round(r[q], 2) for r in per_run] for q in ("p50", "p99")},
        "load_average_1min": round(os.getloadavg()[0], 2),
        **({"hops": runs[median_run].hop_breakdown(runs[median_run].answered)} if args.breakdown else {}),
        "weights_bytes": max(sizes) if sizes else None,
        "weights_delivery_s": round(statistics.median(live.values()), 4) if live else None,
        "weights_delivery_max_s": round(max(live.values()), 4) if live else None,
        "weights_updates_measured": len(live),
        "machine": host,
    }
    figures["targets_met"] = verdict(figures)
    print(f"\ncamera -> controller target, {len(arms)} arm(s) x {len(CAMERAS)} cameras, {args.raw}px raw, encoder {args.encoder_dtype} ({figures['encoder_forward']}), {len(lat)} actions"
          f" in {args.repeats} run(s) ({figures['executor']} executor in every process):")
    if args.repeats > 1:
        for i, r in enumerate(per_run):
            print(f"  run {i + 1}: p50 {r['p50']:.2f} ms   p99 {r['p99']:.2f} ms   max {r['max']:.2f} ms")
        print("  median over the runs:")
    print(f"  p50 {figures['latency_p50_ms']} ms   p90 {figures['latency_p90_ms']} ms   p99 {figures['latency_p99_ms']} ms   max {figures['latency_max_ms']} ms")
    print(f"  frame sets answered: {answered:.1%}")
    if args.breakdown:
        print("  per hop (ms, as seen by this observer" + (f"; run {median_run + 1}, the median p99" if args.repeats > 1 else "") + "): " + "   ".join(f"{k} " + " ".join(f"{q} {x}" for q, x in v.items())
                                                                    for k, v in figures["hops"].items() if k not in ("unanswered", "slowest_5pct_ms")))
        if "slowest_5pct_ms" in figures["hops"]:
            print("  the slowest 5% of actions, median per hop (ms): "
                  + "   ".join(f"{k} {v}" for k, v in figures["hops"]["slowest_5pct_ms"].items()))
        print(f"  frame sets lost: {figures['hops']['unanswered']}")
    print(f"policy weights: {figures['weights_bytes']} bytes per update; learner publish -> actor loaded: "
          f"median {figures['weights_delivery_s']} s, max {figures['weights_delivery_max_s']} s over {len(live)} updates")
    met = figures["targets_met"]
    print("targets: " + ", ".join(f"{k} {'-' if v is None else ('met' if v else 'MISSED')}" for k, v in met.items()))
    if not met["latency_p99_le_25ms"] and (resolve_encoder_dtype(args.encoder_dtype) != "int8" or figures["actor_encoder_threads"] < 2):
        print("  (on a CPU with 2 cores the int8 encoder (auto where the CPU has VNNI) and two encoder threads "
              "have the most margin: --encoder-dtype int8 --encoder-threads 2; docs/BENCHMARKS.md)")
    print(f"reproduce: {cmd}")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
