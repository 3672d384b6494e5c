"""The ingest-pipeline stage: live messages in, micro-batches of Arrow out.

:class:`StreamStage` wraps an :class:`~decoder.engine.Engine`. It takes an
iterable (or async iterable) of raw messages, each a JSON text (bytes or str)
or a parsed JSON value (dict or list), optionally wrapped in a
:class:`Message` that carries its source position (a line number, an MQTT
message id, a Kafka offset...). It groups them into micro-batches that close
at ``max_rows`` messages or ``max_delay`` seconds after the batch's first
message arrived, whichever comes first, decodes each batch with the engine
(one kernel call per class) and yields a :class:`MicroBatch`:

- ``batch.records``: an Arrow record batch, one row per uplink, the schema of
  :attr:`Engine.schema` (stable for the whole stream). Its ``line`` column is
  the message's number in the stream (1-based; for stdin, the line number).
- ``batch.errors``: the failed rows and the messages that held no uplink, each
  with its ``line`` and source ``position``.
- ``batch.positions``: the source position of every message the batch covers,
  in arrival order. At-least-once delivery: acknowledge (commit) these only
  after your sink has written the batch.
- ``batch.stats``: the running totals of the stream so far.

A source that blocks (a socket, a pipe) is read by a thread of its own, so
a batch closes on time even while no message comes. Memory is bounded by
the batch size: the reader stops taking messages while one batch waits to be
decoded and the next one is full.

``max_delay`` bounds how long a message waits in the stage: a batch is
closed early by the time recent batches took to decode and hand on (and a
tenth of ``max_delay`` to spare), so that a message is handed on within
``max_delay`` of its arrival.
"""

from __future__ import annotations

import asyncio
import collections
import queue
import re
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa

from .. import threads
from ..ingest import Reader, empty_uplinks, normalize_values
from ..options import MAX_DELAY, MAX_ROWS
from ..output.text import error_records
from .handoff import POLL, ReaderThread

__all__ = ["StreamStage", "MicroBatch", "StreamStats", "Message"]

_MAX_REASONS = 256  # distinct error reasons kept in the running stats
_OTHER_REASONS = "(other reasons)"
_RECENT = 8  # batches whose hand-on time predicts the next one's
_MARGIN = 0.1  # of max_delay, kept for what the stage cannot see (pipes, scheduling)
_SLOPE_MIN = 256 << 10  # bytes a batch needs to tell the cost per byte
_SLOPE_PRIOR = 100e-9  # seconds per byte until such a batch was seen (measured 20-80)
_VALUE_SIZE = 512  # bytes a parsed (dict or list) message counts as


@dataclass(frozen=True)
class Message:
    """A raw message with where it came from.

    ``body``: JSON text (bytes or str) or a parsed value (dict or list).
    ``position``: the source's own handle for it (line number, MQTT message
    id, offset); the stage hands it back in :attr:`MicroBatch.positions`.
    ``redelivered``: the source says this may be a second delivery (MQTT's
    DUP flag); counted in :attr:`StreamStats.redelivered`.
    """

    body: Any
    position: Any = None
    redelivered: bool = False


@dataclass
class StreamStats:
    """Running totals of a stream (a copy rides on every batch)."""

    messages: int = 0  # messages taken, blank ones included
    blank: int = 0  # blank messages (empty or whitespace lines): nothing to decode, not bad
    uplinks: int = 0  # rows: uplinks found in the messages
    decoded: int = 0
    errors: Counter = field(default_factory=Counter)  # failed rows by reason
    bad_messages: int = 0  # messages (or array items) that held no uplink
    bad_reasons: Counter = field(default_factory=Counter)  # why they held none
    skipped: Counter = field(default_factory=Counter)  # skipped event kinds
    redelivered: int = 0  # messages the source flagged as possible duplicates
    batches: int = 0
    max_latency: float = 0.0  # seconds from a batch's first message to its hand-on
    latency_total: float = 0.0
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    @property
    def mean_latency(self) -> float:
        return self.latency_total / self.batches if self.batches else 0.0

    @property
    def rate(self) -> float:
        """Messages per second since the stream started."""
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    def copy(self) -> StreamStats:
        return replace(
            self, errors=Counter(self.errors), bad_reasons=Counter(self.bad_reasons), skipped=Counter(self.skipped)
        )

    def as_dict(self) -> dict:
        return {
            "messages": self.messages,
            "blank_messages": self.blank,
            "uplinks": self.uplinks,
            "decoded": self.decoded,
            "errors": dict(self.errors),
            "bad_messages": self.bad_messages,
            "bad_reasons": dict(self.bad_reasons),
            "skipped": dict(self.skipped),
            "redelivered": self.redelivered,
            "batches": self.batches,
            "max_latency_s": round(self.max_latency, 6),
            "mean_latency_s": round(self.mean_latency, 6),
            "seconds": round(self.seconds, 6),
            "messages_per_second": round(self.rate, 1),
        }

    def format(self) -> str:
        """A few lines for humans (stderr)."""
        out = [
            f"messages   {self.messages:>12,}   ("
            + (f"{self.blank:,} blank; " if self.blank else "")
            + f"{self.redelivered:,} redelivered; {self.batches:,} batches)",
            f"uplinks    {self.uplinks:>12,}",
            f"decoded    {self.decoded:>12,}",
            f"errors     {self.failed:>12,}",
        ]
        out += [f"  {count:>21,}  {reason}" for reason, count in self.errors.most_common(8)]
        out.append(f"skipped    {sum(self.skipped.values()):>12,}")
        out += [f"  {count:>21,}  {kind}" for kind, count in self.skipped.most_common(8)]
        out.append(f"bad        {self.bad_messages:>12,}")
        out += [f"  {count:>21,}  {reason}" for reason, count in self.bad_reasons.most_common(4)]
        out.append(
            f"latency    {self.max_latency * 1e3:>12.1f} ms max, {self.mean_latency * 1e3:.1f} ms mean "
            f"(first message of a batch to hand-on)"
        )
        out.append(f"time       {self.seconds:>12.2f} s   ({self.rate:,.0f} messages/s)")
        return "\n".join(out)


def _count(counter: Counter, key: str, n: int = 1) -> None:
    """counter[key] += n, folding new keys past _MAX_REASONS into one, so a
    stream of ever-different reasons cannot grow the stats without bound."""
    if key not in counter and len(counter) >= _MAX_REASONS:
        key = _OTHER_REASONS
    counter[key] += n


_WHERE = re.compile(r"^(?:item \d+: )?(?:packets\[\d+\]: )?")


def _reason_kind(why: str) -> str:
    """ "item 2: malformed JSON: ..." -> "malformed JSON": the kind, not where or the varying detail."""
    return _WHERE.sub("", why).split(":", 1)[0]


class MicroBatch:
    """One closed micro-batch: its decoded rows, errors, positions and the running stats."""

    def __init__(
        self,
        index: int,
        chunk: Any,
        positions: list,
        first_line: int,
        stats: StreamStats,
        opened: float,
        closed: float,
        reason: str,
        size: int = 0,
    ) -> None:
        self.index = index  # 0-based number of the batch among those yielded (idle ones too)
        self.chunk = chunk  # the engine's DecodedChunk (table, by_class(), failed())
        self.positions = positions  # source position of every message, arrival order
        self.first_line = first_line  # stream number of the first message
        self.stats = stats
        self.opened = opened  # time.monotonic() of the first message's arrival
        self.closed = closed  # when the batch was closed
        self.reason = reason  # "rows", "delay", "end", "stop" or "idle"
        self.size = size  # bytes of message text (what the hand-on estimate goes by)
        self._errors: list[dict] | None = None

    @property
    def messages(self) -> int:
        return len(self.positions)

    @property
    def last_line(self) -> int:
        return self.first_line + len(self.positions) - 1

    @property
    def rows(self) -> int:
        return self.chunk.rows

    def __len__(self) -> int:
        return self.rows

    @property
    def table(self) -> pa.Table:
        """All rows (decoded and failed) as a table of :attr:`Engine.schema`."""
        return self.chunk.table

    @property
    def records(self) -> pa.RecordBatch:
        """All rows as one Arrow record batch."""
        table = self.chunk.table.combine_chunks()
        batches = table.to_batches()
        return batches[0] if batches else pa.RecordBatch.from_pylist([], schema=table.schema)

    def position_of(self, line: int) -> Any:
        """The source position of the message numbered ``line``."""
        return self.positions[line - self.first_line]

    @property
    def errors(self) -> list[dict]:
        """Failed rows and messages without an uplink, in stream order.

        A failed row: ``{"line", "position", "error", "provider",
        "packet_id", "dev_eui", "device_id", "port", "payload" (hex),
        "device_class"}``; a bad message: ``{"line", "position", "error"}``.
        """
        if self._errors is None:
            self._errors = error_records(self.chunk, lambda line: {"position": self.position_of(line)})
        return self._errors

    def __repr__(self) -> str:
        return (
            f"MicroBatch(index={self.index}, messages={self.messages}, rows={self.rows}, "
            f"errors={len(self.errors)}, reason={self.reason!r})"
        )


# One uplink of each provider, for warm_up (their devices have no class: the rows fail, which is fine).
_WARM_UP = [
    b'{"uid":"warm-up","device_eui":"0000000000000000","payload":"00","port":1,"fcnt":1,'
    b'"received_at":"2026-01-01T00:00:00Z","mtype":"unconfirmed_data_up","freq":868.1,"spreading_factor":7,'
    b'"bandwidth":125,"codr":"4/5","gwrx":[{"gweui":"0000000000000000","rssi":-80,"lsnr":7.5}]}',
    b'{"id":"warm-up","dev_eui":"0000000000000000","payload":"AA==","port":1,"fcnt":1,'
    b'"reported_at":1767225600000,"hotspots":[{"id":"h","name":"h","rssi":-80.0,"snr":7.5,'
    b'"frequency":868.1,"spreading":"SF7BW125"}]}',
    b'{"category":"uplink","data":{"devaddr":"00000000","fcnt":1,"hotspot":{"channel":1,"frequency":868.1,'
    b'"id":"h","name":"h","rssi":-80.0,"snr":7.5,"spreading":"SF7BW125"},"payload":"AA==","port":1},'
    b'"device_id":"warm-up","id":"warm-up","reported_at":"1767225600000","sub_category":"uplink_unconfirmed"}',
    b'{"category":"uplink","data":{"integration":{"id":"i","name":"i","status":"success"},"req":{"body":'
    b'{"dev_eui":"0000000000000000","fcnt":1,"hotspots":[{"id":"h","name":"h","rssi":-80.0,"snr":7.5,'
    b'"frequency":868.1,"spreading":"SF7BW125"}],"id":"warm-up","payload":"AA==","port":1,'
    b'"reported_at":1767225600000},"qos":0}},"device_id":"warm-up","id":"warm-up",'
    b'"reported_at":"1767225600000","sub_category":"uplink_integration_req"}',
]


class _Batcher:
    """The batching state shared by the sync and async drivers (no waiting in here)."""

    def __init__(self, stage: StreamStage) -> None:
        self.stage = stage
        self.bodies: list[Any] = []
        self.positions: list[Any] = []
        self.redelivered = 0
        self.size = 0  # bytes of text (a parsed value counts _VALUE_SIZE)
        self.opened = 0.0  # when the reader got the open batch's first message
        self.seq = 0  # messages taken so far

    def add(self, item: Any, arrived: float) -> None:
        if not self.bodies:
            self.opened = arrived
        self.seq += 1
        if isinstance(item, Message):
            body, position = item.body, item.position if item.position is not None else self.seq
            self.redelivered += bool(item.redelivered)
        else:
            body, position = item, self.seq
        if isinstance(body, (bytes, bytearray)):
            if body.endswith(b"\n"):
                body = bytes(body).rstrip(b"\r\n")  # a line with its newline: keep the fast path
            self.size += len(body)
        elif isinstance(body, str):
            if body.endswith("\n"):
                body = body.rstrip("\r\n")
            self.size += len(body)
        else:
            self.size += _VALUE_SIZE
        self.bodies.append(body)
        self.positions.append(position)

    @property
    def full(self) -> bool:
        return len(self.bodies) >= self.stage.max_rows

    def deadline(self) -> float | None:
        """When the open batch must close, or None when no batch is open."""
        if not self.bodies:
            return None
        stage = self.stage
        return self.opened + max(stage.max_delay - stage._expected_handoff(self.size), 0.0)

    def take(self) -> tuple[list, list, int, float, int, int]:
        out = (self.bodies, self.positions, self.redelivered, self.opened, self.seq - len(self.bodies) + 1, self.size)
        self.bodies, self.positions, self.redelivered, self.size = [], [], 0, 0
        return out


class StreamStage:
    """Decode a live stream of messages in micro-batches (see the module docstring).

    >>> stage = decoder.StreamStage(engine, max_rows=10_000, max_delay=1.0)
    >>> for batch in stage.batches(messages):
    ...     sink.write(batch.records)          # first write...
    ...     source.ack(batch.positions)        # ...then acknowledge
    """

    def __init__(
        self, engine: Any, *, max_rows: int = MAX_ROWS, max_delay: float = MAX_DELAY, idle: float | None = None
    ) -> None:
        """``idle``: when set, also yield an empty batch (reason ``"idle"``) after
        that many seconds without a message, so a caller can do timed work
        (roll an output file) on a quiet stream."""
        if max_rows < 1:
            raise ValueError("max_rows must be at least 1")
        if not max_delay > 0:
            raise ValueError("max_delay must be positive")
        if idle is not None and not idle > 0:
            raise ValueError("idle must be positive")
        self.engine = engine
        self.max_rows = int(max_rows)
        self.max_delay = float(max_delay)
        self.idle = idle
        self.stats = StreamStats()
        self._stopping = False
        self._handoffs: collections.deque[tuple[float, int]] = collections.deque(maxlen=_RECENT)
        self._empty: Any = None  # the chunk of an idle batch
        self._reader: Any = None  # the JSON reader, kept: it learns the shapes of the stream
        self._yielded = 0  # batches handed on, idle ones included

    # -- control -------------------------------------------------------------
    def stop(self) -> None:
        """Hand on the open batch and end the stream (safe from a signal handler or another thread)."""
        self._stopping = True  # a plain store: no lock, so a signal handler may call it

    def warm_up(self) -> MicroBatch:
        """Load every kernel and reader path now, so the first batch is not late by the JIT's time.

        Decodes a Firefly packet, a Helium device event, integration event
        and integration body, alone and by the hundred (nothing reaches the
        stats); these runs seed the hand-on estimate. Returns the last run as
        a batch outside the stream, for a caller to warm its own conversion
        with (not to write).
        """
        for dc in self.engine.classes:
            dc.decode([b""], encoding="raw")  # one (too short) row: loads the kernel
        # Small batches read all shapes together; big ones read each shape on its own (256+ lines).
        for values in (_WARM_UP, [v for v in _WARM_UP for _ in range(256)], _WARM_UP):
            started = time.monotonic()
            norm = normalize_values(values, reader=self._values_reader())
            chunk = self.engine.decode_uplinks(
                norm.uplinks, bad_lines=list(norm.bad_lines), skipped=Counter(norm.skipped), first_line=1
            )
            chunk.table  # noqa: B018 - builds the table
            self._handoffs.append((time.monotonic() - started, sum(map(len, values))))
        now = time.monotonic()
        return MicroBatch(
            -1, chunk, list(range(1, len(_WARM_UP) + 1)), 1, StreamStats(), now, now, "warm-up", sum(map(len, _WARM_UP))
        )

    def _values_reader(self) -> Reader:
        if self._reader is None:
            self._reader = Reader("<stream>", receptions=False)  # batches hand on uplinks only
        return self._reader

    def _expected_handoff(self, size: int) -> float:
        """How long a batch of ``size`` bytes will likely take from closing to hand-on.

        A line fitted loosely to recent batches, erring late-safe: the
        slowest recent small batch is the fixed cost, the costliest per byte
        above it among big ones the slope; at most half of max_delay, plus a
        tenth of it for what happens outside the stage.
        """
        small = [h for h, n in self._handoffs if n < _SLOPE_MIN]
        fixed = max(small) if small else min((h for h, _ in self._handoffs), default=0.0)
        slope = max(((h - fixed) / n for h, n in self._handoffs if n >= _SLOPE_MIN), default=_SLOPE_PRIOR)
        return min(fixed + max(slope, 0.0) * size, self.max_delay / 2) + self.max_delay * _MARGIN

    # -- decoding -----------------------------------------------------------
    def _close(self, batcher: _Batcher, reason: str, now: float) -> MicroBatch:
        bodies, positions, redelivered, opened, first_line, size = batcher.take()
        norm = normalize_values(bodies, first_line=first_line, reader=self._values_reader())
        chunk = self.engine.decode_uplinks(
            norm.uplinks,
            bad_lines=list(norm.bad_lines),
            skipped=Counter(norm.skipped),
            lines=norm.lines,
            first_line=first_line,
            source="<stream>",
        )
        s = self.stats
        s.messages += len(bodies)
        s.blank += len(bodies) - norm.lines
        s.uplinks += chunk.rows
        s.decoded += chunk.decoded
        for reason_text, count in chunk.errors.items():
            _count(s.errors, reason_text, count)
        s.bad_messages += len(chunk.bad_lines)
        for _, why in chunk.bad_lines:
            _count(s.bad_reasons, _reason_kind(why))
        s.skipped.update(chunk.skipped)
        s.redelivered += redelivered
        s.batches += 1
        batch = MicroBatch(self._next_index(), chunk, positions, first_line, s, opened, now, reason, size)
        self._stamp(batch)
        return batch

    def _idle_batch(self, now: float) -> MicroBatch:
        if self._empty is None:
            self._empty = self.engine.decode_uplinks(empty_uplinks(), source="<stream>")
        self._stamp_time()
        return MicroBatch(
            self._next_index(), self._empty, [], self.stats.messages + 1, self.stats.copy(), now, now, "idle"
        )

    def _next_index(self) -> int:
        self._yielded += 1
        return self._yielded - 1

    def _stamp_time(self) -> None:
        self.stats.seconds = time.monotonic() - self.stats.started

    def _stamp(self, batch: MicroBatch) -> None:
        """Record the batch's latency up to now (its hand-on) and give it a stats snapshot."""
        now = time.monotonic()
        latency = now - batch.opened
        self.stats.max_latency = max(self.stats.max_latency, latency)
        self.stats.latency_total += latency
        self._stamp_time()
        batch.stats = self.stats.copy()

    def _handed_back(self, batch: MicroBatch) -> None:
        """The consumer took ``batch`` and asks for more: learn how long hand-on took."""
        self._handoffs.append((time.monotonic() - batch.closed, batch.size))

    # -- sync driver -----------------------------------------------------------
    def batches(self, source: Iterable[Any]) -> Iterator[MicroBatch]:
        """Yield micro-batches from a (possibly blocking) iterable of messages.

        Ends when the source ends or :meth:`stop` is called, after handing on
        every message taken from the source. An exception from the source is
        raised after the messages before it are handed on. A
        KeyboardInterrupt while waiting for messages hands on what was taken
        first, then propagates.
        """
        if hasattr(source, "__aiter__") and not hasattr(source, "__iter__"):
            raise TypeError("an async iterable: use `async for batch in stage.abatches(source)`")
        return self._batches(source)

    def _batches(self, source: Iterable[Any], stamped: bool = False, held: int | None = None) -> Iterator[MicroBatch]:
        """The driver; ``stamped``: the source gives (message, arrival time) pairs; ``held``:
        messages the reader may hold ahead (default max_rows)."""
        reader = ReaderThread(iter(source), held or self.max_rows, stamped=stamped)
        handoff = reader.handoff
        batcher = _Batcher(self)
        last_activity = time.monotonic()
        interrupted: BaseException | None = None
        failure: BaseException | None = None
        reason = "end"
        try:
            while True:
                step, wait = self._next_step(batcher, last_activity)
                if step == "stop":
                    reason = "stop"
                    break
                if step != "wait":
                    if step == "delay":
                        yield from self._hand_on(batcher, "delay")
                    else:
                        yield self._idle_batch(time.monotonic())
                    last_activity = time.monotonic()
                    continue
                try:
                    entry = handoff.get(wait)
                except queue.Empty:
                    continue
                except KeyboardInterrupt as e:
                    interrupted, reason = e, "stop"
                    break
                if entry is threads.END:
                    break
                if isinstance(entry, threads.Failure):
                    failure = entry.error
                    break
                batcher.add(*entry)
                while not batcher.full:  # take what is already there without waiting
                    try:
                        entry = handoff.popleft()
                    except IndexError:
                        break
                    if entry is threads.END or isinstance(entry, threads.Failure):
                        handoff.put_back(entry)  # seen by the next wait
                        break
                    batcher.add(*entry)
                if batcher.full:
                    yield from self._hand_on(batcher, "rows")
                    last_activity = time.monotonic()
            if reason == "stop":  # what the reader took is handed on too
                for entry in reader.finish():
                    if isinstance(entry, tuple):
                        batcher.add(*entry)
                        if batcher.full:
                            yield from self._hand_on(batcher, reason)
            if batcher.bodies:
                yield from self._hand_on(batcher, reason)
        finally:
            reader.abandon()
        if failure is not None:
            raise failure
        if interrupted is not None:
            raise interrupted

    def _next_step(self, batcher: _Batcher, last_activity: float) -> tuple[str, float]:
        """What a driver does next: ("stop" | "delay" | "idle", 0) or ("wait", seconds to wait
        for a message: until the deadline, the next idle batch, or the next look at stop())."""
        now = time.monotonic()
        if self._stopping:
            return "stop", 0.0
        deadline = batcher.deadline()
        if deadline is not None:
            return ("delay", 0.0) if now >= deadline else ("wait", min(POLL, deadline - now))
        if self.idle is None:
            return "wait", POLL
        left = last_activity + self.idle - now
        return ("idle", 0.0) if left <= 0 else ("wait", min(POLL, left))

    def _hand_on(self, batcher: _Batcher, reason: str) -> Iterator[MicroBatch]:
        batch = self._close(batcher, reason, time.monotonic())
        yield batch
        self._handed_back(batch)

    # -- async driver ----------------------------------------------------------
    async def abatches(self, source: Any) -> AsyncIterator[MicroBatch]:
        """Yield micro-batches from an async iterable (or a plain iterable) of messages.

        The same driver as :meth:`batches`, run in a worker thread (so the
        event loop keeps receiving while a batch is decoded); an async source
        is read by the reader thread through the event loop. Same guarantees.
        """
        held = self.max_rows
        if hasattr(source, "__aiter__"):
            # The bridge's buffer and the hand-off share the read-ahead the sync driver allows.
            bridge = max(1, self.max_rows // 2)
            source = _AsyncSource(source, asyncio.get_running_loop(), bridge)
            held = max(1, self.max_rows - bridge)
        batches = self._batches(source, stamped=isinstance(source, _AsyncSource), held=held)
        try:
            while True:
                batch = await asyncio.to_thread(next, batches, None)
                if batch is None:
                    break
                yield batch
        finally:
            await asyncio.to_thread(batches.close)
            if isinstance(source, _AsyncSource):
                source.cancel()

    def __repr__(self) -> str:
        return f"StreamStage(max_rows={self.max_rows}, max_delay={self.max_delay}, {self.engine!r})"


class _AsyncSource:
    """An async iterable as a blocking iterator for the reader thread.

    A task on the event loop reads the source into a bounded buffer (pausing
    while it is full) and stamps each message with its arrival time; the
    reader thread takes from the buffer, so messages cross threads without a
    loop round trip each. A message is always either still in the source or
    in the buffer, so stopping loses none: ``stop_taking`` ends the reader's
    iteration, ``drain`` stops the task and returns what the buffer holds.
    """

    def __init__(self, source: Any, loop: asyncio.AbstractEventLoop, maxsize: int) -> None:
        self.loop = loop
        self.maxsize = maxsize
        self.items: collections.deque = collections.deque()
        self.ready = threading.Condition(threading.Lock())
        self.closed = False
        self.room = asyncio.Event()
        self.task = loop.create_task(self._pump(source))

    async def _pump(self, source: Any) -> None:
        try:
            async for item in source:
                self._add((item, time.monotonic()))
                while len(self.items) >= self.maxsize:  # wait for room before taking the next one
                    self.room.clear()
                    if len(self.items) >= self.maxsize:
                        await self.room.wait()
        except Exception as e:  # handed to the reader thread, raised there
            self._add(threads.Failure(e))
        else:
            self._add(threads.END)

    def _add(self, entry: Any) -> None:
        with self.ready:
            self.items.append(entry)
            self.ready.notify()

    def __iter__(self) -> _AsyncSource:
        return self

    def __next__(self) -> Any:
        with self.ready:
            while not self.items and not self.closed:
                self.ready.wait()
            if self.closed:
                raise StopIteration
            entry = self.items.popleft()
        if not self.room.is_set():
            self.loop.call_soon_threadsafe(self.room.set)
        if entry is threads.END:
            raise StopIteration
        if isinstance(entry, threads.Failure):
            raise entry.error
        return entry

    def stop_taking(self) -> None:
        """End the reader thread's iteration: what is buffered stays for ``drain``."""
        with self.ready:
            self.closed = True
            self.ready.notify_all()

    def drain(self) -> list:
        """Stop reading the source and return the buffered (message, arrival time) pairs."""
        self.stop_taking()
        if not self.task.done():
            try:
                asyncio.run_coroutine_threadsafe(self._stop_pump(), self.loop).result(timeout=5)
            except Exception:  # the loop is gone: nothing more can arrive
                pass
        with self.ready:
            entries = [e for e in self.items if isinstance(e, tuple)]
            self.items.clear()
        return entries

    async def _stop_pump(self) -> None:
        self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            pass

    def cancel(self) -> None:
        """The stage is done with the source."""
        self.stop_taking()
        self.loop.call_soon_threadsafe(self.task.cancel)
