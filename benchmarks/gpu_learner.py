"""Learner updates/s with image storage and augmentation (the GPU learner's setting).

The learner is built as the node builds it (``hilserl_core.rl.build.build_learner`` from a
``LearnerNodeConfig`` with ``learner.storage: images``): uint8 images in host-memory replay
buffers, and per update one 50/50 demo/online batch drawn, moved to the device (pinned,
non-blocking), randomly shifted (pad 4), run through the frozen ResNet-10 (observations and next
observations, two cameras), then one RLPD update and one grasp-critic update. One update = one
``Learner.train_step()``; the actor and temperature step every ``critic_actor_ratio``-th one, so
a timed block holds whole cycles. Measured for 2 and 10 critics at batch 256, on whatever device
``--device`` (default auto: a CUDA GPU when torch sees one) gives; the device is printed.
Reported: median over repeats of the block rate after warm-up, and the share of an update the
augmentation and frozen encoder take (timed alone on the same batches).

Reproduce:
    cd /work/main && source scripts/env.sh && python benchmarks/gpu_learner.py
    (options: --device cpu|cuda|cuda:N, --num-spatial-kernels 1 8 (paper: 8), --no-grasp,
     --quick: a tiny batch and a few updates, to check that it runs, e.g. on a CPU)

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

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src" / "hilserl_core"))

import machine  # noqa: E402  (benchmarks/machine.py)

from hilserl_core.formats import config as cfg  # noqa: E402
from hilserl_core.formats.types import IMAGE_PREFIX, Transition, camera_key  # noqa: E402
from hilserl_core.rl.build import LearnerNodeConfig, build_learner, dims  # noqa: E402

CAMERAS = ("left/wrist", "left/side")
EPISODE_STEPS = 25


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fill(learner, conf: LearnerNodeConfig, transitions: int, seed: int = 0) -> None:
    """Random-image episodes through ``Learner.add`` (every other step an intervention, so the demo
    buffer fills as well)."""
    proprio_dim, action_dim = dims(conf)
    rng = np.random.default_rng(seed)
    cams = [camera_key(c) for c in conf.cameras]

    def frame():
        o = {"proprio": rng.standard_normal(proprio_dim).astype(np.float32)}
        o.update({IMAGE_PREFIX + c: rng.integers(0, 256, (128, 128, 3), dtype=np.uint8) for c in cams})
        return o

    episode, obs = 0, frame()
    for i in range(transitions):
        step = i % EPISODE_STEPS
        last = step == EPISODE_STEPS - 1
        nxt = frame()
        learner.add(Transition(obs, rng.uniform(-1, 1, action_dim).astype(np.float32), float(last), last, False, nxt,
                               intervened=step % 2 == 0, grasp_action=int(rng.integers(3)), episode_id=episode,
                               step=step))
        obs = nxt
        if last:
            episode, obs = episode + 1, frame()


def measure(conf: LearnerNodeConfig, transitions: int, warmup: int, block: int, repeats: int) -> dict:
    learner = build_learner(conf)
    device = learner.device
    fill(learner, conf, transitions)
    for _ in range(warmup):
        learner.train_step()
    synchronize(device)
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(block):
            metrics = learner.train_step()
        synchronize(device)
        rates.append(block / (time.perf_counter() - t0))
    # the augmentation and frozen encoder alone, on batches drawn as train_step draws them
    batches = [learner.sampler.sample(learner.batch_size, learner.rng, None if device.type == "cpu" else device)
               for _ in range(block)]
    learner.encode_images(batches[0])
    synchronize(device)
    t0 = time.perf_counter()
    for b in batches:
        learner.encode_images(b)
    synchronize(device)
    encoder_ms = (time.perf_counter() - t0) / block * 1e3
    finite = all(np.isfinite(v) for v in metrics.values())
    return {"median_updates_per_s": statistics.median(rates), "min_updates_per_s": min(rates),
            "max_updates_per_s": max(rates), "encoder_ms_per_batch": encoder_ms, "losses_finite": finite,
            "device": device, "encoder_dtype": learner.encoder.compute_dtype,
            "compute_dtype": str(learner.agents["rlpd"].compute_dtype).replace("torch.", "")}


def device_name(device: torch.device, host: dict) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU: {machine.summary(host)}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="the learner's device parameter: auto, cpu, cuda, cuda:N")
    p.add_argument("--batch", type=int, default=256, help="transitions per update (half demo, half online)")
    p.add_argument("--critics", type=int, nargs="+", default=[2, 10], help="critic ensemble sizes to measure")
    p.add_argument("--num-spatial-kernels", type=int, default=None, help="RLPD and grasp image heads (paper: 8; "
                   "default: the config's)")
    p.add_argument("--no-grasp", action="store_true", help="without the grasp critic (use_grasp_critic false)")
    p.add_argument("--encoder-dtype", default="auto", help="frozen encoder precision (encoder_dtype)")
    p.add_argument("--transitions", type=int, default=2000, help="transitions put into the buffers before timing")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--block", type=int, default=20, help="updates per timed block (a multiple of the ratio)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--quick", action="store_true", help="batch 4, 60 transitions, 1 block of 2 updates: proves it "
                   "runs (on a CPU too); not a figure to quote")
    args = p.parse_args()
    if args.quick:
        args.batch, args.transitions, args.repeats, args.block, args.warmup = 4, 60, 1, 2, 1
    if args.threads:
        torch.set_num_threads(args.threads)

    overrides = {"cameras": list(CAMERAS), "device": args.device, "encoder_dtype": args.encoder_dtype,
                 "use_grasp_critic": not args.no_grasp,
                 "learner": {"storage": "images", "rl_capacity": args.transitions + 10,
                             "demo_capacity": args.transitions + 10, "learning_starts": 1},
                 "agent": {"batch_size": args.batch}, "grasp": {}}
    if args.num_spatial_kernels:
        overrides["agent"]["num_spatial_kernels"] = overrides["grasp"]["num_spatial_kernels"] = args.num_spatial_kernels
    base = cfg.from_mapping(LearnerNodeConfig, overrides, "benchmarks/gpu_learner.py")
    host = machine.describe()
    result: dict = {}
    name = None
    for n in args.critics:
        conf = cfg.from_mapping(LearnerNodeConfig, {**overrides, "agent": {**overrides["agent"], "num_critics": n}},
                                "benchmarks/gpu_learner.py")
        r = measure(conf, args.transitions, args.warmup, args.block, args.repeats)
        if name is None:
            name = device_name(r["device"], host)
            print(f"torch {torch.__version__}, device {r['device']} ({name}), load average {os.getloadavg()[0]:.1f}")
            print(f"image storage: batch {args.batch}, cameras {CAMERAS} uint8 128x128 (random shift pad 4, frozen "
                  f"ResNet-10 in {r['encoder_dtype']}), matrix products {r['compute_dtype']}, "
                  f"num_spatial_kernels {base.agent.num_spatial_kernels}, grasp critic {not args.no_grasp}; "
                  f"median of {args.repeats} blocks of {args.block} updates after {args.warmup} warm-up"
                  + (" [--quick: not a figure to quote]" if args.quick else ""))
        ms = 1000 / r["median_updates_per_s"]
        print(f"  critics={n:2d}: {r['median_updates_per_s']:.2f} updates/s (min {r['min_updates_per_s']:.2f}, max "
              f"{r['max_updates_per_s']:.2f}), {ms:.1f} ms/update, of which augmentation + frozen encoder "
              f"{r['encoder_ms_per_batch']:.1f} ms; losses finite: {r['losses_finite']}")
        result[f"updates_per_s_{n}_critics"] = round(r["median_updates_per_s"], 3)
        result[f"ms_per_update_{n}_critics"] = round(ms, 2)
        result[f"encoder_ms_per_batch_{n}_critics"] = round(r["encoder_ms_per_batch"], 2)
        result[f"losses_finite_{n}_critics"] = r["losses_finite"]
        result["encoder_dtype"], result["compute_dtype"] = r["encoder_dtype"], r["compute_dtype"]
        result["device"] = str(r["device"])
    result["device_name"] = name
    result["batch_size_transitions"] = args.batch
    result["num_spatial_kernels"] = base.agent.num_spatial_kernels
    result["grasp_critic"] = not args.no_grasp
    result["quick"] = args.quick
    result["torch"] = torch.__version__
    result["load_average_1min"] = os.getloadavg()[0]
    result["machine"] = host
    result["reproduce"] = "cd /work/main && source scripts/env.sh && python benchmarks/gpu_learner.py " + " ".join(
        sys.argv[1:])
    print(f"reproduce: {result['reproduce']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
