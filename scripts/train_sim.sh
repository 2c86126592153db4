#!/usr/bin/env bash
# Simulated HIL-SERL training with defaults: `hilserl train sim_single_arm` (MuJoCo Franka,
# pick_cube, scripted SpaceMouse operator correcting the policy, actor, learner) as processes
# over DDS on loopback, seeded with 20 scripted demos (recorded once under runs/demos/), until
# 10000 env steps; progress on the console, everything else in runs/sim_single_arm-pick_cube/
# (episodes.csv, training.png, checkpoints/, graph.log). Ctrl-C stops it; run it again to resume.
# Then `hilserl eval runs/sim_single_arm-pick_cube` evaluates the policy alone.
# Arguments: steps:=N, run:=DIR, demos:=auto|none|FILE and graph arguments (task:=peg_insertion, ...).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
set +u
# shellcheck disable=SC1091
source scripts/env.sh
set -u
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
exec hilserl train sim_single_arm "$@"
