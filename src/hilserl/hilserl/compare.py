"""``hilserl compare <setup> [task:=..] [seeds:=3] [first_seed:=0] [steps:=N] [episodes:=20] [methods:=a,b]``:
the paper's Table 2 on a simulated task.

Each method trains with ``hilserl train`` from the same scripted demos (per seed), the same
step budget and the same simulator seeds, and is evaluated with ``hilserl eval`` (policy alone,
held-out seeds). Methods:

==========  ===============================================================================
hil-serl    RLPD with demos and the scripted operator's interventions (this project's method)
rlpd        RLPD with demos, no interventions
rl          RLPD with neither demos nor interventions
bc          behaviour cloning of the demos (no interventions)
hg-dagger   behaviour cloning of the demos and of every intervention (HG-DAgger)
==========  ===============================================================================

Writes ``runs/compare-<setup>-<task>/<method>-seed<k>/`` (each a full run directory) and
``runs/compare-<setup>-<task>/table.md``: success rate (mean over seeds, and per seed) and cycle
time of successful episodes, per method, of every evaluated run in that directory (those of earlier
invocations with other ``methods:=`` or ``seeds:=`` included). Run again, it goes on where it stopped: a finished run
is not trained again (``hilserl train`` resumes an unfinished one), and its evaluation is kept
when it is of the run's newest checkpoint. ``first_seed:=K`` runs seeds K to K + seeds - 1 (say,
one seed per machine into copies of the directory, merged by copying the run directories back).
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Callable, Dict, List, Mapping

from .graph import GraphError, load_graph, pop_whole_numbers

__all__ = ["METHODS", "run_compare", "table"]

# method -> (graph arguments, node parameters)
METHODS: Dict[str, tuple] = {
    "hil-serl": ({"operator": "assist"}, {}),
    "rlpd": ({"operator": "off"}, {}),
    "rl": ({"operator": "off", "demos": "none"}, {"learner_node": {"learner.demo_fraction": 0.0}}),
    "bc": ({"operator": "off"}, {"learner_node": {"learner.algorithm": "bc"}}),
    "hg-dagger": ({"operator": "assist"}, {"learner_node": {"learner.algorithm": "bc"}}),
}


def table(results: Mapping[str, List[dict]], title: str) -> str:
    """Markdown: per method, success rate over seeds and cycle time of successes."""
    lines = [f"# {title}", "", "| method | success rate (mean) | per seed | cycle time of successes (s) | env steps | wall-clock (min) |",
             "|---|---|---|---|---|---|"]
    for method, runs in results.items():
        rates = [r["success_rate"] for r in runs]
        cycles = [r["cycle_time_s"] for r in runs if r["cycle_time_s"] is not None]
        cycle = f"{statistics.mean(cycles):.1f}" if cycles else "-"
        lines.append(f"| {method} | {statistics.mean(rates):.2f} | {', '.join(f'{x:.2f}' for x in rates)} | {cycle} | "
                     f"{statistics.mean(r['env_steps'] for r in runs):.0f} | "
                     f"{statistics.mean(r['wall_clock_s'] for r in runs) / 60:.1f} |")
    return "\n".join(lines) + "\n"


def _evaluated(run: Path, episodes: int, seed: int) -> bool:
    """Whether ``run/eval.json`` evaluates the run's newest checkpoint on ``episodes`` episodes from
    ``seed`` (an interrupted compare goes on without evaluating finished runs again)."""
    from hilserl_core.rl.learner import latest_checkpoint

    try:
        ev = json.loads((run / "eval.json").read_text())
    except (OSError, ValueError):
        return False
    newest = latest_checkpoint(run / "checkpoints")
    return (newest is not None and ev.get("checkpoint") == newest.name and ev.get("seed") == seed
            and ev.get("deterministic", True) and (ev.get("policy") or {}).get("episodes") == episodes)


def finished_runs(root: Path, episodes: int) -> Dict[str, List[dict]]:
    """Every run under ``root`` (``<method>-seed<k>``) evaluated on ``episodes`` episodes from its
    seed's held-out seeds, per method (in ``METHODS`` order) and seed: what the table shows."""
    results: Dict[str, List[dict]] = {}
    for method in METHODS:
        named = (re.fullmatch(rf"{re.escape(method)}-seed(\d+)", p.name) for p in root.glob(f"{method}-seed*"))
        for seed in sorted(int(m.group(1)) for m in named if m):
            run = root / f"{method}-seed{seed}"
            if not (_evaluated(run, episodes, 1000 + 100 * seed) and (run / "summary.json").is_file()):
                continue
            ev = json.loads((run / "eval.json").read_text())["policy"]
            summary = json.loads((run / "summary.json").read_text())
            results.setdefault(method, []).append({"seed": seed, "success_rate": ev["success_rate"], "cycle_time_s": ev["cycle_time_s"],
                                                   "env_steps": summary["env_steps"], "wall_clock_s": summary["wall_clock_s"]})
    return results


def run_compare(setup: str, arguments: Mapping[str, str], say: Callable[[str], None] = print) -> int:
    from .evaluate import run_eval
    from .train import INTERRUPTED, run_train

    args = dict(arguments)
    n = pop_whole_numbers(args, {"seeds": 3, "first_seed": 0, "episodes": 20}, "compare")
    if n["seeds"] < 1 or n["first_seed"] < 0 or n["episodes"] < 1:
        raise GraphError(f"compare: seeds:={n['seeds']} and episodes:={n['episodes']} must be at least 1, first_seed:={n['first_seed']} at least 0")
    seeds, episodes = range(n["first_seed"], n["first_seed"] + n["seeds"]), n["episodes"]
    methods = [m for m in args.pop("methods", ",".join(METHODS)).split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise GraphError(f"compare: unknown method(s) {', '.join(unknown)}; methods: {', '.join(METHODS)}")
    task = args.get("task", dict(load_graph(setup).arguments).get("task", ""))
    root = Path(args.pop("run", f"runs/compare-{setup}-{task}"))
    for seed in seeds:  # every method at a seed before the next seed: a stopped compare leaves whole rows of seeds
        for method in methods:
            graph_args, node_params = METHODS[method]
            run = root / f"{method}-seed{seed}"
            say(f"[compare] {method}, seed {seed}: {run}")
            status = run_train(setup, {**args, **graph_args, "seed": str(seed), "run": str(run)}, say=say, node_params=node_params)
            if status == INTERRUPTED:  # not evaluated: the table holds whole runs only
                say(f"[compare] interrupted while training {method}, seed {seed}; the same command goes on from there")
                return status
            if status != 0:
                raise GraphError(f"compare: training {method} seed {seed} failed (status {status}); see {run / 'graph.log'}")
            eval_seed = 1000 + 100 * seed
            if _evaluated(run, episodes, eval_seed):
                say(f"[compare] {run / 'eval.json'}: its newest checkpoint is evaluated already ({episodes} episodes, seed {eval_seed})")
            else:
                run_eval(str(run), {"episodes": str(episodes), "seed": str(eval_seed), "scripted": "false"}, say=say)
            results = finished_runs(root, episodes)
            counts = sorted({len(runs) for runs in results.values()})
            seeds_done = f"{counts[0]} seed(s)" if len(counts) == 1 else f"{counts[0]}-{counts[-1]} seeds per method"
            out = table(results, f"{setup} {task}: {episodes} evaluation episodes per run, {seeds_done}")
            (root / "table.md").write_text(out)
            (root / "results.json").write_text(json.dumps(results, indent=1))
    say(out)
    say(f"[compare] wrote {root / 'table.md'}")
    return 0
