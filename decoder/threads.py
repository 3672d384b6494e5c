"""What a producer thread hands its consumer besides items: the end of input, or the error it met.

The JSON Lines reader (``ingest.source``) and the stream stage (``stream.stage``)
both read in a thread of their own and hand items on; a consumer that meets
``END`` stops, one that meets a ``Failure`` re-raises its error in its own
thread. ``pool`` gives each named use one lazily started thread pool.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

__all__ = ["END", "Failure", "pool", "workers"]


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


def workers() -> int:
    """Threads worth running CPU work on (the cores, at most 4)."""
    return max(1, min(4, os.cpu_count() or 1))


def pool(name: str) -> ThreadPoolExecutor:
    """The process's pool named ``name``, started on first use with ``workers()`` threads."""
    with _lock:
        executor = _pools.get(name)
        if executor is None:
            executor = _pools[name] = ThreadPoolExecutor(max_workers=workers(), thread_name_prefix=f"decoder-{name}")
        return executor
