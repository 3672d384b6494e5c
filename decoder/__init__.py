"""decoder: compile Firefly device-class scripts into numba kernels and decode LoRaWAN uplinks in batches.

Importing the package is cheap: numba is imported only when a kernel is first
built or loaded, and pyarrow only when a compiled class is used.
"""

from __future__ import annotations

import importlib

from .errors import DecoderError, InputError, InputTruncated, OutputError, ScriptError

__all__ = [
    "compile",
    "load_classes",
    "builtin",
    "DeviceClass",
    "DecodedBatch",
    "Engine",
    "Registry",
    "StreamStage",
    "MicroBatch",
    "Message",
    "ScriptError",
    "InputError",
    "InputTruncated",
    "OutputError",
    "DecoderError",
]

_LAZY = {
    "compile": ("compiler", "compile"),
    "load_classes": ("compiler", "load_classes"),
    "builtin": ("formats", "builtin"),
    "DeviceClass": ("compiler", "DeviceClass"),
    "DecodedBatch": ("compiler.batch", "DecodedBatch"),
    "Engine": ("engine", "Engine"),
    "Registry": ("registry", "Registry"),
    "StreamStage": ("stream", "StreamStage"),
    "MicroBatch": ("stream", "MicroBatch"),
    "Message": ("stream", "Message"),
}


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'decoder' has no attribute {name!r}")
