#!/usr/bin/env bash
# Build the hilserl workspace in the current directory, the same way in both images:
#   build_workspace.sh [colcon build arguments...]
# On top of ROS (and franka_ros2's underlay where the image has one); then the native CPU
# kernels into $HILSERL_CACHE_DIR (hilserl_core/accel/native.py), whose failure only means the
# plain torch fallbacks run.
set -eo pipefail
# shellcheck disable=SC1090
source "/opt/ros/${ROS_DISTRO}/setup.bash"
if [ -f /opt/franka_ws/install/setup.bash ]; then
  # shellcheck disable=SC1091
  source /opt/franka_ws/install/setup.bash
fi
colcon build --base-paths src --event-handlers console_cohesion+ "$@"
rm -rf build log
# shellcheck disable=SC1091
source install/setup.bash
python3 -m hilserl_core.accel.native \
  || echo "build_workspace: native kernels not built; the plain torch fallbacks will be used" >&2
