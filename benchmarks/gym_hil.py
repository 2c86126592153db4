#!/usr/bin/env python
"""gym-hil PandaPickCubeBase-v0 trained by the project's learner through the Gymnasium bridge.

Trains with ``hilserl.gym_bridge`` (the same agents, learner, policy runner and defaults as the
ROS graph) from the env's two 128x128 cameras (front, wrist) and its 18-D robot state, seeded
with scripted demos, for a step budget; then evaluates the policy alone (its mean, no random
gripper actions) on held-out seeds, and the scripted policy on the first of the same seeds.

gym-hil is a dependency of this benchmark only: it is installed on first use with
``pip install --no-deps --target .bench-venv-gymhil-target gym-hil==0.1.14`` and put on ``sys.path``; what it
needs at import (gymnasium, mujoco<3.9, hidapi) is in requirements.txt, and the project's venv is
not changed. What the run sets on the env (each printed, each an option):

- ``random_block_position=True``: the cube starts anywhere in the env's sampling box (with the
  env's default, fixed position, 50 evaluation episodes of a deterministic policy are one episode
  50 times). The env draws it from numpy's global generator, which a reset with a seed seeds here.
- the renderer without shadows and reflections (``--full-render`` keeps them): in software GL
  they cost 1.5 s per step for the two cameras here, against about 0.2 s without.
- actions: the policy drives x, y, z of the mocap target, +-1 = +-0.025 m per step (gym-hil's own
  ``EEActionWrapper`` step); the rotation inputs, which the env ignores, are held at 0; the grasp
  critic drives the gripper command (open / stay / close = -1 / 0 / +1). The state's gripper
  command (0..255) is scaled by 1/255.

Reproduce (after scripts/setup.sh; a 10k-step run takes hours on 2 cores: most of it is rendering):
    cd /work/main && source scripts/env.sh && python benchmarks/gym_hil.py
    (options: --steps 10000 --eval-episodes 50 --demos 20 --seed 0 --eval-seed 1000
     --run DIR (default runs/bench-gym_hil) --encoder-weights FILE --fixed-block --full-render)

Prints the figures and the command; the last line is one JSON object: task, success_rate, ci95,
eval_episodes, env_steps, wall_clock_s (training), cycle_time_s, demos, scripted_success_rate,
encoder.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import machine  # noqa: E402  (benchmarks/machine.py)

ROOT = Path(__file__).resolve().parents[1]
GYM_HIL_PKGS = ROOT / ".bench-venv-gymhil-target"  # ignored by git (.bench-venv*/)
GYM_HIL_PIN = "gym-hil==0.1.14"
TASK = "gym_hil/PandaPickCubeBase-v0"
STEP_M = 0.025  # gym-hil's EEActionWrapper step: metres per step at full action
GRIPPER_INDEX = 14  # agent_pos = qpos[7], qvel[7], gripper command (0..255), tcp position[3]


def import_gym_hil():
    """Import the gym_hil package, installing it (no dependencies) into .bench-venv-gymhil-target on
    first use. This script's own directory leaves sys.path meanwhile: this file is gym_hil.py too."""
    here = str(Path(__file__).resolve().parent)
    saved = list(sys.path)
    sys.path[:] = [p for p in sys.path if p not in ("", here) and Path(p or ".").resolve() != Path(here)]
    try:
        try:
            import gym_hil  # noqa: F401
            return
        except ImportError:
            pass
        if not (GYM_HIL_PKGS / "gym_hil").is_dir():
            print(f"installing {GYM_HIL_PIN} into {GYM_HIL_PKGS} (no dependencies; one-off)", flush=True)
            subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(GYM_HIL_PKGS),
                            GYM_HIL_PIN], check=True)
        sys.path.append(str(GYM_HIL_PKGS))
        import gym_hil  # noqa: F401
    finally:
        sys.path[:] = saved + [p for p in sys.path if p not in saved]


def make_env(random_block: bool, full_render: bool):
    import gymnasium as gym

    class SeededBlock(gym.Wrapper):
        """A reset with a seed also seeds numpy's global generator, from which the env draws the
        cube's position; and the renderer's shadows and reflections are off unless full_render."""

        def reset(self, *, seed=None, options=None):
            if seed is not None:
                np.random.seed(seed)
            return self.env.reset(seed=seed, options=options)

    env = gym.make(TASK, image_obs=True, random_block_position=random_block)
    if not full_render:
        import mujoco

        renderer = env.unwrapped._viewer  # gym-hil's one offscreen renderer (mujoco.Renderer)
        for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION):
            renderer.scene.flags[flag] = 0
    return SeededBlock(env)


def scripted_pick(env):
    """Above the cube, down, close, wait for the fingers, lift: env actions from the robot state and
    the cube's true position (like the project's scripted operator, it sees the scene)."""
    data = env.unwrapped._data
    state = {"closed_steps": 0}

    def act(raw):
        agent = np.asarray(raw["agent_pos"], np.float64)
        tcp, closed = agent[15:18], agent[GRIPPER_INDEX] / 255.0 > 0.5
        block = np.asarray(data.sensor("block_pos").data, np.float64)
        move, grip = np.zeros(3), 0.0
        state["closed_steps"] = state["closed_steps"] + 1 if closed else 0
        if closed:
            move[2] = STEP_M if state["closed_steps"] > 4 else 0.0  # fingers close over a few steps, then lift
        else:
            dxy = block[:2] - tcp[:2]
            target_z = block[2] + (0.06 if np.linalg.norm(dxy) > 0.01 else 0.0)  # hover until above it, then down
            move[:2], move[2] = dxy, target_z - tcp[2]
            if np.linalg.norm(dxy) < 0.01 and abs(tcp[2] - block[2]) < 0.01:
                grip = 1.0
        move = np.clip(move, -STEP_M, STEP_M)
        return np.array([*move, 0.0, 0.0, 0.0, grip], np.float32)

    return act


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10000, help="env steps of training")
    ap.add_argument("--eval-episodes", type=int, default=50)
    ap.add_argument("--scripted-episodes", type=int, default=10, help="evaluation episodes of the scripted policy (0 = none)")
    ap.add_argument("--demos", type=int, default=20, help="scripted demo episodes (the successful ones fill the demo buffer)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-seed", type=int, default=1000)
    ap.add_argument("--run", default="runs/bench-gym_hil")
    ap.add_argument("--encoder-weights", default="", help="frozen ResNet-10 weights (safetensors); empty = random weights")
    ap.add_argument("--fixed-block", action="store_true", help="the env's default: the cube always at the same place")
    ap.add_argument("--full-render", action="store_true", help="keep the renderer's shadows and reflections (slow)")
    a = ap.parse_args()

    import torch

    from hilserl.gym_bridge import GymBridge, GymBridgeConfig
    from hilserl_core.formats import config as cfg
    from hilserl_core.rl.build import LearnerNodeConfig

    import_gym_hil()
    torch.set_num_threads(1)  # as the nodes run beside each other on 2 cores
    print(machine.summary(machine.describe()), flush=True)
    run = Path(a.run)
    if (run / "episodes.csv").exists():
        print(f"{run} holds a run already: give another --run (the bridge does not resume)", file=sys.stderr)
        return 2
    run.mkdir(parents=True, exist_ok=True)
    env = make_env(not a.fixed_block, a.full_render)
    scale = [1.0] * 18
    scale[GRIPPER_INDEX] = 1.0 / 255.0
    learner = dataclasses.replace(LearnerNodeConfig(), encoder_weights=a.encoder_weights)
    conf = GymBridgeConfig(cameras=("pixels/front", "pixels/wrist"), state_keys=("agent_pos",), state_scale=tuple(scale),
                           action_dims=(0, 1, 2), action_scale=(STEP_M,) * 3, gripper_dim=6, seed=a.seed, learner=learner)
    bridge = GymBridge(env, conf)
    encoder = a.encoder_weights or "random ResNet-10 (seed 0)"
    settings = (f"{TASK} image_obs random_block_position={not a.fixed_block} render="
                f"{'full' if a.full_render else 'no shadows/reflections'} | encoder {encoder} "
                f"({bridge.encoder.forward_path()}), storage {learner.learner.storage}, "
                f"num_spatial_kernels {learner.agent.num_spatial_kernels}, critics {learner.agent.num_critics}, "
                f"updates_per_transition {learner.learner.updates_per_transition}, batch {learner.agent.batch_size}")
    print(settings, flush=True)
    (run / "config.json").write_text(json.dumps({"benchmark": vars(a), "bridge": cfg.to_dict(conf)}, indent=1))

    t0 = time.monotonic()
    demos = bridge.collect_demos(scripted_pick(env), a.demos, seed=a.seed + 100_000) if a.demos else {"successful": 0}
    demo_s = time.monotonic() - t0
    summary = bridge.train(a.steps, run_dir=run)
    print(f"[gym] trained {summary['env_steps']} env steps, {summary['episodes']} episodes, {summary['updates']} updates in "
          f"{summary['wall_clock_s'] / 60:.1f} min (demos {demo_s / 60:.1f} min before)", flush=True)
    policy = bridge.evaluate(a.eval_episodes, seed=a.eval_seed)
    scripted = bridge.evaluate(a.scripted_episodes, seed=a.eval_seed, scripted=scripted_pick(env)) if a.scripted_episodes else {}
    (run / "eval.json").write_text(json.dumps({"task": TASK, "seed": a.eval_seed, "policy": policy,
                                               "scripted_operator": scripted, "settings": settings}, indent=1))
    print(f"[eval] policy alone: {policy['successes']}/{policy['episodes']} = {policy['success_rate']:.2f} (95% CI "
          f"{policy['ci95'][0]:.2f}-{policy['ci95'][1]:.2f}), cycle time {policy['cycle_time_s']} s (mean of successes)")
    if scripted:
        print(f"[eval] scripted policy: {scripted['successes']}/{scripted['episodes']} = {scripted['success_rate']:.2f}, "
              f"cycle time {scripted['cycle_time_s']} s")
    print(f"[eval] wrote {run / 'eval.json'}, {run / 'episodes.csv'}, {run / 'training.png'}")
    cmd = "python benchmarks/gym_hil.py " + " ".join(sys.argv[1:])
    print(f"reproduce: cd /work/main && source scripts/env.sh && {cmd.strip()}")
    bridge.close()
    print(json.dumps({
        "task": TASK, "success_rate": policy["success_rate"], "ci95": policy["ci95"], "eval_episodes": policy["episodes"],
        "env_steps": summary["env_steps"], "wall_clock_s": summary["wall_clock_s"], "cycle_time_s": policy["cycle_time_s"],
        "train_success_rate_last20": summary["success_rate"], "demos": demos["successful"],
        "scripted_success_rate": scripted.get("success_rate"), "encoder": encoder,
        "random_block_position": not a.fixed_block, "full_render": a.full_render,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
