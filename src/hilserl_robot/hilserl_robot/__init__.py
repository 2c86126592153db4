"""hilserl_robot: the nodes that connect a real Franka (franka_ros2) to hilserl's topics.

``franka_state_node`` (robot state adapter), ``gripper_bridge_node`` (franka_gripper actions) and
``reset_node`` (start-pose resets). Their logic is in ``hilserl_core.robot.franka_state``,
``gripper_bridge`` and ``reset_planner``; docs/real_robot.md "Robot-side nodes".
"""
