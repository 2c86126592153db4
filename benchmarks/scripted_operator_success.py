#!/usr/bin/env python
"""Scripted SpaceMouse operator alone: success rate per hilserl_sim task (issue 4).

Each task runs N randomized episodes (seeds 0..N-1) with the scripted operator
in full control (a "demonstration"), the default operator imperfections on
(noise 0.05, one-step reaction delay) and no rendering (success is the
ground-truth test). Proves every task is solvable and its success test right.

Reproduce:
    source scripts/env.sh && python benchmarks/scripted_operator_success.py --episodes 50

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("MUJOCO_GL", "egl")

from hilserl_sim.env import TaskEnv  # noqa: E402
from hilserl_sim.operator import OperatorConfig, ScriptedOperator, run_demo_episode  # noqa: E402
from hilserl_sim.tasks import task_names  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--episodes", type=int, default=50, help="randomized episodes per task (seeds 0..N-1)")
    ap.add_argument("--tasks", nargs="*", default=task_names(), help="tasks to run (default: all)")
    ap.add_argument("--required", type=float, default=0.9, help="success rate each task must reach")
    args = ap.parse_args(argv)

    results = {}
    for name in args.tasks:
        env = TaskEnv(name, cameras=())
        op = ScriptedOperator(env, OperatorConfig(seed=0))
        t0 = time.perf_counter()
        eps = [run_demo_episode(env, op, seed=s) for s in range(args.episodes)]
        wall = time.perf_counter() - t0
        env.close()
        ok = [e for e in eps if e["success"]]
        rate = len(ok) / len(eps)
        steps = sum(e["steps"] for e in eps)
        results[name] = {
            "success_rate": rate,
            "episodes": len(eps),
            "mean_steps_successful": (sum(e["steps"] for e in ok) / len(ok)) if ok else None,
            "time_limit_steps": env.task.time_limit_steps,
            "wall_s": round(wall, 2),
            "failed_seeds": [s for s, e in enumerate(eps) if not e["success"]],
        }
        print(f"{name:15s} success {len(ok):3d}/{len(eps)} = {rate:.2f}   mean steps (successful) "
              f"{results[name]['mean_steps_successful'] or float('nan'):.1f}   {steps / wall:.0f} control steps/s   "
              f"wall {wall:.1f} s", flush=True)
    passed = all(r["success_rate"] >= args.required for r in results.values())
    print(f"reproduce: source scripts/env.sh && python benchmarks/scripted_operator_success.py --episodes {args.episodes}"
          + (f" --tasks {' '.join(args.tasks)}" if args.tasks != task_names() else ""))
    print(json.dumps({"benchmark": "scripted_operator_success", "episodes_per_task": args.episodes,
                      "required": args.required, "all_passed": passed,
                      "success_rate": {k: v["success_rate"] for k, v in results.items()},
                      "tasks": results, "machine": platform.node(), "cpus": os.cpu_count()}))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
