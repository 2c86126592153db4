"""``hilserl eval RUN [episodes:=50] [seed:=1000] [checkpoint:=DIR] [scripted:=true] [deterministic:=true] [trace:=false]``.

Runs a trained policy alone: the run's graph (``RUN/config.yaml``) with the operator off, the
actor acting with the policy mean and no random gripper actions, and the learner serving the
weights of a checkpoint (a copy of the run's newest, or ``checkpoint:=``) without updating
them. Episodes start from the simulator's ``seed`` (held out: training uses ``seed`` 0 by
default), and every one counts from the first scene on (the actor begins none before the
checkpoint's weights are in: ``await_weights``), so the policy and the scripted operator get the
same scenes; success is the simulator's ground truth, also for a policy trained with a classifier. Then, on the same seeds, the scripted operator does the task alone (simulation only).
Prints the success rate with a 95% Wilson interval and the cycle time of successful episodes,
beside the scripted operator's, and how far the failed episodes got (the task's furthest stage,
as the simulator reports each episode: ``failures_reached``), and writes ``RUN/eval.json``. ``deterministic:=false`` samples
the policy's actions as in training (still no random gripper actions) and writes
``RUN/eval-sampled.json``: a policy that needs its noise (a tight peg that the mean action jams
against the rim) shows it there. ``trace:=true`` also records what the policy did, step by step
(``RUN/eval_trace.csv`` and ``.png``, a summary in eval.json; ``eval_trace.py``).
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional

import yaml

from hilserl_core.rl.learner import latest_checkpoint

from .eval_trace import EvalTrace, plot_trace, read_trace, summarize, summary_lines
from .graph import Graph, GraphError, load_graph, pop_whole_numbers, with_node_parameters, with_run_node_parameters

__all__ = ["run_eval", "wilson_interval", "eval_graph"]


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple:
    """95% Wilson score interval of a success rate (sane at 0 and n successes)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def eval_graph(setup: str, arguments: Mapping[str, str], checkpoint_root: Path, seed: int, deterministic: bool = True,
               node_params: Optional[Mapping[str, Mapping[str, object]]] = None) -> Graph:
    """The run's graph for evaluation: operator off, deterministic (or sampling) actor, a learner that only serves weights.
    ``node_params``: the run's own (config.yaml's ``node_parameters``), so the networks are the ones it trained."""
    args = {**{k: str(v) for k, v in arguments.items()}, "seed": str(seed), "demos": "", "checkpoint_dir": str(checkpoint_root)}
    defaults = dict(load_graph(setup).arguments)
    if "operator" in defaults:
        args["operator"] = "off"
    if "reward" in defaults:
        args["reward"] = "sim"  # success is the task's, by the simulator's ground truth, whatever reward trained the policy
    g = with_run_node_parameters(load_graph(setup, args), node_params)
    g = with_node_parameters(g, "actor_node", {"deterministic": deterministic, "grasp_epsilon": 0.0, "await_weights": True})
    return with_node_parameters(g, "learner_node", {"learner.updates_per_transition": 0.0, "learner.checkpoint_period_updates": 0,
                                                    "learner.checkpoint_period_s": 0.0, "final_checkpoint": False})


def scripted_graph(setup: str, arguments: Mapping[str, str], seed: int) -> Graph:
    from .recording import record_graph

    keep = {k: str(v) for k, v in arguments.items() if k in ("task", "action_mode", "hot_path_process")}
    return record_graph(setup, {**keep, "seed": str(seed)})


def _summary(durations: List[Optional[float]]) -> Dict[str, object]:
    wins = [d for d in durations if d is not None]
    lo, hi = wilson_interval(len(wins), len(durations))
    return {"episodes": len(durations), "successes": len(wins),
            "success_rate": len(wins) / len(durations) if durations else None, "ci95": [round(lo, 3), round(hi, 3)],
            "cycle_time_s": round(statistics.mean(wins), 2) if wins else None,
            "cycle_time_median_s": round(statistics.median(wins), 2) if wins else None}


def _run_graph(graph: Graph, log_path: Path, collect: Callable, episodes: int, timeout_s: float,
               say: Callable[[str], None], what: str, waiting: Callable[[], bool] = lambda: False) -> List[Optional[float]]:
    """Start ``graph``; ``collect(node, results)`` subscribes what ends episodes; stop after ``episodes``
    (and after up to 5 s more while ``waiting()`` says a report on them is still to come)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    from hilserl_interfaces.signals import stop_on_signals

    from .runner import GraphRunner

    results: List[Optional[float]] = []  # per episode: duration of a success, None for a failure
    ctx = rclpy.context.Context()
    with open(log_path, "a", buffering=1) as log:
        runner = GraphRunner(graph, out=log, check_network=True)
        node = ex = None
        try:
            rclpy.init(args=[], context=ctx)
            node = Node("eval_monitor", context=ctx)
            collect(node, results)
            ex = SingleThreadedExecutor(context=ctx)
            ex.add_node(node)
            with stop_on_signals() as stop:
                runner.start()
                start, shown = time.monotonic(), 0
                while not stop.is_set() and len(results) < episodes:
                    ex.spin_once(timeout_sec=0.1)
                    dead = runner.poll()
                    if dead is not None:
                        raise GraphError(f"{what}: node {dead.spec.fqn} exited with status {dead.returncode}; see {log_path}")
                    if time.monotonic() - start > timeout_s:
                        raise GraphError(f"{what}: {len(results)} of {episodes} episodes after {timeout_s:.0f} s; see {log_path}")
                    if len(results) != shown and (len(results) % 10 == 0 or len(results) == episodes):
                        shown = len(results)
                        wins = sum(d is not None for d in results)
                        say(f"[eval] {what}: {shown}/{episodes} episodes, {wins} successes")
                settle = time.monotonic() + 5.0
                while not stop.is_set() and waiting() and time.monotonic() < settle and runner.poll() is None:
                    ex.spin_once(timeout_sec=0.1)
                if stop.is_set():
                    raise KeyboardInterrupt
        finally:
            runner.shutdown()
            if ex is not None:  # before the context goes (else its __del__ prints a traceback at exit)
                ex.shutdown()
            if node is not None:
                node.destroy_node()
            if rclpy.ok(context=ctx):
                rclpy.shutdown(context=ctx)
    return results[:episodes]


def sim_reached(msg) -> Dict[int, str]:
    """From a DiagnosticArray, the simulator's report on its last episode: {episode: furthest stage}
    (its ``sim`` status's ``last_episode`` and ``last_episode_reached``; episode 0 is no episode)."""
    out = {}
    for st in msg.status:
        if st.name.endswith(": sim"):
            values = {kv.key: kv.value for kv in st.values}
            if values.get("last_episode", "").isdigit() and int(values["last_episode"]) > 0 and "last_episode_reached" in values:
                out[int(values["last_episode"])] = values["last_episode_reached"]
    return out


def furthest_stages(counted: List[tuple], reached: Mapping[int, str]) -> Optional[Dict[str, int]]:
    """How many of the failed ``counted`` episodes (episode id, success) got to each stage, in the
    simulator's reports; None where the reports do not match the episodes (a success the simulator
    does not report as one, a missing report): the actor's episode ids are then not the simulator's."""
    if not counted or any(i not in reached or (ok and reached[i] != "success") for i, ok in counted):
        return None
    tally: Dict[str, int] = {}
    for i, ok in counted:
        if not ok:
            tally[reached[i]] = tally.get(reached[i], 0) + 1
    return dict(sorted(tally.items(), key=lambda kv: -kv[1]))


def _say(text: str) -> None:
    print(text, flush=True)


def run_eval(run: str, arguments: Mapping[str, str], say: Callable[[str], None] = _say) -> int:
    from std_msgs.msg import Empty, String

    from hilserl_core.robot import episode_marks as em
    from hilserl_interfaces import qos, topics

    run_dir = Path(run)
    conf_path = run_dir / "config.yaml"
    if not conf_path.is_file():
        raise GraphError(f"{run_dir}: not a training run (no config.yaml; hilserl train writes one)")
    conf = yaml.safe_load(conf_path.read_text())
    setup, run_args = conf["setup"], dict(conf["arguments"])
    opts = dict(arguments)
    n = pop_whole_numbers(opts, {"episodes": 50, "seed": 1000}, "eval")
    episodes, seed = n["episodes"], n["seed"]
    scripted, deterministic, trace_on = (str(opts.pop(k, d)).lower() in ("1", "true", "yes")
                                         for k, d in (("scripted", "true"), ("deterministic", "true"), ("trace", "false")))
    ckpt = Path(opts.pop("checkpoint", "") or (latest_checkpoint(run_dir / "checkpoints") or ""))
    if opts:
        raise GraphError(f"eval: unknown option(s) {', '.join(f'{k}:=' for k in opts)} (episodes, seed, checkpoint, scripted, deterministic, trace)")
    if not str(ckpt) or not (ckpt / "learner.json").is_file():
        raise GraphError(f"{run_dir}: no checkpoint to evaluate (give checkpoint:=DIR)")
    limit_s = 60.0 + episodes * 40.0
    with tempfile.TemporaryDirectory(prefix="hilserl-eval-") as tmp:
        shutil.copytree(ckpt, Path(tmp) / "checkpoints" / ckpt.name)  # the learner may write here: never into the run
        graph = eval_graph(setup, run_args, Path(tmp) / "checkpoints", seed, deterministic, conf.get("node_parameters"))
        say(f"[eval] {run_dir}: {ckpt.name}, {episodes} episodes from seed {seed}, policy alone (no operator, "
            + ("no exploration)" if deterministic else "actions sampled from the policy, no random gripper actions)"))
        state = {"version": None}
        counted: List[tuple] = []  # (actor's episode id, success) of the episodes counted
        reached: Dict[int, str] = {}  # episode -> furthest task stage, as the simulator reports it
        trace = EvalTrace(run_dir / "eval_trace.csv", graph.arms) if trace_on else None

        def policy_episodes(node, results):
            from diagnostic_msgs.msg import DiagnosticArray

            from .train import learner_status

            def on_diag(msg):
                values = learner_status(msg)
                if values is not None:
                    state["version"] = values.get("weights_version")
                reached.update(sim_reached(msg))

            def on_episode(msg):
                rep = json.loads(msg.data)
                ep = rep.get("last_episode") or {}
                # The actor begins no episode before the checkpoint's weights are in (await_weights), so
                # every episode counts, from the first scene on: the scenes the scripted operator gets
                # below. (One that reports other weights than the learner serves would not count.)
                version = rep.get("weights_version")
                counts = (version is not None and (state["version"] is None or str(version) == str(state["version"]))
                          and len(results) < episodes)
                if trace is not None:
                    trace.end_episode(int(ep.get("episode_id", -1)), counts, bool(ep.get("success")), int(ep.get("steps", 0)))
                if counts:
                    results.append(float(ep.get("duration_s", 0.0)) if ep.get("success") else None)
                    counted.append((int(ep.get("episode_id", -1)), bool(ep.get("success"))))

            node.create_subscription(DiagnosticArray, topics.DIAGNOSTICS, on_diag, 10)
            node.create_subscription(String, topics.EPISODE_METRICS, on_episode, qos.EVENTS)
            if trace is not None:
                trace.subscribe(node)

        try:
            policy = _run_graph(graph, run_dir / "eval.log", policy_episodes, episodes, limit_s, say, "policy",
                                waiting=lambda: not all(i in reached for i, _ in counted[:episodes]))
        finally:
            if trace is not None:
                trace.close()
    out = {"run": str(run_dir), "checkpoint": ckpt.name, "seed": seed, "deterministic": deterministic, "policy": _summary(policy)}
    stages = furthest_stages(counted[:episodes], reached)
    if stages is not None:
        out["policy"]["failures_reached"] = stages
    if trace is not None:
        rows = read_trace(trace.path)
        out["trace"] = summarize(rows)
        for line in summary_lines(out["trace"]):
            say(f"[eval] trace, {line}")
        png = plot_trace(rows, run_dir / "eval_trace.png", f"{setup} {run_args.get('task', '')}: policy alone, {ckpt.name}")
        say(f"[eval] wrote {trace.path}" + (f" and {png}" if png else ""))
    if scripted and setup.startswith("sim"):
        say(f"[eval] scripted operator alone on the same seeds ({episodes} episodes)")

        def operator_episodes(node, results):
            began = {"t": None}

            def mark(kind):
                now = time.monotonic()
                if kind == em.RESET:
                    began["t"] = now
                elif began["t"] is not None:
                    results.append(now - began["t"] if kind == em.SUCCESS else None)
                    began["t"] = None

            for topic, kind in em.MARK_TOPICS.items():
                node.create_subscription(Empty, topic, lambda m, k=kind: mark(k), qos.EVENTS)

        out["scripted_operator"] = _summary(_run_graph(scripted_graph(setup, run_args, seed), run_dir / "eval.log",
                                                       operator_episodes, episodes, limit_s, say, "scripted operator"))
    out_path = run_dir / ("eval.json" if deterministic else "eval-sampled.json")
    out_path.write_text(json.dumps(out, indent=1))
    p = out["policy"]
    say(f"[eval] policy alone: {p['successes']}/{p['episodes']} = {p['success_rate']:.2f} (95% CI {p['ci95'][0]:.2f}-"
        f"{p['ci95'][1]:.2f}), cycle time {p['cycle_time_s']} s (mean of successes)")
    if p.get("failures_reached"):
        say("[eval] furthest stage of the policy's failed episodes: "
            + ", ".join(f"{name} {n}" for name, n in p["failures_reached"].items()))
    if "scripted_operator" in out:
        s = out["scripted_operator"]
        say(f"[eval] scripted operator: {s['successes']}/{s['episodes']} = {s['success_rate']:.2f}, cycle time {s['cycle_time_s']} s")
    say(f"[eval] wrote {out_path}")
    return 0
