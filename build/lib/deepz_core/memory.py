"""Process-wide allocator settings for deepz's command-line processes (training, inference, workers).

glibc hands allocations above its mmap threshold (128 kB, or whatever a worker's environment fixed)
to fresh ``mmap`` calls and gives freed heap tops back to the system, so every batch's MB-sized
activations and gradients, and every chunk's columns, were page-faulted in anew: ~7,500 minor faults
per training step of a 10-member paper-size ensemble, and twice the CPU time of a Dask worker's chunk
(docs/benchmarks.md, "Allocator").
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc malloc.h


def tune_malloc(mmap_threshold: int = 64 << 20, trim_threshold: int = 256 << 20) -> bool:
    """Let glibc keep and reuse freed blocks of up to ``mmap_threshold`` bytes (default 64 MiB).

    Returns False where the C library is not glibc (the settings are then left alone)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(
        mallopt(_M_TRIM_THRESHOLD, trim_threshold)
    )
