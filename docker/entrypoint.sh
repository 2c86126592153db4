#!/usr/bin/env bash
# Source ROS, franka_ros2 and the hilserl workspace, then run the given command.
set -e
# shellcheck disable=SC1090
source "/opt/ros/${ROS_DISTRO:-jazzy}/setup.bash"
source /opt/franka_ws/install/setup.bash
source /opt/hilserl_ws/install/setup.bash
exec "$@"
