"""Episode marks from the keyboard: ``ros2 run hilserl_teleop episode_keys`` in a terminal of its own.

Single keys, no Enter: ``s`` publishes ``/episode/success``, ``f`` ``/episode/failure``, ``r``
``/episode/reset`` (std_msgs/Empty each; ``hilserl_core.robot.episode_marks``). For
``record_demos.launch.py`` and training runs on a full ROS 2 install, where no other terminal
reads keys (``hilserl record`` reads the same keys itself). The terminal is put back as it was
when the node stops.
"""

from __future__ import annotations

import os
import select
import sys
import termios
import tty

from rclpy.node import Node
from std_msgs.msg import Empty

from hilserl_core.formats.config import ConfigError
from hilserl_core.robot import episode_marks
from hilserl_interfaces import qos
from hilserl_interfaces.node_main import run_node

KEYS = {"s": episode_marks.SUCCESS, "f": episode_marks.FAILURE, "r": episode_marks.RESET}


class EpisodeKeysNode(Node):
    def __init__(self, stdin=None, **node_kwargs):
        super().__init__("episode_keys", **node_kwargs)
        stream = sys.stdin if stdin is None else stdin
        if stream is None or not stream.isatty():
            raise ConfigError("episode_keys reads single keys from a terminal: run it with `ros2 run hilserl_teleop "
                              "episode_keys` in a terminal of its own (or publish the marks with `ros2 topic pub --once`)")
        self.fd = stream.fileno()
        self._old = termios.tcgetattr(self.fd)
        tty.setcbreak(self.fd)
        self._pubs = {kind: self.create_publisher(Empty, topic, qos.EVENTS) for topic, kind in episode_marks.MARK_TOPICS.items()}
        self.published = {kind: 0 for kind in KEYS.values()}
        self.create_timer(0.02, self._poll)
        self.get_logger().info("keys: s success, f failure, r reset (the scene is ready: next episode)")

    def _poll(self) -> None:
        while select.select([self.fd], [], [], 0)[0]:
            key = os.read(self.fd, 1).decode(errors="ignore").lower()
            kind = KEYS.get(key)
            if kind is None:
                continue
            self._pubs[kind].publish(Empty())
            self.published[kind] += 1
            self.get_logger().info(f"episode mark: {kind}")

    def close(self) -> None:
        termios.tcsetattr(self.fd, termios.TCSADRAIN, self._old)


NODE_CLASS = EpisodeKeysNode


def main(args=None) -> int:
    return run_node(NODE_CLASS, args)


if __name__ == "__main__":
    raise SystemExit(main())
