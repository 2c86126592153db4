"""Keep numpy's BLAS (OpenBLAS) single-threaded inside node processes.

OpenBLAS starts a worker thread per core for a matrix product above a small size and
lets the workers busy-wait for the next one. When the crop node's area resize was two
float32 products per frame, that made each crop node burn most of a core at 10 Hz instead
of almost none, on a machine shared by the whole graph (the resize now gathers taps,
``imageproc``, but any numpy product in a node would do the same). The environment variable
(``OPENBLAS_NUM_THREADS``) only acts when set before numpy is imported, which a node
module cannot guarantee, so this calls OpenBLAS's own setter on every copy of the
library loaded in the process (numpy's wheel ships a symbol-prefixed one).
"""

from __future__ import annotations

import ctypes
import re
from typing import List

__all__ = ["loaded_openblas", "limit_blas_threads", "blas_threads"]

_SETTERS = ("openblas_set_num_threads", "scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads_64_",
            "openblas_set_num_threads64_")
_GETTERS = ("openblas_get_num_threads", "scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads_64_",
            "openblas_get_num_threads64_")


def loaded_openblas() -> List[str]:
    """Paths of the OpenBLAS libraries mapped into this process."""
    try:
        with open("/proc/self/maps") as f:
            maps = f.read()
    except OSError:  # not Linux: nothing found, nothing limited
        return []
    return sorted(set(re.findall(r"(/\S*openblas\S*\.so(?:\.\S*)?)\s*$", maps, flags=re.MULTILINE)))


def _symbol(lib: ctypes.CDLL, names):
    for name in names:
        fn = getattr(lib, name, None)
        if fn is not None:
            return fn
    return None


def limit_blas_threads(n: int = 1) -> int:
    """Set every loaded OpenBLAS to ``n`` threads; returns how many libraries were set."""
    import numpy  # noqa: F401  (loads numpy's OpenBLAS if nothing has yet)

    done = 0
    for path in loaded_openblas():
        try:
            lib = ctypes.CDLL(path)  # already mapped: dlopen returns the loaded copy
        except OSError:
            continue
        setter = _symbol(lib, _SETTERS)
        if setter is not None:
            setter.argtypes = [ctypes.c_int]
            setter.restype = None
            setter(int(n))
            done += 1
    return done


def blas_threads() -> List[int]:
    """Thread count of every loaded OpenBLAS (for tests and diagnostics)."""
    out = []
    for path in loaded_openblas():
        try:
            getter = _symbol(ctypes.CDLL(path), _GETTERS)
        except OSError:
            continue
        if getter is not None:
            getter.restype = ctypes.c_int
            out.append(int(getter()))
    return out
