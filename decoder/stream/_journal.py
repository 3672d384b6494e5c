"""A journal of messages fetched from a queue that removes what it hands out: on disk before they go on.

:class:`Journal` keeps messages (each one line of bytes) under increasing
positions 1, 2, 3, ... that never repeat, across restarts too. ``append``
writes a group of messages and flushes them to disk (``fsync``) before it
returns their first position, so a caller that hands messages on only after
``append`` has returned never hands on one the disk does not hold.
``cover(n)`` records that every message up to position ``n`` is durable
downstream; whole segments below it are deleted. A new start replays the
messages after the covered position (:meth:`Journal.replay`).

On disk, in the journal's directory::

    00000000000000000001.journal   segments, named by their first position
    covered.json                   {"format", "version", "queue", "api", "covered"}
    lock                           held (flock) while a process uses the journal

A segment holds one message per line: ``<CRC-32 of the message, 8 hex
digits> <message>\\n``. A process that dies while appending leaves a last
line that is cut short, or (after a power cut) bytes that were never
flushed; reading a segment stops at the first line without its newline or
whose CRC does not hold. Such lines were never flushed, so never handed on.
A process never appends to a segment an earlier one wrote: it starts a new
one at the next position. Stripped of their first 9 bytes, the lines are
the messages as JSON Lines, which ``decoder decode`` reads.
"""

from __future__ import annotations

import os
import re
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ..errors import InputError
from ..sources.state import fsync_tree

__all__ = ["Journal", "SEGMENT_BYTES"]

FORMAT = "decoder-queue-journal"
VERSION = 1
SEGMENT_BYTES = 16 << 20  # a new segment after this many bytes
_MARK = "covered.json"
_LOCK = "lock"
_SEGMENT = re.compile(r"^(\d{20})\.journal$")


@dataclass
class _Segment:
    first: int  # position of its first message
    last: int  # position of its last flushed message (first - 1: none yet)
    path: Path


def _lines(data: bytes) -> Iterator[bytes]:
    """The messages of a segment's bytes, up to the first line that is cut short or damaged."""
    start = 0
    while True:
        end = data.find(b"\n", start)
        if end < 0:
            return  # no newline: a write cut short (or nothing more)
        line = data[start:end]
        start = end + 1
        if len(line) < 9 or line[8:9] != b" ":
            return
        body = line[9:]
        try:
            if int(line[:8], 16) != zlib.crc32(body):
                return
        except ValueError:
            return
        yield body


class Journal:
    """The journal in ``directory`` for one queue, named by ``identity`` (see the module docstring).

    One appending thread and one covering thread may use it at once.
    """

    def __init__(
        self, directory: str | os.PathLike, *, identity: dict[str, str], segment_bytes: int = SEGMENT_BYTES
    ) -> None:
        self.directory = Path(directory)
        self.identity = dict(identity)
        self.segment_bytes = int(segment_bytes)
        self.covered = 0  # every message up to here is durable downstream
        self.next = 1  # the position the next message gets
        self._sealed: list[_Segment] = []  # segments of earlier starts and rotations, oldest first
        self._current: _Segment | None = None  # the segment being appended to
        self._fd: int | None = None
        self._size = 0
        self._lock = threading.Lock()
        self._lock_fd: int | None = None
        self._replay: list[_Segment] = []

    # -- opening --------------------------------------------------------------------
    def open(self) -> Journal:
        """Lock the directory, check whose journal it is, find what to replay; InputError when it cannot."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise InputError(f"cannot write the journal {self.directory}: {err.strerror or err}") from None
        self._take_lock()
        mark = self._read_mark()
        if mark is None:
            self._write_mark()  # a new journal says whose it is before it holds anything
        else:
            self.covered = mark
        for path in sorted(self.directory.iterdir()):
            m = _SEGMENT.match(path.name)
            if m is None:
                continue
            first = int(m.group(1))
            count = sum(1 for _ in _lines(path.read_bytes()))
            segment = _Segment(first, first + count - 1, path)
            if count == 0 or segment.last <= self.covered:
                path.unlink()  # nothing flushed in it, or every message in it is durable downstream
                continue
            self._sealed.append(segment)
            self.next = max(self.next, segment.last + 1)
        self.next = max(self.next, self.covered + 1)  # a position once covered is never given again
        self._replay = list(self._sealed)
        return self

    def _take_lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; one consumer per journal is up to the user
            return
        try:
            fd = os.open(self.directory / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as err:
            raise InputError(f"cannot lock the journal {self.directory}: {err.strerror or err}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise InputError(f"another process is using the journal {self.directory}") from None
        self._lock_fd = fd

    def _read_mark(self) -> int | None:
        path = self.directory / _MARK
        try:
            doc = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, orjson.JSONDecodeError) as err:
            raise InputError(f"cannot read {path}: {getattr(err, 'strerror', None) or err}") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("covered"), int):
            raise InputError(f"{path} is not a decoder queue journal (it is left as it is)")
        if doc.get("version") != VERSION:
            raise InputError(f"{path}: journal version {doc.get('version')!r}, this decoder reads {VERSION}")
        theirs = {k: doc.get(k) for k in self.identity}
        if theirs != self.identity:
            whose = ", ".join(f"{k} {v}" for k, v in theirs.items())
            raise InputError(f"the journal {self.directory} belongs to {whose}: give another --journal")
        return doc["covered"]

    def _write_mark(self) -> None:
        doc: dict[str, Any] = {"format": FORMAT, "version": VERSION, **self.identity, "covered": self.covered}
        path = self.directory / _MARK
        tmp = path.with_name(f".{_MARK}.tmp")
        with open(tmp, "wb") as f:
            f.write(orjson.dumps(doc) + b"\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_tree(path)

    # -- reading ---------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Messages a start found after the covered position (what :meth:`replay` yields)."""
        return sum(s.last - max(s.first, self.covered + 1) + 1 for s in self._replay if s.last > self.covered)

    def replay(self) -> Iterator[tuple[int, bytes]]:
        """(position, message) of every message the journal held at start after the covered position."""
        for segment in self._replay:
            try:
                data = segment.path.read_bytes()
            except FileNotFoundError:
                continue  # covered (and deleted) meanwhile
            for k, body in enumerate(_lines(data)):
                position = segment.first + k
                if position > segment.last:
                    break
                if position > self.covered:
                    yield position, body
        self._replay = []

    # -- writing ---------------------------------------------------------------------
    def append(self, messages: list[bytes]) -> int:
        """Write ``messages`` (one line each, no newline in them) and flush them to disk; their first position."""
        if any(b"\n" in m for m in messages):
            raise ValueError("a journal message must not contain a newline")
        data = b"".join(b"%08x %b\n" % (zlib.crc32(m), m) for m in messages)
        with self._lock:
            new = self._fd is None or self._size >= self.segment_bytes
            if new:
                self._start_segment()
            os.write(self._fd, data)  # an O_APPEND file: one write, whole or cut short at its end
            os.fsync(self._fd)
            if new:
                fsync_tree(self._current.path)  # the new name in the directory too
            self._size += len(data)
            first = self.next
            self.next += len(messages)
            self._current.last = self.next - 1
            return first

    def _start_segment(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._sealed.append(self._current)
        path = self.directory / f"{self.next:020d}.journal"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_EXCL, 0o600)
        self._current = _Segment(self.next, self.next - 1, path)
        self._size = 0

    def cover(self, position: int) -> bool:
        """Record that every message up to ``position`` is durable downstream; delete whole covered segments."""
        with self._lock:
            position = min(position, self.next - 1)
            if position <= self.covered:
                return False
            self.covered = position
            self._write_mark()
            keep = []
            for segment in self._sealed:
                if segment.last <= position:
                    try:
                        segment.path.unlink()
                    except FileNotFoundError:
                        pass
                else:
                    keep.append(segment)
            self._sealed = keep
            return True

    def close(self) -> None:
        """Close the open segment and release the lock (what is not covered stays for the next start)."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    def __repr__(self) -> str:
        return f"Journal({str(self.directory)!r}, covered={self.covered}, next={self.next})"
