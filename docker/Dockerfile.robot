# syntax=docker/dockerfile:1
# Robot PC: ROS 2 with ros2_control, franka_ros2, the hilserl controllers, camera drivers,
# spacenav and hidapi, CPU torch for the actor's policy. Build from the repository root
# (docs/docker.md):
#   docker build -f docker/Dockerfile.robot -t hilserl-robot:jazzy .
# or `docker compose -f docker/compose.yaml --profile robot build`.
ARG ROS_DISTRO=jazzy
FROM ros:${ROS_DISTRO}-ros-base

ARG ROS_DISTRO
# franka_ros2 v3.x targets Jazzy (v1.x/v2.x are Humble releases); the controllers use its v3 API.
ARG FRANKA_ROS2_VERSION=v3.4.0
# torch as pinned in requirements.txt (tests/bringup/test_docker_files.py keeps them equal); the
# CPU build: the robot PC runs the actor's policy, the learner trains on the GPU host.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV DEBIAN_FRONTEND=noninteractive \
    MUJOCO_GL=egl \
    RMW_IMPLEMENTATION=rmw_fastrtps_cpp \
    HILSERL_CACHE_DIR=/opt/hilserl_cache

# ros2_control and what the hilserl controllers build against, camera drivers (RealSense, UVC),
# spacenav, hidapi's hidraw backend, bag tools, RViz/rqt with the plugins of
# config/rqt/hilserl.perspective, SROS2; build-essential also compiles the native kernels.
RUN apt-get update && apt-get install -y --no-install-recommends \
      python3-pip python3-colcon-common-extensions python3-rosdep python3-vcstool git build-essential \
      ros-${ROS_DISTRO}-ros2-control ros-${ROS_DISTRO}-ros2-controllers \
      ros-${ROS_DISTRO}-controller-manager ros-${ROS_DISTRO}-generate-parameter-library \
      ros-${ROS_DISTRO}-realtime-tools \
      ros-${ROS_DISTRO}-realsense2-camera ros-${ROS_DISTRO}-usb-cam \
      ros-${ROS_DISTRO}-spacenav libhidapi-hidraw0 libudev1 \
      ros-${ROS_DISTRO}-rosbag2-storage-mcap ros-${ROS_DISTRO}-diagnostic-aggregator \
      ros-${ROS_DISTRO}-rviz2 ros-${ROS_DISTRO}-rqt-common-plugins ros-${ROS_DISTRO}-rqt-runtime-monitor \
      ros-${ROS_DISTRO}-sros2 libegl1 libgl1 \
    && rm -rf /var/lib/apt/lists/*

# franka_ros2 in an underlay workspace: its repository, the dependencies its .repos file names
# (libfranka among them), and only the packages the real graphs use, with what they depend on.
WORKDIR /opt/franka_ws
RUN git clone --depth 1 --branch ${FRANKA_ROS2_VERSION} https://github.com/frankarobotics/franka_ros2.git src/franka_ros2 \
    && repos=src/franka_ros2/dependency.repos && { [ -f "$repos" ] || repos=src/franka_ros2/franka.repos; } \
    && vcs import src --recursive --skip-existing < "$repos" \
    && packages="franka_bringup franka_hardware franka_gripper franka_msgs franka_robot_state_broadcaster franka_semantic_components" \
    && (rosdep init || true) && rosdep update --rosdistro ${ROS_DISTRO} \
    && apt-get update \
    && rosdep install -r -y --ignore-src --rosdistro ${ROS_DISTRO} \
         --from-paths $(colcon list --base-paths src --packages-up-to ${packages} --paths-only) \
    && . /opt/ros/${ROS_DISTRO}/setup.sh \
    && colcon build --base-paths src --packages-up-to ${packages} --cmake-args -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
    && rm -rf build log /var/lib/apt/lists/*

COPY --chmod=755 docker/install_python_deps.sh /usr/local/lib/hilserl/install_python_deps.sh
COPY requirements.txt /usr/local/lib/hilserl/requirements.txt
RUN /usr/local/lib/hilserl/install_python_deps.sh /usr/local/lib/hilserl/requirements.txt "${TORCH_VERSION}" "${TORCH_INDEX_URL}"

# The workspace, with the ros2_control plugins required (ON: a missing dependency fails the build
# instead of leaving the plugins out).
WORKDIR /opt/hilserl_ws
COPY src ./src
COPY config ./config
COPY launch ./launch
COPY colcon.meta ./colcon.meta
COPY --chmod=755 docker/build_workspace.sh /usr/local/lib/hilserl/build_workspace.sh
RUN /usr/local/lib/hilserl/build_workspace.sh --cmake-args -DCMAKE_BUILD_TYPE=Release -DHILSERL_BUILD_CONTROLLERS=ON

COPY --chmod=755 docker/entrypoint.sh /entrypoint.sh
ENTRYPOINT ["/entrypoint.sh"]
CMD ["bash"]
