"""Device classes and bindings from files (``--classes``, ``--devices``), as ``decoder decode`` reads them."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import decoder

from ..errors import InputError
from .errors import UsageError

__all__ = ["devices_args", "registry_from_files"]


def _class_files(items: Sequence[str]) -> list[str]:
    out = []
    for item in items:
        if os.path.isdir(item):
            found = sorted(os.path.join(item, f) for f in os.listdir(item) if f.lower().endswith(".json"))
            if not found:
                raise InputError(f"{item}: no .json files in this directory")
            out.extend(found)
        else:
            out.append(item)
    return out


def devices_args(items: Sequence[str] | None) -> list[tuple[str | None, str]]:
    """``--devices`` values as (class or None, path): ``FILE`` or ``CLASS=FILE``."""
    out: list[tuple[str | None, str]] = []
    for item in items or []:
        if not os.path.exists(item) and "=" in item:
            cls, _, path = item.partition("=")
            if not cls or not path:
                raise UsageError(f"--devices {item!r}: expected FILE or CLASS=FILE")
            out.append((cls, path))
        else:
            out.append((None, item))
    return out


def registry_from_files(classes: Sequence[str], devices: Sequence[str] | None) -> Any:
    """A :class:`decoder.Registry` of the class files, bound by the device files.

    Without device files, a single class decodes every device; several
    classes then need device files (a usage error otherwise).
    """
    registry = decoder.Registry()
    for path in _class_files(classes):
        registry.add_classes(path)
    if not registry.classes:
        raise InputError("the classes files hold no device class")
    for cls, path in devices_args(devices):
        registry.load_devices(path, device_class=cls)
    if not devices:
        if len(registry.classes) != 1:
            names = ", ".join(repr(dc.name) for dc in registry.classes)
            raise UsageError(
                f"{len(registry.classes)} device classes loaded ({names}): say which device uses "
                "which with --devices FILE"
            )
        registry.bind_all(registry.classes[0])
    if not registry.bound_classes:
        raise InputError("no device is bound to any of the loaded classes (check --devices)")
    return registry
