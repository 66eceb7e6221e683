"""glibc's allocator, set for whole-account arrays, in the processes clearsim owns.

A re-valuation makes a dozen temporaries the size of the account table (8 MB each at 1M accounts)
and frees them before the next publication. With glibc's defaults every one of them is handed back
to the kernel -- mapped afresh above the mmap threshold, or trimmed off the top of the heap above
the trim threshold -- and its pages are faulted in again at the next publication: ~3,500 minor
page faults a re-valuation at 1M. Keeping freed memory in the process (a high mmap threshold, a
trim threshold that is never reached, a top pad that grows the heap in large steps) took the
1M-account stress hour from 1,118.8 to 1,024.1 CPU seconds and one re-valuation from 421.6 to
323.1 ms, for 0.13 GiB more peak memory (docs/BENCHMARKS.md, *glibc's allocator at 1M*).

The setting is process-wide, so clearsim makes it only where the process is its own: ``clearsim``'s
command line, the local pool's workers and the child process a Ray worker runs its tasks in (a Dask
cluster the sweep starts gets the same values in its workers' environment). A script that imports
clearsim keeps its process's allocator unless it calls ``keep_freed_memory`` itself. Whoever sets
glibc's allocator in the environment (any ``MALLOC_*`` variable, or ``glibc.malloc`` in
``GLIBC_TUNABLES``) keeps their setting: clearsim then changes nothing.
"""

from __future__ import annotations

import ctypes
import os
import platform
from collections.abc import Mapping

# mallopt's parameters (<malloc.h>) and the values clearsim sets. mallopt takes a C int.
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
SETTINGS: dict[str, tuple[int, int]] = {  # environment variable -> (mallopt parameter, value)
    "MALLOC_MMAP_THRESHOLD_": (M_MMAP_THRESHOLD, 1 << 30),  # arrays up to 1 GiB come from the heap
    "MALLOC_TRIM_THRESHOLD_": (M_TRIM_THRESHOLD, 2**31 - 1),  # the top of the heap is never trimmed
    "MALLOC_TOP_PAD_": (M_TOP_PAD, 256 << 20),  # the heap grows 256 MiB at a time (address space)
}

_applied = False


def user_sets_allocator(environ: Mapping[str, str]) -> bool:
    """Whether the environment already sets glibc's allocator (then clearsim leaves it alone)."""
    if any(name.startswith("MALLOC_") for name in environ):  # MALLOC_TRIM_THRESHOLD_, MALLOC_ARENA_MAX, ...
        return True
    return "glibc.malloc." in environ.get("GLIBC_TUNABLES", "")


def keep_freed_memory() -> bool:
    """Set ``SETTINGS`` in this process with ``mallopt``; True when they are in effect (now or from an
    earlier call). False, changing nothing, outside glibc or when the environment sets the allocator."""
    global _applied
    if _applied:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if user_sets_allocator(os.environ):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    # mallopt returns 1 on success; a value glibc refuses leaves that parameter as it was
    _applied = all(libc.mallopt(parameter, value) == 1 for parameter, value in SETTINGS.values())
    return _applied


def environment() -> dict[str, str]:
    """``SETTINGS`` as environment variables, for processes clearsim starts but does not run code in
    first (a Dask worker): glibc reads them at the process's start."""
    return {name: str(value) for name, (_, value) in SETTINGS.items()}
