"""Timings of single parts that the test suite used to decide on, measured on this host.

Whether a part is fast enough depends on the host's speed and on what else it runs, so
these figures are measured here and compared with their budgets in the printout instead of
failing a test run on a slow or busy machine:

- ``replay_sample_256_ms``: ``ReplayBuffer.sample(256)`` from a 100k-slot feature buffer
  whose data spans 8192 slots (256 MB, beyond the CPU caches); budget 50 ms (the learner's
  update at ~10 updates/s must not wait on sampling).
- ``crop_resize_vga_ms``: crop and area-resize of a 640x480 camera frame to 128x128
  (``imageproc.CropResizer``); budget 15 ms of the 100 ms control period.
- ``int8_gil_waits_python`` / ``int8_gil_waits_operator``: voluntary context switches per
  encoder call while two threads encode at once, as the actor's encoder threads do. The
  Python int8 forward gives the GIL up and waits for it at each of its ~30 torch calls; the
  one-operator forward (``torch.ops.hilserl.resnet10_int8``) only at its ends. Needs 2 CPUs,
  Linux and the int8 operator; otherwise reported as null with the reason.

Each time is the fastest and the median of ``--repeats`` runs (the fastest is the cost without
interference from other processes).

    python benchmarks/host_timing.py
    python benchmarks/host_timing.py --repeats 5 --calls 10     # quick

The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import threading

import machine  # noqa: E402  (benchmarks/machine.py)
import numpy as np
import torch

from hilserl_core.accel import native
from hilserl_core.formats.types import Transition
from hilserl_core.rl import replay
from hilserl_core.vision import encoders, imageproc

BUDGET_MS = {"replay_sample_256_ms": 50.0, "crop_resize_vga_ms": 15.0}


def timed(fn, repeats: int) -> tuple:
    """(fastest, median) wall time of ``fn()`` in ms after one warm-up call."""
    times = machine.wall_times_s(fn, repeats, warmup=1)
    return 1e3 * min(times), 1e3 * statistics.median(times)


def replay_sampling(repeats: int) -> tuple:
    spec = replay.make_observation_spec(("wrist", "side"), 19, "feature")
    buf = replay.ReplayBuffer(100_000, spec, 7)
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((2, 4, 4, 512)).astype(np.float16)

    def obs(i):
        return {"proprio": np.full(19, i, np.float32), "feature/wrist": feats[0], "feature/side": feats[1]}

    for i in range(200):
        buf.add(Transition(obs(i), np.zeros(7, np.float32), 0.0, False, i % 100 == 99, obs(i + 1), episode_id=i // 100))
    # Real data in 8192 consecutive slots, not the whole buffer: numpy backs large arrays with
    # huge pages, so touching slots all over the range would commit all 3.3 GB.
    slots = np.arange(10_000, 18_192)
    for key in ("feature/wrist", "feature/side"):
        buf._obs[key][slots[0] : slots[-1] + 2] = feats[0]
    buf._data["valid"][slots] = True
    buf._valid_idx = None
    return timed(lambda: buf.sample(256, rng), repeats)


def crop_resize(repeats: int) -> tuple:
    img = np.random.default_rng(2).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    cr = imageproc.CropResizer(imageproc.Roi(80, 0, 480, 480), (480, 640))
    return timed(lambda: cr(img), repeats)


def gil_waits(calls: int) -> dict:
    """Mean voluntary context switches per call of the int8 encoder, two threads at once, for
    the Python forward and for the one-operator forward (None with a reason where not measurable)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    why = None
    if not hasattr(resource, "RUSAGE_THREAD"):
        why = "needs getrusage(RUSAGE_THREAD) (Linux)"
    elif cpus < 2:
        why = "needs 2 CPUs: on one, the two threads take turns and neither waits for the GIL"
    elif not native.encoder_op_in_use():
        why = native.encoder_op_status()
    if why:
        return {"python": None, "operator": None, "why": why}
    rng = np.random.default_rng(6)
    imgs = torch.from_numpy(rng.integers(0, 256, (2, 128, 128, 3), dtype=np.uint8))

    def waits(operator: bool) -> float:
        q8 = encoders.ResNet10Encoder(seed=0, compute_dtype="int8", int8_operator=operator)
        q8(imgs)
        counts: list = []
        start = threading.Barrier(2)

        def work():
            torch.set_num_threads(1)
            start.wait(timeout=30)
            for _ in range(calls):
                before = resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw
                q8(imgs)
                counts.append(resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw - before)

        threads = [threading.Thread(target=work) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return float(np.mean(counts))

    return {"python": waits(False), "operator": waits(True), "why": None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15, help="timed runs of each part (fastest and median reported)")
    ap.add_argument("--calls", type=int, default=30, help="encoder calls per thread for the GIL-wait count")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    figures: dict = {}
    for key, fn in (("replay_sample_256_ms", replay_sampling), ("crop_resize_vga_ms", crop_resize)):
        best, median = fn(args.repeats)
        figures[key], figures[key.replace("_ms", "_median_ms")] = round(best, 3), round(median, 3)
        verdict = "within" if best <= BUDGET_MS[key] else "OVER"
        print(f"{key}: fastest {best:.2f} ms, median {median:.2f} ms of {args.repeats} ({verdict} the {BUDGET_MS[key]:.0f} ms budget)")
    waits = gil_waits(args.calls)
    figures["int8_gil_waits_python"], figures["int8_gil_waits_operator"] = waits["python"], waits["operator"]
    if waits["why"]:
        print(f"int8 GIL waits: not measured ({waits['why']})")
    else:
        print(f"int8 GIL waits per call, 2 threads: Python forward {waits['python']:.2f}, one operator {waits['operator']:.2f}")
    figures["budgets_ms"] = BUDGET_MS
    figures["machine"] = machine.describe()
    cmd = f"python benchmarks/host_timing.py --repeats {args.repeats} --calls {args.calls}"
    print(f"reproduce: {cmd}")
    figures["reproduce"] = cmd
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
