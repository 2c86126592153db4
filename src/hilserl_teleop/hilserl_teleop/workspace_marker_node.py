"""The arm's workspace box for RViz: ``workspace_marker`` (visualization_msgs/Marker, a
LINE_LIST of the box's 12 edges in ``base_frame_id``), latched, republished every few seconds.

It takes the mux's own parameters (the graphs give it ``mux.yaml`` and the mux's inline
parameters), so the box drawn is the box the mux clamps targets to
(``mux.workspace.min_position_m`` / ``max_position_m``). Started with ``rviz:=true``.
``visualization_msgs`` is imported when the node is built (full ROS installs); the geometry
(:func:`box_edges`) is plain Python.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

from rclpy.node import Node

from hilserl_core.formats.config import ConfigError
from hilserl_interfaces import qos
from hilserl_interfaces.node_main import run_node
from hilserl_interfaces.params import NodeConfig

from .mux_node import MuxNodeConfig

WORKSPACE_MARKER = "workspace_marker"  # relative: /<arm>/workspace_marker

Point = Tuple[float, float, float]


def box_edges(lo: Sequence[float], hi: Sequence[float]) -> List[Point]:
    """The 12 edges of the axis-aligned box [lo, hi] as 24 points (pairs), as a LINE_LIST takes them."""
    lo, hi = tuple(float(v) for v in lo), tuple(float(v) for v in hi)
    if len(lo) != 3 or len(hi) != 3 or not all(a < b for a, b in zip(lo, hi)):
        raise ValueError(f"a box needs 3 lower and 3 upper bounds, lower < upper; got {lo} and {hi}")
    corners = [(x, y, z) for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
    points: List[Point] = []
    for i, a in enumerate(corners):
        for b in corners[i + 1:]:
            if sum(1 for u, v in zip(a, b) if u != v) == 1:  # corners that differ in one axis share an edge
                points += [a, b]
    return points


class WorkspaceMarkerNode(Node):
    def __init__(self, **node_kwargs):
        super().__init__("workspace_marker", **node_kwargs)
        self.conf = NodeConfig(self, MuxNodeConfig, on_change=lambda old, new: self._publish())
        try:
            from visualization_msgs.msg import Marker  # full ROS installs only
        except ImportError:
            raise ConfigError("visualization_msgs is not installed (ros-$ROS_DISTRO-visualization-msgs): no workspace box "
                              "for RViz; the rest of the graph runs without it") from None

        self._marker_type = Marker
        self._pub = self.create_publisher(Marker, WORKSPACE_MARKER, qos.LATCHED)
        self._publish()
        self.create_timer(5.0, self._publish)  # RViz started later gets it from the latched QoS too

    def _publish(self) -> None:
        from geometry_msgs.msg import Point as PointMsg

        c = self.conf.value
        m = self._marker_type()
        m.header.frame_id = c.base_frame_id
        m.header.stamp = self.get_clock().now().to_msg()
        m.ns, m.id = "workspace", 0
        m.type, m.action = self._marker_type.LINE_LIST, self._marker_type.ADD
        m.pose.orientation.w = 1.0
        m.scale.x = 0.005
        m.color.r, m.color.g, m.color.b, m.color.a = 1.0, 0.6, 0.0, 1.0
        m.points = [PointMsg(x=x, y=y, z=z) for x, y, z in box_edges(c.mux.workspace.min_position_m, c.mux.workspace.max_position_m)]
        self._pub.publish(m)


# what `ros2 run` starts and what compose_nodes builds when this node shares a process
NODE_CLASS = WorkspaceMarkerNode


def main(args=None) -> int:
    return run_node(NODE_CLASS, args)


if __name__ == "__main__":
    raise SystemExit(main())
