"""The ``hilserl`` command.

    hilserl graphs                              list the setups in config/graphs/
    hilserl show sim_dual_arm [task:=handover]  print the resolved nodes and their --ros-args
    hilserl launch sim_dual_arm [name:=value]   start the graph as processes (Ctrl-C stops it)
    hilserl train sim_single_arm [steps:=10000] train with defaults; run directory, plots, resume
    hilserl eval runs/sim_single_arm-pick_cube  the policy alone on held-out seeds, beside the scripted operator
    hilserl compare sim_single_arm seeds:=3     the paper's baselines (Table 2), trained and evaluated alike
    hilserl prepare sim_single_arm task:=..     a simulated task's demo file and reward classifier
    hilserl roi frame.png camera:=left/wrist    a camera frame with its crop ROI drawn (PNG), to pick the ROI
    hilserl convert-weights resnet10_params.pkl -o resnet10.safetensors   published encoder weights, no unpickling
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import List, Optional

from . import bag2demos, convert_weights, data_cli
from . import graph as graphmod
from . import roi
from .runner import GraphRunner


def _cmd_graphs(args) -> int:
    cfg_dir = graphmod.config_dir()
    for name in graphmod.available_graphs(cfg_dir):
        g = graphmod.load_graph(name, cfg_dir=cfg_dir)
        print(f"{name:18s} {len(g.nodes):3d} nodes  {g.description}")
    return 0


def _cmd_show(args) -> int:
    g = graphmod.load_graph(args.setup, graphmod.parse_overrides(args.overrides))
    print(f"# {g.setup}: {g.description}")
    print("# arguments: " + " ".join(f"{k}:={v}" for k, v in g.arguments))
    for proc in graphmod.processes(g):
        package, executable, argv = graphmod.process_command(proc)
        title = proc.key if not proc.composed else f"{proc.key} (one process): " + " ".join(n.fqn for n in proc.nodes)
        print(f"{title}\n    ros2 run {package} {executable} {shlex.join(argv)}")
    return 0


def _cmd_launch(args) -> int:
    g = graphmod.load_graph(args.setup, graphmod.parse_overrides(args.overrides))
    runner = GraphRunner(g, check_network=True)
    print(f"[hilserl] launching {g.setup} ({len(g.nodes)} nodes, {len(runner.processes)} processes); Ctrl-C to stop", flush=True)
    return runner.run()


def _cmd_train(args) -> int:
    from .train import run_train

    return run_train(args.setup, graphmod.parse_overrides(args.overrides))


def _cmd_eval(args) -> int:
    from .evaluate import run_eval

    return run_eval(args.setup, graphmod.parse_overrides(args.overrides))


def _cmd_prepare(args) -> int:
    from .train import run_prepare

    return run_prepare(args.setup, graphmod.parse_overrides(args.overrides))


def _cmd_compare(args) -> int:
    from .compare import run_compare

    return run_compare(args.setup, graphmod.parse_overrides(args.overrides))


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="hilserl", description="HIL-SERL on ROS 2: run graphs of hilserl nodes.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("graphs", help="list the available setups").set_defaults(func=_cmd_graphs)
    for name, func, text in (
        ("show", _cmd_show, "print the nodes of a setup and their ROS arguments"),
        ("launch", _cmd_launch, "start a setup's nodes as processes (the `ros2 launch` equivalent)"),
        ("train", _cmd_train, "train: start the graph, follow episodes, stop at steps:=N, write run:=DIR (csv, plots, "
                              "checkpoints); options steps:=, run:=, demos:=auto|none|FILE, demo_episodes:= and graph arguments"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("setup", help="graph name (see `hilserl graphs`)")
        p.add_argument("overrides", nargs="*", metavar="name:=value", help="graph arguments")
        p.set_defaults(func=data_cli._guarded(func) if name == "train" else func)
    p = sub.add_parser("prepare", help="a simulated task's demo file and reward classifier from one unattended recording "
                                       "of the scripted operator (cached under runs/demos/)")
    p.add_argument("setup", help="a sim_* graph")
    p.add_argument("overrides", nargs="*", metavar="name:=value", help="task:=, seed:=, demo_episodes:=20, action_mode:=")
    p.set_defaults(func=data_cli._guarded(_cmd_prepare))
    p = sub.add_parser("compare", help="the paper's baselines on a simulated task: hil-serl, rlpd, rl, bc, hg-dagger trained "
                                       "and evaluated alike; writes runs/compare-<setup>-<task>/table.md")
    p.add_argument("setup", help="graph name (see `hilserl graphs`)")
    p.add_argument("overrides", nargs="*", metavar="name:=value",
                   help="seeds:=3, steps:=N, episodes:=20 (evaluation), methods:=a,b, task:=.. and graph arguments")
    p.set_defaults(func=data_cli._guarded(_cmd_compare))
    p = sub.add_parser("eval", help="evaluate a training run's policy alone (no operator, no exploration) on held-out "
                                    "seeds, beside the scripted operator; writes RUN/eval.json")
    p.add_argument("setup", metavar="RUN", help="run directory of hilserl train")
    p.add_argument("overrides", nargs="*", metavar="name:=value", help="episodes:=50, seed:=1000, checkpoint:=DIR, scripted:=true, "
                   "deterministic:=true, trace:=false (true: RUN/eval_trace.csv/.png, what each arm did step by step)")
    p.set_defaults(func=data_cli._guarded(_cmd_eval))
    data_cli.register(sub)  # record, bag2frames, train-reward
    bag2demos.register(sub)
    roi.register(sub)  # roi
    convert_weights.register(sub)  # convert-weights
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except graphmod.GraphError as exc:
        print(f"hilserl: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `hilserl show ... | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
