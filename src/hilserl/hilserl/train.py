"""``hilserl train <setup> [task:=..] [steps:=N] [run:=DIR] [demos:=auto|none|FILE] [graph arguments]``.

Starts the setup's graph (simulator or robot, actor, learner, muxes, ...) with the learner
checkpointing into ``RUN/checkpoints`` and its demo buffer seeded from ``demos``, follows the
actor's episode reports (``/metrics/episodes``) and the learner's diagnostics, prints progress,
and stops the graph once ``steps`` env steps are done. The run directory holds:

- ``config.yaml``: the setup, every resolved graph argument, the step budget, the demo file;
- ``episodes.csv``: every episode (``hilserl.runlog``); ``training.png``: the paper's Fig. 3
  panels against env steps and wall-clock; ``summary.json``: the last figures;
- ``learner.csv``: the learner's figures at each episode's end (losses, temperature, updates/s,
  and its training analysis); ``ee_positions.csv``: each arm's end-effector position at every
  executed control step; ``tensorboard/``: TensorBoard scalars of both against env steps
  (``hilserl.analysis``); ``analysis.png``: Q variance around the policy's action (the paper's
  Eq. 1) and the policy's mean and std over training; ``visitation.png``: end-effector
  visitation heatmaps, first vs last 20% of the env steps;
- ``checkpoints/``: the learner's; ``graph.log``: every node's console output.

Run it again with the same ``run:=`` and it resumes: the learner from its newest checkpoint,
the counts from ``episodes.csv``. ``demos:=auto`` (the default in simulation) records
``demo_episodes`` episodes of the scripted operator once per setup, task and seed
(``hilserl record``, then ``hilserl bag2demos``) under ``runs/demos/`` and reuses them after.
With ``reward:=classifier`` and no ``classifier_path`` in simulation, a classifier is trained
once on the same recording's frames, labelled by the simulator's ground truth
(``hilserl bag2frames labels:=sim``, ``hilserl train-reward``). ``hilserl prepare`` makes both
without training.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import yaml

from .analysis import LearnerLog, PoseLog, Scalars, plot_analysis, plot_visitation
from .graph import GraphError, load_graph, pop_whole_numbers, with_run_node_parameters
from .runlog import EpisodeRow, RunLog, plot_run

__all__ = ["INTERRUPTED", "run_train", "run_prepare", "scripted_demos", "scripted_classifier"]



def _fmt(v: Optional[float], digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def scripted_demos(setup: str, arguments: Mapping[str, str], episodes: int, say: Callable[[str], None],
                   root: Path = Path("runs/demos")) -> Path:
    """The scripted operator's demos for this setup, task and seed: recorded and converted on
    first use, reused after."""
    from hilserl_core.formats import bags
    from hilserl_core.formats.demos import save_demos

    from .bag2demos import actor_config_for, convert_bag
    from .recorder import run_record

    graph = load_graph(setup, {k: v for k, v in arguments.items() if k in dict(load_graph(setup).arguments)})
    args = dict(graph.arguments)
    name = f"{setup}-{args.get('task', 'task')}-seed{args.get('seed', 0)}-{episodes}ep"
    out = root / f"{name}.safetensors"
    if out.is_file():
        say(f"[train] demos: {out} (recorded before)")
        return out
    bag = root / f"{name}-bag"
    root.mkdir(parents=True, exist_ok=True)
    if not bag.exists():
        say(f"[train] demos: recording {episodes} episodes of the scripted operator into {bag} (once)")
        record_args = {k: v for k, v in arguments.items() if k in ("task", "seed", "action_mode", "hot_path_process")}
        status = run_record(setup, {**record_args, "bag": str(bag), "episodes": str(episodes)}, say=lambda s: None)
        if status != 0:
            raise GraphError(f"recording demos for {setup} failed (status {status})")
    with bags.BagReader(bag) as reader:
        converted = convert_bag(reader, actor_config_for(setup, args))
    if not converted.transitions:
        raise GraphError(f"{bag}: the recording holds no demo transitions")
    save_demos(out, converted.transitions, {"setup": setup, "bags": [str(bag.resolve())], "reward": "marks", **args})
    say(f"[train] demos: {out}: {converted.episodes} episodes, {len(converted.transitions)} steps, "
        f"{converted.successes} successes")
    return out


def scripted_classifier(setup: str, arguments: Mapping[str, str], episodes: int, say: Callable[[str], None],
                        root: Path = Path("runs/demos")) -> Path:
    """A reward classifier for this setup, task and seed, trained on the frames of the scripted
    operator's demo recording labelled by the simulator's ground truth (``hilserl bag2frames
    labels:=sim``, ``hilserl train-reward``); made on first use, reused after."""
    from . import cli

    demos = scripted_demos(setup, arguments, episodes, say, root)  # records the bag if needed
    name = demos.name[: -len(".safetensors")]
    bag, frames, out = root / f"{name}-bag", root / f"{name}.frames.safetensors", root / f"{name}.classifier.safetensors"
    if out.is_file():
        say(f"[train] reward classifier: {out} (trained before)")
        return out
    if not frames.is_file() and cli.main(["bag2frames", str(bag), "-o", str(frames), "labels:=sim"]) != 0:
        raise GraphError(f"{bag}: extracting labelled frames failed")
    if cli.main(["train-reward", str(frames), "-o", str(out)]) != 0:
        raise GraphError(f"{frames}: training the reward classifier failed")
    return out


class _Monitor:
    """Episode reports, the learner's counters and the arms' end-effector positions (the newest
    ``current_pose`` at each step the arm's mux executed), from an rclpy node in this process."""

    def __init__(self, context, arms: Sequence[str] = ()) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseStamped
        from rclpy.node import Node
        from sensor_msgs.msg import Joy
        from std_msgs.msg import String

        from hilserl_interfaces import qos, topics

        self.node = Node("train_monitor", context=context)
        self.episodes: list = []
        self.learner: Dict[str, str] = {}
        self._pose_type = PoseStamped
        self._raw_poses: Dict[str, bytes] = {}  # the newest, serialized: read at 10 Hz, not at the sim's 100
        self.poses: List[Tuple[str, Tuple[float, float, float]]] = []  # (arm, position) per executed step
        self.node.create_subscription(String, topics.EPISODE_METRICS, lambda m: self.episodes.append(json.loads(m.data)), qos.EVENTS)
        self.node.create_subscription(DiagnosticArray, topics.DIAGNOSTICS, self._on_diag, 10)
        for arm in arms:
            self.node.create_subscription(PoseStamped, f"/{arm}/{topics.CURRENT_POSE}",
                                          lambda m, a=arm: self._raw_poses.__setitem__(a, m), qos.SENSOR, raw=True)
            self.node.create_subscription(Joy, f"/{arm}/mux/executed", lambda _m, a=arm: self._on_executed(a), qos.EVENTS)

    def _on_executed(self, arm: str) -> None:
        from rclpy.serialization import deserialize_message

        raw = self._raw_poses.get(arm)
        if raw is not None:
            p = deserialize_message(raw, self._pose_type).pose.position
            self.poses.append((arm, (p.x, p.y, p.z)))

    def _on_diag(self, msg) -> None:
        values = learner_status(msg)
        if values is not None:
            self.learner = values


def learner_status(msg) -> Optional[Dict[str, str]]:
    """The learner's ``learner`` status values (updates, weights_version, ...) in a DiagnosticArray, if it holds them."""
    for st in msg.status:
        if st.name.endswith(": learner"):
            return {kv.key: kv.value for kv in st.values}
    return None


def _say(text: str) -> None:
    print(text, flush=True)  # progress must show at once, also when the console is a file


# run_train's status when Ctrl-C or SIGTERM stopped it before its step budget (the shell's for SIGINT)
INTERRUPTED = 130


def run_train(setup: str, arguments: Mapping[str, str], say: Callable[[str], None] = _say,
              node_params: Optional[Mapping[str, Mapping[str, object]]] = None) -> int:
    """Train (see the module doc); ``node_params``: executable -> parameters set beyond the graph's
    arguments (``hilserl compare``'s baselines). 0 at the step budget, ``INTERRUPTED`` when a
    signal stopped it before, 1 when a node failed."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from hilserl_interfaces.signals import stop_on_signals

    from .runner import GraphRunner

    args = dict(arguments)
    n = pop_whole_numbers(args, {"steps": 10000, "demo_episodes": 20, "progress_s": 15}, "train")
    budget, demo_episodes, progress_s = n["steps"], n["demo_episodes"], n["progress_s"]
    defaults = dict(load_graph(setup).arguments)
    task = args.get("task", defaults.get("task", ""))
    run_dir = Path(args.pop("run", f"runs/{setup}-{task}" if task else f"runs/{setup}"))
    demos = args.pop("demos", "auto" if "sim" in defaults.get("reward", "") or setup.startswith("sim") else "none")
    if demos == "auto":
        demos = str(scripted_demos(setup, args, demo_episodes, say))
    elif demos == "none":
        demos = ""
    elif not Path(demos).is_file():
        raise GraphError(f"demos:={demos}: no such demo file (hilserl bag2demos makes one; auto records them in simulation)")
    args["demos"] = demos
    reward = args.get("reward", defaults.get("reward", ""))
    if reward == "classifier" and not args.get("classifier_path") and setup.startswith("sim"):
        args["classifier_path"] = str(scripted_classifier(setup, args, demo_episodes, say))
    args["checkpoint_dir"] = str(run_dir / "checkpoints")
    graph = load_graph(setup, args)
    graph = with_run_node_parameters(graph, node_params)
    run_dir.mkdir(parents=True, exist_ok=True)
    log = RunLog(run_dir)
    if log.env_steps >= budget:
        say(f"[train] {run_dir} already has {log.env_steps} env steps (steps:={budget}); nothing to do")
        return 0
    (run_dir / "config.yaml").write_text(yaml.safe_dump(
        {"setup": setup, "arguments": dict(graph.arguments), "steps": budget, "demos": demos,
         "node_parameters": {k: dict(v) for k, v in (node_params or {}).items()}}, sort_keys=False))
    graph_log = open(run_dir / "graph.log", "a", buffering=1)
    learner_log, pose_log = LearnerLog(run_dir), PoseLog(run_dir)
    scalars = Scalars(run_dir, learner_log.rows[-1]["analysis_updates"] if learner_log.rows else None)
    if not scalars.available:
        say(f"[train] {scalars.why}")
    runner = GraphRunner(graph, out=graph_log, check_network=True)
    ctx = rclpy.context.Context()
    status = 0
    start_wall = time.monotonic()
    base_wall, base_steps = log.wall_s, log.env_steps
    resumed = f", resuming at {base_steps} env steps" if base_steps else ""
    say(f"[train] {setup} task={task}: {budget} env steps into {run_dir}{resumed}; node output in {run_dir / 'graph.log'}")
    try:
        rclpy.init(args=[], context=ctx)
        mon = _Monitor(ctx, graph.arms)
        executor = SingleThreadedExecutor(context=ctx)
        executor.add_node(mon.node)
        with stop_on_signals() as stop:
            runner.start()
            last_print = time.monotonic()
            while not stop.is_set():
                executor.spin_once(timeout_sec=0.1)
                dead = runner.poll()
                if dead is not None:
                    why = f": {dead.last_line}" if dead.last_line else ""
                    say(f"[train] node {dead.spec.fqn} exited with status {dead.returncode}{why}; see {run_dir / 'graph.log'}")
                    status = 1
                    break
                poses, mon.poses = mon.poses, []
                pose_log.add([(arm, log.env_steps, p) for arm, p in poses])  # steps of the episode under way
                while mon.episodes:
                    rep = mon.episodes.pop(0)
                    ep = rep.get("last_episode") or {}
                    steps = int(ep.get("steps", 0))
                    row = EpisodeRow(
                        env_steps=log.env_steps + steps, wall_s=base_wall + time.monotonic() - start_wall,
                        episode=len(log.rows) + 1, success=int(bool(ep.get("success"))), steps=steps,
                        intervened_steps=int(ep.get("intervention_steps", 0)), alone=int(ep.get("intervention_steps", 0) == 0),
                        duration_s=float(ep.get("duration_s", 0.0)), episode_return=float(ep.get("episode_return", 0.0)),
                        weights_version=int(rep.get("weights_version", 0)), updates=int(mon.learner.get("updates", 0) or 0))
                    log.add(row)
                    scalars.episode(row, log)
                    # a row per episode, as episodes.csv has (empty figures before the learner's first report)
                    scalars.learner(learner_log.add(row.env_steps, row.wall_s, mon.learner))
                now = time.monotonic()
                if now - last_print >= progress_s:
                    last_print = now
                    say(_progress(log, mon.learner, base_steps, base_wall + now - start_wall, now - start_wall, budget))
                if log.env_steps >= budget:
                    say(f"[train] step budget reached: {log.env_steps} env steps")
                    break
            if stop.is_set() and status == 0:
                status = INTERRUPTED
                say(f"[train] interrupted at {log.env_steps} of {budget} env steps; the same command resumes the run")
    finally:
        runner.shutdown()
        graph_log.close()
        pose_log.close()
        scalars.close()
        if rclpy.ok(context=ctx):
            rclpy.shutdown(context=ctx)
    figures = log.figures()
    (run_dir / "summary.json").write_text(json.dumps({
        "setup": setup, "task": task, "env_steps": log.env_steps, "episodes": len(log.rows), "wall_clock_s": round(log.wall_s, 1),
        **{k: v for k, v in figures.items()}}, indent=1))
    png = plot_run(log.rows, run_dir / "training.png", f"{setup} {task}")
    others = [p for p in (plot_analysis(LearnerLog(run_dir).rows, run_dir / "analysis.png", f"{setup} {task}"),
                          plot_visitation(PoseLog.read(pose_log.path), run_dir / "visitation.png", f"{setup} {task}",
                                          total_steps=log.env_steps)) if p is not None]
    plots = ", ".join(str(p) for p in [png, *others] if p is not None)
    board = f"; tensorboard --logdir {scalars.directory}" if scalars.available else ""
    say(f"[train] {len(log.rows)} episodes, {log.env_steps} env steps in {log.wall_s / 60:.1f} min; last 20: success "
        f"{_fmt(figures['success_rate'])}, policy alone {_fmt(figures['alone_success_rate'])}; "
        f"plots {plots}{board}; checkpoints {run_dir / 'checkpoints'}; evaluate: hilserl eval {run_dir}")
    return status


def _progress(log: RunLog, learner: Mapping[str, str], base_steps: int, wall_s: float, session_s: float, budget: int) -> str:
    f = log.figures()
    done = log.env_steps - base_steps
    rate = done / session_s if session_s > 0 else 0.0
    left = (budget - log.env_steps) / rate / 60 if rate > 0 else float("nan")
    return (f"[train] {log.env_steps}/{budget} env steps, {len(log.rows)} episodes, {wall_s / 60:.1f} min | last 20: success "
            f"{_fmt(f['success_rate'])} (policy alone {_fmt(f['alone_success_rate'])} of {int(f['alone_episodes'] or 0)} "
            f"unassisted), intervened {_fmt(f['intervention_rate'])}, cycle {_fmt(f['cycle_time_s'], 1)} s | learner "
            f"{learner.get('updates', '-')} updates, v{learner.get('weights_version', '-')} | {rate:.1f} steps/s, "
            f"~{left:.0f} min left")


def run_prepare(setup: str, arguments: Mapping[str, str], say: Callable[[str], None] = _say) -> int:
    """``hilserl prepare <setup> [task:=..] [seed:=..] [demo_episodes:=20]``: a simulated task's demo
    file and reward classifier, from one unattended recording of the scripted operator."""
    args = dict(arguments)
    episodes = pop_whole_numbers(args, {"demo_episodes": 20}, "prepare")["demo_episodes"]
    if not setup.startswith("sim"):
        raise GraphError(f"{setup} is not a simulated setup (on a robot: hilserl record, bag2demos, bag2frames, train-reward)")
    demos = scripted_demos(setup, args, episodes, say)
    clf = scripted_classifier(setup, args, episodes, say)
    say(f"[prepare] demos {demos}\n[prepare] classifier {clf}\n[prepare] train with them: hilserl train {setup} "
        + " ".join(f"{k}:={v}" for k, v in args.items()) + f" demos:={demos} reward:=classifier classifier_path:={clf}")
    return 0
