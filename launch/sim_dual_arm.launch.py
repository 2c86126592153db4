"""Two simulated Franka arms with the whole HIL-SERL loop (config/graphs/sim_dual_arm.yaml).

    ros2 launch hilserl sim_dual_arm.launch.py
    (without ROS launch: hilserl launch sim_dual_arm)
"""

from hilserl.launch_support import launch_description


def generate_launch_description():
    return launch_description("sim_dual_arm")
