"""The `main()` of every hilserl node: init, build, spin, clean shutdown.

A configuration error (a parameter outside its schema) is printed as one line
naming the parameter and its valid range, and the process exits with status 2
so the graph runner / launch reports the node as dead instead of it running
with a guessed value.

numpy's BLAS is limited to ``blas_threads`` (default 1) before the node is built:
OpenBLAS worker threads busy-wait between products, and on a small shared machine
each crop node burned half a core or more that way (see ``threads``).

``run_nodes`` builds several nodes in one process and spins them in one executor
(``compose_nodes``, see ``compose``); ``run_node`` is the one-node case. A node's
``companion_nodes`` (nodes it composes itself, like the simulator's scripted
operator) are spun by the same executor.
"""

from __future__ import annotations

import sys
from typing import Callable, List, Optional, Sequence

import rclpy
from rclpy.exceptions import InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor

from hilserl_core.config import ConfigError

from .threads import limit_blas_threads


def run_nodes(factories: Sequence[Callable[[], "rclpy.node.Node"]], args: Optional[List[str]] = None, threads: int = 1,
              blas_threads: int = 1) -> int:
    limit_blas_threads(blas_threads)
    rclpy.init(args=args)
    nodes = []
    building = None
    try:
        executor = MultiThreadedExecutor(num_threads=threads) if threads > 1 else SingleThreadedExecutor()
        for factory in factories:
            building = factory
            node = factory()
            building = None
            nodes.append(node)
            executor.add_node(node)
            for companion in getattr(node, "companion_nodes", ()):  # nodes composed into this process
                executor.add_node(companion)
        executor.spin()
        return 0
    except (ConfigError, InvalidParameterValueException) as exc:  # schema check, or the ROS range in the descriptor
        # a factory may carry a label (compose_nodes: the node's full name), else its class name
        label = getattr(building, "label", None) or getattr(building, "__name__", "node")
        print(f"[{label}] configuration error: {exc}", file=sys.stderr, flush=True)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        return 0
    finally:
        for node in reversed(nodes):
            close = getattr(node, "close", None)
            if callable(close):
                close()
            for companion in getattr(node, "companion_nodes", ()):
                companion.destroy_node()
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


def run_node(factory: Callable[[], "rclpy.node.Node"], args: Optional[List[str]] = None, threads: int = 1,
             blas_threads: int = 1) -> int:
    return run_nodes([factory], args, threads, blas_threads)
