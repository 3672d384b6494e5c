"""The ``decoder`` command line: a thin layer over the engine, the outputs and the stream stage.

    decoder decode INPUT... --classes FILE [--devices FILE | --class ID] -o OUT
    decoder decode INPUT... --class cayenne-lpp -o OUT          (a built-in format: no classes file)
    decoder stream [--mqtt URL | --firefly-queue UID] --classes FILE [--devices FILE | --class ID] [-o DIR]
    decoder serve --classes FILE [--devices FILE | --class ID] -o DIR [--host H --port P]
    decoder check CLASSES...

Exit codes: 0 success (also when some rows failed to decode: they are in
the output with their error), 1 input could not be read or a script is
bad, 2 usage. Expected errors print one line, ``decoder: error: ...``.

Only the standard library and our dependency-free modules are imported at
module level, so ``decoder --help`` does not pay for numba, numpy or
pyarrow: the commands import the rest when they run.
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from . import options
from .errors import DecoderError, ScriptError

PROG = "decoder"

EPILOG_DECODE = """\
devices (--devices FILE, repeatable):
  a Firefly GET /devices response (each device's device_class_id), {"device": {...}},
  a GET /device_classes/{id}/euis response named device_classes_<id>_euis.json
  or given as ID=FILE, a JSON map {"<class id or name>": <euis response>}, or a
  plain map {"<dev_eui or Helium device id>": <class id or name, or a list>}.
  Without --devices and --class, a classes file with exactly one class decodes
  every device. A built-in format is a class name that needs no classes file:
  --class cayenne-lpp, or "cayenne-lpp" as a device's class in a devices map.

output (-o OUT, "-" for stdout; format from the suffix or --format):
  .parquet  one file; several classes -> a directory partitioned by class
  .arrow    Arrow IPC file (.arrows or stdout: IPC stream)
  .csv      nested fields flattened to decoded.gps.latitude (.csv.gz compresses)
  .jsonl    one JSON object per row (.jsonl.gz compresses)

outputs are written under a temporary name and renamed when complete; an existing
  regular file, or a dataset an earlier decode wrote, is replaced; any other directory
  is refused (exit 2). Ctrl-C and SIGTERM remove the temporaries.

input that stops partway (a truncated .gz): every whole line before the cut is
  decoded and written with the other inputs, the cut is reported with its file
  and line, and the exit status is 1.

exit status: 0 done (rows that failed are in the output with their error),
  1 input or classes could not be read (or an input stopped partway), or the
  output could not be written,
  2 usage, or an output that would replace data this run did not write,
  130 Ctrl-C, 143 SIGTERM.
"""


EPILOG_STREAM = """\
devices (--devices FILE): as for `decoder decode --help`.

delivery (at least once):
  A message is acknowledged only after its row is written: to the MQTT broker
  after the batch is flushed to stdout, or with -o after the Parquet file
  holding it is complete and renamed into place. A consumer that dies gets
  its unacknowledged messages again on restart with the same --client-id
  (counted as redelivered); nothing is lost, a few rows may come twice.

Firefly http_pull queues (--firefly-queue UID):
  A poll removes the events it returns from the queue, so every answer is
  written to a journal and flushed to disk before its events go on; a
  restart replays the events whose rows were not yet written. The journal is
  DIR/_firefly-queue-<UID> with -o, else under $XDG_STATE_HOME/decoder (or
  --journal DIR). The API key comes from FIREFLY_API_KEY or --api-key-file,
  never the command line. Firefly keeps unfetched events 2 hours: a warning
  says when polls fall behind.

output:
  stdout    one JSON object per row, flushed after every micro-batch
  -o DIR    DIR/part-<UTC time>-<n>.parquet, one per --roll-rows or --roll-seconds,
            written under a hidden temporary name and renamed when complete;
            several classes -> DIR/device_class=<name>/part-....parquet;
            one consumer per DIR (DIR/.decoder.lock), a second one refuses
  errors    {"line", "position", "error", ...} per failed row or bad message

exit status: 0 on EOF, Ctrl-C or SIGTERM; 1 when the classes, devices, the
  broker or the API cannot be read or reached (the API: after retries), or an
  output cannot be written; 2 usage.
"""


EPILOG_SERVE = """\
devices (--devices FILE): as for `decoder decode --help`.

endpoints:
  POST /uplinks   one JSON value a request, any shape `decoder decode` reads (a Firefly
                  packet or envelope, a Helium event or integration body, an array);
                  /helium and /firefly are the same endpoint
  GET  /healthz   200 while messages are taken
  GET  /metrics   Prometheus text format (with the token, when one is set)

delivery:
  200 only once the body is in the write-ahead log DIR/.wal and the log is flushed to
  disk; the stream stage reads the log back into DIR/part-....parquet. A crash, kill -9
  or power cut after a 200 loses nothing and writes nothing twice: the start replays
  the log from the last message in a complete Parquet file. Without a 200 the
  provider sends again.

answers: 400 malformed JSON or no known shape (the body goes to --errors), 401 no or a
  wrong token, 408 body too slow (--timeout), 413 body over --max-body, 503 the log
  cannot be written.

token: DECODER_TOKEN or --token-file FILE (never on the command line); requests then
  need "Authorization: Bearer <token>". Without a token only a loopback --host is allowed.

exit status: 0 after Ctrl-C or SIGTERM (the open batch is written first); 1 when the
  classes, devices or output cannot be read or written, or the port is taken; 2 usage.
"""


class _Usage(Exception):
    """A usage error found after parsing (exit 2)."""


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog=PROG,
        description="Decode LoRaWAN uplinks of Firefly and Helium with Firefly device-class scripts, "
        "compiled to numba kernels, to Parquet, Arrow, CSV or JSON Lines.",
    )
    ap.add_argument("--version", action=_VersionAction, nargs=0, help="show the version and exit")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_decode(sub)
    _add_stream(sub)
    _add_serve(sub)
    _add_check(sub)
    _add_pull(sub)
    return ap


def _add_decode(sub: Any) -> None:
    dec = sub.add_parser(
        "decode",
        help="decode JSON Lines packet files",
        description="Decode JSON Lines files of Firefly and Helium packets (plain or .gz, '-' for stdin).",
        epilog=EPILOG_DECODE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    dec.add_argument("inputs", nargs="+", metavar="INPUT", help="JSON Lines file (.gz ok), '-' for stdin")
    _class_arguments(dec)
    dec.add_argument("-o", "--output", required=True, metavar="OUT", help="output file, '-' for stdout")
    dec.add_argument("--format", choices=options.FORMATS, help="output format (default: from the suffix of OUT)")
    dec.add_argument(
        "--errors", metavar="FILE", help="write every failed row and bad line with its input line number (JSON Lines)"
    )
    dec.add_argument("--include-hidden", action="store_true", help="also output variables of type hidden")
    dec.add_argument(
        "--chunk-size",
        default=f"{options.CHUNK_BYTES >> 20}M",
        metavar="BYTES",
        help=f"bytes of input per chunk (default {options.CHUNK_BYTES >> 20}M, at least "
        f"{options.MIN_CHUNK_BYTES >> 20}M; memory stays near a few chunks)",
    )
    dec.add_argument("-q", "--quiet", action="store_true", help="no summary")
    dec.set_defaults(func=cmd_decode, parser=dec)


def _add_stream(sub: Any) -> None:
    stm = sub.add_parser(
        "stream",
        help="decode a live stream of packets (stdin, MQTT or a Firefly queue) in micro-batches",
        description="Decode packets as they arrive, one JSON message per stdin line, MQTT message or "
        "Firefly queue event, "
        "in micro-batches that close at --max-rows messages or --max-delay seconds. Decoded "
        "rows go to stdout as JSON Lines, flushed per batch, or with -o DIR to rolling Parquet "
        "files. EOF, Ctrl-C or SIGTERM hands on the open batch and exits 0.",
        epilog=EPILOG_STREAM,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = stm.add_mutually_exclusive_group()
    where.add_argument(
        "--mqtt",
        metavar="URL",
        help="subscribe to mqtt[s]://[user@]host[:port]/topic/# (QoS 1) instead of reading stdin; the password "
        "comes from $DECODER_MQTT_PASSWORD or --mqtt-password-file (one in the URL works, but shows in ps)",
    )
    stm.add_argument(
        "--mqtt-password-file",
        metavar="FILE",
        help="read the MQTT password from FILE (its first line)",
    )
    where.add_argument(
        "--firefly-queue",
        metavar="UID",
        help="poll the Firefly subscription queue UID (type http_pull) instead of reading stdin",
    )
    _class_arguments(stm)
    stm.add_argument(
        "-o", "--output", metavar="DIR", help="write rolling Parquet files into DIR (default: JSON Lines on stdout)"
    )
    stm.add_argument(
        "--errors", metavar="FILE", help="append failed rows and bad messages here as JSON Lines (default: stderr)"
    )
    _batch_arguments(stm)
    stm.add_argument(
        "--client-id",
        metavar="ID",
        help="MQTT client id; keep it across restarts to get unacknowledged messages again "
        "(default: derived from the broker and topic)",
    )
    _queue_arguments(stm)
    stm.add_argument("--include-hidden", action="store_true", help="also output variables of type hidden")
    stm.add_argument("-q", "--quiet", action="store_true", help="no summary")
    stm.set_defaults(func=cmd_stream, parser=stm)


def _queue_arguments(stm: argparse.ArgumentParser) -> None:
    """The options of --firefly-queue."""
    from .sources import DEFAULT_API, KEY_ENV  # argparse only: --help stays cheap

    queue = stm.add_argument_group("with --firefly-queue")
    queue.add_argument(
        "--api-url", metavar="URL", default=DEFAULT_API["firefly"], help="the API's base URL (default %(default)s)"
    )
    queue.add_argument(
        "--api-key-file", metavar="FILE", help=f"read the API key from FILE (default: ${KEY_ENV['firefly']})"
    )
    queue.add_argument(
        "--journal",
        metavar="DIR",
        help="keep fetched events here until their rows are written "
        "(default: DIR/_firefly-queue-UID with -o, else $XDG_STATE_HOME/decoder/firefly-queue-UID)",
    )
    queue.add_argument(
        "--poll-limit",
        type=int,
        default=options.POLL_LIMIT,
        metavar="N",
        help=f"ask for at most N events per poll (default {options.POLL_LIMIT})",
    )
    queue.add_argument(
        "--poll-interval",
        type=float,
        default=options.POLL_INTERVAL,
        metavar="SECONDS",
        help=f"wait this long after a poll that was not full (default {options.POLL_INTERVAL:g}; an empty "
        "queue is polled less often, down to once per 10 intervals)",
    )


def _add_serve(sub: Any) -> None:
    srv = sub.add_parser(
        "serve",
        help="receive pushed uplinks over HTTP (Helium HTTP integration, Firefly http_push) into Parquet",
        description="An HTTP server for the providers' webhooks: each POST is answered 200 once it is on "
        "disk in a write-ahead log, then decoded in micro-batches into rolling Parquet files in DIR. "
        "Ctrl-C or SIGTERM stops taking requests, writes the open batch and exits 0.",
        epilog=EPILOG_SERVE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _class_arguments(srv)
    srv.add_argument("-o", "--output", required=True, metavar="DIR", help="write rolling Parquet files into DIR")
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    srv.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080; 0: any free port)")
    srv.add_argument(
        "--token-file", metavar="FILE", help="file holding the bearer token (default: the DECODER_TOKEN variable)"
    )
    srv.add_argument(
        "--errors", metavar="FILE", help="append refused bodies, failed rows and bad messages here (default: stderr)"
    )
    srv.add_argument(
        "--max-body",
        default="1M",
        metavar="BYTES",
        help="largest request body (default 1M); larger ones get 413",
    )
    srv.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="time a client has to send its headers, and again its body (default 10)",
    )
    _batch_arguments(srv)
    srv.add_argument("--include-hidden", action="store_true", help="also output variables of type hidden")
    srv.add_argument("-q", "--quiet", action="store_true", help="no summary")
    srv.set_defaults(func=cmd_serve, parser=srv)


def _add_check(sub: Any) -> None:
    chk = sub.add_parser(
        "check",
        help="compile device classes and show their output schema",
        description="Compile every device class (building its kernel) and print its layout and output "
        "schema. Exit 1 with the script error when a class is bad.",
    )
    chk.add_argument("classes", nargs="+", metavar="CLASSES", help="device-class file or directory")
    chk.add_argument("--include-hidden", action="store_true", help="show the schema with hidden variables")
    chk.add_argument("--no-kernel", action="store_true", help="check the scripts only; do not build kernels")
    chk.set_defaults(func=cmd_check, parser=chk)


def _batch_arguments(cmd: argparse.ArgumentParser) -> None:
    """--max-rows, --max-delay, --roll-rows, --roll-seconds (stream and serve)."""
    cmd.add_argument(
        "--max-rows",
        type=int,
        default=options.MAX_ROWS,
        metavar="N",
        help=f"close a micro-batch at N messages (default {options.MAX_ROWS})",
    )
    cmd.add_argument(
        "--max-delay",
        type=float,
        default=options.MAX_DELAY,
        metavar="SECONDS",
        help=f"hand on a message at most this long after it arrived (default {options.MAX_DELAY:g})",
    )
    cmd.add_argument(
        "--roll-rows",
        type=int,
        default=options.ROLL_ROWS,
        metavar="N",
        help=f"with -o: start a new Parquet file after N rows (default {options.ROLL_ROWS})",
    )
    cmd.add_argument(
        "--roll-seconds",
        type=float,
        default=options.ROLL_SECONDS,
        metavar="SECONDS",
        help=f"with -o: start a new Parquet file after this many seconds (default {options.ROLL_SECONDS:g})",
    )


def _class_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--classes",
        action="append",
        metavar="FILE",
        help="device classes: any Firefly /device_classes response, a class, a list, "
        "or a directory of .json files (repeatable; not needed for a built-in "
        "format such as --class cayenne-lpp)",
    )
    bind = cmd.add_mutually_exclusive_group()
    bind.add_argument(
        "--devices",
        action="append",
        metavar="[CLASS=]FILE",
        help="which device uses which class (repeatable; see below)",
    )
    bind.add_argument(
        "--class",
        dest="default_class",
        action="append",
        metavar="ID|NAME",
        help="decode every device with this class (repeatable: their ports choose)",
    )


class _VersionAction(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[override]
        sys.stdout.write(f"{PROG} {_version()}\n")
        parser.exit()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # start-up: 25 ms, for --version only

    try:
        return version("decoder")
    except PackageNotFoundError:
        return "unknown"


def _fail(message: str) -> int:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    return 1


def _size(text: str, option: str = "--chunk-size", minimum: int = 1024) -> int:
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = t[-1:] if t[-1:] in units and t[-1:] else ""
    number = t[: len(t) - len(unit)]
    try:
        value = int(float(number) * units[unit])
    except ValueError:
        raise _Usage(f"{option}: not a size: {text!r} (e.g. 16M)") from None
    if value < minimum:
        shown = f"{minimum >> 20}M" if minimum % (1 << 20) == 0 else f"{minimum >> 10}K"
        raise _Usage(f"{option} must be at least {shown}")
    return value


def _class_files(items: Sequence[str]) -> list[str]:
    out = []
    for item in items:
        if os.path.isdir(item):
            found = sorted(os.path.join(item, f) for f in os.listdir(item) if f.lower().endswith(".json"))
            if not found:
                raise _InputProblem(f"{item}: no .json files in this directory")
            out.extend(found)
        else:
            out.append(item)
    return out


class _InputProblem(Exception):
    """Input cannot be read (exit 1)."""


class _Refused(Exception):
    """The run would replace data it did not write: refused before anything is written (exit 2)."""


def _devices_args(items: Sequence[str] | None) -> list[tuple[str | None, str]]:
    out: list[tuple[str | None, str]] = []
    for item in items or []:
        if not os.path.exists(item) and "=" in item:
            cls, _, path = item.partition("=")
            if not cls or not path:
                raise _Usage(f"--devices {item!r}: expected FILE or CLASS=FILE")
            out.append((cls, path))
        else:
            out.append((None, item))
    return out


# -- decode ----------------------------------------------------------------------------


def _check_class_arguments(args: argparse.Namespace) -> None:
    """Some classes must be named: a classes file, or a built-in format by --class or --devices."""
    if not args.classes and not args.devices and not args.default_class:
        raise _Usage("no device classes: give --classes FILE, or a built-in format: --class cayenne-lpp")


def _lean_kernel_load() -> None:
    """Before kernels load (the classes', the reader's): in the command's own process, load them
    from numba's cache without its compiler's preparations (runtime.lean_load), and numba's
    runtime functions from our kernel cache where it can be trusted."""
    if _process.is_the_command:
        from .kernel_cache_dir import trusted_cache_dir
        from .runtime.lean_load import skip_refresh_on_cache_load

        skip_refresh_on_cache_load(trusted_cache_dir())


def _collect_after_start_up() -> None:
    """In the command's own process, no garbage collection until the decoding starts
    (_start_up_done): the imports and the classes make some 110,000 objects that live as long
    as the process, and Python's collector went through them 170 times while they were made,
    about 45 ms of the one core the start-up has. One-packet runs: 0.638 against 0.685 s
    (medians of 20 interleaved pairs)."""
    if _process.is_the_command:
        gc.disable()


def _start_up_done() -> None:
    """Collect again from here on, the start-up's objects left out of every collection (a full
    one would take 35-40 ms to find about 1,500 objects of garbage, once)."""
    if _process.is_the_command and not gc.isenabled():
        gc.freeze()
        gc.enable()


def _registry(args: argparse.Namespace) -> Any:
    """The Registry of --classes with --devices or --class (usage and input problems raised)."""
    from .registry import Registry  # start-up: imports numpy and pyarrow

    _lean_kernel_load()
    registry = Registry()
    for path in _class_files(args.classes or []):
        registry.add_classes(path)
    if args.classes and not registry.classes:
        raise _InputProblem("the classes files hold no device class")
    for cls, path in _devices_args(args.devices):
        registry.load_devices(path, device_class=cls)
    for ref in args.default_class or []:
        registry.bind_all(ref)
    if not args.devices and not args.default_class:
        if len(registry.classes) == 1:
            registry.bind_all(registry.classes[0])
        else:
            names = ", ".join(repr(dc.name) for dc in registry.classes)
            raise _Usage(
                f"{len(registry.classes)} device classes loaded ({names}): say which device uses which "
                "with --devices FILE, or decode everything with one class: --class ID|NAME"
            )
    if not registry.bound_classes:
        raise _InputProblem("no device is bound to any of the loaded classes (check --devices)")
    return registry


class _Progress:
    """A one-line progress display on stderr, only when stderr is a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.last = 0.0
        self.shown = False

    def update(self, label: str, rows: int, started: float, fraction: Callable[[], float | None] | None) -> None:
        """Show the rows so far; ``fraction()``: how much of the input is read, asked only when
        shown (a file's position waits for the reader thread's read in progress: 41 asks cost
        the main thread 79 ms of a 1M-packet run)."""
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self.last < 0.1:
            return
        self.last = now
        fraction = fraction() if fraction is not None else None
        rate = rows / (now - started) if now > started else 0.0
        pct = f" {fraction * 100:5.1f}%" if fraction is not None else ""
        bar = ""
        if fraction is not None:
            width = 24
            done = int(width * min(max(fraction, 0.0), 1.0))
            bar = " [" + "#" * done + "." * (width - done) + "]"
        sys.stderr.write(f"\r\033[K{label}{bar}{pct} {rows:,} rows, {rate:,.0f} rows/s")
        sys.stderr.flush()
        self.shown = True

    def clear(self) -> None:
        if self.enabled and self.shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


class _Tracked:
    """An input file whose read position on disk is known, for the progress bar.

    The reader gets the raw file object and decompresses .gz itself; the
    position of the raw file is the fraction of the file consumed.
    """

    def __init__(self, path: str) -> None:
        try:
            self.raw = open(path, "rb")
            self.size = os.fstat(self.raw.fileno()).st_size
        except OSError as err:
            raise _InputProblem(f"cannot read {path}: {err.strerror or err}") from None
        self.stream = self.raw

    def fraction(self) -> float | None:
        try:
            return self.raw.tell() / self.size if self.size else None
        except (OSError, ValueError):
            return None

    def close(self) -> None:
        self.raw.close()


def _check_decode_args(args: argparse.Namespace) -> tuple[int, str]:
    """Usage checks that need no imports beyond the standard library: (chunk bytes, format)."""
    _check_class_arguments(args)
    if args.inputs.count("-") > 1:
        raise _Usage("stdin ('-') can be read only once")
    if args.output == "-" and args.errors == "-":
        raise _Usage("--errors and -o cannot both be stdout")
    targets = [os.path.abspath(p) for p in (args.output, args.errors) if p and p != "-"]
    if len(set(targets)) < len(targets):
        raise _Usage("--errors and -o name the same file")
    if set(targets) & {os.path.abspath(p) for p in args.inputs if p != "-"}:
        raise _Usage("the output would replace an input file")
    # Smaller chunks only multiply the fixed cost per chunk (and, for Parquet, the row groups).
    chunk_bytes = _size(args.chunk_size, minimum=options.MIN_CHUNK_BYTES)

    try:
        fmt = options.detect_format(args.output, args.format)
    except ValueError as err:
        raise _Usage(str(err)) from None
    if args.output == "-" and fmt not in options.STDOUT_FORMATS:
        raise _Usage(f"{fmt} cannot be written to stdout; give a file name with -o")
    for path in args.inputs:
        if path != "-" and not os.path.isfile(path):
            what = "is a directory" if os.path.isdir(path) else "no such file"
            raise _InputProblem(f"cannot read {path}: {what}")
    return chunk_bytes, fmt


class _StdinBytes:
    """stdin's bytes read with os.read. The input reader thread blocks in it while a pipe
    stays open; blocked in sys.stdin.buffer instead, it held the lock interpreter shutdown
    takes, and Ctrl-C or SIGTERM during `decode -` ended in a fatal error at exit."""

    name = "<stdin>"

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def read(self, size: int = -1) -> bytes:
        return os.read(self.fd, size if size > 0 else 1 << 16)


def _stdin_source() -> Any:
    """What `decode -` reads: the stdin file descriptor, or sys.stdin's buffer when stdin has
    none (a caller that replaced sys.stdin)."""
    try:
        return _StdinBytes(sys.stdin.fileno())
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return "-"


class _Input:
    """One input of `decode` being read: its chunks and (a file's) read position."""

    def __init__(self, path: str, chunk_bytes: int) -> None:
        from .ingest import ChunkStream

        self.tracked = _Tracked(path) if path != "-" else None
        self.chunks: Any = None
        source = self.tracked.stream if self.tracked is not None else _stdin_source()
        try:
            self.chunks = ChunkStream(source, chunk_bytes=chunk_bytes, receptions=False)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.chunks is not None:
            self.chunks.close()
        if self.tracked is not None:
            self.tracked.close()


def _start_early(path: str, chunk_bytes: int) -> _Input | None:
    """The first input, read and parsed while the device classes load; None where it cannot
    be opened (the error is then met, and reported, when its turn comes as before)."""
    from .errors import DecoderError

    _lean_kernel_load()
    try:
        return _Input(path, chunk_bytes)
    except (_InputProblem, DecoderError, OSError, EOFError):
        return None


def _decode_input(
    path: str, engine: Any, chunk_bytes: int, write: Any, progress: _Progress, summary: Any, started: _Input | None
) -> str | None:
    """Decode one input file (or stdin) chunk by chunk, handing each chunk to ``write``;
    ``started``: the input already being read (_start_early).

    Input that stops being readable partway (a truncated ``.gz``) returns its
    one-line reason, after every row before it was written. Input that cannot
    be read at all is an _InputProblem naming it; a failure to write
    (OutputError from the sinks) passes through, naming the output.
    """
    from .errors import InputTruncated, OutputError

    label = "stdin" if path == "-" else path
    current = started
    try:
        if current is None:
            current = _Input(path, chunk_bytes)
        tracked = current.tracked
        for chunk in engine.decode_stream(current.chunks, name=label):
            write(chunk)
            summary.add(chunk)
            progress.update(label, summary.rows, summary.started, tracked.fraction if tracked else None)
    except (BrokenPipeError, OutputError):
        raise
    except InputTruncated as err:
        return f"{err}; the {err.line:,} lines before it were decoded"
    except DecoderError as err:
        text = str(err)
        raise _InputProblem(text if label in text else f"{label}: {text}") from None
    except OSError as err:
        raise _InputProblem(f"cannot read {label}: {err.strerror or err}") from None
    except EOFError as err:
        raise _InputProblem(f"cannot read {label}: {err}") from None
    finally:
        if current is not None:
            current.close()
    return None


def cmd_decode(args: argparse.Namespace, ap: argparse.ArgumentParser) -> int:
    chunk_bytes, fmt = _check_decode_args(args)
    _collect_after_start_up()

    # The first input is read and scanned (numba, off the GIL) while the outputs' modules
    # import and the classes load. Checking the outputs first put those imports before the
    # scanning: it began 0.06-0.09 s later, and whole runs took 3% longer (medians of 16
    # interleaved pairs, 1M packets). Nothing is written before the check.
    started = _start_early(args.inputs[0], chunk_bytes)
    try:
        from .output import refusal

        for target in (args.output, args.errors):
            reason = refusal(target) if target and target != "-" else None
            if reason is not None:
                raise _Refused(reason)
        return _decode_all(args, chunk_bytes, fmt, started)
    finally:
        if started is not None:
            started.close()


def _decode_all(args: argparse.Namespace, chunk_bytes: int, fmt: str, started: _Input | None) -> int:
    """cmd_decode once the outputs are checked: load the classes, decode every input, report."""
    from .engine import Engine, Summary
    from .output import ErrorSink, open_sink

    registry = _registry(args)
    engine = Engine(registry, include_hidden=args.include_hidden, chunk_bytes=chunk_bytes, input_column=True)
    summary = Summary()
    progress = _Progress(sys.stderr.isatty() and not args.quiet)
    with _TerminateLikeInterrupt():
        sink = errors = None
        try:
            sink = open_sink(args.output, fmt, engine)
            errors = ErrorSink(args.errors) if args.errors else None

            def write(chunk: Any) -> None:
                sink.write(chunk)
                if errors is not None:
                    errors.write(chunk)

            _start_up_done()
            cut_short = []  # inputs that stopped being readable partway: their reasons
            for k, path in enumerate(args.inputs):
                first = started if k == 0 else None
                reason = _decode_input(path, engine, chunk_bytes, write, progress, summary, first)
                if reason is not None:
                    cut_short.append(reason)
            progress.clear()
            written = sink.close()
            if errors is not None:
                errors.close()
        except BaseException:
            progress.clear()
            for opened in (sink, errors):
                if opened is not None:
                    opened.abort()
            raise
    if not args.quiet:
        sys.stderr.write(summary.format() + "\n")
        sys.stderr.write(f"output     {written}\n")
        if errors is not None:
            sys.stderr.write(f"errors to  {args.errors} ({errors.count:,} records)\n")
    for reason in cut_short:
        _fail(reason)
    return 1 if cut_short else 0


class _Terminated(BaseException):
    """SIGTERM arrived (raised in the main thread, like KeyboardInterrupt for SIGINT)."""


class _TerminateLikeInterrupt:
    """While active, SIGTERM interrupts the run as Ctrl-C does: the outputs' temporaries
    are removed on the way out (``_Terminated``; exit 143). Only the main thread can
    take signals; elsewhere this does nothing."""

    def __init__(self) -> None:
        self.saved: Any = None

    def __enter__(self) -> _TerminateLikeInterrupt:
        if threading.current_thread() is threading.main_thread():
            self.saved = signal.signal(signal.SIGTERM, self._raise)
        return self

    @staticmethod
    def _raise(signum: int, frame: Any) -> None:
        raise _Terminated()

    def __exit__(self, *exc: Any) -> None:
        if self.saved is not None:
            signal.signal(signal.SIGTERM, self.saved)


# -- stream ----------------------------------------------------------------------------


def _stdin_lines(fd: int | None = None) -> Iterator[bytes]:
    """stdin's lines as they come (not waiting for EOF), read with os.read: a reader
    thread blocked here holds no lock that interpreter shutdown would need. A stdin
    without a file descriptor (replaced by a caller) is read through its buffer."""
    if fd is None:
        try:
            fd = sys.stdin.fileno()
        except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
            yield from (line.rstrip(b"\n") for line in sys.stdin.buffer)
            return
    pieces: list[bytes] = []  # the open line's parts: joined once, so a long line costs its length
    while True:
        data = os.read(fd, 1 << 20)
        if not data:
            break
        if b"\n" not in data:
            pieces.append(data)
            continue
        *lines, rest = data.split(b"\n")
        if pieces:
            lines[0] = b"".join([*pieces, lines[0]])
            pieces = []
        yield from lines
        if rest:
            pieces.append(rest)
    if pieces:
        yield b"".join(pieces)


class _StopOnSignals:
    """While active, SIGINT and SIGTERM ask the stage to hand on its open batch and stop."""

    def __init__(self, stage: Any) -> None:
        self.stage = stage
        self.saved: dict[int, Any] = {}

    def __enter__(self) -> _StopOnSignals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.saved[sig] = signal.signal(sig, lambda signum, frame: self.stage.stop())
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)


def _note(text: str) -> None:
    """One line of news for the person at the terminal (stderr, flushed)."""
    sys.stderr.write(f"{PROG}: {text}\n")
    sys.stderr.flush()


def _json_default(value: Any) -> Any:
    return str(value)


def _mqtt_password(args: argparse.Namespace, url: Any) -> str | None:
    """The broker password: --mqtt-password-file, else $DECODER_MQTT_PASSWORD, else the URL's."""
    from .stream.mqtt import PASSWORD_ENV

    password = None
    if args.mqtt_password_file:
        try:
            with open(args.mqtt_password_file, encoding="utf-8") as fh:
                password = fh.readline().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as err:
            reason = err.strerror if isinstance(err, OSError) and err.strerror else "not UTF-8 text"
            raise _InputProblem(f"cannot read --mqtt-password-file {args.mqtt_password_file}: {reason}") from None
    elif os.environ.get(PASSWORD_ENV):
        password = os.environ[PASSWORD_ENV]
    if password is not None and url.username is None:
        raise _Usage("--mqtt: a password needs a user name in the URL (mqtt://USER@host/topic)")
    return password


def _check_batch_args(args: argparse.Namespace) -> None:
    """The checks stream and serve share: classes, batches, rolls, the output directory."""
    _check_class_arguments(args)
    if args.max_rows < 1:
        raise _Usage("--max-rows must be at least 1")
    if not args.max_delay > 0:
        raise _Usage("--max-delay must be positive")
    if args.roll_rows < 1 or not args.roll_seconds > 0:
        raise _Usage("--roll-rows and --roll-seconds must be positive")
    if args.output is not None and os.path.exists(args.output) and not os.path.isdir(args.output):
        raise _Usage(f"-o {args.output}: not a directory (-o names a directory of rolling Parquet files)")


def _check_stream_args(args: argparse.Namespace) -> None:
    _check_batch_args(args)
    if args.mqtt_password_file and not args.mqtt:
        raise _Usage("--mqtt-password-file needs --mqtt")
    if args.mqtt:
        from .stream.mqtt import MQTT_MAX_ROWS, parse_url  # start-up: no paho until needed

        try:
            url = parse_url(args.mqtt)  # its errors never show a password
        except ValueError as err:
            raise _Usage(f"--mqtt: {err}") from None
        args.mqtt_password = _mqtt_password(args, url)
        if args.max_rows > MQTT_MAX_ROWS:
            # Two batches, our buffer and what waits for an open Parquet file must stay
            # unacknowledged within MQTT's 65,535 packet ids.
            raise _Usage(f"--max-rows: at most {MQTT_MAX_ROWS:,} with --mqtt")
    if args.poll_limit < 1 or not args.poll_interval > 0:
        raise _Usage("--poll-limit and --poll-interval must be positive")
    if not args.firefly_queue and (args.journal or args.api_key_file):
        raise _Usage("--journal and --api-key-file go with --firefly-queue")


def _queue_settings(args: argparse.Namespace) -> dict[str, str]:
    """The queue uid, the API key and the journal directory of --firefly-queue (usage errors raised)."""
    from .sources import KEY_ENV
    from .sources.errors import UsageError
    from .sources.http import check_api_url, read_api_key
    from .stream.firefly_queue import check_queue_uid

    try:
        uid = check_queue_uid(args.firefly_queue)
    except DecoderError as err:
        raise _Usage(f"--firefly-queue: {err}") from None
    try:
        check_api_url(args.api_url)
        key = read_api_key(args.api_key_file, KEY_ENV["firefly"])
    except UsageError as err:
        raise _Usage(str(err)) from None
    journal = args.journal
    if journal is None and args.output is not None:
        journal = os.path.join(args.output, f"_firefly-queue-{uid}")  # "_": dataset readers skip it
    elif journal is None:
        state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
        journal = os.path.join(state, "decoder", f"firefly-queue-{uid}")
    return {"uid": uid, "key": key, "journal": journal}


def _open_queue(args: argparse.Namespace, settings: dict[str, str]) -> Any:
    """A started FireflyQueueSource (its journal open and locked)."""
    from .stream.firefly_queue import FireflyQueueSource

    source = FireflyQueueSource(
        settings["uid"],
        api_key=settings["key"],
        journal=settings["journal"],
        api_url=args.api_url,
        limit=args.poll_limit,
        interval=args.poll_interval,
        log=_note,
    )
    try:
        source.start()
    except BaseException:
        source.close()
        raise
    if not args.quiet:
        replay = f"; replaying {source.pending:,} events it holds" if source.pending else ""
        where = f"{source.client.shown_base} (journal {settings['journal']}{replay})"
        _note(f"polling Firefly queue {source.uid} at {where}")
    return source


def _error_writer(out: Any, name: str) -> Any:
    """``on_errors`` for deliver: each batch's error records as JSON Lines on ``out``, flushed.
    A failed write (disk full) is an OutputError naming ``name``."""
    import orjson  # start-up: the stream command imports it anyway

    from .errors import OutputError

    opts = orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY

    def write_errors(records: list[dict]) -> None:
        try:
            out.write(b"".join(orjson.dumps(e, default=_json_default, option=opts) for e in records))
            out.flush()
        except BrokenPipeError:
            raise
        except OSError as err:
            raise OutputError(f"cannot write {name}: {err.strerror or err}") from None

    return write_errors


def cmd_stream(args: argparse.Namespace, ap: argparse.ArgumentParser) -> int:
    _check_stream_args(args)
    queue = _queue_settings(args) if args.firefly_queue else None
    # start-up: the engine, the stage and the outputs import numpy, pyarrow and numba
    from .engine import Engine
    from .output import JsonlSink, RollingParquetSink
    from .stream import StreamStage, deliver

    engine = Engine(_registry(args), include_hidden=args.include_hidden)
    rolling = args.output is not None
    stage = StreamStage(
        engine,
        max_rows=args.max_rows,
        max_delay=args.max_delay,
        idle=min(1.0, args.roll_seconds / 2) if rolling else None,
    )
    warm = stage.warm_up()
    if rolling:
        sink: Any = RollingParquetSink(args.output, engine, roll_rows=args.roll_rows, roll_seconds=args.roll_seconds)
    else:
        sink = JsonlSink("-", engine, stdout=sys.stdout.buffer)
        sink.rows_of(warm.chunk)  # the first rows' conversion is slow once; not when it counts
    try:
        errors_out = sys.stderr.buffer if args.errors is None else open(args.errors, "ab")
    except OSError as err:
        if rolling:
            sink.unlock()
        raise _InputProblem(f"cannot write {args.errors}: {err.strerror or err}") from None
    write_errors = _error_writer(errors_out, args.errors or "stderr")

    source: Any = None
    failure = None
    try:
        if queue is not None:
            source = _open_queue(args, queue)
            with _StopOnSignals(stage):
                deliver(stage, source, sink, ack=source.ack, on_errors=write_errors)
            failure = source.failure
        elif args.mqtt:
            from .stream.mqtt import MqttSource

            source = MqttSource(args.mqtt, client_id=args.client_id, log=_note, password=args.mqtt_password).start()
            if not args.quiet:
                _note(f"subscribed to {source.url} as {source.client_id!r}")
            with _StopOnSignals(stage):
                deliver(
                    stage,
                    source,
                    sink,
                    ack=source.ack,
                    on_errors=write_errors,
                    hold_limit=source.holdable(args.max_rows),
                )
        else:
            if not args.quiet:
                _note(f"reading stdin (a batch every {args.max_rows:,} messages or {args.max_delay:g} s)")
            with _StopOnSignals(stage):
                deliver(stage, _stdin_lines(), sink, on_errors=write_errors)
    except OSError as err:
        if isinstance(err, BrokenPipeError):
            raise
        raise _InputProblem(f"cannot write {err.filename or 'the output'}: {err.strerror or err}") from None
    finally:
        if source is not None:
            source.close()
        if rolling:
            sink.unlock()
        if args.errors is not None:
            try:
                errors_out.close()
            except OSError:
                pass  # its write error, if any, was reported above
    if not args.quiet:
        _stream_summary(args, stage, sink, source if queue is not None else None)
    if failure is not None:
        return _fail(str(failure))
    return 0


def _stream_summary(args: argparse.Namespace, stage: Any, sink: Any, queue: Any) -> None:
    """The end-of-stream summary on stderr: the stage's counts, the queue's polls, the files written."""
    text = stage.stats.format()
    if queue is not None:
        text += "\n" + "\n".join(queue.summary_lines())
    if args.output is not None:
        text += f"\noutput     {len(sink.files_written):,} Parquet files in {args.output} ({sink.rows_written:,} rows)"
    sys.stderr.write(text + "\n")


# -- serve -----------------------------------------------------------------------------


def _token(args: argparse.Namespace) -> bytes | None:
    """The bearer token: --token-file, else DECODER_TOKEN, else None (never from the command line)."""
    if args.token_file:
        try:
            with open(args.token_file, "rb") as f:
                token = f.read().strip()
        except OSError as err:
            raise _InputProblem(f"cannot read {args.token_file}: {err.strerror or err}") from None
        if not token:
            raise _InputProblem(f"{args.token_file}: empty (it should hold the bearer token)")
        return token
    token = os.environ.get("DECODER_TOKEN", "").strip()
    return token.encode() if token else None


def _loopback(host: str) -> bool:
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def cmd_serve(args: argparse.Namespace, ap: argparse.ArgumentParser) -> int:
    _check_batch_args(args)
    if not 0 <= args.port < 65536:
        raise _Usage("--port must be 0..65535")
    if not args.timeout > 0:
        raise _Usage("--timeout must be positive")
    max_body = _size(args.max_body, "--max-body", minimum=1024)
    token = _token(args)
    if token is None and not _loopback(args.host):
        raise _Usage(
            f"--host {args.host}: without a token the server listens on loopback only; "
            "set DECODER_TOKEN or --token-file FILE to take requests from other hosts"
        )
    # start-up: the engine, the stage and the server import numpy, pyarrow, numba and uvicorn
    import threading

    import orjson

    from .engine import Engine
    from .stream.http import WebhookServer

    engine = Engine(_registry(args), include_hidden=args.include_hidden)
    try:
        errors_out = sys.stderr.buffer if args.errors is None else open(args.errors, "ab")
    except OSError as err:
        raise _InputProblem(f"cannot write {args.errors}: {err.strerror or err}") from None
    lock = threading.Lock()  # refused bodies come from the server, failed rows from the stage
    opts = orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY

    def write_errors(records: list[dict]) -> None:
        data = b"".join(orjson.dumps(e, default=_json_default, option=opts) for e in records)
        with lock:
            errors_out.write(data)
            errors_out.flush()

    if token is None:
        _note("no token set (DECODER_TOKEN or --token-file): requests are not authenticated; loopback only")
    server = WebhookServer(
        engine,
        args.output,
        host=args.host,
        port=args.port,
        token=token,
        max_body=max_body,
        timeout=args.timeout,
        max_rows=args.max_rows,
        max_delay=args.max_delay,
        roll_rows=args.roll_rows,
        roll_seconds=args.roll_seconds,
        on_errors=write_errors,
        log=_note,
    )
    try:
        code = server.run()
    finally:
        if args.errors is not None:
            try:
                errors_out.close()
            except OSError:
                pass
    if not args.quiet and server.stage is not None:
        sink = server.sink.rolling
        sys.stderr.write(
            server.stage.stats.format()
            + f"\noutput     {len(sink.files_written):,} Parquet files in {args.output} ({sink.rows_written:,} rows)"
            + f"\nlog        {server.wal.pending:,} messages not yet in Parquet ({server.wal.size:,} bytes)\n"
        )
    return code


# -- check -----------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace, ap: argparse.ArgumentParser) -> int:
    from .compiler import compile as compile_class  # start-up: imports numpy and pyarrow
    from .compiler.script import class_objects

    bad = 0
    total = 0
    for path in _class_files(args.classes):
        try:
            items = class_objects(path)
        except ScriptError as err:  # not JSON, not a class shape, unreadable: one bad entry, go on
            bad += 1
            total += 1
            text = str(err)
            sys.stderr.write(f"{PROG}: error: {text if str(path) in text else f'{path}: {text}'}\n")
            continue
        for item in items:
            total += 1
            try:
                dc = compile_class(item)
                if not args.no_kernel:
                    dc.kernel  # noqa: B018 - build (or load) the numba kernel now
            except ScriptError as err:
                bad += 1
                sys.stderr.write(f"{PROG}: error: {path}: {err}\n")
                continue
            sys.stdout.write(f"{path}: {dc.explain()}\n")
            if args.include_hidden:
                sys.stdout.write("  arrow schema (with hidden):\n")
                for line in str(dc.output_schema(include_hidden=True)).splitlines():
                    sys.stdout.write(f"    {line}\n")
            sys.stdout.write("\n")
    sys.stdout.write(f"{total - bad} of {total} device classes compile\n")
    return 1 if bad else 0


# -- pull (decoder.sources) -----------------------------------------------------------


def _add_pull(sub: Any) -> None:
    """`decoder pull firefly|helium`: the options are defined beside the code that uses them."""
    # decoder.sources imports only argparse here, so --help stays cheap.
    from .sources import PROVIDERS, add_pull_arguments

    pull = sub.add_parser(
        "pull",
        help="fetch uplinks from the Firefly or Helium API, decode them and write them",
        description="Fetch the uplinks not pulled before from a provider's HTTP API, decode them and write "
        "them; a state file records how far the pulls got. See `decoder pull firefly --help`.",
    )
    providers = pull.add_subparsers(dest="provider", metavar="PROVIDER", required=True)
    for name in PROVIDERS:
        cmd = add_pull_arguments(providers, name)
        cmd.set_defaults(func=cmd_pull, parser=cmd)


def cmd_pull(args: argparse.Namespace, ap: Any) -> int:
    from .sources import run_pull

    return run_pull(args, prog=f"{PROG} pull {args.provider}")


# -- entry -------------------------------------------------------------------------------


def _warning_line(message: Any, category: Any, filename: str, lineno: int, line: str | None = None) -> str:
    """A library warning (an untrusted kernel cache, say) as the CLI's one line."""
    return f"{PROG}: warning: {message}\n"


# The import hooks below are plain classes with the methods the import system calls (PEP 451):
# subclassing importlib.abc imported importlib.resources with it, 9 ms of every run's start-up.


class _WithoutPandas:
    """Refuses ``import pandas`` in this process. pyarrow imports pandas, when installed, on its
    first ``pa.array``/``pa.scalar`` call only to check whether it was handed pandas objects
    (0.35-0.7 s of start-up); the command never hands it any, and never needs pandas."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError("the decoder command does not use pandas")
        return None


class _WithoutNumbaExtensions:
    """Makes ``numba.core.entrypoints`` one that loads no numba extensions. numba's looks for
    them among the entry points of every installed package, importing ``importlib.metadata``
    (with email, socket and zipfile) to do it: 55 ms of a one-packet run's 0.5 s (0.495 against
    0.435 s, medians of 20 interleaved pairs, 16 faster), for extensions (typing and lowering
    of other libraries' types) that the command's kernels never use. Made through the import
    system, so numba finds it where it looks (``numba.core.entrypoints.init_all()``)."""

    _NAME = "numba.core.entrypoints"

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != self._NAME:
            return None
        import importlib.util

        return importlib.util.spec_from_loader(name, self)

    def create_module(self, spec: Any) -> None:
        return None

    def exec_module(self, module: Any) -> None:
        module._already_initialized = True
        module.init_all = lambda: None


class _process:
    """What this process is: the command itself (``decoder ...``), or a caller of ``main(argv)``."""

    is_the_command = False


def _keep_start_up_lean() -> None:
    """This process is the command: keep out what it never uses. pandas (see _WithoutPandas);
    numba's search for extensions among the installed packages (_WithoutNumbaExtensions);
    OpenBLAS's threads: numpy starts one per core at import, and they spun for 0.13 CPU-s of
    every run (perf) on a machine whose cores the run needs, for linear algebra it never does;
    Arrow's default allocator, mimalloc; and numba's preparations to compile when it only loads
    cached kernels (runtime.lean_load, applied once the command needs kernels).

    mimalloc handed freed memory back to the system and took it again for the next chunk, so
    the kernel zeroed fresh 2 MB pages all run long: 12-14% of a 1M-packet decode's CPU (perf:
    clear_page under its page faults), 0.4-0.5 s of wall time; with jemalloc 3-6%, and the
    peak RSS about a tenth lower. ARROW_DEFAULT_MEMORY_POOL reaches every Arrow allocation (the
    Parquet writer's and the compute kernels' too), but only before pyarrow makes its pool, and
    only where the wheels carry jemalloc (a user's own setting is kept).

    numpy asks for 2 MB pages for its arrays of 4 MB and more (NUMPY_MADVISE_HUGEPAGE): the
    kernels' outputs and the scan's, one set per chunk, each fault zeroing 2 MB however little
    of it was written (perf: clear_page under the scan kernel, 11% of a mixed-file decode's
    CPU). Without them, 16 MB chunks, 1M packets, three sets of 6-8 interleaved pairs: Firefly
    1.12x, 0.97x and (the env setting alone) 1.12x as fast, the mixed file 1.06x, 1.01x and
    1.11x; peak RSS 427-430 against 484-496 MB (Firefly) and 434-446 against 518-528."""
    _process.is_the_command = True
    if "pandas" not in sys.modules:
        sys.meta_path.insert(0, _WithoutPandas())
    if "numba" not in sys.modules:
        sys.meta_path.insert(0, _WithoutNumbaExtensions())
    if "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")
    if "pyarrow" not in sys.modules and sys.platform in ("linux", "darwin"):  # wheels with jemalloc
        os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")


def main(argv: Sequence[str] | None = None) -> int:
    """The command; ``argv`` None means this process is the command (see _keep_start_up_lean)."""
    if argv is None:
        _keep_start_up_lean()
    ap = _parser()
    args = ap.parse_args(argv)
    sub = args.parser
    saved_format, warnings.formatwarning = warnings.formatwarning, _warning_line
    try:
        code = _run(args, sub)
    finally:
        warnings.formatwarning = saved_format
    if argv is None:
        _exit_now(code)
    return code


def _exit_now(code: int) -> None:
    """End the command without the interpreter's teardown: every output is complete and
    renamed by now, and tearing down numba, llvmlite and Arrow's memory took 0.2-0.3 s of
    every run. Exit handlers (a private kernel directory's removal) still run."""
    import atexit

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`| head`): nothing more to say there
            pass
    atexit._run_exitfuncs()
    os._exit(code)


def _run(args: argparse.Namespace, sub: argparse.ArgumentParser) -> int:
    """The command, with every expected failure turned into its line and exit status."""
    try:
        return args.func(args, sub)
    except _Usage as err:
        sub.print_usage(sys.stderr)
        sys.stderr.write(f"{sub.prog}: error: {err}\n")
        return 2
    except _InputProblem as err:
        return _fail(str(err))
    except _Refused as err:
        _fail(str(err))
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"\n{PROG}: interrupted\n")
        return 130
    except _Terminated:
        sys.stderr.write(f"{PROG}: terminated (SIGTERM); no output was written\n")
        return 143
    except BrokenPipeError:
        # stdout was closed early (`| head`): stop quietly, and keep Python from
        # complaining again when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except DecoderError as err:
        return _fail(str(err))


if __name__ == "__main__":
    sys.exit(main())
