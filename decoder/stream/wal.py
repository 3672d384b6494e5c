"""A write-ahead log for pushed messages: durable before they are acknowledged, replayed after a crash.

``decoder serve`` answers a POST with 2xx only once its body is in this log
and the log is flushed to disk (``fsync``); one flush covers every body that
arrived while the previous one ran (group commit). The stream stage reads
the log back, in order, and writes rolling Parquet files; when a roll is
complete the log's records up to the roll's last position are no longer
needed and whole segments of them are deleted.

On disk, in the log's directory::

    wal-<first position, 20 digits>.log   segments, oldest first
    roll.json                             what the last roll covers

A segment is a 32-byte header (magic, the log's id, its first position),
then records, little-endian::

    u32 body length | u32 CRC-32 of (position, body) | u64 position | body

A message's *position* is its number in the log: 1, 2, 3, ... with no gap
from one segment to the next. A write cut short by a crash or a power cut
leaves a last record whose length or CRC does not hold; reading stops
there. Those bytes were never flushed, so their senders got no 2xx and send
them again. A new process never appends to an old segment: it starts a new
one at the next position.

Replay rule. ``roll.json`` is written (and flushed) after a roll's files are
complete on disk under their temporary names and before the first rename:
``{"log": id, "covered": N, "files": [[tmp, final], ...]}``. At start, any of
those files still under its temporary name is renamed (the roll is finished,
not lost), so every message up to ``N`` is in a complete, renamed Parquet
file, and the stage is fed the log from ``N + 1``. Each Parquet file also
carries the positions it covers in its footer (``decoder.wal.log``,
``decoder.wal.first``, ``decoder.wal.last``); without ``roll.json`` the start
position is found from those. A message is thus written to Parquet once:
after a 2xx it is in the log, and it is replayed only if no renamed file
holds it.
"""

from __future__ import annotations

import json
import os
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from .stage import Message

__all__ = ["WriteAheadLog", "CoveringSink", "Flush", "SEGMENT_BYTES", "FOOTER_LOG", "FOOTER_FIRST", "FOOTER_LAST"]

SEGMENT_BYTES = 64 << 20  # a new segment after this many bytes
FOOTER_LOG = "decoder.wal.log"
FOOTER_FIRST = "decoder.wal.first"
FOOTER_LAST = "decoder.wal.last"

_MAGIC = b"DECWAL1\n"
_HEADER = struct.Struct("<8s16sQ")  # magic, log id, first position
_RECORD = struct.Struct("<IIQ")  # body length, CRC-32 of (position, body), position
_ROLL = "roll.json"
_READ = 1 << 20  # bytes the reader takes from a segment at a time


@dataclass
class _Segment:
    first: int  # position of its first record
    path: Path
    durable: int  # bytes known to be on disk (a sealed segment: its valid records)
    last: int  # position of its last durable record (first - 1: none)
    sealed: bool  # no more records come to it
    listed: bool = True  # its directory entry is on disk


@dataclass(frozen=True)
class Flush:
    """What one ``sync`` puts on disk: the segment written to, up to which byte and position."""

    fd: int
    segment: _Segment
    size: int
    last: int


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: a temporary file, flushed, renamed, the directory flushed."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class WriteAheadLog:
    """The log in ``directory``; ``root``: the directory the Parquet files of ``roll.json`` are in.

    Opening it reads the existing segments (checking every record), finishes
    a roll a crash interrupted, and finds where replay starts (``covered + 1``).

    One writer (``append`` then ``sync``, never two at once), one reader
    (``messages``), and ``cover`` from the thread that writes Parquet.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        root: str | os.PathLike,
        *,
        segment_bytes: int = SEGMENT_BYTES,
        log: Callable[[str], Any] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.root = Path(root)
        self.segment_bytes = int(segment_bytes)
        self.log = log or (lambda text: None)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise InputError(f"cannot write {self.directory}: {err.strerror or err}") from None
        self._cond = threading.Condition(threading.Lock())
        self._segments: list[_Segment] = []
        self._closed = False
        self._fd: int | None = None  # the segment being written
        self._size = 0  # its bytes written (flushed or not)
        self.replayed_from = 0
        self.id = ""
        self._open()

    # -- opening -------------------------------------------------------------
    def _open(self) -> None:
        roll = self._read_roll()
        for path in sorted(self.directory.glob("wal-*.log")):
            segment = self._scan(path)
            if segment.last >= segment.first:
                self._segments.append(segment)
            else:  # created by a run that died before its first flush: it never held a message
                path.unlink()
        ids = {self.id} - {""}
        if roll is not None and ids and roll["log"] not in ids:
            raise InputError(f"{self.directory}: roll.json belongs to another log than the segments beside it")
        self.id = self.id or (roll["log"] if roll else uuid.uuid4().hex)
        if roll is not None:
            self._finish_roll(roll)
            self.covered = int(roll["covered"])
        else:
            self.covered = self._covered_by_files() if self._segments else 0
        last = max([s.last for s in self._segments] + [self.covered])
        self.next = last + 1  # the position of the next record appended
        self.synced = last  # every record up to here is on disk
        self.replayed_from = self.covered + 1
        self.release(self.covered)  # segments a previous run had covered but not yet deleted
        expected = None
        for s in self._segments:
            if expected is not None and s.first != expected and s.last >= s.first:
                self.log(f"{s.path.name}: starts at position {s.first:,}, expected {expected:,}")
            expected = s.last + 1

    def _read_roll(self) -> dict | None:
        path = self.directory / _ROLL
        try:
            roll = json.loads(path.read_bytes())
            int(roll["covered"]), str(roll["log"]), list(roll["files"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise InputError(f"cannot read {path}: {err}") from None
        return roll

    def _scan(self, path: Path) -> _Segment:
        """Read a segment, checking each record; it ends at the first that does not hold."""
        data = path.read_bytes()
        first = 0
        if len(data) >= _HEADER.size:
            magic, log_id, first = _HEADER.unpack_from(data)
            if magic == _MAGIC:
                if self.id and log_id.hex() != self.id:
                    raise InputError(f"{path}: a segment of another log (its id differs from its neighbours')")
                self.id = log_id.hex()
            else:
                first = 0
        if not first:
            self.log(f"{path.name}: no valid header (a segment cut short at its creation); nothing in it")
            return _Segment(0, path, 0, -1, True)
        off, position = _HEADER.size, first
        while off + _RECORD.size <= len(data):
            length, crc, pos = _RECORD.unpack_from(data, off)
            end = off + _RECORD.size + length
            if pos != position or end > len(data) or zlib.crc32(data[off + 8 : end]) != crc:
                break
            off, position = end, position + 1
        if off < len(data):
            self.log(
                f"{path.name}: {len(data) - off:,} bytes after position {position - 1:,} are a write cut short "
                "(never acknowledged); ignored"
            )
        return _Segment(first, path, off, position - 1, True)

    def _finish_roll(self, roll: dict) -> None:
        """Rename what an interrupted roll left under temporary names (they are complete on disk)."""
        for tmp_name, final_name in roll["files"]:
            tmp, final = self.root / tmp_name, self.root / final_name
            if final.exists():
                continue
            if tmp.exists():
                os.replace(tmp, final)
                _fsync_dir(final.parent)
                self.log(f"finished the interrupted roll of {final_name}")
            else:
                self.log(f"{final_name}: listed in {_ROLL} but neither it nor its temporary file is there")

    def _covered_by_files(self) -> int:
        """Without roll.json: the last position held by a Parquet file of this log (their footers)."""
        import pyarrow.parquet as pq  # start-up: only when roll.json is missing

        covered = 0
        for path in self.root.rglob("part-*.parquet"):
            try:
                meta = pq.read_metadata(path).metadata or {}
            except Exception:  # noqa: BLE001 - not ours or unreadable: holds none of our positions
                continue
            if meta.get(FOOTER_LOG.encode()) == self.id.encode():
                covered = max(covered, int(meta[FOOTER_LAST.encode()]))
        if covered:
            self.log(f"{_ROLL} missing: the Parquet files hold positions up to {covered:,}")
        return covered

    # -- writing ---------------------------------------------------------------
    @property
    def rotation_due(self) -> bool:
        """The next ``append`` starts a new segment (no flush may be running then)."""
        return self._fd is None or self._size >= self.segment_bytes

    def append(self, bodies: list[bytes]) -> Flush:
        """Write records for ``bodies`` (not yet on disk); return what to pass to :meth:`sync`.

        Appends come from one thread, one at a time. Flushes of earlier
        appends may still run, except when :attr:`rotation_due`.
        """
        if self._closed:
            raise ValueError("the log is closed")
        if self.rotation_due:
            self._start_segment()
        parts = []
        position = self.next
        for body in bodies:
            head = struct.pack("<Q", position)
            crc = zlib.crc32(body, zlib.crc32(head))
            parts.append(_RECORD.pack(len(body), crc, position))
            parts.append(body)
            position += 1
        data = b"".join(parts)
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        self._size += len(data)
        self.next = position
        return Flush(self._fd, self._segments[-1], self._size, position - 1)

    def _start_segment(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            with self._cond:
                self._segments[-1].sealed = True
                self._cond.notify_all()
        path = self.directory / f"wal-{self.next:020d}.log"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        os.write(fd, _HEADER.pack(_MAGIC, bytes.fromhex(self.id), self.next))
        self._fd, self._size = fd, _HEADER.size
        with self._cond:
            self._segments.append(_Segment(self.next, path, _HEADER.size, self.next - 1, False, listed=False))

    def sync(self, flush: Flush | None = None) -> None:
        """Put what ``append`` wrote (up to ``flush``; default: everything) on disk; then the
        reader may hand it on. Two flushes may run at once (from two threads): the disk
        takes them together, which is what lets the log keep up with many clients."""
        if flush is None:
            if self._fd is None:
                return
            flush = Flush(self._fd, self._segments[-1], self._size, self.next - 1)
        os.fsync(flush.fd)
        segment = flush.segment
        if not segment.listed:  # a new segment: its name must be on disk before its records count
            _fsync_dir(self.directory)
            segment.listed = True
        with self._cond:
            segment.durable = max(segment.durable, flush.size)
            segment.last = max(segment.last, flush.last)
            self.synced = max(self.synced, flush.last)
            self._cond.notify_all()

    def close(self) -> None:
        """No more records: the reader ends once it has handed on the last durable one."""
        with self._cond:
            self._closed = True
            if self._segments:
                self._segments[-1].sealed = True
            self._cond.notify_all()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # -- reading ---------------------------------------------------------------
    def messages(self, start: int | None = None) -> Iterator[Message]:
        """Every durable message from ``start`` (default: the first not covered), in order,
        following the log as it grows until :meth:`close`; ``Message.position`` is its position."""
        position = self.covered + 1 if start is None else start
        segment = None
        while True:
            segment = self._next_segment(segment)
            if segment is None:
                return
            if segment.sealed and segment.last < position:
                continue
            for message in self._read(segment):
                if message.position >= position:
                    yield message
            position = max(position, segment.last + 1)

    def _next_segment(self, after: _Segment | None) -> _Segment | None:
        """The segment after ``after`` (the first one for None), waiting for it; None once closed."""
        with self._cond:
            while True:
                for s in self._segments:
                    if after is None or s.first > after.first:
                        return s
                if self._closed:
                    return None
                self._cond.wait()

    def _read(self, segment: _Segment) -> Iterator[Message]:
        with open(segment.path, "rb") as f:
            f.seek(_HEADER.size)
            offset = _HEADER.size  # of the first byte not yet read
            buf = b""
            while True:
                end = self._readable(segment, offset)
                if end <= offset:
                    return
                data = f.read(min(end - offset, _READ))
                offset += len(data)
                buf = buf + data if buf else data
                at = 0
                while at + _RECORD.size <= len(buf):
                    length, _, position = _RECORD.unpack_from(buf, at)
                    stop = at + _RECORD.size + length
                    if stop > len(buf):
                        break
                    yield Message(buf[at + _RECORD.size : stop], position)
                    at = stop
                buf = buf[at:]

    def _readable(self, segment: _Segment, offset: int) -> int:
        """How far ``segment`` may be read: waits while all its durable bytes are read and more may come."""
        with self._cond:
            while segment.durable <= offset and not segment.sealed and not self._closed:
                self._cond.wait()
            return segment.durable

    # -- coverage ----------------------------------------------------------------
    def cover(self, last: int, files: list[tuple[Path, Path]]) -> None:
        """Record that ``files`` (complete on disk, about to be renamed) and the rolls before them
        hold every message up to ``last``. Called before the first rename."""
        record = {
            "log": self.id,
            "covered": int(last),
            "files": [[os.path.relpath(tmp, self.root), os.path.relpath(final, self.root)] for tmp, final in files],
        }
        _write_atomic(self.directory / _ROLL, json.dumps(record).encode())

    def release(self, last: int) -> int:
        """After the rename: messages up to ``last`` are in Parquet; delete the segments
        that hold nothing else (never the one being written). Returns how many were deleted."""
        with self._cond:
            self.covered = max(self.covered, last)
            done = [s for s in self._segments if s.sealed and s.last <= self.covered and s is not self._current()]
            for s in done:
                self._segments.remove(s)
        for s in done:
            try:
                s.path.unlink()
            except FileNotFoundError:
                pass
        return len(done)

    def _current(self) -> _Segment | None:
        return self._segments[-1] if self._fd is not None and self._segments else None

    @property
    def size(self) -> int:
        """Bytes in the log's segments."""
        with self._cond:
            return sum(s.durable for s in self._segments[:-1]) + (
                self._size if self._fd is not None else (self._segments[-1].durable if self._segments else 0)
            )

    @property
    def pending(self) -> int:
        """Messages on disk here and not yet in a renamed Parquet file."""
        return max(self.synced - self.covered, 0)

    def __repr__(self) -> str:
        return f"WriteAheadLog({str(self.directory)!r}, covered={self.covered}, next={self.next})"


class CoveringSink:
    """A RollingParquetSink whose rolls record the log positions they cover (see the module docstring).

    The same protocol as the sinks of ``deliver`` (``write``, ``due``,
    ``commit``, ``abort``), but ``write`` takes the whole MicroBatch: its
    positions are log positions.
    """

    def __init__(self, rolling: Any, wal: WriteAheadLog, *, clock: Callable[[], float] | None = None) -> None:
        self.rolling = rolling
        self.wal = wal
        self.clock = clock or time.monotonic
        self.first: int | None = None  # first position written since the last roll
        self.last = wal.covered  # last position written
        self.marked = self.clock()

    def write(self, batch: Any) -> None:
        """Append a MicroBatch's rows to the open file(s) and note its positions."""
        if batch.positions:
            if self.first is None:
                self.first = batch.positions[0]
            self.last = batch.positions[-1]
        if batch.rows:
            self.rolling.write(batch.chunk)

    def due(self) -> bool:
        """A roll is due; or messages without rows (bad or skipped ones) wait a roll's time to be marked covered."""
        if self.rolling.due():
            return True
        idle_marks = self.rolling.opened is None and self.last > self.wal.covered
        return idle_marks and self.clock() - self.marked >= self.rolling.roll_seconds

    def commit(self) -> list[Path]:
        """Roll: the files' footers get their positions, roll.json is written, the files renamed, the log trimmed."""
        if self.last <= self.wal.covered:
            return []
        first = self.first if self.first is not None else self.last
        metadata = {FOOTER_LOG: self.wal.id, FOOTER_FIRST: str(first), FOOTER_LAST: str(self.last)}
        last = self.last
        files = self.rolling.roll(metadata=metadata, before_rename=lambda pairs: self.wal.cover(last, pairs))
        if not files:
            self.wal.cover(last, [])
        self.wal.release(last)
        self.first = None
        self.marked = self.clock()
        return files

    def abort(self) -> None:
        """Drop the open file(s): their messages are still in the log and come again at the next start."""
        self.rolling.abort()
