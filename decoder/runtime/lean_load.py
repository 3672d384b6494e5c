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

That runtime's initialization compiles a small module of its own (atomic
reference counts) with LLVM in every process: 16-22 ms on the way to the
first scan. Given a trusted directory, ``_nrt_from_disk`` keeps its machine
code there, as numba keeps a kernel's, and loads it (under 1 ms); the file's
name hashes the module's IR, numba's and llvmlite's versions and the target
machine, so anything that would change the code changes the name.

A cached kernel's library also carries its LLVM bitcode, which numba parses
at once (12-15 ms for the nine kernels a parsing thread needs) to list the
symbols the library defines (7-8 ms more) and to link later compilations
against it. ``_linking_bitcode_on_demand`` keeps those names beside the
kernel in the trusted directory, as a JSON list named by the bitcode's
hash, and parses the bitcode only when something links against it.

The command line turns this on for its own process; the library leaves numba
as it is (a program that imports us may use numba for itself).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import pickle
import sys
from pathlib import Path

from ..kernel_cache_dir import write_atomically

__all__ = ["skip_refresh_on_cache_load"]

# The names numba 0.68's Cache.load_overload uses: refresh, then load under the I/O guard.
# Another body means another numba: then it is left alone.
_EXPECTED_NAMES = ("refresh", "_guard_against_spurious_io_errors", "_load_overload")
# numba 0.68's nrtdynmod.compile_nrt_functions: build the IR module, add it, finalize.
_EXPECTED_NRT_NAMES = ("create_nrt_module", "add_ir_module", "finalize")
# numba 0.68's CPUCodeLibrary._unserialize, _get_module_for_linking and JitEngine._load_defined_symbols.
_EXPECTED_UNSERIALIZE_NAMES = (
    "create_library",
    "isinstance",
    "ll",
    "parse_bitcode",
    "_final_module",
    "_finalize_final_module",
    "enable_object_caching",
    "_set_compiled_object",
    "_shared_module",
    "_codegen",
    "_engine",
    "_load_defined_symbols",
    "ValueError",
)
_EXPECTED_LINKING_NAMES = (
    "_ensure_finalized",
    "_shared_module",
    "_final_module",
    "functions",
    "is_declaration",
    "linkage",
    "ll",
    "Linkage",
    "external",
    "append",
    "name",
    "RuntimeError",
    "clone",
    "get_function",
)
_EXPECTED_SYMBOLS_NAMES = ("functions", "global_variables", "_defined_symbols")
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


def skip_refresh_on_cache_load(runtime_dir: Path | None = None) -> bool:
    """Make numba load cached kernels without the compiler's context refresh; False (and nothing
    changed) when this numba's loader is not the one this was written for. ``runtime_dir``: a
    trusted directory to keep the runtime's compiled functions in (``_nrt_from_disk``)."""
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
    if runtime_dir is not None:
        _nrt_from_disk(runtime_dir)
        _linking_bitcode_on_demand(runtime_dir)
    return True


def _nrt_from_disk(directory: Path) -> None:
    """Have numba's runtime initialization load its compiled module from ``directory`` (written
    there the first time); left alone when this numba compiles it otherwise."""
    from numba.core.runtime import nrtdynmod

    original = nrtdynmod.compile_nrt_functions
    if getattr(original, "_decoder_lean", False) or original.__code__.co_names != _EXPECTED_NRT_NAMES:
        return

    def compile_nrt_functions(ctx):
        ir_module, library = nrtdynmod.create_nrt_module(ctx)
        codegen = ctx.codegen()
        path = directory / f"nrt_{_machine_code_key(codegen, str(ir_module))}.pickle"
        try:
            return codegen.unserialize_library(pickle.loads(path.read_bytes()))
        except Exception:  # not written yet, or unreadable: compiled, and written, below
            pass
        library.enable_object_caching()  # keeps the machine code for serialize_using_object_code
        library.add_ir_module(ir_module)
        library.finalize()
        with contextlib.suppress(OSError):  # a directory we cannot write: compiled again next time
            write_atomically(path, pickle.dumps(library.serialize_using_object_code()))
        return library

    compile_nrt_functions._decoder_lean = True  # type: ignore[attr-defined]
    nrtdynmod.compile_nrt_functions = compile_nrt_functions


def _linking_bitcode_on_demand(directory: Path) -> None:
    """Have numba load a cached library without parsing its bitcode: the symbols it defines
    are read from ``directory`` (listed there the first time), and the bitcode is parsed when
    a compilation links against the library. Left alone when this numba loads them otherwise."""
    from llvmlite import binding as ll
    from numba.core import codegen

    library_class = codegen.CPUCodeLibrary
    original = library_class._unserialize.__func__
    for_linking = library_class._get_module_for_linking
    if (
        getattr(original, "_decoder_lean", False)
        or original.__code__.co_names != _EXPECTED_UNSERIALIZE_NAMES
        or for_linking.__code__.co_names != _EXPECTED_LINKING_NAMES
        or codegen.JitEngine._load_defined_symbols.__code__.co_names != _EXPECTED_SYMBOLS_NAMES
    ):
        return

    def _unserialize(cls, codegen_, state):
        name, kind, data = state
        if kind != "object":
            return original(cls, codegen_, state)
        object_code, bitcode = data
        path = directory / f"symbols_{hashlib.sha256(bitcode).hexdigest()[:32]}.json"
        names = _defined_names(path)
        if names is None:  # listed from the parsed bitcode, as numba does, and kept
            library = original(cls, codegen_, state)
            module = library._shared_module
            symbols = (*module.functions, *module.global_variables)
            names = [gv.name for gv in symbols if not gv.is_declaration]
            with contextlib.suppress(OSError):
                write_atomically(path, json.dumps(names).encode())
            return library
        library = codegen_.create_library(name)
        library.enable_object_caching()
        library._set_compiled_object(object_code)
        library._decoder_linking_bitcode = bitcode
        library._finalize_final_module()
        codegen_._engine._defined_symbols.update(names)
        return library

    def _get_module_for_linking(self):
        bitcode = self.__dict__.pop("_decoder_linking_bitcode", None)
        if bitcode is not None:
            self._shared_module = ll.parse_bitcode(bitcode)
        return for_linking(self)

    _unserialize._decoder_lean = True  # type: ignore[attr-defined]
    library_class._unserialize = classmethod(_unserialize)
    library_class._get_module_for_linking = _get_module_for_linking


def _defined_names(path: Path) -> list[str] | None:
    """The symbol names kept at ``path``, or None where there are none to trust (a kernel's
    library defines at least its function: an empty list is no list)."""
    try:
        names = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        return None
    return names


def _machine_code_key(codegen, ir_text: str) -> str:
    """What the runtime module's machine code depends on, hashed: its IR, the compiler's
    versions and the target (triple, CPU and its features, as numba's own cache checks)."""
    import llvmlite
    import numba

    h = hashlib.sha256(repr((numba.__version__, llvmlite.__version__, codegen.magic_tuple())).encode())
    h.update(ir_text.encode())
    return h.hexdigest()[:32]


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
