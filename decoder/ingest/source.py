"""JSON Lines input: open (plain, gzip, stdin, a binary stream), cut into chunks of whole lines, parse in parallel.

    from decoder.ingest import read_chunks
    for chunk in read_chunks("packets.jsonl.gz"):
        chunk.uplinks, chunk.receptions, chunk.bad_lines, chunk.skipped

A reader thread fills buffers with whole lines (about ``chunk_bytes``; a
longer line is read whole), gzip inflated by zlib off the GIL; a plain file's
chunks are mapped instead of read (``_MappedFile``), all but its last. Whole chunks
go to a pool, one per core, where ``parse`` turns each into a
``NormalizedChunk`` while the caller works on an earlier one: memory is
bounded by the chunk size, never the file size. Each chunk numbers its lines
from 1; the consumer renumbers them in order.
"""

from __future__ import annotations

import functools
import gzip
import io
import mmap
import os
import queue
import stat
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np
import pyarrow as pa

from .. import threads
from ..errors import InputError, InputTruncated
from ..options import CHUNK_BYTES
from .parse import NormalizedChunk, Reader
from .scan import PAD, ScanBuffer

__all__ = ["read_chunks", "ChunkStream"]

# Chunks parsed ahead of the caller: at most _AHEAD, and no more than _AHEAD_BYTES of input (one
# per worker at least). A Parquet sink writes a row group (128Ki rows, about 64 MB of Firefly
# packets) at a time; with less ahead the workers sat idle while it wrote (a 1M packet run: 3.8
# s at two 8 MB chunks ahead, 3.3 s at eight, medians of four interleaved runs).
_AHEAD = 8
_AHEAD_BYTES = 64 << 20


def _open(source) -> tuple[BinaryIO, str, list]:
    """-> (binary stream, display name, things to close)."""
    closers: list = []
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        if name == "-":
            raw = sys.stdin.buffer
            name = "<stdin>"
        else:
            try:
                raw = open(name, "rb")
            except OSError as e:
                raise InputError(f"{name}: cannot open: {e.strerror or e}") from e
            closers.append(raw)
    elif hasattr(source, "read"):
        raw = source
        name = getattr(source, "name", None)
        name = name if isinstance(name, str) else "<stream>"
    else:
        raise TypeError(f"read_chunks: expected a path, '-' or a binary file object, got {type(source).__name__}")
    if not hasattr(raw, "peek"):  # BytesIO, sockets, anything with read(n): peek for the gzip magic
        raw = io.BufferedReader(_RawAdapter(raw), buffer_size=1 << 16)
    try:
        head = raw.peek(2)[:2]
    except OSError as e:
        raise InputError(f"{name}: cannot read: {e}") from e
    if isinstance(head, str):
        raise TypeError(f"{name}: read_chunks needs a binary stream, not a text one")
    if head == b"\x1f\x8b" or name.endswith(".gz"):
        raw = _Gunzip(raw)
    return raw, name, closers


class _Gunzip:
    """A gzip stream (several members too) inflated with zlib in large steps.

    zlib inflates without the GIL, so the reader runs beside the parsing, at
    Arrow's speed; unlike Arrow's stream (which loses the data it inflated
    before a cut) it hands on every byte that can be inflated, then raises
    EOFError for a truncated stream or zlib.error for corrupt data."""

    _STEP = 1 << 20  # compressed bytes read at a time

    def __init__(self, raw) -> None:
        self._raw = raw
        self._inflate = zlib.decompressobj(wbits=31)
        self._pending = b""  # compressed input not yet inflated
        self._out = b""  # inflated, handed out from _at on
        self._at = 0
        self._started = False  # a member has begun (an empty input is no gzip)

    def readinto(self, view) -> int:
        while self._at == len(self._out):
            if not self._step():
                return 0
        n = min(len(view), len(self._out) - self._at)
        view[:n] = memoryview(self._out)[self._at : self._at + n]
        self._at += n
        return n

    def _step(self) -> bool:
        """Inflate some more into ``_out``; False at the clean end of the stream."""
        if self._inflate.eof:  # a member ended: another may follow
            rest = self._inflate.unused_data + self._pending
            self._pending = b""
            if not rest:
                rest = self._raw.read(self._STEP)
                if not rest:
                    return False
            self._inflate = zlib.decompressobj(wbits=31)
            self._pending = rest
        if not self._pending:
            self._pending = self._raw.read(self._STEP)
            if not self._pending:
                if self._started or self._inflate.unconsumed_tail:
                    raise EOFError("compressed file ended before the end-of-stream marker was reached")
                return False
        data, self._pending = self._pending, b""
        self._started = True
        self._out, self._at = self._inflate.decompress(data, 8 * self._STEP), 0
        self._pending = self._inflate.unconsumed_tail
        return True


class _RawAdapter(io.RawIOBase):
    """Any object with read(n) -> bytes, as a raw stream BufferedReader can wrap."""

    def __init__(self, f):
        self._f = f

    def readable(self):
        return True

    def readinto(self, b):
        data = self._f.read(len(b))
        if isinstance(data, str):
            raise TypeError("read_chunks needs a binary stream, not a text one")
        n = len(data)
        b[:n] = data
        return n


def read_chunks(source, *, chunk_bytes: int = CHUNK_BYTES, receptions: bool = True) -> Iterator[NormalizedChunk]:
    """Stream JSON Lines from a path (``.gz`` by suffix or magic bytes), ``"-"``
    for stdin, or a binary file object, as NormalizedChunks of about
    ``chunk_bytes`` of input each (the first an eighth of that), in input order.

    A reader thread reads (and inflates) the input and counts its lines;
    whole chunks are parsed and normalized in parallel, one per core, while
    the caller works on an earlier one. At most eight chunks, and about 64 MB
    of input, wait for the caller, so memory is bounded by the chunk size,
    never by the file size. Input that stops being readable partway (a
    truncated ``.gz``) raises ``InputTruncated`` naming the file and the last
    line read, after the chunks of every whole line before it: nothing
    readable is lost.
    ``receptions=False``: the chunks cannot give their reception tables, the
    fields only those show are not read (nor warned about), and each chunk
    waiting for the caller holds a quarter of the memory.
    Nothing is read before the first chunk is asked for (``ChunkStream``
    starts at once)."""
    with ChunkStream(source, chunk_bytes=chunk_bytes, receptions=receptions) as chunks:
        yield from chunks


class ChunkStream:
    """``read_chunks``'s chunks, read and parsed from the moment it is made: a caller with
    other work first (loading device classes) starts it, does that work meanwhile, then
    iterates. Close it (or use it as a context manager) when done early."""

    def __init__(self, source, *, chunk_bytes: int = CHUNK_BYTES, receptions: bool = True, prepare=None) -> None:
        """``prepare``: as ``prepare_with``, for every chunk."""
        if chunk_bytes < 1:
            raise ValueError("chunk_bytes must be positive")
        stream, self.name, self._closers = _open(source)
        workers = threads.workers()
        self._q: queue.Queue = queue.Queue(maxsize=max(workers, min(_AHEAD, _AHEAD_BYTES // chunk_bytes)))
        self._stop = threading.Event()
        self._prepare: list = [prepare]  # prepare_with's function, read by the workers
        self._producer = threading.Thread(
            target=_produce,
            args=(stream, self.name, chunk_bytes, self._q, self._stop, workers, receptions, self._prepare),
            name="decoder-jsonl-reader",
            daemon=True,
        )
        self._producer.start()
        self._line = 1  # number of the next chunk's first line
        self._ended = False

    def prepare_with(self, prepare) -> None:
        """Have ``prepare(chunk)`` run in the worker that parses each chunk from now on (chunks
        parsed before have none), its result as the chunk's ``prepared``. The chunk then comes
        numbered from line 1, and is renumbered with what ``prepare`` made of it: that must
        have ``shift_lines(offset)``. The engine decodes chunks this way: the caller's thread
        is left to write them. A chunk the caller is already waiting for comes unprepared
        (the caller, idle, prepares it; the worker goes on to the next chunk)."""
        self._prepare[0] = prepare

    def __iter__(self) -> ChunkStream:
        return self

    def __next__(self) -> NormalizedChunk:
        if self._ended:
            raise StopIteration
        try:
            item = self._q.get()
            if item is threads.END:
                raise StopIteration
            if isinstance(item, _ReadFailed):
                line = self._line - 1
                raise InputTruncated(f"{self.name}: {item.what} after line {line}: {item.error}", line) from None
            if isinstance(item, threads.Failure):
                raise item.error.with_traceback(item.error.__traceback__)
            future, waited = item
            if not future.done():  # the caller waits for this chunk: it prepares it itself (see _parse)
                waited.set()
            chunk = future.result()  # raises what the chunk raised
        except BaseException:
            self.close()
            raise
        # Chunks are numbered from 1 where they are parsed, in parallel: renumber.
        if self._line != 1:
            chunk.shift_lines(self._line - 1)
        self._line += chunk.total_lines
        return chunk

    def __enter__(self) -> ChunkStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop reading; chunks not yet parsed are dropped. Safe to call more than once."""
        if self._ended:
            return
        self._ended = True
        self._stop.set()
        # Unblock a producer waiting to put, then let it see `stop`. One blocked reading a
        # pipe that stays open (stdin, interrupted by Ctrl-C or SIGTERM) cannot see it: it
        # is a daemon thread, so after a second it is left to end with the process.
        deadline = time.monotonic() + 1.0
        while self._producer.is_alive() and time.monotonic() < deadline:
            try:
                item = self._q.get_nowait()
                if isinstance(item, tuple):
                    item[0].cancel()  # not parsed yet: never will be
            except queue.Empty:
                pass
            self._producer.join(timeout=0.05)
        for c in self._closers:
            try:
                c.close()
            except Exception:  # pragma: no cover
                pass


MIN_FIRST_CHUNK = 256 << 10  # bytes: the first chunk is an eighth of a chunk, at least this


def _parse(reader: Reader, block: ScanBuffer, last: bool, prepare: list, waited: threading.Event) -> NormalizedChunk:
    """A worker's job: parse one chunk (the last one in parts, in parallel), then prepare it,
    unless the consumer is already waiting for it (``waited``): the consumer, idle, then
    prepares it, and this worker goes on to the next chunk at once."""
    chunk = reader.process(block, 1, None, last)
    if prepare[0] is not None and not waited.is_set():
        chunk.prepared = prepare[0](chunk)
    return chunk


def _produce(
    stream,
    name: str,
    chunk_bytes: int,
    q: queue.Queue,
    stop: threading.Event,
    workers: int,
    receptions: bool,
    prepare: list,
) -> None:
    """The reader thread: fill buffers with whole lines, count them, hand each
    to the chunk pool, and queue the futures in input order."""

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    try:
        reader = Reader(name, receptions=receptions)
        pool = threads.pool("chunks")
        free: queue.Queue = queue.Queue()  # buffers whose chunks are parsed: to be filled again
        unmade = workers + 1  # buffers still to make: one per chunk being parsed, and one being read
        readinto = getattr(stream, "readinto", None)
        # The consumer waits for the first chunk while every kernel loads: 1/8 of a chunk then
        # reaches it sooner, and its own first-time work overlaps the next chunks' parsing.
        first_room = max(MIN_FIRST_CHUNK, chunk_bytes // 8)

        def submit(block: ScanBuffer, last: bool, buf) -> bool:
            waited = threading.Event()
            future = pool.submit(_parse, reader, block, last, prepare, waited)
            if buf is not None:
                future.add_done_callback(lambda _f: free.put(buf))
            return put((future, waited))

        mapped = _MappedFile.of(stream)
        if mapped is not None:
            for block in mapped.blocks(chunk_bytes, first_room, stop):
                # The file's position shows how far the reading is (the progress display).
                stream.seek(mapped.offset)
                if not submit(block, False, None):
                    return
                first_room = 0
            if stop.is_set():
                return
            # The rest (the last chunk, anything appended) is read from the last chunk's seek on.
        carry = b""
        eof = False
        failed: _ReadFailed | None = None
        while not eof:
            buf = None
            while buf is None:
                if stop.is_set():
                    return
                try:
                    buf = free.get_nowait() if unmade else free.get(timeout=0.05)
                except queue.Empty:
                    if unmade:  # made when first needed: a small input never zeroes the others
                        unmade -= 1
                        buf = _new_buffer(chunk_bytes + PAD)  # scanned where it is read: room for padding
            have = len(carry)
            if have >= len(buf) - PAD:  # the start of a line longer than this buffer
                buf = _new_buffer(have + len(buf))
            buf[:have] = carry  # never a resize: a view of buf may still be alive
            while True:
                room = len(buf) - PAD
                if first_room:  # the first chunk: a small one, so that the first output comes sooner
                    room, first_room = min(room, max(first_room, have + 1)), 0
                while have < room and not eof:  # pipes and gzip may return less than asked
                    with memoryview(buf) as view:
                        try:
                            got = _fill(stream, readinto, view[have:room])
                        except _ReadFailed as e:
                            # Keep every whole line read before it; the cut one is lost (reported).
                            failed, got = e, 0
                            have = buf.rfind(b"\n", 0, have) + 1
                    if got == 0:
                        eof = True
                    have += got
                cut = buf.rfind(b"\n", 0, have)
                if eof or cut >= 0:
                    break
                if have < len(buf) - PAD:  # a first chunk without a whole line: read on
                    continue
                bigger = _new_buffer(2 * len(buf))  # one line longer than the buffer
                bigger[:have] = buf[:have]
                buf = bigger
            end = have if eof else cut + 1
            carry = bytes(buf[end:have])
            if end == 0:
                free.put(buf)
                break
            # Scanned in place (its padding goes where the carried bytes were): no copy.
            # Numbered from 1 here, renumbered by the consumer (line counts are
            # known only once chunks are parsed). The last chunk: parts in parallel.
            if not submit(ScanBuffer(np.frombuffer(buf, np.uint8), end), eof, buf):
                return
        put(failed if failed is not None else threads.END)
    except BaseException as e:  # handed to the consumer, raised there
        put(threads.Failure(e))


class _MappedFile:
    """A regular, uncompressed file whose chunks are mapped, not read: no copy into a buffer.

    Reading a 664 MB file into buffers spent 0.3 CPU-s in the kernel's copy (perf:
    _copy_to_iter, 6% of a mixed run); its pages mapped in one call per chunk (_populate)
    cost about 2 ms per 24 MB. 1M packets, 8 interleaved pairs each: whole runs 1.07x as fast
    on the Firefly and on the mixed file, 8% less CPU (1.00-1.01x with the pages faulted in
    as they were scanned). Each chunk is a private mapping of its own, so the scanner's
    padding written after a chunk's last line lands in a copy of that one page, never in the
    file or the next chunk. Chunks stop short of the end: the last one (which needs padding
    past the file's end) and anything appended while the run goes on are read as from any
    stream. As with every reader that maps files (polars', Arrow's), a file cut shorter by
    another program while its chunks are in flight ends the process (SIGBUS)."""

    def __init__(self, fd: int, start: int, size: int) -> None:
        self._fd, self.offset, self._size = fd, start, size

    @classmethod
    def of(cls, stream) -> _MappedFile | None:
        """The file behind ``stream`` if it can be mapped (a regular file read in binary), else None."""
        if not isinstance(stream, io.BufferedReader) or not isinstance(stream.raw, io.FileIO):
            return None
        try:
            fd = stream.fileno()
            st = os.fstat(fd)
            start = stream.tell()
        except (OSError, ValueError):
            return None
        if not stat.S_ISREG(st.st_mode) or not hasattr(mmap, "MAP_PRIVATE"):
            return None
        return cls(fd, start, st.st_size)

    def blocks(self, chunk_bytes: int, first_room: int, stop: threading.Event) -> Iterator[ScanBuffer]:
        """Chunks of whole lines from ``offset`` on, about ``chunk_bytes`` each (the first
        ``first_room`` if set), while a whole chunk and its padding fit before the end of the
        file; ``offset`` is then where the rest begins."""
        room = min(first_room, chunk_bytes) if first_room else chunk_bytes  # as a read buffer's
        while not stop.is_set():
            base = self.offset - self.offset % mmap.ALLOCATIONGRANULARITY
            skip = self.offset - base
            if self.offset + room + PAD > self._size:
                return
            try:
                mapping = mmap.mmap(self._fd, skip + room + PAD, flags=mmap.MAP_PRIVATE, offset=base)
            except (OSError, ValueError):  # the file shrank, or cannot be mapped: read the rest
                return
            cut = mapping.rfind(b"\n", skip, skip + room)
            if cut < 0:  # a line longer than the room: a bigger one
                mapping.close()
                room *= 2
                continue
            n = cut + 1 - skip
            whole = np.frombuffer(mapping, np.uint8)
            _populate(whole[: skip + n])
            self.offset += n
            yield ScanBuffer(whole[skip:], n)
            room = chunk_bytes


_MADV_POPULATE_READ = 22  # Linux 5.14 and later


def _populate(mapped: np.ndarray) -> None:
    """Map every page of a chunk (in the page cache already, or read now) in one call, in the
    reader thread, before the workers touch it: a fault per 16 pages cost the scanning threads
    about what the copy it replaces cost the reader. Through ctypes, which lets go of the GIL
    for the 1-2 ms a 24 MB chunk takes; where the call is missing or refused, the pages are
    faulted in as they are read."""
    madvise = _libc_madvise()
    if madvise is not None and len(mapped):
        madvise(mapped.ctypes.data, len(mapped), _MADV_POPULATE_READ)  # a failure: faults instead


@functools.cache
def _libc_madvise():
    """libc's madvise through ctypes, or None: not Linux (the advice's number is Linux's), or none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        call = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):  # pragma: no cover - no madvise in this C library
        return None
    call.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    call.restype = ctypes.c_int
    return call


_MAPPED_FROM = 2 << 20  # bytes: buffers this big and more are anonymous mappings (_new_buffer)


def _new_buffer(size: int):
    """A writable buffer of ``size`` bytes for input: an anonymous mapping, whose pages are
    first touched by the copy that fills them (a bytearray zeroes all of them when made).

    In 4 KB pages, not 2 MB ones. On a virtual machine whose host takes back the memory its
    guest frees (free page reporting), first touching a 2 MB page cost 2-3 ms per MB and a
    4 KB one 0.65-0.75 (64 MB touched in a fresh process, three of each). With 2 MB pages
    asked for (MADV_HUGEPAGE), 12 interleaved pairs of whole runs, 1M packets, three sets:
    1.037x, 1.013x (mixed) and 1.023x (Firefly) as fast without; the reader thread had spent
    about 0.1 s zeroing its three 16 MB buffers (perf: clear_page under the read's copy)."""
    private = getattr(mmap, "MAP_PRIVATE", None)
    if size < _MAPPED_FROM or private is None:
        return bytearray(size)
    try:
        return mmap.mmap(-1, size, flags=private)  # anonymous: zero until written
    except (OSError, ValueError):  # pragma: no cover - no anonymous mappings here
        return bytearray(size)


class _ReadFailed(Exception):
    """The input stopped being readable: what happened (the consumer adds the file and the line)."""

    def __init__(self, what: str, error: BaseException) -> None:
        super().__init__(what)
        self.what, self.error = what, error


def _fill(stream, readinto, view: memoryview) -> int:
    try:
        if readinto is not None:
            return readinto(view) or 0
        data = stream.read(len(view))
        view[: len(data)] = data
        return len(data)
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError, pa.ArrowException) as e:
        text = str(e).lower()
        what = (
            "truncated gzip data"
            if isinstance(e, EOFError) or "truncated" in text
            else "corrupt gzip data"
            if isinstance(e, (gzip.BadGzipFile, zlib.error))
            or any(w in text for w in ("gzip", "zlib", "inflate", "compress"))
            else "read error"
        )
        raise _ReadFailed(what, e) from e
