"""The state file of ``decoder pull``: how far the pulls got, replaced atomically, recovered after a crash.

A JSON object::

    {"format": "decoder-pull-state", "version": 1, "provider": "firefly",
     "api": "https://api.fireflyiot.com/api/v1",
     "cursor": {...},             # the source's high-water mark (see firefly.py, helium.py)
     "pending": {...},            # only between writing an output and committing its cursor
     "running": {...},            # only while a run is going: its pid and the outputs it opened
     "updated": "2024-05-01T12:00:00Z"}

It never holds the API key.

The commit protocol, per output part (one file per run, or one part file of
an ``--append`` dataset):

1. the part is written under a temporary name (the sinks do this) and
   ``running.outputs`` names it, so a later run can remove the temporary
   file of a run that was killed;
2. :meth:`StateFile.prepare`: ``pending = {cursor, outputs}`` is saved;
3. the part is closed, renamed into place and fsynced;
4. :meth:`StateFile.commit`: ``cursor`` becomes the pending cursor and
   ``pending`` goes.

Every save writes a temporary file, fsyncs it, renames it over the state
file and fsyncs the directory, so the file on disk is always one whole
version. A run killed anywhere leaves either no new output and the old
cursor (killed before 3: the packets are pulled again), or the output and a
``pending`` whose first output exists (killed between 3 and 4): the next
:meth:`StateFile.open` rolls forward to the pending cursor. A pending whose
first output does not exist is rolled back, and the other outputs it lists
(the raw packets file, written before the first) are removed: that run
wrote them and they would repeat packets. So every pulled packet is in the
outputs exactly once.

One run at a time per state file: :meth:`open` takes an exclusive lock on
``.<state name>.lock`` beside it (released by the OS when a run dies).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, Self

import orjson

from ..errors import InputError
from .errors import StateConflict

__all__ = ["StateFile", "fsync_tree", "temp_name"]

FORMAT = "decoder-pull-state"
VERSION = 1


def temp_name(path: str | os.PathLike, pid: int | None = None) -> Path:
    """The temporary name a file is written under before it is renamed to ``path``.

    The sinks of ``decoder.output`` use the same convention, so the temporary
    output of a killed run can be found from its final name and pid.
    """
    p = Path(path)
    return p.parent / f".{p.name}.tmp-{os.getpid() if pid is None else pid}"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a directory
    finally:
        os.close(fd)


def fsync_tree(path: str | os.PathLike) -> None:
    """Flush a file, or every file of a directory, and the directory entries, to disk."""
    p = Path(path)
    if p.is_dir():
        for root, _dirs, files in os.walk(p):
            for name in files:
                _fsync_file(Path(root) / name)
            _fsync_dir(Path(root))
    elif p.exists():
        _fsync_file(p)
    _fsync_dir(p.parent)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _remove(path: Path) -> bool:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            return False
        return True
    except OSError:
        return False


class StateFile:
    """Load, lock, recover and atomically replace a pull's state file."""

    def __init__(self, path: str | os.PathLike, *, provider: str, api: str) -> None:
        self.path = Path(path)
        self.provider = provider
        self.api = api.rstrip("/")
        self.cursor: dict[str, Any] = {}
        self.notes: list[str] = []  # what open() found and did, for the person at the terminal
        self.created = False  # no state file yet: this is a first pull
        self._running: list[str] = []
        self._pending: dict[str, Any] | None = None  # kept until commit, whatever else is saved meanwhile
        self._lock_fd: int | None = None

    # -- open / close ---------------------------------------------------------------
    def open(self) -> StateFile:
        """Lock the state, read it (an absent file is an empty state) and recover from an interrupted run."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise InputError(f"cannot create the directory of {self.path}: {err.strerror or err}") from None
        self._lock()
        doc = self._read()
        if doc is None:
            self.created = True
            return self
        self.cursor = doc.get("cursor") or {}
        running = doc.get("running")
        if isinstance(running, dict):
            self._remove_stale(running)
        pending = doc.get("pending")
        if isinstance(pending, dict):
            self._recover(pending)
        if isinstance(running, dict) or isinstance(pending, dict):
            self._save()
        return self

    def close(self) -> None:
        """Clear the running record and release the lock."""
        try:
            if self._running and self._lock_fd is not None:
                self._running = []
                self._save()
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the commit protocol --------------------------------------------------------
    def opening(self, *outputs: str | os.PathLike) -> None:
        """Record outputs about to be written under temporary names (removed if this run dies)."""
        self._running.extend(os.path.abspath(o) for o in outputs)
        self._save()

    def prepare(self, cursor: dict[str, Any], outputs: list[str | os.PathLike]) -> None:
        """Save ``cursor`` as pending until ``outputs[0]`` exists (see the module docstring)."""
        self._pending = {"cursor": cursor, "outputs": [os.path.abspath(o) for o in outputs]}
        self._save()

    def commit(self, cursor: dict[str, Any]) -> None:
        """Make ``cursor`` the state: the outputs holding its packets are complete."""
        self.cursor = cursor
        self._running = []
        self._pending = None
        self._save()

    # -- internals ------------------------------------------------------------------
    def _lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; one run at a time is up to the user
            return
        lock_path = self.path.parent / f".{self.path.name}.lock"
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as err:
            raise InputError(f"cannot lock {self.path}: {err.strerror or err}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StateConflict(f"another decoder pull is using the state file {self.path}") from None
        self._lock_fd = fd

    def _read(self) -> dict[str, Any] | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as err:
            raise InputError(f"cannot read the state file {self.path}: {err.strerror or err}") from None
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise InputError(f"{self.path} is not a decoder pull state file (it is left as it is)")
        if doc.get("version") != VERSION:
            raise InputError(f"{self.path}: state version {doc.get('version')!r}, this decoder reads {VERSION}")
        if doc.get("provider") != self.provider:
            raise StateConflict(
                f"the state file {self.path} is for {doc.get('provider')}, not {self.provider}: give another --state"
            )
        if str(doc.get("api", "")).rstrip("/") != self.api:
            raise StateConflict(
                f"the state file {self.path} is for the API at {doc.get('api')}, not {self.api}: give another --state"
            )
        return doc

    def _remove_stale(self, running: dict[str, Any]) -> None:
        pid = running.get("pid")
        if not isinstance(pid, int) or pid == os.getpid():
            return
        for out in running.get("outputs") or []:
            tmp = temp_name(out, pid)
            if _remove(tmp):
                self.notes.append(f"removed {tmp}, the unfinished output of an interrupted run")

    def _recover(self, pending: dict[str, Any]) -> None:
        outputs = [Path(o) for o in pending.get("outputs") or []]
        if outputs and outputs[0].exists():
            self.cursor = pending.get("cursor") or {}
            self.notes.append(f"the last run was interrupted after writing {outputs[0]}; continuing after it")
            return
        for extra in outputs[1:]:
            if _remove(extra):
                self.notes.append(f"removed {extra}: its run was interrupted before its output was complete")

    def _save(self) -> None:
        doc: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "provider": self.provider,
            "api": self.api,
            "cursor": self.cursor,
        }
        if self._pending is not None:
            doc["pending"] = self._pending
        if self._running:
            doc["running"] = {"pid": os.getpid(), "outputs": self._running}
        doc["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        tmp = temp_name(self.path)
        try:
            with open(tmp, "wb") as f:
                f.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as err:
            _remove(tmp)
            raise InputError(f"cannot write the state file {self.path}: {err.strerror or err}") from None
        _fsync_dir(self.path.parent)
