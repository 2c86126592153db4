"""Frozen ResNet-10 pass time and feature fidelity per compute dtype (float32, bfloat16, int8).

The actor runs the frozen encoder over every camera image of every observation; its time is
most of the camera -> controller-target latency (benchmarks/latency.py). This script times one
pass over 1, 2 and 4 images of 128 px on one torch thread (as the nodes run it), with the
dtypes interleaved round by round so that a noisy neighbour slows them alike, and reports the
median over rounds. Fidelity: the relative L2 deviation of each dtype's features from float32
over photo-like images (smoothed random pixels) and over pure noise, with the encoder's
seeded random weights or, with ``--weights``, a weights file (pretrained weights cannot be
downloaded here; with them the int8 deviation is the figure to check). int8 is also checked to give an image bit-identical features alone and in a
batch.

    python benchmarks/encoder.py
    python benchmarks/encoder.py --rounds 3 --repeats 5     # quick
    python benchmarks/encoder.py --weights resnet10.safetensors   # converted pretrained weights

The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import machine  # noqa: E402  (benchmarks/machine.py)
import numpy as np
import torch
import torch.nn.functional as F

from hilserl_core.vision.encoders import int8_available, load_frozen_encoder

BATCHES = (1, 2, 4)


def photo_like(n: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.integers(0, 256, (n, 128, 128, 3), dtype=np.uint8)).permute(0, 3, 1, 2).float()
    return F.avg_pool2d(x, 5, 1, 2).permute(0, 2, 3, 1).round().to(torch.uint8).contiguous()


def deviation(out: torch.Tensor, ref: torch.Tensor) -> tuple:
    per_image = (out - ref).flatten(1).norm(dim=1) / ref.flatten(1).norm(dim=1)
    return float((out - ref).norm() / ref.norm()), float(per_image.max())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds; the figure is the median over rounds")
    ap.add_argument("--repeats", type=int, default=20, help="passes per dtype and batch in a round (the round's median)")
    ap.add_argument("--weights", default="", help="encoder weights (safetensors, e.g. converted pretrained ones); default: seeded random")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    ok, why = int8_available()
    dtypes = ["float32", "bfloat16"] + (["int8"] if ok else [])
    if not ok:
        print(f"[encoder] int8 skipped: {why}", flush=True)
    host = machine.describe()
    print(f"[encoder] {machine.summary(host)}", flush=True)
    encoders = {d: load_frozen_encoder(args.weights, d) for d in dtypes}
    print(f"[encoder] weights: {args.weights or 'seeded random (no pretrained weights given)'}", flush=True)
    images = {n: photo_like(n, 10 + n) for n in BATCHES}
    times = {(d, n): [] for d in dtypes for n in BATCHES}
    for d in dtypes:  # first passes (int8 packing, bfloat16 conv-path timing) are not timed
        for n in BATCHES:
            encoders[d](images[n])
    for r in range(args.rounds):
        for n in BATCHES:
            for d in dtypes:
                t = []
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    encoders[d](images[n])
                    t.append(time.perf_counter() - t0)
                times[(d, n)].append(statistics.median(t))
        print(f"[encoder]   round {r + 1}/{args.rounds}: " + "  ".join(
            f"{d} {times[(d, 4)][-1] * 1e3:.2f}" for d in dtypes) + " ms (4 images)", flush=True)
    figures = {f"pass_ms_{d}_{n}_images": round(statistics.median(times[(d, n)]) * 1e3, 2) for d in dtypes for n in BATCHES}
    if "int8" in dtypes:
        figures["speedup_int8_over_bfloat16_4_images"] = round(figures["pass_ms_bfloat16_4_images"] / figures["pass_ms_int8_4_images"], 2)
        figures["speedup_int8_over_bfloat16_2_images"] = round(figures["pass_ms_bfloat16_2_images"] / figures["pass_ms_int8_2_images"], 2)
    photos, noise = photo_like(8, 1), torch.from_numpy(np.random.default_rng(2).integers(0, 256, (8, 128, 128, 3), dtype=np.uint8))
    for name, imgs in (("photo_like", photos), ("noise", noise)):
        ref = encoders["float32"](imgs)
        for d in dtypes[1:]:
            overall, worst = deviation(encoders[d](imgs), ref)
            figures[f"feature_deviation_{d}_{name}"] = round(overall, 4)
            figures[f"feature_deviation_{d}_{name}_worst_image"] = round(worst, 4)
    if "int8" in dtypes:
        batch = encoders["int8"](photos)
        figures["int8_batch_independent"] = all(torch.equal(encoders["int8"](photos[i : i + 1])[0], batch[i]) for i in range(len(photos)))
    figures["machine"] = host
    figures["weights"] = args.weights or "random"
    cmd = f"python benchmarks/encoder.py --rounds {args.rounds} --repeats {args.repeats}" + (f" --weights {args.weights}" if args.weights else "")
    figures["reproduce"] = cmd
    print("\none frozen ResNet-10 pass, 128 px, one thread (median over rounds):")
    for n in BATCHES:
        print(f"  {n} image(s): " + "   ".join(f"{d} {figures[f'pass_ms_{d}_{n}_images']} ms" for d in dtypes))
    print("features against float32 (relative L2, all images / worst image):")
    for d in dtypes[1:]:
        print(f"  {d}: photo-like {figures[f'feature_deviation_{d}_photo_like']:.2%} / {figures[f'feature_deviation_{d}_photo_like_worst_image']:.2%}"
              f", noise {figures[f'feature_deviation_{d}_noise']:.2%} / {figures[f'feature_deviation_{d}_noise_worst_image']:.2%}")
    if "int8" in dtypes:
        print(f"int8 / bfloat16 speed-up: {figures['speedup_int8_over_bfloat16_4_images']}x (4 images), "
              f"{figures['speedup_int8_over_bfloat16_2_images']}x (2 images); int8 features the same alone and in a batch: "
              f"{figures['int8_batch_independent']}")
    print(f"reproduce: {cmd}")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
