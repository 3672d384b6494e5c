"""Built device classes kept between processes: a class's IR, kernel source and layout.

Building a class parses its formulas (lark), lowers them to IR and generates its
kernel's source. The parser, its grammar and the code generator were 35-45 ms of
every command's start-up before the first row could be written, and each class
took a few ms more. A class built before is read back from here instead: a
pickle of what ``lower`` and ``codegen.generate`` made of it, under a name that
hashes the class's checked spec and every module those results depend on, so a
change to either builds the class again (and a file that cannot be read back is
built again and replaced).

It lives in the kernel cache directory where that can be trusted
(``kernel_cache_dir``) and nowhere else: what is unpickled runs as the user, as
the cached kernels do.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import pickle
from pathlib import Path

from ..kernel_cache_dir import package_files_digest, trusted_cache_dir, write_atomically
from .ir import KernelLayout, Program
from .script import ClassSpec

__all__ = ["load", "store"]

# Everything a spec's IR, kernel source and layout are made by (relative to the package).
_BUILDERS = (
    "compiler/script.py",
    "compiler/normalized.py",
    "compiler/formula.py",
    "compiler/formula.lark",
    "compiler/lower.py",
    "compiler/fold.py",
    "compiler/ir.py",
    "compiler/codegen.py",
    "runtime/abi.py",
)


@functools.cache
def _builders_fingerprint() -> bytes:
    return package_files_digest(_BUILDERS)


def _path(spec: ClassSpec) -> Path | None:
    """Where ``spec``'s build is kept; None without a trusted cache directory."""
    directory = trusted_cache_dir()
    if directory is None:
        return None
    digest = hashlib.sha256(_builders_fingerprint() + repr(spec).encode()).hexdigest()
    return directory / f"c_{digest}.pickle"


def load(spec: ClassSpec) -> tuple[Program, str, KernelLayout] | None:
    """``spec``'s (program, kernel source, layout) as built before, or None."""
    path = _path(spec)
    if path is None:
        return None
    try:
        program, source, layout = pickle.loads(path.read_bytes())
    except Exception:  # not built yet, or unreadable: built again (and replaced) by the caller
        return None
    if isinstance(program, Program) and isinstance(source, str) and isinstance(layout, KernelLayout):
        return program, source, layout
    return None


def store(spec: ClassSpec, program: Program, source: str, layout: KernelLayout) -> None:
    """Keep ``spec``'s build for the next process (nothing where the cache cannot be used)."""
    path = _path(spec)
    if path is None:
        return
    try:
        data = pickle.dumps((program, source, layout), protocol=pickle.HIGHEST_PROTOCOL)
    except RecursionError:  # formulas nested deeper than pickling goes: such a class is built each time
        return
    with contextlib.suppress(OSError):  # a directory we cannot write: the next process builds it again
        write_atomically(path, data)
