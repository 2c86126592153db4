"""One real Franka: franka_ros2 hardware, hilserl controllers, and the HIL-SERL node graph
(config/graphs/real_single_arm.yaml).

    ros2 launch hilserl bringup_single_arm.launch.py robot_ip:=172.16.0.2 \
        classifier_path:=/data/clf.safetensors encoder_weights:=/data/resnet10.safetensors \
        spacemouse_serial:=8D3A21F0 serial_left_wrist:=123456789012 camera_left_side:=usb_cam \
        video_device_left_side:=/dev/v4l/by-id/usb-...-video-index0 rviz:=true rqt:=true

Every graph argument is a launch argument: camera drivers and devices per camera
(camera_<arm>_<camera>:=realsense|usb_cam|none, serial_<arm>_<camera>, video_device_<arm>_<camera>),
the SpaceMouse by serial number, rviz:=true / rqt:=true for the viewers (docs/real_robot.md).
"""

from hilserl.launch_support import franka_actions, launch_description


def generate_launch_description():
    ld = launch_description("real_single_arm")
    for action in franka_actions(n_arms=1):
        ld.add_action(action)
    return ld
