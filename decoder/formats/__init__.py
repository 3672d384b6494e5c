"""Built-in decoders for standard payload formats: no device-class script needed.

``decoder.builtin("cayenne-lpp")`` returns a decoder with the interface of a
compiled device class (``name``, ``id``, ``ports``, ``decode``,
``output_schema``, ``explain``). The registry, the Engine and the command
line (``--class cayenne-lpp``) know these names.

Importing this package is cheap: a format's module (numpy, pyarrow) is
imported when the format is first asked for, numba when it first decodes.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BUILTIN_NAMES", "builtin", "is_builtin"]

# name -> (module in this package, class in it)
_FORMATS = {
    "cayenne-lpp": ("cayenne_lpp", "CayenneLPP"),
}
BUILTIN_NAMES = tuple(_FORMATS)
_instances: dict[str, Any] = {}


def is_builtin(name: Any) -> bool:
    """Whether ``name`` names a built-in format."""
    return isinstance(name, str) and name.strip() in _FORMATS


def builtin(name: str) -> Any:
    """The built-in decoder called ``name`` (one shared instance per name); ValueError if unknown."""
    key = name.strip() if isinstance(name, str) else name
    if key not in _FORMATS:
        raise ValueError(f"no built-in format {name!r} (built in: {', '.join(BUILTIN_NAMES)})")
    if key not in _instances:
        import importlib

        module, attr = _FORMATS[key]
        _instances[key] = getattr(importlib.import_module(f".{module}", __name__), attr)()
    return _instances[key]
