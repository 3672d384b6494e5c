"""``decoder serve``: providers push uplinks over HTTP; a 2xx means the message is on disk.

An ASGI app (Starlette) served by uvicorn:

- ``POST /uplinks`` (aliases ``/helium``, ``/firefly``): one JSON value per
  request, in any shape ``decoder decode`` reads (a Firefly packet or
  envelope, a Helium device event, integration event or integration body,
  or an array of them). 200 once the body is in the write-ahead log and the
  log is flushed to disk (see ``wal``); 400 with the reason for malformed
  JSON or a value of no known shape; 401 without the right
  ``Authorization: Bearer <token>``; 413 over ``max_body`` bytes; 408 when
  the body does not arrive in time; 503 while the log cannot be written.
- ``GET /healthz``: 200 while the server takes messages.
- ``GET /metrics``: the Prometheus text format (with the token when one is set).

Behind the log, the stream stage reads the messages back in order and
writes rolling Parquet files (``CoveringSink``); a slow stage never delays a
2xx, and a crash loses nothing that was answered 2xx.

Shapes are judged by the reader itself (``normalize_values``). That costs a
few milliseconds a call, so a verdict is kept per *structure* of a body
(its keys and JSON types, not its values): a body of a structure seen
before costs one JSON parse. What only the values make bad (rare: a field
the right type but unusable) is found by the stage and reported with its
log position, like a row that fails to decode.
"""

from __future__ import annotations

import asyncio
import bisect
import hmac
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import orjson

from ..ingest import Reader, normalize_values
from .stage import StreamStage
from .wal import CoveringSink, WriteAheadLog

__all__ = ["WebhookServer", "INGEST_PATHS", "MAX_BODY", "CLIENT_TIMEOUT"]

INGEST_PATHS = ("/uplinks", "/helium", "/firefly")
MAX_BODY = 1 << 20  # bytes a POST body may have
CLIENT_TIMEOUT = 10.0  # seconds a client has to send its headers, and again its body
KEEP_ALIVE = 5  # seconds an idle kept-alive connection stays open
_SHAPES_KEPT = 4096  # structures whose verdict is remembered
_MAX_REASONS = 64  # distinct reasons a metric keeps apart
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_JSON = [(b"content-type", b"application/json")]
_CLOSE = [(b"content-type", b"application/json"), (b"connection", b"close")]
_ACCEPTED = b'{"status":"accepted"}'
_FLUSHES = 2  # flushes of the log running at once: the disk serves two about as fast as one


# -- shapes ----------------------------------------------------------------------------


def _structure(value: Any) -> Any:
    """A body's structure: keys and JSON types, without values (what the reader's verdict depends on)."""
    kind = type(value)
    if kind is dict:
        return tuple([(k, _structure(v)) for k, v in value.items()])
    if kind is list:
        return ("[", tuple([_structure(v) for v in value]))
    if kind is str:
        return "s"
    if value is None:
        return None
    return "b" if kind is bool else "n"


class _Shapes:
    """The reader's verdict on a body (None: it holds known shapes; else why not), kept per structure."""

    def __init__(self) -> None:
        self.verdicts: dict[Any, str | None] = {}
        self.reader = Reader("<serve>", receptions=False)  # a verdict needs no reception table
        self.lock = threading.Lock()  # the reader learns as it reads: one caller at a time
        self.judged = 0

    def known(self, structure: Any) -> tuple[bool, str | None]:
        """(whether a verdict is kept, the verdict)."""
        try:
            return True, self.verdicts[structure]
        except KeyError:
            return False, None

    def judge(self, body: bytes, structure: Any) -> str | None:
        """Read ``body`` with the reader; keep and return the verdict."""
        with self.lock:
            chunk = normalize_values([body], reader=self.reader)
            self.judged += 1
        reasons = [why for _, why in chunk.bad_lines]
        verdict = "; ".join(reasons[:4]) + (f"; and {len(reasons) - 4} more" if len(reasons) > 4 else "") or None
        if len(self.verdicts) >= _SHAPES_KEPT:
            self.verdicts.clear()
        self.verdicts[structure] = verdict
        return verdict


# -- metrics ---------------------------------------------------------------------------


def _kind(reason: str) -> str:
    """ "item 2: unknown shape: no ... (keys: a, b)" -> "unknown shape": a bounded label."""
    text = reason
    while text.startswith(("item ", "packets[")) and ": " in text:
        text = text.split(": ", 1)[1]
    return text.split(":", 1)[0].split(" (", 1)[0][:80]


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _Metrics:
    """What /metrics shows. Request figures are written by the event loop, stage figures by the
    pipeline thread (each figure by one thread); /metrics reads both."""

    def __init__(self) -> None:
        self.requests: Counter = Counter()  # (path, code)
        self.rejected: Counter = Counter()  # reason kind
        self.messages = 0  # bodies accepted (on disk in the log)
        self.body_bytes = 0
        self.buckets = [0] * (len(_LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.latency_count = 0
        self.syncs = 0
        self.sync_seconds = 0.0
        self.stats: Any = None  # the stage's StreamStats of the last batch
        self.files = 0
        self.bytes_written = 0

    def answered(self, path: str, code: int, seconds: float) -> None:
        self.requests[(path, code)] += 1
        self.buckets[bisect.bisect_left(_LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds
        self.latency_count += 1

    def reject(self, reason: str) -> None:
        kind = _kind(reason)
        if kind not in self.rejected and len(self.rejected) >= _MAX_REASONS:
            kind = "(other reasons)"
        self.rejected[kind] += 1

    def render(self, wal: WriteAheadLog) -> bytes:
        out: list[str] = []

        def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")
            out.extend(
                f"{name}{labels} {value:g}" if isinstance(value, float) else f"{name}{labels} {value}"
                for labels, value in samples
            )

        requests = [(f'{{path="{_label(p)}",code="{c}"}}', n) for (p, c), n in sorted(self.requests.items())]
        metric(
            "decoder_http_requests_total", "counter", "POSTs to the ingest paths answered, by path and code.", requests
        )
        cumulative, samples = 0, []
        for bound, count in zip((*_LATENCY_BUCKETS, float("inf")), self.buckets):
            cumulative += count
            samples.append((f'_bucket{{le="{"+Inf" if bound == float("inf") else f"{bound:g}"}"}}', cumulative))
        out.append("# HELP decoder_http_request_duration_seconds Time from a POST's headers to its answer.")
        out.append("# TYPE decoder_http_request_duration_seconds histogram")
        out.extend(f"decoder_http_request_duration_seconds{labels} {value}" for labels, value in samples)
        out.append(f"decoder_http_request_duration_seconds_sum {self.latency_sum:.6f}")
        out.append(f"decoder_http_request_duration_seconds_count {self.latency_count}")
        rejected = [(f'{{reason="{_label(r)}"}}', n) for r, n in sorted(self.rejected.items())]
        metric("decoder_rejected_total", "counter", "Requests refused (4xx), by reason.", rejected)
        metric(
            "decoder_messages_total",
            "counter",
            "Bodies accepted: on disk in the write-ahead log.",
            [("", self.messages)],
        )
        metric("decoder_received_bytes_total", "counter", "Bytes of accepted bodies.", [("", self.body_bytes)])
        stats = self.stats
        if stats is not None:
            metric("decoder_uplinks_total", "counter", "Uplinks (rows) found in the messages.", [("", stats.uplinks)])
            metric("decoder_decoded_total", "counter", "Rows decoded.", [("", stats.decoded)])
            errors = [(f'{{reason="{_label(r)}"}}', n) for r, n in sorted(stats.errors.items())]
            metric("decoder_errors_total", "counter", "Rows that failed to decode, by reason.", errors)
            bad = [(f'{{reason="{_label(r)}"}}', n) for r, n in sorted(stats.bad_reasons.items())]
            metric("decoder_bad_messages_total", "counter", "Accepted messages that held no uplink, by reason.", bad)
            skipped = [(f'{{kind="{_label(k)}"}}', n) for k, n in sorted(stats.skipped.items())]
            metric("decoder_skipped_total", "counter", "Events that are not uplinks, by kind.", skipped)
            metric("decoder_batches_total", "counter", "Micro-batches decoded.", [("", stats.batches)])
        metric("decoder_files_total", "counter", "Parquet files completed (renamed into place).", [("", self.files)])
        metric(
            "decoder_written_bytes_total", "counter", "Bytes of completed Parquet files.", [("", self.bytes_written)]
        )
        metric("decoder_wal_bytes", "gauge", "Bytes in the write-ahead log.", [("", wal.size)])
        metric(
            "decoder_wal_pending_messages",
            "gauge",
            "Messages in the log not yet in a completed Parquet file.",
            [("", wal.pending)],
        )
        metric(
            "decoder_wal_syncs_total",
            "counter",
            "Flushes of the log to disk (one per group of bodies).",
            [("", self.syncs)],
        )
        metric(
            "decoder_wal_sync_seconds_total",
            "counter",
            "Time spent flushing the log.",
            [("", round(self.sync_seconds, 6))],
        )
        return ("\n".join(out) + "\n").encode()


# -- group commit ------------------------------------------------------------------------


class _WalFailed(Exception):
    """The log could not be written: nothing of the group is acknowledged."""


class _Committer:
    """Bodies in, positions out: one append + flush for every body that arrived meanwhile."""

    def __init__(self, wal: WriteAheadLog, metrics: _Metrics, on_failure: Callable[[BaseException], Any]) -> None:
        self.wal = wal
        self.metrics = metrics
        self.on_failure = on_failure
        self.pending: list[tuple[bytes, asyncio.Future]] = []
        self.wakeup: asyncio.Event | None = None
        self.failed: BaseException | None = None
        self.closing = False
        self.flusher = ThreadPoolExecutor(max_workers=_FLUSHES, thread_name_prefix="decoder-wal")
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.wakeup = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def submit(self, body: bytes) -> int:
        """The body's log position, once it is on disk (raises _WalFailed if it cannot be)."""
        if self.failed is not None or self.closing:
            raise _WalFailed(str(self.failed or "shutting down"))
        future = asyncio.get_running_loop().create_future()
        self.pending.append((body, future))
        self.wakeup.set()
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        flushing: set[asyncio.Future] = set()
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            if self.failed is not None:
                return
            if not self.pending:
                if self.closing:
                    if flushing:
                        await asyncio.wait(flushing)
                    return
                continue
            while len(flushing) >= _FLUSHES or (flushing and self.wal.rotation_due):
                await asyncio.wait(flushing, return_when=asyncio.FIRST_COMPLETED)
            if self.failed is not None:
                return
            group, self.pending = self.pending, []
            try:
                flush = self.wal.append([body for body, _ in group])
            except Exception as err:  # noqa: BLE001 - a disk problem: refuse this group and what follows
                self._fail(err, group)
                return
            task = loop.run_in_executor(self.flusher, self._sync, flush)
            flushing.add(task)
            task.add_done_callback(lambda done, group=group, flush=flush: self._flushed(done, group, flush, flushing))
            if self.pending:
                self.wakeup.set()

    def _sync(self, flush: Any) -> float:
        started = time.perf_counter()
        self.wal.sync(flush)
        return time.perf_counter() - started

    def _flushed(self, done: asyncio.Future, group: list, flush: Any, flushing: set) -> None:
        flushing.discard(done)
        self.wakeup.set()  # the loop may wait for a free flush
        err = done.exception()
        if err is not None or self.failed is not None:
            # After a failed flush no later one is trusted: the kernel may have dropped the pages.
            self._fail(err or self.failed, group)
            return
        self.metrics.syncs += 1
        self.metrics.sync_seconds += done.result()
        first = flush.last - len(group) + 1
        for k, (_, future) in enumerate(group):
            if not future.done():  # a client that left is still in the log: it counts
                future.set_result(first + k)

    def _fail(self, err: BaseException, group: list) -> None:
        if self.failed is None:
            self.failed = err
            self.on_failure(err)
        for _, future in group + self.pending:
            if not future.done():
                future.set_exception(_WalFailed(str(err)))
        self.pending = []
        self.wakeup.set()

    async def close(self) -> None:
        """Flush what is pending, then stop (after the server stopped taking requests)."""
        self.closing = True
        if self.task is not None:
            self.wakeup.set()
            await self.task
        self.flusher.shutdown(wait=True)


# -- the app -----------------------------------------------------------------------------


class _Gone(Exception):
    """The client left before its body arrived."""


class _TooLarge(Exception):
    """The body is over the limit."""


_UNAUTHORIZED = [(b"content-type", b"application/json"), (b"www-authenticate", b'Bearer realm="decoder"')]


class _Ingest:
    """``POST /uplinks``: a raw ASGI endpoint (the hot path: no request object, one dict per message)."""

    def __init__(self, server: WebhookServer) -> None:
        self.server = server

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        started = time.perf_counter()
        status, payload, headers = await self._answer(scope, receive)
        if status:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": payload})
        self.server.metrics.answered(scope["path"], status or 499, time.perf_counter() - started)

    async def _answer(self, scope: dict, receive: Callable) -> tuple[int, bytes, list]:
        srv = self.server
        auth = length = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                auth = value
            elif name == b"content-length":
                length = value
        if srv.token is not None and not srv.authorized(auth):
            return self._refuse(401, "unauthorized: send Authorization: Bearer <token>", _UNAUTHORIZED)
        if length is not None and length.isdigit() and int(length) > srv.max_body:
            return self._refuse(413, f"body too large: {int(length):,} bytes (the limit is {srv.max_body:,})")
        try:
            body = await self._read_body(receive)
        except _TooLarge:
            return self._refuse(413, f"body too large: over {srv.max_body:,} bytes")
        except TimeoutError:
            return self._refuse(408, f"request timeout: the body did not arrive within {srv.timeout:g} s")
        except _Gone:
            return 0, b"", []
        reason = await self._judge(body)
        if reason is not None:
            srv.rejected_body(scope, reason, body)
            return self._refuse(400, reason, _JSON)
        try:
            await srv.committer.submit(body)
        except _WalFailed as err:
            return 503, orjson.dumps({"error": f"not stored, send again later: {err}"}), _CLOSE
        srv.metrics.messages += 1
        srv.metrics.body_bytes += len(body)
        return 200, _ACCEPTED, _JSON

    def _refuse(self, status: int, reason: str, headers: list = _CLOSE) -> tuple[int, bytes, list]:
        self.server.metrics.reject(reason)
        return status, orjson.dumps({"error": reason}), headers

    async def _read_body(self, receive: Callable) -> bytes:
        limit = self.server.max_body
        chunks: list[bytes] = []
        size = 0
        async with asyncio.timeout(self.server.timeout):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise _Gone
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise _TooLarge
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _judge(self, body: bytes) -> str | None:
        """Why ``body`` holds no known shape, or None (see the module docstring)."""
        if not body.strip():
            return "empty body: expected one JSON value"
        try:
            structure = _structure(orjson.loads(body))
        except orjson.JSONDecodeError as err:
            return f"malformed JSON: {err}"
        except RecursionError:
            return "malformed JSON: nested too deeply"
        shapes = self.server.shapes
        kept, verdict = shapes.known(structure)
        if kept:
            return verdict
        return await asyncio.get_running_loop().run_in_executor(self.server.judges, shapes.judge, body, structure)


def _ignore(signum: int, frame: Any) -> None:
    """A signal handler that does nothing (see WebhookServer.run)."""


def _protocol(timeout: float) -> type:
    """uvicorn's HTTP protocol (httptools when installed) with a deadline for each request's headers.

    uvicorn times out idle kept-alive connections only after a response, and
    any byte resets that timer: a client sending its headers a byte at a time
    would hold its connection forever. Here a connection that has not
    completed a request's headers ``timeout`` seconds after it opened (or
    after its last response) is closed; a body has its own deadline in the app.
    """
    from uvicorn.protocols.http.auto import AutoHTTPProtocol  # start-up: uvicorn only when serving

    class HeaderDeadlineProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
        _header_deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm_header_deadline()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm_header_deadline()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._header_deadline is not None:
                self._header_deadline.cancel()
            super().connection_lost(exc)

        def _arm_header_deadline(self) -> None:
            if self._header_deadline is not None:
                self._header_deadline.cancel()
            self._header_deadline = self.loop.call_later(timeout, self._headers_late)

        def _headers_late(self) -> None:
            self._header_deadline = None
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete:
                return  # a request is in (its headers were on time): the app minds its body
            if not self.transport.is_closing():
                self.transport.close()

    return HeaderDeadlineProtocol


class WebhookServer:
    """The server of ``decoder serve``: HTTP in, write-ahead log, stream stage, rolling Parquet out.

    ``run()`` serves until SIGINT or SIGTERM (or a failure), then stops taking
    requests, answers those waiting, hands on and writes the open batch, and
    returns the exit status (0, or 1 after a failure).
    """

    def __init__(
        self,
        engine: Any,
        output: str,
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        token: bytes | None = None,
        max_body: int = MAX_BODY,
        timeout: float = CLIENT_TIMEOUT,
        max_rows: int | None = None,
        max_delay: float | None = None,
        roll_rows: int | None = None,
        roll_seconds: float | None = None,
        on_errors: Callable[[list[dict]], Any] | None = None,
        log: Callable[[str], Any] | None = None,
    ) -> None:
        from ..options import MAX_DELAY, MAX_ROWS, ROLL_ROWS, ROLL_SECONDS

        self.engine = engine
        self.output = output
        self.host = host
        self.port = port
        self.token = token
        self.max_body = int(max_body)
        self.timeout = float(timeout)
        self.max_rows = max_rows or MAX_ROWS
        self.max_delay = max_delay or MAX_DELAY
        self.roll_rows = roll_rows or ROLL_ROWS
        self.roll_seconds = roll_seconds or ROLL_SECONDS
        self.on_errors = on_errors or (lambda records: None)
        self.log = log or (lambda text: None)
        self.metrics = _Metrics()
        self.shapes = _Shapes()
        self.judges = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decoder-shapes")
        self.failure: BaseException | None = None
        self.wal: WriteAheadLog | None = None
        self.committer: Any = None
        self.server: Any = None
        self.stage: StreamStage | None = None
        self.sink: CoveringSink | None = None

    # -- requests ------------------------------------------------------------------
    def authorized(self, header: bytes | None) -> bool:
        """Whether an Authorization header carries the token (compared in constant time)."""
        if header is None:
            return False
        scheme, _, credentials = header.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), self.token)

    def rejected_body(self, scope: dict, reason: str, body: bytes) -> None:
        client = scope.get("client")
        self.on_errors(
            [
                {
                    "error": reason,
                    "path": scope["path"],
                    "client": client[0] if client else None,
                    "received_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
                    "body": body.decode("utf-8", errors="replace"),
                }
            ]
        )

    async def _healthz(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        if self.failure is not None or (self.committer is not None and self.committer.failed is not None):
            return JSONResponse({"status": "failing"}, status_code=503)
        return JSONResponse({"status": "ok", "pending": self.wal.pending, "wal_bytes": self.wal.size})

    async def _metrics(self, request: Any) -> Any:
        from starlette.responses import JSONResponse, Response

        if self.token is not None and not self.authorized(request.headers.get("authorization", "").encode()):
            return JSONResponse({"error": "unauthorized"}, status_code=401, headers={"www-authenticate": "Bearer"})
        return Response(self.metrics.render(self.wal), media_type="text/plain; version=0.0.4; charset=utf-8")

    def app(self) -> Any:
        """The ASGI app (Starlette): the ingest paths, /healthz and /metrics."""
        import contextlib

        from starlette.applications import Starlette  # start-up: the server's libraries only when serving
        from starlette.routing import Route

        @contextlib.asynccontextmanager
        async def lifespan(app: Any) -> Any:
            self.committer = _Committer(self.wal, self.metrics, self._failed)
            self.committer.start()
            announce = asyncio.get_running_loop().create_task(self._announce())
            yield
            announce.cancel()
            await self.committer.close()  # every request is answered by now: flush the last group

        ingest = _Ingest(self)
        routes = [Route(path, ingest, methods=["POST"]) for path in INGEST_PATHS]
        routes += [Route("/healthz", self._healthz, methods=["GET"]), Route("/metrics", self._metrics, methods=["GET"])]
        starlette = Starlette(routes=routes, lifespan=lifespan)
        paths = frozenset(INGEST_PATHS)

        async def app(scope: dict, receive: Callable, send: Callable) -> None:
            # The hot path skips Starlette's middleware and router (a third of a request's
            # time here); everything else, wrong methods and the lifespan included, is Starlette's.
            if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in paths:
                await ingest(scope, receive, send)
            else:
                await starlette(scope, receive, send)

        return app

    async def _announce(self) -> None:
        while not self.server.started:
            await asyncio.sleep(0.01)
        sockets = [sock for srv in self.server.servers for sock in srv.sockets]
        host, port = sockets[0].getsockname()[:2]
        self.port = port
        where = f"[{host}]" if ":" in host else host
        self.log(f"listening on http://{where}:{port} (POST {', '.join(INGEST_PATHS)}; GET /healthz, /metrics)")

    def _failed(self, err: BaseException) -> None:
        """The log or the output cannot be written: stop taking requests, exit 1."""
        if self.failure is None:
            self.failure = err
        if self.server is not None:
            self.server.should_exit = True

    # -- the pipeline ------------------------------------------------------------------
    def _pipeline(self) -> None:
        """The stage over the log, into Parquet (a thread of its own)."""
        sink = self.sink
        try:
            for batch in self.stage.batches(self.wal.messages()):
                sink.write(batch)
                if batch.errors:
                    self.on_errors(batch.errors)
                self.metrics.stats = batch.stats
                if sink.due():
                    self._commit()
            self._commit()
        except BaseException as err:  # noqa: BLE001 - reported; the messages stay in the log
            sink.abort()
            self.log(f"cannot write {self.output}: {getattr(err, 'strerror', None) or err}")
            self._failed(err)

    def _commit(self) -> None:
        files = self.sink.commit()
        self.metrics.files += len(files)
        self.metrics.bytes_written += sum(f.stat().st_size for f in files)

    # -- running -----------------------------------------------------------------------
    def run(self) -> int:
        """Serve until a signal or a failure; return the exit status."""
        import logging
        import os

        import uvicorn  # start-up: the server only when serving

        from ..output.rolling import RollingParquetSink, lock_directory

        # The directory's lock before anything in it is touched: a second server on it must
        # refuse, not replay or truncate the first one's log.
        lock = lock_directory(self.output)
        try:
            # The log next: it finishes a roll a crash interrupted before the sink removes temporary files.
            self.wal = WriteAheadLog(os.path.join(self.output, ".wal"), self.output, log=self.log)
            rolling = RollingParquetSink(
                self.output, self.engine, roll_rows=self.roll_rows, roll_seconds=self.roll_seconds, lock=lock
            )
        except BaseException:
            lock.close()
            raise
        self.sink = CoveringSink(rolling, self.wal)
        self.stage = StreamStage(
            self.engine, max_rows=self.max_rows, max_delay=self.max_delay, idle=min(1.0, self.roll_seconds / 2)
        )
        self.stage.warm_up()
        if self.wal.pending:
            self.log(f"replaying {self.wal.pending:,} messages of the log not yet in Parquet files")
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("decoder: %(message)s"))
        uv_log = logging.getLogger("uvicorn")
        uv_log.handlers[:] = [handler]
        uv_log.propagate = False
        config = uvicorn.Config(
            self.app(),
            host=self.host,
            port=self.port,
            http=_protocol(self.timeout),
            lifespan="on",
            access_log=False,
            log_config=None,
            log_level="warning",
            timeout_keep_alive=KEEP_ALIVE,
            timeout_graceful_shutdown=int(self.timeout * 2 + 5),
            server_header=False,
        )
        self.server = uvicorn.Server(config)
        pipeline = threading.Thread(target=self._pipeline, name="decoder-serve-pipeline", daemon=True)
        pipeline.start()
        code = 0
        # uvicorn takes SIGINT and SIGTERM while it runs (stop taking requests, answer the open
        # ones) and raises them again once it is done: by then they must do nothing, so the
        # open batch is written and the exit status is ours.
        saved = {sig: signal.signal(sig, _ignore) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.server.run()
        except SystemExit as stop:  # uvicorn's way to say it could not start (the port is taken...)
            code = 1 if stop.code else 0
        finally:
            self.wal.close()  # the reader ends after the last message on disk; the stage hands on the rest
            pipeline.join()
            self.wal.release(self.wal.covered)  # the last segment, now sealed, once it is all in Parquet
            self.judges.shutdown(wait=False)
            for sig, handler in saved.items():
                signal.signal(sig, handler)
        return 1 if self.failure is not None or not self.server.started else code
