"""Loading kernels from numba's on-disk cache without first getting ready to compile.

Before it loads a cached kernel, numba refreshes its target context: it
imports and registers every lowering it has (arrays, unicode, random, typed
containers...), which a compiler needs and loading machine code does not.
That refresh was 0.2-0.4 s of every ``decoder`` process, a third of a
one-packet run. ``skip_refresh_on_cache_load`` replaces numba's
``Cache.load_overload`` with the same steps minus the refresh, keeping the one
part of it that loaded code needs (the NRT runtime's initialization).
Compiling is unchanged: numba's compiler refreshes the context itself before
it starts, so a kernel that is not cached yet compiles exactly as before.

The command line turns this on for its own process; the library leaves numba
as it is (a program that imports us may use numba for itself).
"""

from __future__ import annotations

__all__ = ["skip_refresh_on_cache_load"]

# The names numba 0.68's Cache.load_overload uses: refresh, then load under the I/O guard.
# Another body means another numba: then it is left alone.
_EXPECTED_NAMES = ("refresh", "_guard_against_spurious_io_errors", "_load_overload")


def skip_refresh_on_cache_load() -> bool:
    """Make numba load cached kernels without the compiler's context refresh; False (and nothing
    changed) when this numba's loader is not the one this was written for."""
    from numba.core import caching
    from numba.core.runtime import nrt

    original = caching.Cache.load_overload
    if getattr(original, "_decoder_lean", False):
        return True
    if original.__code__.co_names != _EXPECTED_NAMES or not hasattr(nrt.rtsys, "initialize"):
        return False

    def load_overload(self, sig, target_context):
        nrt.rtsys.initialize(target_context)  # what cached machine code calls into (allocation)
        with self._guard_against_spurious_io_errors():
            return self._load_overload(sig, target_context)

    load_overload._decoder_lean = True  # type: ignore[attr-defined]
    caching.Cache.load_overload = load_overload
    return True
