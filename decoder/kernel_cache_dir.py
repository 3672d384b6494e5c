"""Where compiled machine code is kept between processes, and whether that place can be trusted.

One rule for every cache of ours (the class kernels of ``compiler.cache``, numba's runtime
functions of ``runtime.lean_load``): ``$DECODER_CACHE_DIR``, else ``$XDG_CACHE_HOME/decoder``,
else ``~/.cache/decoder``, used only when it belongs to the user and no one else can write to
it. Standard library only: the command asks before numba or the compiler is imported.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from pathlib import Path

__all__ = ["CACHE_ENV", "cache_dir", "untrusted", "trusted_cache_dir", "write_atomically", "package_files_digest"]

CACHE_ENV = "DECODER_CACHE_DIR"


def cache_dir() -> Path:
    """Directory that holds generated kernel files and numba's cache of them."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "decoder"


def untrusted(path: Path) -> str | None:
    """Why ``path`` must not hold code this process imports (created 0700 if missing), or None."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.stat(path)
    except OSError as err:
        return f"cannot create it ({err.strerror or err})"
    if not stat.S_ISDIR(info.st_mode):
        return "it is not a directory"
    if os.name == "posix":
        if info.st_uid != os.getuid():
            return "it belongs to another user"
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return "others can write to it"
    return None


def trusted_cache_dir() -> Path | None:
    """The cache directory where it can be trusted, else None (nothing is kept between processes)."""
    directory = cache_dir()
    return directory if untrusted(directory) is None else None


def write_atomically(path: Path, data: bytes) -> None:
    """Make ``path`` hold ``data``, whole or not at all (another process may be reading it).
    OSError when it cannot be written; no temporary file is left behind."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp_")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def package_files_digest(names: tuple[str, ...], seed: bytes = b"") -> bytes:
    """sha256 of ``seed`` and the bytes of the package's files ``names`` (paths relative to the
    ``decoder`` package): what a cached build depends on besides its own input."""
    package = Path(__file__).resolve().parent
    h = hashlib.sha256(seed)
    for name in names:
        h.update((package / name).read_bytes())
    return h.digest()
