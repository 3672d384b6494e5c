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

A cached kernel also rebuilds the environment of every function compiled into
it, numba's own array and string implementations included, and numba imports
each one's module to give it that module's globals: ``numba.np.arrayobj``
with the string modules it imports was 30 ms of every run. Only object-mode
code reads those globals, and numba's implementations compile in nopython
mode, so ``_rebuild_env_lean`` gives a numba module that is not imported yet
its name alone.

The command line turns this on for its own process; the library leaves numba
as it is (a program that imports us may use numba for itself).
"""

from __future__ import annotations

import importlib
import sys

__all__ = ["skip_refresh_on_cache_load"]

# The names numba 0.68's Cache.load_overload uses: refresh, then load under the I/O guard.
# Another body means another numba: then it is left alone.
_EXPECTED_NAMES = ("refresh", "_guard_against_spurious_io_errors", "_load_overload")
_EXPECTED_ENV_NAMES = (
    "lookup_environment",
    "importlib",
    "import_module",
    "Environment",
    "__dict__",
    "consts",
    "env_name",
    "_memo",
)


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
    _rebuild_environments_lean()
    return True


def _rebuild_environments_lean() -> None:
    """Rebuild cached environments without importing numba's own modules (see the module
    docstring); left alone when this numba rebuilds them otherwise."""
    from numba.core import environment

    if environment._rebuild_env.__code__.co_names != _EXPECTED_ENV_NAMES:
        return

    def _rebuild_env_lean(modname, consts, env_name):
        env = environment.lookup_environment(env_name)
        if env is not None:
            return env
        module = sys.modules.get(modname)
        if module is None and modname.startswith("numba."):
            namespace = {"__name__": modname}
        else:
            namespace = (module or importlib.import_module(modname)).__dict__
        env = environment.Environment(namespace)
        env.consts[:] = consts
        env.env_name = env_name
        environment.Environment._memo[env_name] = env
        return env

    # Cached kernels name numba's function (module and name) in their pickles: replacing the
    # module's attribute is what makes loading call this one.
    environment._rebuild_env = _rebuild_env_lean
