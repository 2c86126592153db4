"""diagnostic_msgs/DiagnosticArray publishing: each node reports named statuses.

Nodes call ``report(name, level, message, **values)`` whenever something worth
showing in rqt_robot_monitor happens (stale input, rejected command, weights
loaded); a timer publishes the latest status of every name at ``period_s``.
"""

from __future__ import annotations

from typing import Dict

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from . import qos, topics

# Levels as ints (the message field is a one-byte ``bytes``; converted in report()).
OK, WARN, ERROR, STALE = 0, 1, 2, 3


class Diagnostics:
    def __init__(self, node, period_s: float = 1.0):
        self._node = node
        self._hardware_id = node.get_fully_qualified_name()
        self._statuses: Dict[str, DiagnosticStatus] = {}
        self._pub = node.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, qos.EVENTS)
        self._timer = node.create_timer(period_s, self.publish)

    def report(self, name: str, level: int, message: str, publish_now: bool = False, **values) -> None:
        """Set the status of ``name``; ``publish_now`` sends at once (events), else on the timer."""
        full = f"{self._hardware_id}: {name}"
        status = DiagnosticStatus(level=bytes([level]), name=full, message=message, hardware_id=self._hardware_id)
        status.values = [KeyValue(key=str(k), value=str(v)) for k, v in values.items()]
        self._statuses[name] = status
        if publish_now:
            self.publish()

    def level(self, name: str) -> int:
        status = self._statuses.get(name)
        return -1 if status is None else status.level[0]

    def publish(self) -> None:
        if not self._statuses:
            return
        msg = DiagnosticArray()
        msg.header.stamp = self._node.get_clock().now().to_msg()
        msg.status = list(self._statuses.values())
        self._pub.publish(msg)
