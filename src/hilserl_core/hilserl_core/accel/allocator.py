"""Process-wide allocator setting for the learner (speed only; the results do not change)."""

from __future__ import annotations

__all__ = ["configure_cpu_allocator", "release_free_memory", "resident_mb"]


def configure_cpu_allocator(threshold_bytes: int = 1 << 30) -> bool:
    """Keep large freed blocks in the process heap (glibc ``mallopt``); call once at learner start.

    By default glibc returns every block above ~128 KB-32 MB to the OS on free, so
    each update re-faults its multi-MB activations page by page (thousands of minor page
    faults per update; ``benchmarks/learner_throughput.py --no-allocator-tuning`` measures it).
    Process-wide, so the learner's ``main`` calls it, not the library on import.
    Returns False where there is no glibc (macOS, musl): nothing changed.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, threshold_bytes)) and bool(
            libc.mallopt(m_trim_threshold, threshold_bytes)
        )
    except (OSError, AttributeError):
        return False


def release_free_memory() -> bool:
    """Give the heap's free pages back to the OS (glibc ``malloc_trim(0)``): with the tuning above
    nothing is returned on free, so the peak of a one-off job (loading a checkpoint, replaying
    the transition log, writing a checkpoint) would stay resident for the process's life.
    False where there is no glibc."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        ctypes.CDLL(name).malloc_trim(0)
        return True
    except (OSError, AttributeError):
        return False


def resident_mb(pid: "int | str" = "self") -> float:
    """A process's resident memory in MB (``/proc``: Linux; 0 where it cannot be read)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(line.split()[1]) / 1024.0 for line in f if line.startswith("VmRSS:")), 0.0)
    except OSError:
        return 0.0
