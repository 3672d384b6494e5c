"""What a producer thread hands its consumer besides items: the end of input, or the error it met.

The JSON Lines reader (``ingest.source``) and the stream stage (``stream.stage``)
both read in a thread of their own and hand items on; a consumer that meets
``END`` stops, one that meets a ``Failure`` re-raises its error in its own
thread. ``pool`` gives each named use one lazily started thread pool.
"""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

__all__ = ["END", "Failure", "pool", "workers", "pools_yield"]


class _End:
    """The source is exhausted."""

    def __repr__(self) -> str:
        return "END"


END = _End()


class Failure:
    """The producer raised ``error``; the consumer re-raises it after handing on what came before."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


_pools: dict[str, ThreadPoolExecutor] = {}
_lock = threading.Lock()
_pool_nice: int | None = None  # the nice level of the pools' threads (pools_yield), None: inherited


def workers() -> int:
    """Threads worth running CPU work on (the cores, at most 4)."""
    return max(1, min(4, os.cpu_count() or 1))


def pool(name: str) -> ThreadPoolExecutor:
    """The process's pool named ``name``, started on first use with ``workers()`` threads."""
    with _lock:
        executor = _pools.get(name)
        if executor is None:
            executor = _pools[name] = ThreadPoolExecutor(
                max_workers=workers(), thread_name_prefix=f"decoder-{name}", initializer=_yielding
            )
        return executor


def pools_yield(steps: int) -> None:
    """Have the pools' threads started from now on run ``steps`` nice levels below the rest
    of the process (Linux, where a thread has a nice level of its own; elsewhere nothing).

    The command's thread writes what the pools parse: on two cores those are three busy
    threads, and shared evenly the writer fell behind: its last row groups were written after
    the parsing had ended, on one core (1M mixed packets: 123 ms from the last chunk parsed to
    the exit). Ahead of the pools it keeps up, and the end is its last rows and the rename
    (57 ms). Where the kernel groups processes by session (autogroup), nice levels order the
    threads of a process among themselves, not against other programs."""
    global _pool_nice
    if sys.platform.startswith("linux") and steps > 0:
        _pool_nice = min(19, os.getpriority(os.PRIO_PROCESS, 0) + steps)  # 0: the calling thread
    else:
        _pool_nice = None


def _yielding() -> None:
    """A pool thread's start: take the pools' nice level (pools_yield). A pool thread may be
    started by another pool's thread, whose level it inherits: the level is set, not added."""
    if _pool_nice is None:
        return
    try:
        if os.getpriority(os.PRIO_PROCESS, 0) < _pool_nice:  # 0: this thread (Linux)
            os.setpriority(os.PRIO_PROCESS, 0, _pool_nice)
    except OSError:  # a sandbox that refuses it: the threads run as they are
        pass
