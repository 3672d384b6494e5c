"""Pull packets from the providers' HTTP APIs, decode them and write them: ``decoder pull firefly|helium``.

- :mod:`decoder.sources.http`: the HTTP client (httpx), rate-limit pacing,
  back-off and retries, secret redaction.
- :mod:`decoder.sources.firefly`: device classes and bindings from the API,
  packets paged oldest first, exactly once by ``uid``.
- :mod:`decoder.sources.helium`: each device's last events, uplinks only,
  deduplicated across runs.
- :mod:`decoder.sources.state`: the state file (high-water marks), replaced
  atomically after the output holding the packets is complete.
- :mod:`decoder.sources.pull`: the run: outputs, commits, progress, summary.

Importing this package costs only :mod:`argparse`: the command line builds
its parser from :func:`add_pull_arguments` without loading httpx, numba or
pyarrow.
"""

from __future__ import annotations

import argparse
from typing import Any

from .. import options

__all__ = ["DEFAULT_API", "KEY_ENV", "PROVIDERS", "add_pull_arguments", "run_pull"]

PROVIDERS = ("firefly", "helium")

DEFAULT_API = {
    "firefly": "https://api.fireflyiot.com/api/v1",
    "helium": "https://console.helium.com/api/v1",
}
KEY_ENV = {"firefly": "FIREFLY_API_KEY", "helium": "HELIUM_API_KEY"}

_EPILOG = {
    "firefly": """\
the API key:
  FIREFLY_API_KEY in the environment, or --api-key-file FILE (never on the command line).
  It is sent as the auth query parameter and never printed, logged or stored.

what is pulled:
  Without --classes, the device classes come from GET /device_classes and the devices of each
  from GET /device_classes/{id}/euis. Packets come from GET /packets (the organization's), or
  GET /devices/eui/{EUI}/packets per --device, oldest first, 100 per request, each exactly once
  (by uid). The state file remembers how far each got; a rerun fetches only newer packets.

output (exactly one of):
  -o OUT        a new file per run (an existing OUT is never replaced); format from the suffix
  --append DIR  a dataset directory: a new part-....<format> per run (and per --roll-rows)

exit status: 0 done; 1 the API failed after retries, or input could not be read (what was
  pulled until then is written and recorded); 2 usage; 130 interrupted (Ctrl-C or SIGTERM:
  what was pulled is written and recorded; a second Ctrl-C aborts the current output).
""",
    "helium": """\
the API key:
  HELIUM_API_KEY in the environment, or --api-key-file FILE (never on the command line).
  It is sent in the key header and never printed, logged or stored.

what is pulled:
  GET /devices, then for each device GET /devices/:id/events (its last 100 events) and
  GET /devices/:id/events?sub_category=uplink_integration_req (its last 10 integration events).
  Uplinks only, each once: an uplink seen before (by device, fcnt and reported_at, recorded in
  the state file) is not written again. The API keeps only the last 100 events of a device, so
  pull more often than 100 events arrive; a warning says when a device's 100 events were all
  new (older ones may have been missed).

output (exactly one of):
  -o OUT        a new file per run (an existing OUT is never replaced); format from the suffix
  --append DIR  a dataset directory: a new part-....<format> per run (and per --roll-rows)

exit status: 0 done; 1 the API failed after retries, or input could not be read (what was
  pulled until then is written and recorded); 2 usage; 130 interrupted.
""",
}


def add_pull_arguments(commands: Any, provider: str) -> argparse.ArgumentParser:
    """Add the ``provider`` sub-command of ``decoder pull`` to an argparse sub-parsers object."""
    helium = provider == "helium"
    cmd = commands.add_parser(
        provider,
        help=f"pull uplinks from the {provider.capitalize()} API",
        description=f"Fetch the {provider.capitalize()} uplinks not pulled before, decode them and write "
        "them; the state file records how far the pulls got.",
        epilog=_EPILOG[provider],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    out = cmd.add_mutually_exclusive_group(required=True)
    out.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="write a new file (.parquet, .arrow, .csv, .jsonl; an existing file is never replaced)",
    )
    out.add_argument(
        "--append", metavar="DIR", help="add a new part file to the dataset directory DIR (created if missing)"
    )
    cmd.add_argument(
        "--format",
        choices=options.FORMATS,
        help="output format (default: from the suffix of OUT; parquet with --append)",
    )
    cmd.add_argument(
        "--raw",
        metavar="PATH",
        help="also keep the packets as the API returned them, one JSON object per line: "
        "a new file with -o (.gz compresses), a directory of part files with --append",
    )
    cmd.add_argument(
        "--state",
        metavar="FILE",
        help=f"the state file (default: _decoder-pull-state-{provider}.json beside OUT, or in DIR)",
    )
    cmd.add_argument(
        "--api-url",
        default=DEFAULT_API[provider],
        metavar="URL",
        help=f"the API's base URL (default {DEFAULT_API[provider]})",
    )
    cmd.add_argument(
        "--api-key-file", metavar="FILE", help=f"read the API key from FILE (default: ${KEY_ENV[provider]})"
    )
    cmd.add_argument(
        "--classes",
        action="append",
        required=helium,
        metavar="FILE",
        help="device classes: any Firefly /device_classes response, a class, a list, or a "
        "directory of .json files (repeatable)" + ("" if helium else "; default: from the API"),
    )
    cmd.add_argument(
        "--devices",
        action="append",
        required=helium,
        metavar="[CLASS=]FILE",
        help="which device uses which class, as for decoder decode (repeatable)"
        + (": a map of Helium device ids or DevEUIs to classes" if helium else "; default: from the API"),
    )
    if not helium:
        cmd.add_argument(
            "--since",
            metavar="TIME",
            help="on the first pull (no state yet), start at packets received at this UTC time "
            "(ISO 8601, e.g. 2024-01-01T00:00:00); default: all the API has",
        )
        cmd.add_argument(
            "--device",
            action="append",
            metavar="EUI",
            help="pull only this device's packets (repeatable); each device has its own mark",
        )
    cmd.add_argument("--include-hidden", action="store_true", help="also output variables of type hidden")
    cmd.add_argument(
        "--roll-rows",
        type=int,
        default=100_000,
        metavar="N",
        help="with --append: close the part file and record the state every N packets "
        "(default 100000), so a long pull that is interrupted keeps its progress",
    )
    cmd.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="give up on a request after this long without data (default 30; retried)",
    )
    cmd.add_argument(
        "--retries",
        type=int,
        default=5,
        metavar="N",
        help="retry a request that failed (429, 5xx, timeout, dropped connection) up to N times, "
        "waiting longer each time (default 5)",
    )
    cmd.add_argument("-q", "--quiet", action="store_true", help="no progress, notes or summary")
    cmd.set_defaults(provider=provider)
    return cmd


def run_pull(args: argparse.Namespace, *, prog: str) -> int:
    """Run ``decoder pull`` with parsed arguments; messages go to stderr; returns the exit status."""
    from .pull import run

    return run(args, prog=prog, default_api=DEFAULT_API[args.provider], key_env=KEY_ENV[args.provider])
