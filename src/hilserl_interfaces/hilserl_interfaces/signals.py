"""Ctrl-C / SIGTERM as a flag, for loops that stop between steps (no ROS import).

Used by the node processes' spin loop (``node_main``) and by the graph runner
(``hilserl.runner``): a signal never interrupts a callback or a shutdown half-way.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

__all__ = ["stop_on_signals"]


@contextlib.contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event that SIGINT and SIGTERM set while inside; the previous handlers come back on exit.

    Python runs the handler in the main thread between bytecodes, so it only sets the flag.
    """
    stop = threading.Event()

    def on_signal(signum, frame):  # noqa: ARG001
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
