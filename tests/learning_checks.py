"""Learning checks: one training run per seed, judged by the median over seeds.

A single seed's figure moves with the host's arithmetic (bfloat16 on AVX512-BF16 and on AMX
round differently, oneDNN picks other kernels), so a learning check runs several seeds and
asserts on their median, with a budget that leaves headroom past where the runs measured in
the test's comment had converged. Seeds run in separate processes, two at a time where two
CPUs are free, each with one torch thread (as the nodes run their small products).
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Dict, Sequence


def _one_thread(fn: Callable, args: tuple):
    import torch

    torch.set_num_threads(1)
    return fn(*args)


def run_seeds(fn: Callable, seeds: Sequence[int], *args) -> Dict[int, float]:
    """``{seed: fn(seed, *args)}``; ``fn`` must be importable (a module-level function), as each
    seed runs in a fresh process started with ``spawn`` (the environment, and so any forced
    precision, is inherited)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = max(1, min(2, cpus, len(seeds)))
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = pool.map(_one_thread, [fn] * len(seeds), [(seed, *args) for seed in seeds])
        return dict(zip(seeds, (float(r) for r in results)))


def median_at_least(what: str, figures: Dict[int, float], threshold: float) -> float:
    """Print every seed's figure (and append it to ``$HILSERL_LEARNING_LOG`` where set) and return
    their median after asserting it reaches ``threshold``."""
    median = statistics.median(figures.values())
    line = f"{what}: median {median:.3f} (threshold {threshold}) over seeds " + ", ".join(
        f"{seed}: {value:.3f}" for seed, value in figures.items())
    print(line)
    if os.environ.get("HILSERL_LEARNING_LOG"):  # one line per check, for a record of a whole run
        with open(os.environ["HILSERL_LEARNING_LOG"], "a", encoding="utf-8") as f:
            f.write(line + "\n")
    assert median >= threshold, line
    return median
