#!/usr/bin/env bash
# Simulated HIL-SERL training with defaults: the sim_single_arm graph (MuJoCo Franka,
# pick_cube, scripted SpaceMouse operator correcting the policy, actor, learner) as
# processes over DDS on loopback. Ctrl-C stops every node; the learner checkpoints
# to runs/sim_single_arm/checkpoints and resumes from there next time.
# Arguments are graph arguments, e.g. `scripts/train_sim.sh task:=peg_insertion`;
# `hilserl show sim_single_arm` lists them.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
set +u
# shellcheck disable=SC1091
source scripts/env.sh
set -u
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
exec hilserl launch sim_single_arm "$@"
