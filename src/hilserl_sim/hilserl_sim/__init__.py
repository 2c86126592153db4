"""MuJoCo stand-in for one or two Franka Panda arms (hilserl issue 4).

ROS-free core: :mod:`model` (MJCF assets, scene assembly), :mod:`robot` (per-arm
Cartesian impedance / wrench controller built on ``hilserl_core.robot.control``),
:mod:`sim` (physics, per-arm state, cameras), :mod:`tasks` (task registry),
:mod:`env` (task episodes at the 10 Hz control period), :mod:`operator`
(scripted SpaceMouse operator). The ROS node (:mod:`ros_sim_node`, executable
``sim_node``) is a thin wrapper around these.
"""
