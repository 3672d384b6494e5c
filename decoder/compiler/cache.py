"""Compile, memoize and cache kernels on disk.

Kernel source goes to ``<cache dir>/k_<sha256>.py`` and is imported from
there, so ``numba.njit(cache=True)`` keeps its machine code in the
``__pycache__`` beside it: a second process loads it without compiling. The
digest covers the source and the runtime modules it calls, because numba's
cache does not notice when a called function's source changes.

The cache directory is ``$DECODER_CACHE_DIR``, else ``$XDG_CACHE_HOME/decoder``,
else ``~/.cache/decoder``.

What is imported from there runs as the user, so it is checked first. The
directory is created 0700, and used only when it belongs to the user and
no one else can write to it; otherwise kernels are compiled into a private
temporary directory for the process, with one warning. The module is made
from the source in memory, never from the file; the file (which numba's
cache keys on) is rewritten when its content is not that source, so
machine code numba cached for other content is not used.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import shutil
import sys
import tempfile
import threading
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..kernel_cache_dir import CACHE_ENV, cache_dir, package_files_digest, untrusted, write_atomically

__all__ = ["Kernel", "load_kernel", "cache_dir", "untrusted", "CACHE_ENV"]

_RUNTIME_MODULES = ("runtime/abi.py", "runtime/bits.py", "runtime/jsmath.py", "compiler/codegen.py")
_memo: dict[str, Kernel] = {}
_lock = threading.Lock()
_private: Path | None = None  # the fallback directory of this process, once one was needed
_warned: set[Path] = set()


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


@functools.lru_cache(maxsize=1)
def _runtime_fingerprint() -> bytes:
    import numba  # start-up: numba only once a kernel is built or loaded

    return package_files_digest(_RUNTIME_MODULES, numba.__version__.encode())


def _kernel_dir() -> Path:
    """The cache directory, or when it cannot be trusted a private one for this process."""
    global _private
    configured = cache_dir()
    reason = untrusted(configured)
    if reason is None:
        return configured
    if _private is None:
        _private = Path(tempfile.mkdtemp(prefix="decoder-kernels-"))  # 0700, ours alone
        atexit.register(shutil.rmtree, _private, True)
    if configured not in _warned:
        _warned.add(configured)
        warnings.warn(
            f"not using the kernel cache {configured}: {reason}; kernels are compiled "
            f"for this process only (set {CACHE_ENV} to a directory of your own)",
            RuntimeWarning,
            stacklevel=4,
        )
    return _private


def _write_verified(path: Path, source: str) -> None:
    """Make the file at ``path`` hold exactly ``source``.

    An existing file with that content is left alone: numba's cache index is
    keyed on its timestamp. One with other content (tampered with, cut short)
    is replaced, which also makes numba drop what it cached for it.
    """
    data = source.encode()
    try:
        with open(path, "rb") as fh:
            if fh.read(len(data) + 1) == data:
                return
    except FileNotFoundError:
        pass
    write_atomically(path, data)


def load_kernel(source: str) -> Kernel:
    """Return the kernel function of `source`, memoized in process and cached on disk."""
    digest = hashlib.sha256(_runtime_fingerprint() + source.encode()).hexdigest()
    with _lock:
        if digest in _memo:
            return _memo[digest]
        path = _kernel_dir() / f"k_{digest}.py"
        _write_verified(path, source)
        # The module runs the source we generated, not what the file holds by then; the
        # file only names it, for numba's cache and for tracebacks.
        module_name = f"decoder_kernel_{digest}"
        module = types.ModuleType(module_name)
        module.__file__ = str(path)
        sys.modules[module_name] = module
        exec(compile(source, str(path), "exec"), module.__dict__)  # noqa: S102 - our own generated code
        kernel = Kernel(digest=digest, path=path, function=module.kernel, fixed=module.kernel_fixed)
        _memo[digest] = kernel
        return kernel
