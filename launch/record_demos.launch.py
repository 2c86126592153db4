"""Teleoperated demonstrations into a rosbag2 (MCAP) file: the graph of ``setup`` without
actor and learner (argument learning:=false), plus ``ros2 bag record`` of what a demo needs.

    ros2 launch hilserl record_demos.launch.py setup:=real_single_arm bag:=demos/pick_001
    ros2 launch hilserl record_demos.launch.py setup:=sim_single_arm operator:=demo
"""

from hilserl.launch_support import record_demos_description


def generate_launch_description():
    return record_demos_description()
