#!/usr/bin/env python
"""hilserl_sim throughput: control steps per second at 10 Hz control with 128x128 cameras (issue 4).

One control step = apply the per-arm action (mux-equivalent target integration),
0.1 s of physics at 500 Hz with the impedance controller (hilserl_core.robot.control)
evaluated at every physics step, read the per-arm state (pose, twist, contact
wrench, gripper) and render the requested cameras (one reused offscreen renderer).

Measured: single arm (pick_cube, cameras arm/wrist + arm/front), dual arm
(handover, cameras left/wrist + right/wrist; and, for reference, all four).
In the same run it times gym-hil 0.1.14's PandaPickCubeBase-v0 with image
observations in a throw-away venv (.bench-venv-gymhil, created on demand with
`pip install gym-hil==0.1.14 mujoco==3.8.1`) and prints the ratio.

Reproduce:
    source scripts/env.sh && python benchmarks/sim_throughput.py

The last line printed is one JSON object. Timings are medians of --repeats runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402

from hilserl_sim.env import ArmAction, TaskEnv  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GYM_HIL_VENV = ROOT / ".bench-venv-gymhil"
GYM_HIL_PINS = ["gym-hil==0.1.14", "mujoco==3.8.1"]

GYM_HIL_SCRIPT = textwrap.dedent(
    """
    import json, os, statistics, sys, time
    os.environ.setdefault("MUJOCO_GL", "egl")
    import gymnasium as gym
    import gym_hil  # noqa: F401  (registers the environments)
    steps, repeats = int(sys.argv[1]), int(sys.argv[2])
    env = gym.make("gym_hil/PandaPickCubeBase-v0", image_obs=True)
    obs, _ = env.reset(seed=0)
    shapes = {k: list(getattr(v, "shape", ())) for k, v in (obs.items() if isinstance(obs, dict) else [])}
    pixels = obs.get("pixels", {}) if isinstance(obs, dict) else {}
    if isinstance(pixels, dict):
        shapes.update({"pixels/" + k: list(v.shape) for k, v in pixels.items()})
    rng = __import__("numpy").random.default_rng(0)
    for _ in range(3):
        env.step(env.action_space.sample())
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            obs, r, term, trunc, info = env.step(env.action_space.sample())
            if term or trunc:
                env.reset()
        rates.append(steps / (time.perf_counter() - t0))
    print(json.dumps({"steps_per_s": statistics.median(rates), "runs": rates, "obs_shapes": shapes,
                      "control_dt": getattr(env.unwrapped, "control_dt", None)}))
    """
)


def time_sim(task: str, cameras, steps: int, repeats: int, seed: int = 0):
    env = TaskEnv(task, cameras=cameras)
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)

    def actions():
        return {a: ArmAction(rng.uniform(-0.5, 0.5, 6), 0.0) for a in env.arm_names}

    for _ in range(3):  # warm-up: first render creates the GL context
        env.step(actions())
    rates, render_ms = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            _, _, term, trunc, _ = env.step(actions())
            if term or trunc:
                env.reset()
        rates.append(steps / (time.perf_counter() - t0))
    for _ in range(20):
        t0 = time.perf_counter()
        env.sim.render(env.cameras)
        render_ms.append(1e3 * (time.perf_counter() - t0))
    env.close()
    return {"steps_per_s": statistics.median(rates), "runs": [round(r, 2) for r in rates],
            "render_ms_median": round(statistics.median(render_ms), 2), "cameras": list(cameras),
            "physics_hz": round(1.0 / env.sim.model.opt.timestep), "image_size": [128, 128]}


def ensure_gym_hil_venv(log) -> Path | None:
    py = GYM_HIL_VENV / "bin" / "python"
    if py.exists() and subprocess.run([str(py), "-c", "import gym_hil"], capture_output=True).returncode == 0:
        return py
    log(f"creating {GYM_HIL_VENV} with {' '.join(GYM_HIL_PINS)} (one-off, throw-away)")
    try:
        subprocess.run([sys.executable, "-m", "venv", str(GYM_HIL_VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "--quiet", *GYM_HIL_PINS], check=True)
    except subprocess.CalledProcessError as exc:
        log(f"could not install gym-hil: {exc}")
        return None
    return py


def time_gym_hil(steps: int, repeats: int, log):
    py = ensure_gym_hil_venv(log)
    if py is None:
        return None
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env.setdefault("MUJOCO_GL", "egl")
    proc = subprocess.run([str(py), "-c", GYM_HIL_SCRIPT, str(steps), str(repeats)], capture_output=True, text=True,
                          env=env, timeout=1800)
    if proc.returncode != 0:
        log("gym-hil run failed:\n" + proc.stderr[-2000:])
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=100, help="control steps per timed run")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs (the median is reported)")
    ap.add_argument("--gym-hil-steps", type=int, default=30, help="gym-hil steps per timed run (it is slow)")
    ap.add_argument("--skip-gym-hil", action="store_true")
    args = ap.parse_args(argv)
    log = lambda msg: print(msg, flush=True)  # noqa: E731

    single = time_sim("pick_cube", ("arm/wrist", "arm/front"), args.steps, args.repeats)
    log(f"single arm, 2 cameras 128x128 : {single['steps_per_s']:6.1f} control steps/s  runs {single['runs']}  "
        f"(render {single['render_ms_median']} ms)")
    dual = time_sim("handover", ("left/wrist", "right/wrist"), args.steps, args.repeats)
    log(f"dual arm,   2 cameras 128x128 : {dual['steps_per_s']:6.1f} control steps/s  runs {dual['runs']}  "
        f"(render {dual['render_ms_median']} ms)")
    dual4 = time_sim("handover", ("left/wrist", "left/front", "right/wrist", "right/front"), args.steps, args.repeats)
    log(f"dual arm,   4 cameras 128x128 : {dual4['steps_per_s']:6.1f} control steps/s  runs {dual4['runs']}  "
        f"(render {dual4['render_ms_median']} ms)")
    gym_hil = None if args.skip_gym_hil else time_gym_hil(args.gym_hil_steps, args.repeats, log)
    ratio = None
    if gym_hil is not None:
        ratio = single["steps_per_s"] / gym_hil["steps_per_s"]
        log(f"gym-hil PandaPickCubeBase-v0 (image obs {gym_hil['obs_shapes']}): {gym_hil['steps_per_s']:.2f} steps/s  "
            f"runs {[round(r, 2) for r in gym_hil['runs']]}")
        log(f"ratio hilserl_sim single arm / gym-hil: {ratio:.1f}x")
    log("reproduce: source scripts/env.sh && python benchmarks/sim_throughput.py")
    log(f"machine: {platform.node()} {os.cpu_count()} CPUs (shared: timings are medians, noisy)")
    print(json.dumps({
        "benchmark": "sim_throughput",
        "steps_per_s_single_arm": round(single["steps_per_s"], 2),
        "steps_per_s_dual_arm": round(dual["steps_per_s"], 2),
        "steps_per_s_dual_arm_4_cameras": round(dual4["steps_per_s"], 2),
        "gym_hil_steps_per_s": round(gym_hil["steps_per_s"], 3) if gym_hil else None,
        "ratio_single_arm_to_gym_hil": round(ratio, 2) if ratio else None,
        "target_steps_per_s": 25,
        "details": {"single_arm": single, "dual_arm": dual, "dual_arm_4_cameras": dual4, "gym_hil": gym_hil},
        "cpus": os.cpu_count(),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
