"""hilserl_core: everything in HIL-SERL that needs no ROS.

Nothing in this package imports rclpy; its tests run in milliseconds to
seconds with plain pytest. The ROS nodes in the other packages are thin
wrappers around the functions and classes here.
"""

__version__ = "0.1.0"
