"""The frozen encoder's images of a call shared out over threads, each on its own core (speed only)."""

from __future__ import annotations

import os
from typing import Any, Callable, List, Optional

import numpy as np

from ..vision.encoders import ResNet10Encoder, encode_features

__all__ = ["ThreadedEncoder", "resolve_encoder_threads"]


class ThreadedEncoder:
    """:func:`encode_features` with the images of a call shared out over ``threads`` threads.

    The calling thread encodes the first share and ``threads - 1`` helper threads the
    others, at the same time (torch ops and the native kernels release the GIL). Each
    thread runs torch single-threaded: this is for an actor that encodes a few camera
    frames per step (one caller at a time), not for batches. int8 features are the same
    whatever the split (each image's integer sums are exact); bfloat16 and float32 ones
    may differ from one batch in the last bits.

    For the length of a call the caller is held on the CPU it is on and the helpers are
    kept off it (thread affinities; the caller's is restored after). Otherwise Linux wakes
    a helper on its waker's CPU, and a thread that slept waiting for the GIL on the CPU of
    the thread that released it, and the threads share one core while another sits idle:
    two threads can then take longer than one (docs/DESIGN.md, "Two threads, held apart").
    """

    def __init__(self, encoder: ResNet10Encoder, threads: int = 2):
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.encoder = encoder
        self.threads = int(threads)
        self._pool = None
        self._helper_tids: List[int] = []
        self._helpers_off: Optional[int] = None  # the CPU the helpers were last kept off
        if self.threads > 1:
            import threading
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.threads - 1, thread_name_prefix="frozen-encoder")
            ready = threading.Barrier(self.threads)  # every helper started and has said who it is
            lock = threading.Lock()

            def register() -> None:
                with lock:
                    self._helper_tids.append(threading.get_native_id())
                ready.wait(timeout=30)

            for _ in range(self.threads - 1):
                self._pool.submit(register)
            ready.wait(timeout=30)

    def _pin(self) -> Optional[set]:
        """Hold the caller on its CPU and the helpers off it for one call; returns the caller's
        affinity to restore (None: nothing changed). The caller must be held too: waiting for
        the GIL, it sleeps, and Linux wakes it on the CPU of the helper that released it."""
        cpu = _current_cpu()
        try:
            allowed = os.sched_getaffinity(0)
            others = allowed - {cpu}
            if cpu is None or not others or cpu not in allowed:
                return None
            if cpu != self._helpers_off:
                for tid in self._helper_tids:
                    os.sched_setaffinity(tid, others)
                self._helpers_off = cpu
            os.sched_setaffinity(0, {cpu})  # this thread only
            return allowed
        except OSError:  # a helper gone, or affinity not permitted: leave placement to the OS
            return None

    def __call__(self, images: np.ndarray, then: Optional[Callable[[int, int, np.ndarray], Any]] = None):
        """``[N, H, W, 3]`` uint8 -> float16 ``[N, h, w, C]``, as :func:`encode_features`.

        With ``then``, each thread goes on with ``then(start, stop, features)`` on its share
        ``images[start:stop]`` (e.g. the policy's image heads of those cameras) and the call
        returns the list of those results, in image order.
        """
        n = images.shape[0]
        bounds = np.linspace(0, n, max(1, min(self.threads, n)) + 1).round().astype(int)
        spans = list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))

        def work(a: int, b: int):
            feats = encode_features(self.encoder, images[a:b])
            return feats if then is None else then(a, b, feats)

        if self._pool is None or len(spans) < 2:
            out = [work(a, b) for a, b in spans]
        else:
            restore = self._pin()
            try:
                futures = [self._pool.submit(work, a, b) for a, b in spans[1:]]
                out = [work(*spans[0])] + [f.result() for f in futures]
            finally:
                if restore is not None:
                    os.sched_setaffinity(0, restore)
        return np.concatenate(out) if then is None else out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def resolve_encoder_threads(setting: int, cameras: int, cpus: Optional[int] = None) -> int:
    """A node's ``encoder_threads`` setting resolved: as set when positive; for 0 (auto) 2 (at most
    one per camera) where the process may use 4 or more CPUs (``cpus``, default: its affinity),
    else 1: on 2 CPUs the other one is usually busy with a learner or a driver."""
    if setting > 0:
        return int(setting)
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(2, cameras)) if cpus >= 4 else 1


_SCHED_GETCPU = None  # libc's sched_getcpu, loaded on first use (False: not available)


def _current_cpu() -> Optional[int]:
    """The CPU the calling thread runs on (Linux/glibc ``sched_getcpu``), or None."""
    global _SCHED_GETCPU
    if _SCHED_GETCPU is None:
        try:
            import ctypes

            fn = ctypes.CDLL(None, use_errno=True).sched_getcpu
            fn.restype = ctypes.c_int
            _SCHED_GETCPU = fn
        except (OSError, AttributeError):
            _SCHED_GETCPU = False
    if _SCHED_GETCPU is False:
        return None
    cpu = _SCHED_GETCPU()
    return cpu if cpu >= 0 else None
