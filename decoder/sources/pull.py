"""One run of ``decoder pull``: pages in, decoded parts out, the state committed after each part.

A source (:mod:`.firefly`, :mod:`.helium`) yields :class:`Page` objects of
packets not pulled before, and can say at any moment what its cursor is:
the state that covers exactly the packets it has yielded. The run collects
the packets into a part (the output file of the run, or with ``--append``
one part file of the dataset per ``--roll-rows`` packets), decodes them in
batches with :class:`decoder.Engine` and writes them with the sinks. A part
is committed by the protocol of :mod:`.state`: pending cursor, raw file
renamed, output renamed and fsynced, cursor committed.

When the API fails for good (after retries) or a stop is requested (Ctrl-C
or SIGTERM once), the packets pulled so far are still written and
committed: a rerun continues after them. A second Ctrl-C aborts the open
part (nothing of it is committed; a rerun pulls it again).
"""

from __future__ import annotations

import argparse
import gzip
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Self

import orjson

import decoder

from ..engine import Summary
from ..errors import DecoderError, InputError
from ..options import detect_format
from ..output import open_sink
from .errors import PullError, Stopped, UsageError
from .http import ApiClient, RequestStats, check_api_url, read_api_key
from .state import StateFile, fsync_tree, temp_name

__all__ = ["Page", "RawWriter", "Reporter", "Source", "run"]

DECODE_BATCH = 5_000  # packets decoded and written at a time (Parquet row groups of this size)
_SUFFIX = {"parquet": ".parquet", "arrow": ".arrow", "csv": ".csv", "jsonl": ".jsonl"}


@dataclass
class Page:
    """Packets not pulled before, in the order the API returned them."""

    packets: list[dict]
    fetched: int  # packets (or events) in the response(s) this page came from


class Source(Protocol):
    """What :func:`run` needs of a provider."""

    def __init__(self, client: ApiClient, args: argparse.Namespace, *, note: Any) -> None: ...
    @staticmethod
    def check_args(args: argparse.Namespace) -> Any: ...  # UsageError before anything is opened
    def registry(self) -> Any: ...  # a decoder.Registry
    def restore(self, cursor: dict) -> None: ...
    def pages(self) -> Iterator[Page]: ...
    def cursor(self) -> dict: ...  # covers exactly the packets yielded so far
    def summary_lines(self) -> list[str]: ...


class Reporter:
    """Messages on stderr: notes, errors, and progress (only on a terminal, one redrawn line)."""

    def __init__(self, prog: str, *, quiet: bool, stream: Any = None) -> None:
        self.prog = prog
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.live = not quiet and self.stream.isatty()
        self._shown = False
        self._last = 0.0

    def note(self, text: str) -> None:
        """One line of news (not with --quiet)."""
        if not self.quiet:
            self._clear()
            self.stream.write(f"{self.prog}: {text}\n")
            self.stream.flush()

    def error(self, text: str) -> None:
        """One error line (always)."""
        self._clear()
        self.stream.write(f"{self.prog}: error: {text}\n")
        self.stream.flush()

    def progress(self, text: str, *, force: bool = False) -> None:
        """Redraw the progress line (on a terminal, at most 10 times a second unless forced)."""
        if not self.live:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        self.stream.write(f"\r\033[K{text}")
        self.stream.flush()
        self._shown = True

    def _clear(self) -> None:
        if self._shown:
            self.stream.write("\r\033[K")
            self._shown = False

    def write(self, text: str) -> None:
        """Lines of text, e.g. the summary (not with --quiet)."""
        if not self.quiet:
            self._clear()
            self.stream.write(text if text.endswith("\n") else text + "\n")
            self.stream.flush()


# -- options ----------------------------------------------------------------------------


@dataclass
class _Plan:
    fmt: str
    output: str | None  # -o: one file
    dataset: str | None  # --append: a directory of parts
    raw: str | None  # a file with -o, a directory with --append
    state: str
    roll_rows: int | None
    stamp: str

    def part(self, seq: int) -> tuple[str, str | None]:
        """The output (and raw) path of part ``seq`` of this run: names no file yet (a sink replaces)."""
        if self.output is not None:
            return self.output, self.raw
        while True:
            name = f"part-{self.stamp}-{secrets.token_hex(4)}-{seq:04d}"
            out = os.path.join(self.dataset, name + _SUFFIX[self.fmt])
            raw = os.path.join(self.raw, name + ".jsonl") if self.raw else None
            if not os.path.lexists(out) and not (raw and os.path.lexists(raw)):
                return out, raw


def _plan(args: argparse.Namespace) -> _Plan:
    if args.roll_rows < 1:
        raise UsageError("--roll-rows must be at least 1")
    if not args.timeout > 0:
        raise UsageError("--timeout must be positive")
    check_api_url(args.api_url)
    if args.retries < 0:
        raise UsageError("--retries cannot be negative")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    if args.output is not None:
        if args.output == "-":
            raise UsageError("pull writes files it can commit: give -o a file name (stdout cannot be used)")
        try:
            fmt = detect_format(args.output, args.format)
        except ValueError as err:
            raise UsageError(str(err)) from None
        if os.path.lexists(args.output):
            raise UsageError(
                f"refusing to overwrite {args.output}: each pull writes a new file "
                "(give a new name, or use --append DIR)"
            )
        if args.raw is not None and os.path.lexists(args.raw):
            raise UsageError(f"refusing to overwrite {args.raw}: --raw writes a new file per pull")
        state = args.state or str(Path(args.output).parent / f"_decoder-pull-state-{args.provider}.json")
        plan = _Plan(fmt, args.output, None, args.raw, state, None, stamp)
    else:
        if os.path.exists(args.append) and not os.path.isdir(args.append):
            raise UsageError(f"--append {args.append}: not a directory")
        if args.raw is not None and os.path.exists(args.raw) and not os.path.isdir(args.raw):
            raise UsageError(f"--raw {args.raw}: with --append, --raw names a directory")
        fmt = args.format or "parquet"
        state = args.state or str(Path(args.append) / f"_decoder-pull-state-{args.provider}.json")
        plan = _Plan(fmt, None, args.append, args.raw, state, args.roll_rows, stamp)
    named = [os.path.abspath(p) for p in (plan.output, plan.raw, plan.state) if p]
    if len(set(named)) < len(named):
        raise UsageError("-o, --raw and --state must name different files")
    return plan


# -- writing ------------------------------------------------------------------------------


class RawWriter:
    """The packets as JSON Lines, under a temporary name until :meth:`close` renames it."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.tmp = temp_name(self.path)
            # Open across write() calls until close(): no with-block can hold it.
            gz = self.path.name.endswith(".gz")
            self.file: Any = gzip.open(self.tmp, "wb") if gz else open(self.tmp, "wb")  # noqa: SIM115
        except OSError as err:
            raise InputError(f"cannot write {self.path}: {err.strerror or err}") from None

    def write(self, packets: list[dict]) -> None:
        """Append packets, one JSON object per line."""
        self.file.write(b"".join(orjson.dumps(p, option=orjson.OPT_APPEND_NEWLINE) for p in packets))

    def close(self) -> None:
        """Finish the file and rename it into place (fsynced)."""
        self.file.close()
        os.replace(self.tmp, self.path)
        fsync_tree(self.path)

    def abort(self) -> None:
        """Drop the temporary file."""
        try:
            self.file.close()
        except OSError:
            pass  # the file is removed next either way
        try:
            self.tmp.unlink()
        except OSError:
            pass


class _Part:
    """One output part: opened with its first packet, committed by :meth:`finish`."""

    def __init__(self, engine: Any, plan: _Plan, seq: int, state: StateFile, summary: Summary) -> None:
        self.engine = engine
        self.fmt = plan.fmt
        self.out, self.raw_path = plan.part(seq)
        self.state = state
        self.summary = summary
        self.sink: Any = None
        self.raw: RawWriter | None = None
        self.buffer: list[dict] = []
        self.rows = 0

    def add(self, packets: list[dict]) -> None:
        """Add new packets (the part opens with the first), decoding and writing them in batches."""
        if not packets:
            return
        if self.sink is None:
            self.state.opening(*[p for p in (self.out, self.raw_path) if p])
            if self.raw_path:
                self.raw = RawWriter(self.raw_path)
            self.sink = open_sink(self.out, self.fmt, self.engine)
        if self.raw is not None:
            self.raw.write(packets)
        self.buffer.extend(packets)
        self.rows += len(packets)
        if len(self.buffer) >= DECODE_BATCH:
            self._flush()

    def _flush(self) -> None:
        if self.buffer:
            chunk = self.engine.decode(self.buffer)
            self.buffer = []
            self.sink.write(chunk)
            self.summary.add(chunk)

    def finish(self, cursor: dict) -> str | None:
        """Write the rest, commit the part and ``cursor``; the output's name, or None if it had no packets."""
        if self.sink is None:
            if cursor != self.state.cursor:
                self.state.commit(cursor)
            return None
        self._flush()
        outputs = [self.out] + ([self.raw_path] if self.raw_path else [])
        self.state.prepare(cursor, outputs)
        if self.raw is not None:
            self.raw.close()
        self.sink.close()
        fsync_tree(self.out)
        self.state.commit(cursor)
        self.sink = None
        return self.out

    def abort(self) -> None:
        """Drop the part's temporary files; nothing of it is committed."""
        if self.sink is not None:
            self.sink.abort()
            self.sink = None
        if self.raw is not None:
            self.raw.abort()


# -- signals ------------------------------------------------------------------------------


class _StopRequests:
    """The first SIGINT/SIGTERM asks for a stop (the pulled packets are kept), the second aborts."""

    def __init__(self) -> None:
        self.requested = False
        self._saved: dict[int, Any] = {}

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)


# -- the run ------------------------------------------------------------------------------


def _source_class(provider: str) -> Any:
    if provider == "firefly":
        from .firefly import FireflySource

        return FireflySource
    from .helium import HeliumSource

    return HeliumSource


def run(args: argparse.Namespace, *, prog: str, default_api: str, key_env: str) -> int:
    """``decoder pull <provider>``: returns the exit status; every message goes to stderr."""
    report = Reporter(prog, quiet=args.quiet)
    try:
        plan = _plan(args)
        key = read_api_key(args.api_key_file, key_env)
        source_class = _source_class(args.provider)
        source_class.check_args(args)
    except UsageError as err:
        report.error(str(err))
        return 2
    stops = _StopRequests()
    try:
        with StateFile(plan.state, provider=args.provider, api=args.api_url) as state, stops:
            for text in state.notes:
                report.note(text)
            if state.created:
                report.note(f"no state file yet: a first pull; {plan.state} will record it for the next ones")
            secret = {"auth": key} if args.provider == "firefly" else {}
            header = {"key": key} if args.provider == "helium" else {}
            with ApiClient(
                args.api_url,
                secret_params=secret,
                secret_headers=header,
                timeout=args.timeout,
                retries=args.retries,
                stopping=lambda: stops.requested,
                on_wait=lambda s, why: report.progress(f"waiting {s:.1f} s ({why})", force=True),
            ) as client:
                source = source_class(client, args, note=report.note)
                source.restore(state.cursor)
                engine = decoder.Engine(source.registry(), include_hidden=args.include_hidden)
                return _pull(source, engine, plan, state, client, stops, report)
    except UsageError as err:
        report.error(str(err))
        return 2
    except Stopped:
        report.error("interrupted before any packet was pulled")
        return 130
    except KeyboardInterrupt:
        report.error("interrupted")
        return 130
    except DecoderError as err:  # PullError, InputError, ScriptError: one line
        report.error(str(err))
        return 1
    except OSError as err:  # writing the output or the state (disk full, permissions)
        report.error(f"cannot write {err.filename or 'the output'}: {err.strerror or err}")
        return 1


def _pull(
    source: Source,
    engine: Any,
    plan: _Plan,
    state: StateFile,
    client: ApiClient,
    stops: _StopRequests,
    report: Reporter,
) -> int:
    summary = Summary()
    seq = 0
    part = _Part(engine, plan, seq, state, summary)
    written: list[str] = []
    pages = fetched = new = 0
    status, failure = 0, None
    try:
        for page in source.pages():
            pages += 1
            fetched += page.fetched
            new += len(page.packets)
            part.add(page.packets)
            report.progress(f"{pages:,} pages, {fetched:,} fetched, {new:,} new")
            if plan.roll_rows is not None and part.rows >= plan.roll_rows:
                if (done := part.finish(source.cursor())) is not None:
                    written.append(done)
                seq += 1
                part = _Part(engine, plan, seq, state, summary)
            if stops.requested:
                raise Stopped()
    except Stopped:
        status, failure = 130, "interrupted: the packets pulled so far are written; a rerun continues after them"
    except PullError as err:
        status, failure = 1, f"{err} (the packets pulled so far are written; a rerun continues after them)"
    except BaseException:
        part.abort()
        raise
    try:
        if (done := part.finish(source.cursor())) is not None:
            written.append(done)
    except BaseException:
        part.abort()
        raise
    if failure:
        report.error(failure)
    _summarize(report, source, client.stats, summary, written, plan, pages, fetched, new)
    return status


def _summarize(
    report: Reporter,
    source: Source,
    stats: RequestStats,
    summary: Summary,
    written: list[str],
    plan: _Plan,
    pages: int,
    fetched: int,
    new: int,
) -> None:
    lines = []
    retried = ", ".join(f"{n} {kind}" for kind, n in sorted(stats.failures.items()))
    lines.append(
        f"requests   {stats.requests:>12,}   ({stats.retries} retried{': ' + retried if retried else ''}; "
        f"{stats.rate_limited} answered 429; {stats.waits} waits for the rate limit; "
        f"{stats.waited:.1f} s waiting)"
    )
    lines.append(f"new        {new:>12,}   of {fetched:,} fetched in {pages:,} pages")
    lines.extend(source.summary_lines())
    if summary.rows or summary.bad_lines or summary.skipped:
        # The engine's own lines, without its last one (time and rate: a pull's time is mostly the network's).
        lines.extend(summary.format().splitlines()[:-1])
    if written:
        where = written[0] if len(written) == 1 else f"{len(written)} parts in {plan.dataset}"
        lines.append(f"output     {where}")
        if plan.raw:
            lines.append(f"raw        {plan.raw}")
    else:
        lines.append("output     nothing new: no file written")
    lines.append(f"state      {plan.state}")
    report.write("\n".join(lines))
