"""Compile, memoize and cache kernels on disk.

Kernel source goes to ``<cache dir>/k_<sha256>.py`` and is imported from
there, so ``numba.njit(cache=True)`` keeps its machine code in the
``__pycache__`` beside it: a second process loads it without compiling. The
digest covers the source and the runtime modules it calls, because numba's
cache does not notice when a called function's source changes.

The cache directory is ``$DECODER_CACHE_DIR``, else ``$XDG_CACHE_HOME/decoder``,
else ``~/.cache/decoder``.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Kernel", "load_kernel", "cache_dir"]

CACHE_ENV = "DECODER_CACHE_DIR"
_RUNTIME_MODULES = ("runtime/abi.py", "runtime/bits.py", "runtime/jsmath.py", "compiler/codegen.py")
_memo: dict[str, Kernel] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class Kernel:
    digest: str
    path: Path
    function: Callable  # rows by offsets
    fixed: Callable  # rows of one length, no input errors (see codegen)

    def cache_stats(self) -> dict:
        """numba's own count of signatures loaded from / compiled past its on-disk cache."""
        hits = misses = 0
        for fn in (self.function, self.fixed):
            hits += sum(fn.stats.cache_hits.values())
            misses += sum(fn.stats.cache_misses.values())
        return {"cache_hits": hits, "cache_misses": misses}


def cache_dir() -> Path:
    """Directory that holds generated kernel files and numba's cache of them."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "decoder"


@functools.lru_cache(maxsize=1)
def _runtime_fingerprint() -> bytes:
    import numba  # start-up: numba only once a kernel is built or loaded

    package = Path(__file__).resolve().parent.parent
    h = hashlib.sha256(numba.__version__.encode())
    for name in _RUNTIME_MODULES:
        h.update((package / name).read_bytes())
    return h.digest()


def _write_once(path: Path, source: str) -> None:
    # Never rewrite an existing file: numba's cache index is keyed on its timestamp.
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp_", suffix=".py")
    with os.fdopen(fd, "w") as fh:
        fh.write(source)
    os.replace(tmp, path)


def load_kernel(source: str) -> Kernel:
    """Return the kernel function of `source`, memoized in process and cached on disk."""
    digest = hashlib.sha256(_runtime_fingerprint() + source.encode()).hexdigest()
    with _lock:
        if digest in _memo:
            return _memo[digest]
        path = cache_dir() / f"k_{digest}.py"
        _write_once(path, source)
        module_name = f"decoder_kernel_{digest}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
        kernel = Kernel(digest=digest, path=path, function=module.kernel, fixed=module.kernel_fixed)
        _memo[digest] = kernel
        return kernel
