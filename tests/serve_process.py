"""Run `decoder serve` as a subprocess on 127.0.0.1 (a free port it picks) and talk to it over HTTP."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
TEST_CLASS = str(ROOT / "samples" / "classes" / "test_device_class.json")
TOKEN = "test-token-4f1c9a"


class ServeProcess:
    """``decoder serve ARGS --port 0``; waits until it listens, then knows its URL."""

    def __init__(self, *args: str, token: str | None = TOKEN, start_timeout: float = 120.0) -> None:
        env = dict(os.environ)
        env.pop("DECODER_TOKEN", None)
        if token is not None:
            env["DECODER_TOKEN"] = token
        self.token = token
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "decoder", "serve", "--port", "0", *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.err_lines: list[str] = []
        self._seen = threading.Condition()
        threading.Thread(target=self._read_err, daemon=True).start()
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()
        line = self.wait_for_stderr("listening on", start_timeout)
        self.url = re.search(r"http://\S+", line).group(0)

    def _read_err(self) -> None:
        for raw in self.proc.stderr:
            with self._seen:
                self.err_lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._seen.notify_all()
        with self._seen:
            self._seen.notify_all()

    @property
    def stderr(self) -> str:
        return "\n".join(self.err_lines)

    def wait_for_stderr(self, text: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        with self._seen:
            while True:
                for line in self.err_lines:
                    if text in line:
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError(f"no {text!r} on stderr; exit {self.proc.poll()}:\n{self.stderr}")
                self._seen.wait(min(left, 0.2))

    def headers(self, token: str | None = "default") -> dict:
        token = self.token if token == "default" else token
        return {"Authorization": f"Bearer {token}"} if token else {}

    def post(self, body: bytes, path: str = "/uplinks", token: str | None = "default", **kw) -> httpx.Response:
        return httpx.post(self.url + path, content=body, headers=self.headers(token), timeout=30, **kw)

    def get(self, path: str, token: str | None = "default") -> httpx.Response:
        return httpx.get(self.url + path, headers=self.headers(token), timeout=30)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        time.sleep(0.05)  # let the reader take the last lines
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.kill()
