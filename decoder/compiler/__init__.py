"""Device-class scripts -> fused numba kernels, one stage per module.

script (JSON -> ClassSpec) -> formula (+ formula.lark: text -> AST with positions)
-> lower (AST -> typed IR in ``ir``, constants folded by ``fold``) -> codegen
(IR -> kernel source) -> cache (source -> compiled kernel, memoized and on
disk) -> device_class (runs a kernel over a batch) -> batch (Arrow export).
A class built before is read back from disk by ``class_cache`` (its IR, source
and layout), skipping formula, lower and codegen.
"""

from __future__ import annotations

from .device_class import DeviceClass, compile, load_classes

__all__ = ["DeviceClass", "compile", "load_classes"]
