"""Run `decoder stream` as a subprocess and read its stdout and stderr as they come."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
TEST_CLASS = str(ROOT / "samples" / "classes" / "test_device_class.json")


def generated_lines(
    n: int,
    seed: int,
    mix: str = "firefly=0.5,helium_body=0.25,helium_event=0.25",
    group: str = "Test Device Class:9:1",
    devices: int = 200,
) -> list[bytes]:
    """n realistic uplinks from samples/generate.py (packet ids unique), as JSON lines."""
    from helpers import sample_generator

    module = sample_generator()
    gen = module.Generator([module.parse_group(group)], devices, module.parse_mix(mix), seed)
    return [line.encode() for line in gen.lines(n)]


class StreamProcess:
    """``decoder stream ARGS`` with pipes; stdout and stderr lines are timestamped on arrival."""

    def __init__(self, *args: str, stdin: bool = True) -> None:
        self.args = ["-m", "decoder", "stream", *args]
        self.proc = subprocess.Popen(
            [sys.executable, *self.args],
            cwd=ROOT,
            env=dict(os.environ),
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.out: queue.Queue = queue.Queue()
        self.err_lines: list[str] = []
        self._err_seen = threading.Condition()
        threading.Thread(target=self._read_out, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read_out(self) -> None:
        for line in self.proc.stdout:
            self.out.put((time.monotonic(), line))
        self.out.put(None)

    def _read_err(self) -> None:
        for line in self.proc.stderr:
            with self._err_seen:
                self.err_lines.append(line.decode(errors="replace").rstrip("\n"))
                self._err_seen.notify_all()

    @property
    def stderr(self) -> str:
        return "\n".join(self.err_lines)

    def wait_for_stderr(self, text: str, timeout: float = 60.0) -> None:
        """Until a stderr line holds ``text`` (the process says it is ready)."""
        deadline = time.monotonic() + timeout
        with self._err_seen:
            while not any(text in line for line in self.err_lines):
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError(f"no {text!r} on stderr; exit {self.proc.poll()}:\n{self.stderr}")
                self._err_seen.wait(min(left, 0.2))

    def write(self, line: bytes) -> None:
        self.proc.stdin.write(line.rstrip(b"\n") + b"\n")
        self.proc.stdin.flush()

    def rows(self, count: int, timeout: float = 60.0) -> list[tuple[float, dict]]:
        """The next ``count`` output rows as (arrival time, row)."""
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < count:
            try:
                item = self.out.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise AssertionError(f"{len(out)} of {count} rows in {timeout} s; stderr:\n{self.stderr}") from None
            if item is None:
                raise AssertionError(f"stdout ended after {len(out)} of {count} rows; stderr:\n{self.stderr}")
            out.append((item[0], orjson.loads(item[1])))
        return out

    def rest(self, timeout: float = 60.0) -> list[dict]:
        """Every row until stdout ends (the process exits). A last line cut short (the
        process was killed while writing it) is left out, as a downstream reader would."""
        out = []
        deadline = time.monotonic() + timeout
        while True:
            item = self.out.get(timeout=max(deadline - time.monotonic(), 0.01))
            if item is None:
                return out
            if item[1].endswith(b"\n"):
                out.append(orjson.loads(item[1]))

    def close_stdin(self) -> None:
        self.proc.stdin.close()

    def signal(self, sig: int = signal.SIGINT) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 60.0) -> int:
        code = self.proc.wait(timeout=timeout)
        time.sleep(0.05)  # let the readers take the last lines
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def __enter__(self) -> StreamProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.kill()


def summary_value(stderr: str, label: str) -> int:
    """A count from the summary on stderr, e.g. summary_value(err, "decoded")."""
    for line in stderr.splitlines():
        if line.startswith(label + " "):
            return int(line[len(label) :].split()[0].replace(",", ""))
    raise AssertionError(f"no {label!r} line in the summary:\n{stderr}")
