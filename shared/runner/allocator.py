"""Fewer malloc arenas for a process that hosts a dozen bus-worker threads.

glibc gives each thread that allocates under contention an arena of its own (up to eight per
core) and keeps what a thread frees for reuse by that arena. A delivery holds megabytes for a
moment (a batch's rendered messages, a decoded send batch), so each arena grows towards its
own threads' peak and the process's resident memory creeps up with the work it has done rather
than with what it holds. Two arenas, the usual advice for threaded Python servers, keep the
sum of those peaks down; most allocations happen under the GIL, so there is little
contention to lose. The GCP functions get the same through MALLOC_ARENA_MAX (terraform).
"""

from __future__ import annotations

import ctypes

ARENAS = 2
_M_ARENA_MAX = -8  # glibc's malloc.h


def cap_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Limit the arenas created from now on; False where the C library is not glibc."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no mallopt (macOS): nothing to tune
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(_M_ARENA_MAX, arenas))
