"""Firefly subscription queues of type ``http_pull`` as a stream source: poll, journal, hand on, acknowledge.

What the Firefly API v1 reference says about these queues:

- ``GET /subscriptions/http_pull/<uid>?auth=<key>`` is called "to get new
  events"; ``limit`` is "the maximum amount of messages to return" (all of
  them if not set); ``encoding`` decides how the body is formatted
  (``separator`` applies "when the encoding is not json").
- "Similar to the WebSocket queue, events will only be kept for 2 hours";
  the WebSocket queue stores messages for a client that is away "until the
  client reconnects or 2 hours have passed".
- Nothing acknowledges an event, commits a position or reads an event
  again: the reference has no such call. So a poll hands each event out
  once, and the queue no longer has it afterwards (consumed on read).
- Every answer carries ``x-ratelimit-*`` headers; a request beyond the
  limit (50 per 10 seconds per key by default) gets a 429.

So Firefly cannot hand an event out again, and this source keeps what it
was handed itself. The delivery promise:

1. A poll's answer is split into events and every event is appended to a
   local journal (:mod:`._journal`) and flushed to disk (``fsync``) before
   the first of them is handed to the stage. The answer is never parsed
   before that in a way that could fail, and a 2xx is never asked for
   again (:meth:`ApiClient.get` with ``raw=True``).
2. Each event goes on as ``Message(body, position)``, the position being
   its place in the journal. :meth:`FireflyQueueSource.ack` (called by
   :func:`~decoder.stream.deliver` once the rows are durable in the output:
   flushed to stdout, or in a Parquet file renamed into place) records the
   journal as covered up to there, and whole journal segments below it
   are deleted.
3. A start replays the journal's events after the covered position first
   (flagged ``redelivered``), then polls.

So an event that Firefly's answer delivered to this process is in the
output at least once, whatever happens after the journal's flush returned:
a crash, ``kill -9``, a power cut, a full output disk. An event comes twice
only when the process died after its output was durable and before the
journal recorded that (between ``deliver``'s commit and :meth:`ack`).

What no client of a queue without acknowledgements can prevent: events in
an answer that never arrived whole (a connection dropped or timed out
mid-answer, the process killed while the answer was on the wire or before
the flush returned) are gone if Firefly removed them for that answer. Such
failures are retried and reported in one line. Firefly drops events that
no poll fetched within 2 hours: a warning (at most one a minute) says when
events arrive older than :data:`BEHIND` or when every poll has come back
full for :data:`FULL_FOR` (the queue fills faster than it is polled).

Polling: a full page (``limit`` events) is followed at once by the next
poll, paced only by the rate-limit headers; a page with fewer waits
``interval``; empty polls wait twice as long each time, up to ten times
``interval``. Requests, pacing, 429 and 5xx back-off with jitter, retries
and the redaction of the key are :class:`decoder.sources.http.ApiClient`'s,
as for ``decoder pull``.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from ..errors import DecoderError, InputError
from ..options import POLL_INTERVAL, POLL_LIMIT
from ..sources import DEFAULT_API
from ..sources.errors import Stopped
from ..sources.firefly import parse_time
from ..sources.http import ApiClient, Timing
from ._journal import Journal
from .stage import Message

__all__ = ["FireflyQueueSource", "check_queue_uid", "BEHIND", "FULL_FOR", "DEFAULT_LIMIT", "DEFAULT_INTERVAL"]

FIREFLY_API = DEFAULT_API["firefly"]
DEFAULT_LIMIT = POLL_LIMIT  # events per poll at most
DEFAULT_INTERVAL = POLL_INTERVAL  # seconds between polls that did not come back full
IDLE_FACTOR = 10  # empty polls back off up to this many intervals
DEFAULT_RETRIES = 10  # a few minutes of back-off (1, 2, 4 ... 60 s) before a failing API ends the stream
LIFETIME = timedelta(hours=2)  # how long Firefly keeps an event no poll fetched
BEHIND = timedelta(minutes=90)  # events this old arriving: polls are falling behind
FULL_FOR = 300.0  # seconds of full pages on every poll before that is worth a warning
WARN_EVERY = 60.0  # seconds between two warnings of one kind
UNJOURNALED = "unjournaled"  # the position of an event the journal could not take (a write failed)
_SLICE = 0.1  # seconds: how often a wait looks at whether to stop


def _events(body: bytes) -> tuple[list[bytes], list[Any]]:
    """A poll's body as one line of JSON per event, and the events parsed (for their age).

    A JSON array is a list of events; an item that is a string is a
    template's output and is taken as the JSON text it holds. ``null`` or an
    empty body is no event; another JSON value is one. A body that is not
    one JSON value is kept, never dropped: JSON values one per line (the
    events joined by a newline, as encodings other than json join them) as
    those events; else, if it looks like JSON, as one event (its line
    breaks, white space in JSON, made spaces) for the stage to tell why it
    holds no uplink; else line by line.
    """
    text = body.strip()
    if not text:
        return [], []
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        lines = [line.strip() for line in text.split(b"\n") if line.strip()]
        try:
            items = [orjson.loads(line) for line in lines]
        except orjson.JSONDecodeError:
            if text[:1] in (b"[", b"{"):
                return [text.replace(b"\r", b" ").replace(b"\n", b" ")], []
            return lines, []
    else:
        if doc is None:
            return [], []
        items = doc if isinstance(doc, list) else [doc]
    values = []
    for item in items:
        if isinstance(item, str):
            try:
                item = orjson.loads(item)
            except orjson.JSONDecodeError:
                pass  # not JSON text: kept as a string, which the stage reports as no uplink
        values.append(item)
    return [orjson.dumps(v) for v in values], values


def _oldest(values: list[Any]) -> datetime | None:
    """The earliest ``received_at`` among the events (Firefly packets carry it; other templates may not)."""
    times = [parse_time(v.get("received_at")) for v in values if isinstance(v, dict)]
    return min((t for t in times if t is not None), default=None)


def check_queue_uid(text: str) -> str:
    """The queue's uid as it goes into the URL (InputError unless it is a UUID, as the reference says)."""
    uid = text.strip()
    try:
        canonical = str(uuid.UUID(uid)) == uid.lower()  # not the {...} or urn: forms: it goes into a path
    except ValueError:
        canonical = False
    if not canonical:
        raise InputError(f"{text!r} is not a queue uid (a UUID such as eeb95e33-d1ba-4a46-b22f-0c27a5955e53)") from None
    return uid


class FireflyQueueSource:
    """Poll Firefly's ``http_pull`` queue ``queue_uid``; iterate its events; :meth:`ack` them after writing.

    >>> source = FireflyQueueSource(uid, api_key=key, journal="out/_firefly-queue").start()
    >>> deliver(stage, source, sink, ack=source.ack)
    >>> source.close()

    ``journal``: the directory of the journal (see the module docstring);
    one process at a time. ``timing``: the clocks and sleep (tests inject
    them); ``log``: where one-line notes and warnings go. Iteration ends
    when :meth:`stop` (or :meth:`close`) is called, or when the API fails
    for good: then :attr:`failure` says why (the events before it are
    handed on first).
    """

    def __init__(
        self,
        queue_uid: str,
        *,
        api_key: str,
        journal: str | Path,
        api_url: str = FIREFLY_API,
        limit: int = DEFAULT_LIMIT,
        interval: float = DEFAULT_INTERVAL,
        timeout: float = 30.0,
        retries: int = DEFAULT_RETRIES,
        timing: Timing | None = None,
        log: Callable[[str], None] | None = None,
        transport: Any = None,
    ) -> None:
        if limit < 1 or not interval > 0:
            raise ValueError("limit and interval must be positive")
        self.uid = check_queue_uid(queue_uid)
        self.api_url = api_url.rstrip("/")
        self.path = f"/subscriptions/http_pull/{self.uid}"
        self.limit = int(limit)
        self.interval = float(interval)
        self.log = log or (lambda text: None)
        self.journal = Journal(journal, identity={"queue": self.uid, "api": self.api_url})
        self.client = ApiClient(
            self.api_url,
            secret_params={"auth": api_key},
            timeout=timeout,
            retries=retries,
            timing=timing,
            stopping=lambda: self._stopping,
            on_wait=self._on_wait,
            transport=transport,
        )
        self.timing = self.client.timing
        self.failure: DecoderError | None = None
        self.polls = self.fetched = self.replayed = self.acked = 0
        self._stopping = False
        self._busy = threading.Lock()  # held from a poll's request until its events are journaled
        self._messages: Iterator[Message] | None = None
        self._empty_polls = 0
        self._full_since: float | None = None
        self._warned: dict[str, float] = {}

    # -- life cycle ----------------------------------------------------------------------
    def start(self) -> FireflyQueueSource:
        """Open the journal (InputError if another process holds it or it is another queue's)."""
        if self._messages is None:
            self.journal.open()
            self._messages = self._generate()
        return self

    @property
    def pending(self) -> int:
        """Events the journal holds from an earlier run that are not yet covered (replayed first)."""
        return self.journal.pending

    def stop(self) -> None:
        """End the iteration: no new poll starts, a wait ends at once (safe from any thread)."""
        self._stopping = True

    stop_taking = stop  # what the stage's reader thread calls when the stage stops

    def close(self) -> None:
        """Stop, wait for a poll in flight to have its events journaled, close the client and the journal."""
        self.stop()
        with self._busy:
            self.client.close()
            self.journal.close()

    def __enter__(self) -> FireflyQueueSource:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- messages ------------------------------------------------------------------------
    def __iter__(self) -> FireflyQueueSource:
        return self

    def __next__(self) -> Message:
        return next(self.start()._messages)

    def _generate(self) -> Iterator[Message]:
        for position, body in self.journal.replay():
            if self._stopping:
                return
            self.replayed += 1
            yield Message(body, position, True)
        delay = 0.0
        while not self._stopping:
            if delay > 0 and not self._wait(delay):
                return
            try:
                polled = self._poll()
            except Stopped:
                return
            except DecoderError as err:  # the API failed for good (PullError), or the journal could not be written
                self.failure = err
                return
            if polled is None:
                return
            bodies, first = polled
            for k, body in enumerate(bodies):
                yield Message(body, first + k if isinstance(first, int) else first)
                if self._stopping:
                    return  # the rest are journaled: the next start hands them on
            if self.failure is not None:
                return
            delay = self._next_delay(len(bodies))

    def _poll(self) -> tuple[list[bytes], int | str] | None:
        """One request; its events journaled (and flushed) before they are returned."""
        with self._busy:
            if self._stopping:
                return None
            body = self.client.get(self.path, {"limit": self.limit, "encoding": "json"}, raw=True)
            self.polls += 1
            bodies, values = _events(body)
            self.fetched += len(bodies)
            self._watch(len(bodies), values)
            if not bodies:
                return bodies, 0
            try:
                return bodies, self.journal.append(bodies)
            except OSError as err:
                # Handed on all the same (the output may be elsewhere), then the stream ends.
                self.failure = InputError(
                    f"cannot write the journal {self.journal.directory}: {err.strerror or err}; "
                    f"the {len(bodies)} events of the last poll were handed on without it"
                )
                return bodies, UNJOURNALED

    def _next_delay(self, count: int) -> float:
        if count >= self.limit:
            self._empty_polls = 0
            return 0.0  # there is more: ask again now (the rate-limit headers pace it)
        if count:
            self._empty_polls = 0
            return self.interval
        self._empty_polls = min(self._empty_polls + 1, 32)  # 2**31 intervals is past any cap
        return min(self.interval * 2 ** (self._empty_polls - 1), self.interval * IDLE_FACTOR)

    def _wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` in slices; False as soon as a stop is asked for."""
        clock, end = self.timing.clock, self.timing.clock() + seconds
        while not self._stopping:
            left = end - clock()
            if left <= 0:
                return True
            self.timing.sleep(min(left, _SLICE))
        return False

    def ack(self, positions: Iterable[Any]) -> int:
        """Record that the events at ``positions`` are durable downstream; returns how many.

        The stage hands events on in order, so the journal is covered up to
        the largest position (positions of other sources are ignored).
        """
        journaled = [p for p in positions if isinstance(p, int) and not isinstance(p, bool)]
        if journaled:
            self.journal.cover(max(journaled))
            self.acked += len(journaled)
        return len(journaled)

    # -- warnings ------------------------------------------------------------------------
    def _watch(self, count: int, values: list[Any]) -> None:
        """Warn when polls fall behind the queue (events near the end of their 2 hours, or always full pages)."""
        now = self.timing.clock()
        oldest = _oldest(values)
        if oldest is not None:
            age = self.timing.wall() - oldest
            if age >= BEHIND and self._may_warn("age", now):
                self.log(
                    f"warning: events arrive {age.total_seconds() / 60:.0f} min after Firefly received them; it "
                    f"keeps unfetched events {LIFETIME.total_seconds() / 3600:.0f} hours, so older ones may be "
                    "gone: poll more often or with a larger --poll-limit"
                )
        if count < self.limit:
            self._full_since = None
            return
        if self._full_since is None:
            self._full_since = now
        elif now - self._full_since >= FULL_FOR and self._may_warn("full", now):
            self.log(
                f"warning: every poll for {(now - self._full_since) / 60:.0f} min came back full ({self.limit:,} "
                "events): the queue fills faster than it is polled and events older than 2 hours are dropped; "
                "raise --poll-limit"
            )

    def _may_warn(self, kind: str, now: float) -> bool:
        last = self._warned.get(kind)
        if last is not None and now - last < WARN_EVERY:
            return False
        self._warned[kind] = now
        return True

    def _on_wait(self, seconds: float, why: str) -> None:
        """One line per kind of failure a minute (a rate-limit pause is normal: no line)."""
        kind = why.split(" (", 1)[0]
        if not why.startswith("retry after") or not self._may_warn(kind, self.timing.clock()):
            return
        lost = ""
        if "timed out" in why or "connection failed" in why:
            lost = " (events Firefly removed for an answer that did not arrive whole are gone)"
        self.log(f"poll of queue {self.uid}: {why}; retrying in {seconds:.1f} s{lost}")

    def summary_lines(self) -> list[str]:
        """Lines for the end-of-stream summary: polls, events, the journal."""
        stats = self.client.stats
        return [
            f"polls      {self.polls:>12,}   ({stats.retries} retried; {stats.rate_limited} answered 429; "
            f"{stats.waits} waits for the rate limit)",
            f"fetched    {self.fetched:>12,}   events ({self.replayed:,} replayed from the journal)",
            f"journal    {self.journal.directory} (covered up to event {self.journal.covered:,})",
        ]

    def __repr__(self) -> str:
        return f"FireflyQueueSource({self.uid!r}, api_url={self.api_url!r})"
