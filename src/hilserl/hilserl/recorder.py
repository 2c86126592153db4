"""The bag recorder node and ``hilserl record <setup> bag:=DIR [episodes:=N]``.

``BagRecorder`` is a real rclpy node (``/bag_recorder``) that subscribes to every topic of
a recording (``hilserl.recording.topics``) as serialized messages (``raw=True``: no
deserialization) and writes them with ``hilserl_core.formats.bags.BagWriter`` (rosbags,
rosbag2 MCAP), each at its receive time. It counts episodes from the operator's marks
(``hilserl_core.robot.episode_marks``) and is done after ``episodes`` outcome marks plus
``tail_s`` seconds (so the scene after the last success is recorded too), or at the next
reset mark, whichever comes first.

It lives in the bring-up package and runs inside the ``hilserl record`` process rather than
as a node of its own package: it is a tool of that command (which owns when to stop and
shuts the graph down after it), it needs no executable or launch entry, and on a full ROS 2
install ``ros2 bag record`` takes its place (``record_demos.launch.py``, same topics).

Once every camera has sent a frame (the graph is up), the recorder publishes one
``/episode/reset``: the recording's first episode starts there (in simulation the scripted
operator resets the scene on it). At a terminal, ``hilserl record`` also reads single keys
and publishes them as marks: ``s`` success, ``f`` failure, ``r`` reset (scene ready, next
episode), ``q`` stop.
"""

from __future__ import annotations

import importlib
import os
import select
import sys
import termios
import tty
from typing import Callable, Mapping, Optional, Sequence

from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Empty

from hilserl_core.formats import bags
from hilserl_core.robot import episode_marks as em

__all__ = ["BagRecorder", "KEYS", "run_record"]

KEYS = {"s": em.SUCCESS, "f": em.FAILURE, "r": em.RESET}


def _qos(reliable: bool) -> QoSProfile:
    # a best-effort subscription matches every publisher; reliable ones get reliable delivery
    # (deep queues: a recorder must not drop what it can keep)
    return QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST,
                      reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT)


def message_class(msgtype: str):
    """``"sensor_msgs/msg/Image"`` -> the rclpy message class."""
    package, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


class BagRecorder(Node):
    def __init__(self, writer: bags.BagWriter, topics: Sequence[bags.TopicSpec], episodes: int = 0,
                 tail_s: float = 2.0, start_reset: bool = True, say: Callable[[str], None] = print, **node_kwargs):
        super().__init__("bag_recorder", **node_kwargs)
        self.writer = writer
        self.episodes = int(episodes)  # 0: until stopped
        self.tail_s = float(tail_s)
        self.say = say
        self.counter = em.EpisodeCounter()
        self.done = False
        self._stop_at_ns: Optional[int] = None
        self._start_reset = start_reset
        self._cameras = [t.name for t in topics if t.name.endswith("/image_cropped")]
        self._seen: set = set()
        for spec in topics:
            self.create_subscription(message_class(spec.msgtype), spec.name,
                                     lambda raw, t=spec.name: self._on_message(t, raw), _qos(spec.reliable), raw=True)
        self._mark_pubs = {kind: self.create_publisher(Empty, topic, _qos(True)) for topic, kind in em.MARK_TOPICS.items()}
        self.create_timer(0.1, self._on_timer)

    def now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def publish_mark(self, kind: str) -> None:
        self._mark_pubs[kind].publish(Empty())

    def _on_message(self, topic: str, raw: bytes) -> None:
        if self.done:
            return
        t = self.now_ns()
        self.writer.write(topic, raw, t)
        if topic in em.MARK_TOPICS:
            self._on_mark(em.MARK_TOPICS[topic], t)
        elif topic not in self._seen and topic in self._cameras:
            self._seen.add(topic)
            if self._start_reset and len(self._seen) == len(self._cameras):
                self._start_reset = False
                self.say("[record] every camera is sending: episode 1 starts (published /episode/reset)")
                self.publish_mark(em.RESET)

    def _on_mark(self, kind: str, t_ns: int) -> None:
        finished = self.counter.mark(kind)
        if finished:
            c = self.counter
            total = f"/{self.episodes}" if self.episodes else ""
            self.say(f"[record] episode {c.finished}{total}: {kind} ({c.successes} successes)")
            if self.episodes and c.finished >= self.episodes:
                self._stop_at_ns = t_ns + int(self.tail_s * 1e9)
        elif kind == em.RESET and self._stop_at_ns is not None:
            self.done = True  # the next episode began: stop before it

    def _on_timer(self) -> None:
        if self._stop_at_ns is not None and self.now_ns() >= self._stop_at_ns:
            self.done = True


class _Keys:
    """Single keys from a terminal (cbreak mode, restored on close); nothing when stdin is no tty."""

    def __init__(self) -> None:
        self.fd = sys.stdin.fileno() if sys.stdin is not None and sys.stdin.isatty() else None
        self._old = None
        if self.fd is not None:
            self._old = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)

    def read(self) -> Optional[str]:
        if self.fd is None:
            return None
        ready, _, _ = select.select([self.fd], [], [], 0)
        return os.read(self.fd, 1).decode(errors="ignore").lower() if ready else None

    def close(self) -> None:
        if self.fd is not None and self._old is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._old)


def run_record(setup: str, arguments: Mapping[str, str], say: Callable[[str], None] = print,
               runner_factory=None) -> int:
    """``hilserl record``: start the recording graph, record until done, close the bag, stop the graph."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from hilserl_interfaces.signals import stop_on_signals

    from . import recording
    from .runner import GraphRunner

    args = dict(arguments)
    bag = args.pop("bag", "")
    if not bag:
        raise bags.BagError("record: give the output bag directory as bag:=DIR")
    try:
        episodes = int(args.pop("episodes", "0"))
        tail_s = float(args.pop("tail_s", "2.0"))
    except ValueError as exc:
        raise bags.BagError(f"record: episodes:= takes a whole number and tail_s:= seconds ({exc})") from None
    if episodes < 0 or tail_s < 0:
        raise bags.BagError("record: episodes:= and tail_s:= cannot be negative")
    graph = recording.record_graph(setup, args)
    topics = recording.topics(graph)
    writer = bags.BagWriter(bag, topics, recording.custom_data(graph))  # refuses an existing path before anything starts
    runner = runner_factory(graph) if runner_factory else GraphRunner(graph, check_network=True)
    ctx = rclpy.context.Context()
    keys = None
    status = 0
    try:
        rclpy.init(args=[], context=ctx)  # the command line holds name:=value arguments, not ROS ones
        node = BagRecorder(writer, topics, episodes=episodes, tail_s=tail_s, say=say, context=ctx)
        executor = SingleThreadedExecutor(context=ctx)
        executor.add_node(node)
        with stop_on_signals() as stop:
            runner.start()
            keys = _Keys()
            what = f"{episodes} episodes" if episodes else "until Ctrl-C"
            say(f"[record] {setup}: recording {len(topics)} topics into {bag} ({what})"
                + ("; keys: s success, f failure, r reset (next episode), q stop" if keys.fd is not None else ""))
            while not stop.is_set() and not node.done:
                executor.spin_once(timeout_sec=0.05)
                dead = runner.poll()
                if dead is not None:
                    say(f"[record] required node {dead.spec.fqn} exited (status {dead.returncode}): stopping")
                    status = 1
                    break
                key = keys.read()
                if key == "q":
                    break
                if key in KEYS:
                    node.publish_mark(KEYS[key])
        executor.remove_node(node)
        node.done = True
        node.destroy_node()
        path = writer.close()
        counts = writer.counts
        silent = [t for t, n in counts.items() if n == 0 and t not in (em.FAILURE_TOPIC, em.SUCCESS_TOPIC)]
        say(f"[record] wrote {path}: {sum(counts.values())} messages, {node.counter.finished} episodes "
            f"({node.counter.successes} successes)")
        if silent:
            say(f"[record] no messages on {', '.join(silent)}")
    except BaseException:
        writer.abort()
        raise
    finally:
        if keys is not None:
            keys.close()
        runner.shutdown()
        if ctx.ok():
            rclpy.shutdown(context=ctx)
    return status
