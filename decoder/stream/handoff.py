"""The stage's reader side: a blocking source read in a thread of its own, through a bounded hand-off.

``ReaderThread`` takes messages from a (possibly blocking) iterator, stamps
each with the time it arrived and puts it into a ``Handoff`` of bounded
size, so the stage can close a batch on time while nothing arrives and
memory stays bounded while the consumer is busy.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

from .. import threads

__all__ = ["Handoff", "ReaderThread", "POLL"]

POLL = 0.1  # how often a waiting side looks at whether it should stop


class Handoff:
    """A bounded one-producer, one-consumer hand-off, cheaper than queue.Queue.

    Items travel through a deque (append and popleft are atomic), and the
    lock is taken only when a side has to sleep: the consumer on an empty
    hand-off, the producer on a full one. Each side announces that it sleeps
    before it looks once more, and the other side looks for that
    announcement after it acts, so no wake-up is missed.
    """

    def __init__(self, maxsize: int) -> None:
        self.items: collections.deque = collections.deque()
        self.maxsize = maxsize
        self.cond = threading.Condition(threading.Lock())
        self.consumer_sleeps = False
        self.producer_sleeps = False

    def put(self, entry: Any, timeout: float) -> bool:
        """Add entry; False if there was no room within timeout."""
        items = self.items
        if len(items) >= self.maxsize:
            with self.cond:
                self.producer_sleeps = True
                try:
                    if len(items) >= self.maxsize and not self.cond.wait(timeout):
                        if len(items) >= self.maxsize:
                            return False
                finally:
                    self.producer_sleeps = False
        items.append(entry)
        if self.consumer_sleeps:
            with self.cond:
                self.cond.notify_all()
        return True

    def get(self, timeout: float) -> Any:
        """The oldest entry; raises queue.Empty after timeout seconds without one."""
        items = self.items
        if not items:
            with self.cond:
                self.consumer_sleeps = True
                try:
                    if not items:
                        self.cond.wait(timeout)
                finally:
                    self.consumer_sleeps = False
            if not items:
                raise queue.Empty
        return self.popleft()

    def popleft(self) -> Any:
        """The oldest entry (the caller knows there is one); raises IndexError otherwise."""
        entry = self.items.popleft()
        if self.producer_sleeps:
            with self.cond:
                self.cond.notify_all()
        return entry

    def drain(self, into: list) -> None:
        while True:
            try:
                into.append(self.popleft())
            except IndexError:
                return

    def put_back(self, entry: Any) -> None:
        """Return an end marker to the front, to be seen by the next get."""
        self.items.appendleft(entry)


class ReaderThread:
    """Moves messages from a (possibly blocking) iterator into a bounded hand-off,
    each with the time it arrived. Stopping loses nothing it took: :meth:`finish`
    returns whatever it holds.

    A source that buffers messages itself (the async bridge) may offer
    ``stop_taking()`` (end the iteration, keep the buffer) and ``drain()``
    (the buffered entries): finish() then hands those on too."""

    def __init__(self, source: Iterator[Any], maxsize: int, *, stamped: bool = False) -> None:
        """``stamped``: the source yields (message, arrival time) pairs, stamped where they arrived."""
        self.source = source
        self.stamped = stamped
        self.handoff = Handoff(maxsize)
        self.lock = threading.Lock()
        self.taken = 0  # messages taken from the source...
        self.queued = 0  # ...and of those, handed off (only this thread writes either)
        self.stopping = False  # finish() asked: hand off what you hold, take no more
        self.closed = False  # finish() is done: take nothing more
        self.abandoned = False  # nobody takes from the hand-off any more
        self.thread = threading.Thread(target=self._run, name="decoder-stream-reader", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for item in self.source:
                with self.lock:  # against finish(): an item is either counted as held or refused
                    if self.closed:
                        return  # taken after the stage stopped: as if it came later
                    self.taken += 1
                if not self._put(item if self.stamped else (item, time.monotonic())):
                    return
                self.queued += 1
                if self.stopping:
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, raised there
            self._put(threads.Failure(e))
        else:
            self._put(threads.END)

    def _put(self, entry: Any) -> bool:
        while not self.abandoned:
            if self.handoff.put(entry, POLL):
                return True
        return False

    def finish(self, patience: float = 1.0) -> list:
        """Stop taking messages; return every entry taken and not yet handed on, in order."""
        self.stopping = True
        stop_taking = getattr(self.source, "stop_taking", None)
        if stop_taking is not None:
            stop_taking()
        out: list = []
        deadline = time.monotonic() + patience
        while True:
            self.handoff.drain(out)
            with self.lock:
                if self.taken == self.queued or time.monotonic() > deadline:
                    self.closed = True  # the reader holds nothing now (it waits on its source)
                    break
            time.sleep(0.002)
        self.handoff.drain(out)
        drain = getattr(self.source, "drain", None)
        if drain is not None:
            out.extend(drain())
        return out

    def abandon(self) -> None:
        """The consumer left: let the thread end as soon as it can, dropping what it holds."""
        self.abandoned = True
        self.closed = True
        self.handoff.drain([])
