"""One HTTP client for the API sources: httpx, paced by the rate-limit headers, retried with back-off.

What httpx does: connection pooling and keep-alive, per-phase timeouts
(``timeout``), and retrying a failed connect (``HTTPTransport(retries=...)``).

What :class:`ApiClient` adds, because no client library knows these APIs:

- Pacing: every Firefly response carries ``x-ratelimit-remaining`` and
  ``x-ratelimit-reset`` (milliseconds left in the window). While the last
  response said 0 remaining, nothing is sent until the window has reset.
- Back-off: a 429, a 5xx, a timeout, a dropped connection or a truncated or
  unparsable body is retried up to ``retries`` times, waiting
  ``min(cap, base * 2**(attempt-1))`` seconds scaled by a random factor in
  [0.5, 1] (jitter, so clients that failed together do not retry together);
  a 429 waits at least until the rate-limit window resets. Then
  :class:`PullError`, one line.
- Secrets: the API key travels in a query parameter (Firefly's ``auth``) or
  a header (Helium's ``key``). It is never part of a message: URLs are
  shown without secret parameters, every text built from a response or an
  exception goes through :class:`Redactor`, and while a client is open the
  ``httpx``/``httpcore`` loggers (which log request URLs) pass through a
  redacting filter.

Time is read and slept through :data:`DEFAULT_TIMING` (a :class:`Timing`);
tests replace it so nothing really waits.
"""

from __future__ import annotations

import logging
import os
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote, quote_plus, urlencode

import httpx
import orjson

from .errors import PullError, Stopped, UsageError

__all__ = ["DEFAULT_TIMING", "ApiClient", "Redactor", "RequestStats", "Timing", "check_api_url", "read_api_key"]

MASK = "***"
USER_AGENT = "decoder-pull"
_RATE_LIMIT_MARGIN = 0.05  # seconds: the reset was measured at the server, before the response travelled
_LOGGERS = (
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)
_SECRET_PARAM = re.compile(r"(?i)([?&;](?:auth|key|api_key|apikey|token)=)[^&#\s\"'<>]*")


class Redactor:
    """Replaces secrets (and their URL-encoded forms, and secret query parameters) with ``***``."""

    def __init__(self, *secrets: str) -> None:
        forms: set[str] = set()
        for s in secrets:
            if s:
                forms.update({s, quote(s, safe=""), quote_plus(s)})
        # Longest first, so a secret that contains another is masked whole.
        self._forms = sorted((f for f in forms if f), key=len, reverse=True)

    def text(self, value: Any) -> str:
        """``str(value)`` with every secret masked."""
        out = str(value)
        for form in self._forms:
            out = out.replace(form, MASK)
        return _SECRET_PARAM.sub(lambda m: m.group(1) + MASK, out)


class _RedactingFilter(logging.Filter):
    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a record whose args do not fit its format: keep the format only
            message = str(record.msg)
        record.msg = self.redactor.text(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.redactor.text(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def read_api_key(key_file: str | None, env: str) -> str:
    """The API key from ``key_file`` if given, else from the environment variable ``env`` (never the command line)."""
    if key_file:
        try:
            text = Path(key_file).read_text(encoding="utf-8")
        except OSError as err:
            raise UsageError(f"cannot read the API key file {key_file}: {err.strerror or err}") from None
        except UnicodeDecodeError:
            raise UsageError(f"the API key file {key_file} is not text") from None
        key, where = text.strip(), key_file
    else:
        key, where = os.environ.get(env, "").strip(), f"${env}"
    if not key:
        raise UsageError(f"no API key: set {env} in the environment or give --api-key-file FILE")
    if any(ch.isspace() for ch in key):
        raise UsageError(f"the API key in {where} contains white space")
    return key


def check_api_url(text: str) -> None:
    """UsageError unless ``text`` is an http(s) URL with a host and no query (a key must not ride in it)."""
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL as err:
        raise UsageError(f"--api-url: {Redactor().text(err)}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise UsageError("--api-url must be an http:// or https:// URL with a host")
    if url.query or url.fragment:
        raise UsageError("--api-url must not have a query (the key comes from the environment or --api-key-file)")


def _utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass
class Timing:
    """The clocks and the sleep the client uses: ``clock`` in monotonic seconds (pacing, waits), ``wall``
    the UTC time now (naive, like the APIs' timestamps); ``random`` draws the jitter."""

    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    random: Callable[[], float] = random.random
    wall: Callable[[], datetime] = _utc_now


DEFAULT_TIMING = Timing()


@dataclass
class RequestStats:
    """What the client did, for the summary."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0  # 429 responses
    waits: int = 0  # pauses because x-ratelimit-remaining was 0
    waited: float = 0.0  # seconds paused for the rate limit and back-off together
    failures: dict[str, int] = field(default_factory=dict)  # retried failures by kind


class ApiClient:
    """GET JSON from one API: ``client.get("/packets", {"limit_to_last": 100})``.

    ``secret_params``/``secret_headers`` carry the key; they are sent with
    every request and never shown. ``stopping()`` is asked before every
    request and while waiting; when it says yes, :class:`Stopped` is raised.
    ``on_wait(seconds, why)`` is told about every pause (for progress).
    """

    def __init__(
        self,
        base_url: str,
        *,
        secret_params: Mapping[str, str] | None = None,
        secret_headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        retries: int = 5,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        timing: Timing | None = None,
        stopping: Callable[[], bool] = lambda: False,
        on_wait: Callable[[float, str], None] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        secrets = [*(secret_params or {}).values(), *(secret_headers or {}).values()]
        self.redactor = Redactor(*secrets)
        self.base_url = base_url.rstrip("/")
        self.shown_base = self.redactor.text(self.base_url.split("?", 1)[0])
        self.retries = max(0, int(retries))
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.timing = timing or DEFAULT_TIMING
        self.stopping = stopping
        self.on_wait = on_wait
        self.stats = RequestStats()
        self.remaining: int | None = None
        self.reset_at = 0.0  # clock time the current window ends
        self.window = 10.0  # seconds, from x-ratelimit-limit ("50/10000ms")
        self._filter = _RedactingFilter(self.redactor)
        for name in _LOGGERS:
            logging.getLogger(name).addFilter(self._filter)
        headers = {"user-agent": USER_AGENT, "accept": "application/json", **(secret_headers or {})}
        self._client = httpx.Client(
            base_url=self.base_url,
            params=dict(secret_params or {}),
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport or httpx.HTTPTransport(retries=2),  # connect failures only
            follow_redirects=False,  # a redirect would carry the key to wherever it points
        )

    # -- public ------------------------------------------------------------------
    def show(self, path: str, params: Mapping[str, Any] | None = None) -> str:
        """The URL of a request as it may be printed: no secret parameters."""
        query = urlencode({k: v for k, v in (params or {}).items() if v is not None})
        return self.redactor.text(f"{self.shown_base}{path}" + (f"?{query}" if query else ""))

    def get(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        missing_ok: bool = False,
        once: bool = False,
        raw: bool = False,
    ) -> Any:
        """The parsed JSON body of ``GET path`` (retried and paced; PullError when it fails for good).

        ``missing_ok``: a 404 returns None instead of failing. ``once``: no retries.
        ``raw``: the body of a 2xx as bytes, unparsed and never asked for again (a
        queue that removes what it returns must not be polled twice for one answer).
        """
        params = {k: v for k, v in (params or {}).items() if v is not None}
        shown = self.show(path, params)
        attempts = 1 if once else self.retries + 1
        last = ""
        for attempt in range(1, attempts + 1):
            self._pace()
            self._check_stop()
            self.stats.requests += 1
            try:
                response = self._client.get(path, params=params)
            except httpx.TimeoutException:
                last = "timed out"
            except (httpx.UnsupportedProtocol, httpx.InvalidURL) as err:
                raise PullError(f"GET {shown}: {self.redactor.text(err)}") from None
            except httpx.RequestError as err:  # connect/read/write errors, a dropped connection, bad gzip
                last = f"connection failed ({self.redactor.text(err) or type(err).__name__})"
            else:
                self._note_limits(response)
                if missing_ok and response.status_code == 404:
                    return None
                outcome = self._judge(response, shown, raw)
                if not isinstance(outcome, _Retry):
                    return outcome
                last = outcome.reason
                if attempt < attempts:
                    self._count_failure(last)
                    self._wait(max(self._backoff(attempt), outcome.at_least), "retry after " + last)
                continue
            if attempt < attempts:
                self._count_failure(last)
                self._wait(self._backoff(attempt), "retry after " + last)
        raise PullError(f"GET {shown}: {last}; gave up after {attempts} attempts")

    def prime(self, remaining: int, reset_ms: int) -> None:
        """Start from a known rate-limit state (Firefly's GET /rate_limit, which costs nothing)."""
        self.remaining = remaining
        self.reset_at = self.timing.clock() + reset_ms / 1000

    def close(self) -> None:
        """Close the connections and remove the log filter."""
        self._client.close()
        for name in _LOGGERS:
            logging.getLogger(name).removeFilter(self._filter)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------
    def _judge(self, response: httpx.Response, shown: str, raw: bool = False) -> Any:
        status = response.status_code
        if status == 429:
            self.stats.rate_limited += 1
            wait = self._retry_after(response)
            if self.remaining == 0:
                wait = max(wait, self.reset_at - self.timing.clock())
            return _Retry("HTTP 429 (rate limit)", wait)
        if status >= 500:
            return _Retry(f"HTTP {status}", 0.0)
        if status in (401, 403):
            raise PullError(f"GET {shown}: HTTP {status}: the API key was refused{self._body_hint(response)}")
        if 300 <= status < 400:
            where = self.redactor.text(response.headers.get("location", "?"))
            raise PullError(f"GET {shown}: HTTP {status}, a redirect to {where} (not followed; check --api-url)")
        if status >= 400 or status < 200:
            raise PullError(f"GET {shown}: HTTP {status}{self._body_hint(response)}")
        if raw:
            return response.content
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            return _Retry("the response is not JSON", 0.0)

    def _body_hint(self, response: httpx.Response) -> str:
        text = " ".join(response.content[:200].decode("utf-8", "replace").split())
        return f": {self.redactor.text(text)}" if text else ""

    def _retry_after(self, response: httpx.Response) -> float:
        value = response.headers.get("retry-after", "")
        try:
            return max(0.0, float(value))
        except ValueError:
            return 0.0

    def _note_limits(self, response: httpx.Response) -> None:
        headers = response.headers
        now = self.timing.clock()
        limit = headers.get("x-ratelimit-limit", "")
        m = re.fullmatch(r"\s*\d+\s*/\s*(\d+)\s*ms\s*", limit)
        if m:
            self.window = int(m.group(1)) / 1000
        try:
            self.remaining = int(headers["x-ratelimit-remaining"])
        except (KeyError, ValueError):
            self.remaining = None
            return
        try:
            self.reset_at = now + int(headers["x-ratelimit-reset"]) / 1000  # milliseconds, per the reference
        except (KeyError, ValueError):
            self.reset_at = now + self.window

    def _pace(self) -> None:
        """Never send while the last response said no request is left in this window."""
        if self.remaining is not None and self.remaining <= 0:
            left = self.reset_at - self.timing.clock()
            if left > 0:
                self.stats.waits += 1
                self._wait(left + _RATE_LIMIT_MARGIN, "rate limit")
            self.remaining = None  # a new window: the next response tells the new count

    def _backoff(self, attempt: int) -> float:
        delay = min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1))
        return delay * (0.5 + 0.5 * self.timing.random())

    def _wait(self, seconds: float, why: str) -> None:
        if seconds <= 0:
            return
        if self.on_wait is not None:
            self.on_wait(seconds, why)
        clock = self.timing.clock
        end = clock() + seconds
        self.stats.waited += seconds
        while True:
            self._check_stop()
            left = end - clock()
            if left <= 0:
                return
            self.timing.sleep(min(left, 0.25))  # in slices, so a stop request is seen soon

    def _check_stop(self) -> None:
        if self.stopping():
            raise Stopped()

    def _count_failure(self, reason: str) -> None:
        self.stats.retries += 1
        kind = reason.split(" (", 1)[0]
        self.stats.failures[kind] = self.stats.failures.get(kind, 0) + 1


@dataclass
class _Retry:
    reason: str
    at_least: float
