"""Episode metrics as plain numbers for rqt_plot: ``/metrics/episodes`` (std_msgs/String, the
actor's JSON summary, ``hilserl_core.rl.metrics.EpisodeMetrics.summary``) -> std_msgs/Float32
``/metrics/success_rate``, ``/metrics/intervention_rate`` and ``/metrics/cycle_time_s`` (rates
over the actor's window of recent episodes). A rate the summary does not have yet (no episode)
is not published. Started with ``rqt:=true`` (config/rqt/hilserl.perspective plots them).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Dict

from rclpy.node import Node
from std_msgs.msg import Float32, String

from hilserl_core.formats.config import param
from hilserl_interfaces import qos, topics
from hilserl_interfaces.node_main import run_node
from hilserl_interfaces.params import NodeConfig

# summary key -> topic
RATE_TOPICS = {
    "success_rate": "/metrics/success_rate",
    "intervention_rate": "/metrics/intervention_rate",
    "cycle_time_s": "/metrics/cycle_time_s",
}


def rates_from_summary(text: str) -> Dict[str, float]:
    """``{topic: value}`` of the numbers in one ``/metrics/episodes`` message; ValueError when it is not a JSON object."""
    doc = json.loads(text)
    if not isinstance(doc, dict):
        raise ValueError(f"expected a JSON object, got {type(doc).__name__}")
    out = {}
    for key, topic in RATE_TOPICS.items():
        value = doc.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[topic] = float(value)
    return out


@dataclass(frozen=True)
class MetricsRatesConfig:
    source: str = param(topics.EPISODE_METRICS, "the actor's episode summary (std_msgs/String, JSON)")


class MetricsRatesNode(Node):
    def __init__(self, **node_kwargs):
        super().__init__("metrics_rates", **node_kwargs)
        self.conf = NodeConfig(self, MetricsRatesConfig)
        self._pubs = {topic: self.create_publisher(Float32, topic, qos.EVENTS) for topic in RATE_TOPICS.values()}
        self.create_subscription(String, self.conf.value.source, self._on_summary, qos.EVENTS)

    def _on_summary(self, msg: String) -> None:
        try:
            rates = rates_from_summary(msg.data)
        except ValueError as exc:
            self.get_logger().warning(f"ignored a malformed {self.conf.value.source}: {exc}", throttle_duration_sec=10.0)
            return
        for topic, value in rates.items():
            self._pubs[topic].publish(Float32(data=value))


# what `ros2 run` starts and what compose_nodes builds when this node shares a process
NODE_CLASS = MetricsRatesNode


def main(args=None) -> int:
    return run_node(NODE_CLASS, args)


if __name__ == "__main__":
    raise SystemExit(main())
