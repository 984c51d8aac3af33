"""Give a Dask worker process glibc's usual heap reuse back.

A Dask nanny starts each worker with ``MALLOC_TRIM_THRESHOLD_=65536``, which
also freezes glibc's mmap threshold at 128 KiB: every feature array and
sparse matrix above that size is then mapped and unmapped by the kernel, and a
worker spent 40% more CPU per predicted row than one plain process (22.7 vs
16.1 s on 10,000 lite battles, one thread each). ``mallopt`` at run time sets
both thresholds to the values glibc's own adaptive rule grows to (32 MiB mmap,
twice that for trimming), so memory above 64 MiB at the heap's top still goes
back to the system.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform

from distributed import WorkerPlugin

__all__ = ["MMAP_THRESHOLD", "HeapReuse", "restore_heap_reuse"]

logger = logging.getLogger(__name__)

MMAP_THRESHOLD = 32 << 20
"""Bytes above which glibc maps an allocation on its own (its adaptive maximum)."""

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def restore_heap_reuse() -> bool:
    """Set glibc's trim and mmap thresholds in this process; False where not glibc."""
    if platform.libc_ver()[0] != "glibc":
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    mallopt = ctypes.CDLL(name).mallopt
    done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD)
    )
    if not done:
        logger.warning("mallopt refused the heap thresholds; worker heap left as is")
    return done


class HeapReuse(WorkerPlugin):
    """Worker plugin: :func:`restore_heap_reuse` once in every worker, new ones too."""

    name = "arena-preference-heap-reuse"

    def setup(self, worker: object) -> None:
        restore_heap_reuse()
