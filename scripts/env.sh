# Source this file (bash) to enter the hilserl workspace environment:
#   source scripts/env.sh
# It activates the virtual environment, points ament/CMake at the ROS wheels
# inside it, and sources the colcon install space when it exists.
_hilserl_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ ! -x "$_hilserl_root/.venv/bin/python" ]; then
  echo "hilserl: no virtual environment at $_hilserl_root/.venv; run scripts/setup.sh first" >&2
  return 1 2>/dev/null || exit 1
fi
# shellcheck disable=SC1091
source "$_hilserl_root/.venv/bin/activate"
_venv="$_hilserl_root/.venv"
# ROS wheels install their ament index and CMake configs under the venv prefix.
case ":${AMENT_PREFIX_PATH:-}:" in *":$_venv:"*) ;; *) export AMENT_PREFIX_PATH="$_venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}";; esac
case ":${CMAKE_PREFIX_PATH:-}:" in *":$_venv:"*) ;; *) export CMAKE_PREFIX_PATH="$_venv${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}";; esac
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
export MUJOCO_GL="${MUJOCO_GL:-egl}"
# DDS discovery stays on this machine unless set otherwise (two hosts: docs/ARCHITECTURE.md).
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
if [ -f "$_hilserl_root/install/setup.bash" ]; then
  # colcon's setup scripts reference unset variables; relax nounset while sourcing.
  _hilserl_u=$-; set +u
  # shellcheck disable=SC1091
  source "$_hilserl_root/install/setup.bash"
  case $_hilserl_u in *u*) set -u;; esac
fi
# The `hilserl` command (installed where `ros2 run hilserl hilserl` finds it).
if [ -d "$_hilserl_root/install/hilserl/lib/hilserl" ]; then
  case ":$PATH:" in *":$_hilserl_root/install/hilserl/lib/hilserl:"*) ;; *) export PATH="$_hilserl_root/install/hilserl/lib/hilserl:$PATH";; esac
fi
unset _hilserl_root _venv _hilserl_u
