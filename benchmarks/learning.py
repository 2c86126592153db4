"""Learning in simulation: train a task from pixels with `hilserl train`, then evaluate the
policy alone with `hilserl eval` (held-out seeds, no operator, no exploration).

Reproduce (after scripts/setup.sh; about 20 min of training plus the evaluation):
    cd /work/main && source scripts/env.sh && python benchmarks/learning.py
    (options: --setup sim_single_arm --task pick_cube --steps 10000 --eval-episodes 50
     --run DIR (default runs/bench-<setup>-<task>; an existing run resumes) and graph
     arguments after --, e.g. -- reward:=classifier classifier_path:=FILE; node parameters beyond
     the graph's arguments with --node-param EXECUTABLE:NAME=VALUE, e.g.
     --node-param learner_node:agent.discount=0.99, recorded in the run's config.yaml)

Prints the training summary, the evaluation and the command; the last line is one JSON
object: task, success_rate, ci95, eval_episodes, env_steps, wall_clock_s (training),
cycle_time_s (policy, successes), scripted_cycle_time_s, scripted_success_rate.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import machine  # noqa: E402  (benchmarks/machine.py)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setup", default="sim_single_arm")
    ap.add_argument("--task", default="pick_cube")
    ap.add_argument("--steps", type=int, default=10000)
    ap.add_argument("--eval-episodes", type=int, default=50)
    ap.add_argument("--eval-seed", type=int, default=1000)
    ap.add_argument("--run", default="")
    ap.add_argument("--node-param", action="append", default=[], metavar="EXECUTABLE:NAME=VALUE",
                    help="a node parameter beyond the graph's arguments (value read as YAML); repeatable")
    ap.add_argument("graph_args", nargs="*", metavar="name:=value")
    a = ap.parse_args()
    node_params: dict = {}
    for item in a.node_param:
        executable, sep, rest = item.partition(":")
        name, eq, value = rest.partition("=")
        if not (sep and eq and executable and name):
            ap.error(f"--node-param {item!r}: must look like EXECUTABLE:NAME=VALUE (e.g. learner_node:agent.discount=0.99)")
        node_params.setdefault(executable, {})[name] = yaml.safe_load(value)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    from hilserl.evaluate import run_eval
    from hilserl.graph import GraphError, parse_overrides
    from hilserl.train import INTERRUPTED, run_train

    run = a.run or f"runs/bench-{a.setup}-{a.task}"
    args = {**parse_overrides(a.graph_args), "task": a.task, "steps": str(a.steps), "run": run}
    print(machine.summary(machine.describe()), flush=True)
    try:
        status = run_train(a.setup, args, node_params=node_params)
    except GraphError as exc:
        print(f"learning.py: {exc}", file=sys.stderr)
        return 2
    if status == INTERRUPTED:
        print("training interrupted: not evaluated; the same command resumes it", file=sys.stderr)
        return status
    if status != 0:
        print(f"training failed (status {status}); see {run}/graph.log", file=sys.stderr)
        return status
    run_eval(run, {"episodes": str(a.eval_episodes), "seed": str(a.eval_seed)})
    summary = json.loads((Path(run) / "summary.json").read_text())
    ev = json.loads((Path(run) / "eval.json").read_text())
    p, s = ev["policy"], ev.get("scripted_operator", {})
    cmd = "python benchmarks/learning.py " + " ".join(sys.argv[1:])
    print(f"reproduce: cd /work/main && source scripts/env.sh && {cmd}")
    print(json.dumps({
        "task": a.task, "setup": a.setup, "success_rate": p["success_rate"], "ci95": p["ci95"],
        "eval_episodes": p["episodes"], "env_steps": summary["env_steps"], "wall_clock_s": summary["wall_clock_s"],
        "train_success_rate_last20": summary.get("success_rate"), "alone_success_rate_last20": summary.get("alone_success_rate"),
        "cycle_time_s": p["cycle_time_s"], "scripted_success_rate": s.get("success_rate"),
        "scripted_cycle_time_s": s.get("cycle_time_s"),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
