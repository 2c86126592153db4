"""Simulated single Franka with the whole HIL-SERL loop (config/graphs/sim_single_arm.yaml).

    ros2 launch hilserl sim_single_arm.launch.py task:=peg_insertion
    (without ROS launch: hilserl launch sim_single_arm task:=peg_insertion)
"""

from hilserl.launch_support import launch_description


def generate_launch_description():
    return launch_description("sim_single_arm")
