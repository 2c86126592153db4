"""One real Franka: franka_ros2 hardware, hilserl controllers, and the HIL-SERL node graph
(config/graphs/real_single_arm.yaml).

    ros2 launch hilserl bringup_single_arm.launch.py robot_ip:=172.16.0.2 \
        classifier_path:=/data/clf.safetensors encoder_weights:=/data/resnet10.safetensors
"""

from hilserl.launch_support import franka_actions, launch_description


def generate_launch_description():
    ld = launch_description("real_single_arm")
    for action in franka_actions(n_arms=1):
        ld.add_action(action)
    return ld
