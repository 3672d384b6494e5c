"""Rolling Parquet files for streams: a directory that gains one complete file per N rows or T seconds.

A stream has no end at which to rename one output into place, so
:class:`RollingParquetSink` writes a sequence of files instead. Each is
written under a hidden temporary name (``.part-....parquet.tmp``, which
Parquet and Arrow dataset readers skip), flushed to disk, and renamed to
``part-<UTC start>-<n>.parquet`` when it is complete: a reader of the
directory sees whole files only. :meth:`roll` says when that happened, so a
stream acknowledges its source only for rows already in a renamed file.

With several classes bound (``engine.mixed``) the directory is partitioned
by class like the batch output: ``DIR/device_class=<name>/part-....parquet``,
every file with the engine's schema (see ``parquet``); one roll closes
every open partition file.

One consumer per directory: a consumer holds an exclusive lock
(``flock``) on ``DIR/.decoder.lock`` while it runs, and a second one
refuses to start (OutputError) instead of deleting the first one's open
file. Holding the lock, a consumer removes the temporary files a consumer
that died left: their rows were never acknowledged, so the source delivers
them again.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import OutputError
from ..options import ROLL_ROWS, ROLL_SECONDS
from . import parquet

__all__ = ["RollingParquetSink", "LOCK_NAME"]

_TMP_PREFIX = ".part-"
_TMP_SUFFIX = ".parquet.tmp"
LOCK_NAME = ".decoder.lock"  # readers skip names that start with a dot


class RollingParquetSink:
    """Write chunks into ``directory`` as Parquet files rolled by rows or age (see the module docstring)."""

    def __init__(
        self,
        directory: str | os.PathLike,
        engine: Any,
        *,
        roll_rows: int = ROLL_ROWS,
        roll_seconds: float = ROLL_SECONDS,
        lock: Any = None,
    ) -> None:
        """``lock``: the directory's lock from :func:`lock_directory` when the caller had to hold it
        first (``decoder serve`` replays its log before the sink starts); taken here otherwise."""
        if roll_rows < 1 or not roll_seconds > 0:
            raise ValueError("roll_rows and roll_seconds must be positive")
        self.directory = Path(directory)
        self.engine = engine
        self.roll_rows = int(roll_rows)
        self.roll_seconds = float(roll_seconds)
        self.partitioned = engine.mixed
        self.files_written: list[Path] = []
        self.rows_written = 0  # rows in renamed (complete) files
        self.rows = 0  # rows in the open file(s)
        self.opened: float | None = None  # monotonic time the open file(s) got their first row
        self._writers: dict[str | None, tuple[Any, Path, Path]] = {}  # class -> (writer, tmp, final)
        self._seq = 0
        self._stamp = ""
        self._lock = lock if lock is not None else lock_directory(self.directory)
        self.stale_removed = self._remove_stale()  # only now: another consumer's open file is not stale

    def _remove_stale(self) -> int:
        removed = 0
        for tmp in self.directory.rglob(f"{_TMP_PREFIX}*{_TMP_SUFFIX}"):
            try:
                tmp.unlink()
                removed += 1
            except OSError:
                pass
        return removed

    # -- writing -------------------------------------------------------------
    def write(self, chunk: Any) -> None:
        """Append a DecodedChunk (or a MicroBatch) to the open file(s)."""
        chunk = getattr(chunk, "chunk", chunk)
        if chunk.rows == 0:
            return
        if self.opened is None:
            self.opened = time.monotonic()
            self._seq += 1
            self._stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")[:-4] + "Z"
        try:
            if not self.partitioned:
                self._writer(None, self.engine.schema).write_table(chunk.table)
            else:
                for name, schema, table in parquet.partitions(chunk, self.engine):
                    self._writer(name, schema).write_table(table)
        except OSError as err:  # disk full: name the output, not the input
            raise OutputError(f"cannot write {self.directory}: {err.strerror or err}") from None
        self.rows += chunk.rows

    def _writer(self, name: str | None, schema: Any) -> Any:
        entry = self._writers.get(name)
        if entry is None:
            folder = self.directory if not self.partitioned else self.directory / parquet.segment(name)
            folder.mkdir(exist_ok=True)
            base = f"part-{self._stamp}-{self._seq:06d}"
            final = folder / f"{base}.parquet"
            tmp = folder / f"{_TMP_PREFIX}{base[5:]}{_TMP_SUFFIX}"
            try:
                writer = parquet.open_writer(tmp, schema, command="stream")
            except OSError as err:
                raise OutputError(f"cannot write {tmp}: {err.strerror or err}") from None
            entry = self._writers[name] = (writer, tmp, final)
        return entry[0]

    # -- rolling -------------------------------------------------------------
    def due(self, now: float | None = None) -> bool:
        """Whether the open file has reached roll_rows rows or roll_seconds of age."""
        if self.opened is None:
            return False
        now = time.monotonic() if now is None else now
        return self.rows >= self.roll_rows or now - self.opened >= self.roll_seconds

    def roll(
        self,
        *,
        metadata: dict[str, str] | None = None,
        before_rename: Callable[[list[tuple[Path, Path]]], Any] | None = None,
    ) -> list[Path]:
        """Complete the open file(s): close, flush to disk, rename into place. Returns the new files.

        ``metadata``: key-value pairs added to each file's footer.
        ``before_rename``: called with every (temporary, final) path pair once
        all the files are complete on disk and before any is renamed, for a
        caller that records what a roll covers (a crash between two renames
        then leaves a record to finish them from). A failure to write is an
        OutputError naming the file.
        """
        entries = list(self._writers.values())
        try:
            for writer, tmp, _ in entries:
                if metadata:
                    writer.add_key_value_metadata(metadata)
                writer.close()
                _fsync(tmp)
        except OSError as err:  # disk full: name the output
            raise OutputError(f"cannot write {self.directory}: {err.strerror or err}") from None
        if before_rename is not None and entries:
            before_rename([(tmp, final) for _, tmp, final in entries])
        done: list[Path] = []
        for _, tmp, final in entries:
            try:
                os.replace(tmp, final)
            except OSError as err:
                raise OutputError(f"cannot write {final}: {err.strerror or err}") from None
            _fsync(final.parent)
            done.append(final)
        self._writers.clear()
        self.files_written.extend(done)
        self.rows_written += self.rows
        self.rows = 0
        self.opened = None
        return done

    def commit(self) -> list[Path]:
        """Make the written rows durable: roll the open file(s)."""
        return self.roll()

    def close(self) -> list[Path]:
        """Roll what is open (nothing is lost on a clean stop) and let the directory go."""
        try:
            return self.roll()
        finally:
            self.unlock()

    def unlock(self) -> None:
        """Release the directory for another consumer (after close or abort; idempotent)."""
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.close()  # closing the file releases the flock

    def abort(self) -> None:
        """Drop the open file(s): their rows were not acknowledged, so the source sends them again."""
        for writer, tmp, _ in self._writers.values():
            try:
                writer.close()
            except Exception:
                pass
            try:
                tmp.unlink()
            except OSError:
                pass
        self._writers.clear()
        self.rows = 0
        self.opened = None


def lock_directory(directory: str | os.PathLike) -> Any:
    """Hold ``directory/.decoder.lock`` exclusively (the open file; closing it lets go), or raise
    OutputError naming the consumer that holds it. The directory is made if missing."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot write {directory}: {err.strerror or err}") from None
    path = directory / LOCK_NAME
    try:
        handle = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o644), "r+b")
    except OSError as err:
        raise OutputError(f"cannot write {directory}: {err.strerror or err}") from None
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = handle.read(32).decode("ascii", "replace").strip()
        handle.close()
        who = f" (pid {holder})" if holder.isdigit() else ""
        raise OutputError(
            f"{directory} is in use by another decoder stream or serve{who}; one consumer per directory"
        ) from None
    except OSError as err:  # a file system without locks
        handle.close()
        raise OutputError(f"cannot lock {path}: {err.strerror or err}") from None
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n".encode())
    handle.flush()
    return handle


def _fsync(path: Path) -> None:
    """Flush a file or directory to disk (best effort where the platform cannot)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
