#!/usr/bin/env bash
# Source ROS, franka_ros2's underlay (robot image only) and the hilserl workspace, then run the
# given command in /opt/hilserl_ws.
set -e
# shellcheck disable=SC1090
source "/opt/ros/${ROS_DISTRO:-jazzy}/setup.bash"
if [ -f /opt/franka_ws/install/setup.bash ]; then
  # shellcheck disable=SC1091
  source /opt/franka_ws/install/setup.bash
fi
# shellcheck disable=SC1091
source /opt/hilserl_ws/install/setup.bash
# The `hilserl` command, as scripts/env.sh puts it on PATH.
export PATH="/opt/hilserl_ws/install/hilserl/lib/hilserl:$PATH"
exec "$@"
