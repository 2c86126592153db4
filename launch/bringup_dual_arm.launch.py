"""Two real Franka arms: franka_ros2 hardware, hilserl controllers, and the HIL-SERL node graph
(config/graphs/real_dual_arm.yaml).

    ros2 launch hilserl bringup_dual_arm.launch.py robot_ip_left:=172.16.0.2 robot_ip_right:=172.16.1.2 \
        classifier_path:=/data/clf.safetensors encoder_weights:=/data/resnet10.safetensors \
        spacemouse_serial_left:=8D3A21F0 spacemouse_serial_right:=5B11C2E7 \
        serial_left_wrist:=123456789012 serial_right_wrist:=123456789013 ... rviz:=true rqt:=true

Every graph argument is a launch argument: camera drivers and devices per camera
(camera_<arm>_<camera>:=realsense|usb_cam|none, serial_<arm>_<camera>, video_device_<arm>_<camera>),
SpaceMice by serial number, rviz:=true / rqt:=true for the viewers (docs/real_robot.md).
"""

from hilserl.launch_support import franka_actions, launch_description


def generate_launch_description():
    ld = launch_description("real_dual_arm")
    for action in franka_actions(n_arms=2):
        ld.add_action(action)
    return ld
