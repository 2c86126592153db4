"""RLPD learner throughput on cached image features (CPU).

Measures ``RLPDAgent.update(batch)`` calls per second at batch 256 with two
cameras of cached ResNet-10 features (float16, channel-last ``[4, 4, 512]``) plus proprio,
for 2 and for 10 critics. One update = one critic step; every
``critic_actor_ratio``-th update also steps the actor and temperature, so a
timed block always holds whole critic/actor cycles. Reported: median over
repeats of the block rate, after warm-up.

Reproduce:
    cd /work/main && source scripts/env.sh && python benchmarks/learner_throughput.py
    (options: --threads 1 2, --compute-dtype auto float32, --num-spatial-kernels 1 8,
     --actor-encoder separate)

Each figure is measured at every ``--threads`` count; the headline
``updates_per_s_<n>_critics`` is the best of them at the first ``--compute-dtype``
(on a shared machine with few cores a second torch thread helps only while another
core is idle: with a busy neighbour, OpenMP's spinning makes 2 threads slower than 1).

The last line printed is one JSON object (keys carry their units).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src" / "hilserl_core"))

import machine  # noqa: E402  (benchmarks/machine.py)

from hilserl_core.accel.allocator import configure_cpu_allocator  # noqa: E402
from hilserl_core.accel.precision import COMPUTE_DTYPES, resolve_compute_dtype  # noqa: E402
from hilserl_core.formats.config import replace, to_dict  # noqa: E402
from hilserl_core.formats.types import FEATURE_SHAPE_128, Batch, feature_key  # noqa: E402
from hilserl_core.rl.rlpd import RLPDAgent, RLPDConfig  # noqa: E402

CAMERAS = ("wrist", "side")
PROPRIO_DIM = 19
ACTION_DIM = 6


def make_batch(batch_size: int, feature_shape=FEATURE_SHAPE_128, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)

    def obs():
        o = {feature_key(c): torch.rand(batch_size, *feature_shape, generator=g).half() for c in CAMERAS}
        o["proprio"] = torch.randn(batch_size, PROPRIO_DIM, generator=g)
        return o

    return Batch(
        observations=obs(),
        actions=torch.rand(batch_size, ACTION_DIM, generator=g) * 2 - 1,
        rewards=(torch.rand(batch_size, generator=g) < 0.1).float(),
        terminated=(torch.rand(batch_size, generator=g) < 0.05).float(),
        next_observations=obs(),
        grasp_actions=torch.randint(0, 3, (batch_size,), generator=g),
        grasp_penalties=torch.zeros(batch_size),
        intervened=torch.zeros(batch_size, dtype=torch.bool),
    )


def measure(config: RLPDConfig, warmup: int, block: int, repeats: int) -> dict:
    agent = RLPDAgent(config, ACTION_DIM, CAMERAS, PROPRIO_DIM)
    batch = make_batch(config.batch_size)
    for _ in range(warmup):
        agent.update(batch)
    rates, cpu_ms = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(block):
            agent.update(batch)
        rates.append(block / (time.perf_counter() - t0))
        cpu_ms.append((time.process_time() - c0) / block * 1e3)
    return {
        "median_updates_per_s": statistics.median(rates),
        "median_cpu_ms_per_update": statistics.median(cpu_ms),
        "min_updates_per_s": min(rates),
        "max_updates_per_s": max(rates),
    }


def replay_bytes_per_transition() -> "dict | None":
    """Bytes per stored transition from the data engineer's buffer (hilserl_core.rl.replay)."""
    try:
        from hilserl_core.rl.replay import bytes_per_transition
    except ImportError:
        return None
    return {
        mode: float(bytes_per_transition(cameras=CAMERAS, mode=mode, proprio_dim=PROPRIO_DIM, action_dim=ACTION_DIM))
        for mode in ("feature", "image")
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                   help="torch intra-op thread counts to measure; the headline figure is the best of them")
    p.add_argument("--compute-dtype", nargs="+", default=["auto", "float32"], choices=COMPUTE_DTYPES,
                   help="RLPDConfig.compute_dtype values to measure; the headline figure is the first")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--block", type=int, default=20, help="updates per timed block (a multiple of the ratio)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--num-spatial-kernels", type=int, nargs="+", default=None,
                   help="also measure these k values (paper: 8); default: only the config default")
    p.add_argument("--actor-encoder", choices=("shared_detached", "separate"), default=None)
    p.add_argument("--no-native", action="store_true",
                   help="plain torch instead of the native spatial-embedding kernel (sets HILSERL_NATIVE=0)")
    p.add_argument("--no-allocator-tuning", action="store_true",
                   help="leave glibc malloc at its defaults (see hilserl_core.accel.allocator; the learner node tunes it)")
    args = p.parse_args()
    if args.no_native:
        os.environ["HILSERL_NATIVE"] = "0"  # read on the kernel's first use, below
    from hilserl_core.accel import native

    allocator_tuned = False if args.no_allocator_tuning else configure_cpu_allocator()

    base = RLPDConfig()
    if args.actor_encoder:
        base = replace(base, actor_encoder=args.actor_encoder)
    host = machine.describe()
    print(f"torch {torch.__version__}, {machine.summary(host)}, load average {os.getloadavg()[0]:.1f} "
          "(shared machine: other processes compete for the cores)")
    print(f"batch {base.batch_size}, cameras {CAMERAS} with cached float16 features {list(FEATURE_SHAPE_128)}, "
          f"proprio {PROPRIO_DIM}, action {ACTION_DIM}; update = 1 critic step (+ actor/temperature every "
          f"{base.critic_actor_ratio}); median of {args.repeats} blocks of {args.block} after {args.warmup} warm-up; "
          f"glibc allocator tuned: {allocator_tuned}")
    print(f"spatial embedding: {native.status()}")
    result: dict = {}
    ks = args.num_spatial_kernels or [base.num_spatial_kernels]
    headline_dtype = args.compute_dtype[0]
    for dtype_name in args.compute_dtype:
        resolved = str(resolve_compute_dtype(dtype_name)).replace("torch.", "")
        dsuffix = "" if dtype_name == headline_dtype else f"_{dtype_name}"
        for k in ks:
            ksuffix = "" if k == base.num_spatial_kernels else f"_k{k}"
            for n in (2, 10):
                best = None
                for threads in args.threads:
                    torch.set_num_threads(threads)
                    config = replace(base, num_critics=n, num_spatial_kernels=k, compute_dtype=dtype_name)
                    r = measure(config, args.warmup, args.block, args.repeats)
                    print(f"  compute_dtype={dtype_name} ({resolved}) k={k} critics={n:2d} threads={threads}: "
                          f"{r['median_updates_per_s']:.1f} updates/s (min {r['min_updates_per_s']:.1f}, "
                          f"max {r['max_updates_per_s']:.1f}), {1000 / r['median_updates_per_s']:.2f} ms/update wall, "
                          f"{r['median_cpu_ms_per_update']:.2f} ms CPU (all threads)")
                    key = f"updates_per_s_{n}_critics{ksuffix}{dsuffix}"
                    result[f"{key}_{threads}_threads"] = round(r["median_updates_per_s"], 2)
                    result[f"cpu_ms_per_update_{n}_critics{ksuffix}{dsuffix}_{threads}_threads"] = round(
                        r["median_cpu_ms_per_update"], 2)
                    if best is None or r["median_updates_per_s"] > best[1]:
                        best = (threads, r["median_updates_per_s"])
                result[key] = round(best[1], 2)
                result[f"{key}_best_threads"] = best[0]
        result[f"compute_dtype{dsuffix}"] = f"{dtype_name} ({resolved})"
    for n in (2, 10):
        key = f"updates_per_s_{n}_critics"
        print(f"headline: {n} critics, compute_dtype={headline_dtype}: {result[key]:.1f} updates/s "
              f"({result[key + '_best_threads']} thread(s))")
    bpt = replay_bytes_per_transition()
    if bpt is None:
        print("bytes_per_transition: hilserl_core.rl.replay not available; not measured")
    else:
        print(f"replay bytes/transition (hilserl_core.rl.replay.bytes_per_transition, same cameras/proprio/action): "
              f"feature mode {bpt['feature']:.0f} B, image mode {bpt['image']:.0f} B")
        result["bytes_per_transition"] = bpt["feature"]
        result["bytes_per_transition_image_mode"] = bpt["image"]
    result["config"] = {k: v for k, v in to_dict(base).items() if k not in ("num_critics",)}
    result["batch_size_transitions"] = base.batch_size
    result["threads_measured"] = args.threads
    result["allocator_tuned"] = allocator_tuned
    result["native_kernel"] = native.in_use()
    result["load_average_1min"] = os.getloadavg()[0]
    result["machine"] = host
    result["reproduce"] = "cd /work/main && source scripts/env.sh && python benchmarks/learner_throughput.py " + " ".join(
        sys.argv[1:]
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
