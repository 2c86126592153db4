"""The `main()` of every hilserl node: init, build, spin, clean shutdown.

A configuration error (a parameter outside its schema) is printed as one line
naming the parameter and its valid range, and the process exits with status 2
so the graph runner / launch reports the node as dead instead of it running
with a guessed value.

numpy's BLAS is limited to ``blas_threads`` (default 1) before the node is built:
OpenBLAS worker threads busy-wait between products, and on a small shared machine
each crop node burned half a core or more that way (see ``threads``).
"""

from __future__ import annotations

import sys
from typing import Callable, List, Optional

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor

from hilserl_core.config import ConfigError

from .threads import limit_blas_threads


def run_node(factory: Callable[[], "rclpy.node.Node"], args: Optional[List[str]] = None, threads: int = 1,
             blas_threads: int = 1) -> int:
    limit_blas_threads(blas_threads)
    rclpy.init(args=args)
    node = None
    try:
        node = factory()
        executor = MultiThreadedExecutor(num_threads=threads) if threads > 1 else SingleThreadedExecutor()
        executor.add_node(node)
        for companion in getattr(node, "companion_nodes", ()):  # nodes composed into this process
            executor.add_node(companion)
        executor.spin()
        return 0
    except ConfigError as exc:
        print(f"[{getattr(node, 'get_name', lambda: 'node')()}] configuration error: {exc}", file=sys.stderr, flush=True)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        return 0
    finally:
        if node is not None:
            close = getattr(node, "close", None)
            if callable(close):
                close()
            for companion in getattr(node, "companion_nodes", ()):
                companion.destroy_node()
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
