#!/usr/bin/env bash
# One-command set-up of the hilserl workspace on a fresh machine:
#   virtual environment (.venv) with pinned ROS 2 Kilted wheels, colcon/ament,
#   torch 2.13.0 CPU, MuJoCo, rosbags; then `colcon build --base-paths src --symlink-install`.
# Safe to re-run: pip is skipped while requirements.txt is unchanged, and the
# symlink install means edits to Python sources need no rebuild.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

python_bin="${HILSERL_PYTHON:-python3.11}"
command -v "$python_bin" >/dev/null || python_bin=python3
if ! "$python_bin" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "setup: need Python 3.11 (the ROS 2 Kilted wheels are built for cp311); found $("$python_bin" --version 2>&1)." >&2
  echo "       set HILSERL_PYTHON=/path/to/python3.11 and re-run." >&2
  exit 1
fi

step() { printf '\n== %s\n' "$*"; }

if [ ! -x .venv/bin/python ]; then
  step "creating virtual environment .venv"
  "$python_bin" -m venv .venv
fi

stamp=.venv/.hilserl-requirements.sha256
if ! sha256sum --status -c "$stamp" 2>/dev/null; then
  step "installing pinned Python dependencies (requirements.txt)"
  .venv/bin/python -m pip install --quiet --upgrade pip 2>&1 | grep -v "is ignored" || true
  .venv/bin/python -m pip install --quiet -r requirements.txt 2>&1 | grep -v "is ignored" || true
  # pip's exit status is hidden by the filter above; check the install really happened.
  .venv/bin/python -c 'import torch, rclpy, mujoco, rosbags, safetensors, colcon_core' \
    || { echo "setup: dependency install failed (see pip output above)" >&2; exit 1; }
  sha256sum requirements.txt > "$stamp"
else
  step "Python dependencies up to date (requirements.txt unchanged)"
fi

step "colcon build"
# shellcheck disable=SC1091
set +u; source scripts/env.sh; set -u
colcon build --base-paths src --symlink-install --event-handlers console_cohesion- summary+ \
  --cmake-args -DPython3_EXECUTABLE="$root/.venv/bin/python" 2>&1 | tail -n 25
test "${PIPESTATUS[0]}" -eq 0 || { echo "setup: colcon build failed; see log/latest_build" >&2; exit 1; }

step "native kernels (hilserl_core.accel.native: C kernels and the int8 encoder operator, built once into the cache)"
# Built here so that no node compiles on its first start; without a C/C++ compiler the nodes
# fall back to plain torch and the Python int8 forward, so a failure is reported, not fatal.
set +u; source scripts/env.sh; set -u  # again: now with the built workspace (install/) on the path
python -m hilserl_core.accel.native \
  || echo "setup: some native kernels could not be built (see above); the plain torch fallbacks will be used" >&2

step "done"
echo "Run the tests with: scripts/test.sh"
