"""What several test modules share: the repository root, the seed's device classes, the sample generator.

Test modules import it as ``from helpers import ...`` (pytest puts this directory on sys.path).
"""

from __future__ import annotations

import importlib.util
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# How late a thread may be woken on a loaded 2-core machine (the suite runs beside other
# work). Latency promises are checked against the stage's bound plus this, never tighter:
# what is tested is that a batch closes by time at all and on its deadline, not the scheduler.
SCHEDULING_SLACK = 0.25

# GET /device_classes, exactly as printed in the Firefly API v1 reference ("Show Device Classes").
SEED_DEVICE_CLASSES = json.loads("""
{
  "device_classes": [
    {
      "updated_at": "2016-04-22T12:52:16.109000",
      "script": {
        "variables": {
          "gps": {"type": "gps", "name": "gps"},
          "batteryLevel": {"type": "range", "name": "batteryLevel"},
          "battery": {"type": "hidden", "name": "battery"}
        },
        "parseElements": [
          {"type": "int", "target": "battery", "bits": "8"},
          {"type": "int", "target": "gps.latitude", "signed": true, "bits": "24"},
          {"type": "int", "target": "gps.longitude", "signed": true, "bits": "24"},
          {"type": "int", "target": "gps.altitude", "signed": true, "bits": "16"}
        ],
        "calculateElements": [
          {"target": "batteryLevel", "formula": "battery != 0 ? (battery - 1) / 253 : null"},
          {"target": "gps.latitude", "formula": "gps.latitude / (1 << 23) * 90"},
          {"target": "gps.longitude", "formula": "gps.longitude / (1 << 23) * 180"}
        ]
      },
      "name": "Test Device Class",
      "inserted_at": "2016-04-20T15:09:18.911000",
      "id": 2,
      "description": null
    }
  ]
}
""")


def sample_generator():
    """samples/generate.py as a module (it is a script, not a package), loaded once."""
    module = sys.modules.get("sample_generate")
    if module is None:
        spec = importlib.util.spec_from_file_location("sample_generate", ROOT / "samples" / "generate.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look the module up
        spec.loader.exec_module(module)
    return module


@dataclass
class CliResult:
    """What a run of the command line gave: its exit status and its output, as bytes."""

    returncode: int
    stdout: bytes
    stderr: bytes


def run_cli(*args, stdin: bytes | None = None) -> CliResult:
    """``decoder ARGS`` run in this process (``decoder.cli.main``) with byte buffers for stdin,
    stdout and stderr: what a user sees, without a new interpreter per command."""
    from decoder.cli import main

    out, err = io.BytesIO(), io.BytesIO()
    streams = [
        io.TextIOWrapper(io.BytesIO(stdin or b""), encoding="utf-8"),
        io.TextIOWrapper(out, encoding="utf-8", write_through=True),
        io.TextIOWrapper(err, encoding="utf-8", write_through=True),
    ]
    saved = sys.stdin, sys.stdout, sys.stderr
    sys.stdin, sys.stdout, sys.stderr = streams
    try:
        code = main([str(a) for a in args])
    except SystemExit as stop:  # argparse exits on its own for usage errors and --help
        code = stop.code if isinstance(stop.code, int) else 1
    finally:
        for stream in streams[1:]:
            stream.flush()
        sys.stdin, sys.stdout, sys.stderr = saved
    return CliResult(code, out.getvalue(), err.getvalue())
