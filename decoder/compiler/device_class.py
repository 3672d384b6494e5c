"""The library's front door: device-class JSON in, a batch decoder out.

Pipeline (one way): script JSON -> ``script.ClassSpec`` -> ``formula`` AST ->
``lower`` typed IR -> ``codegen`` kernel source -> ``cache`` compiled kernel.

numba is imported only when a class first decodes (``payload`` and
``runtime.bits`` import it), so compiling and describing a class stays cheap.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import ScriptError
from ..runtime.abi import ERR_INPUT
from . import class_cache
from .batch import Column, DecodedBatch
from .cache import load_kernel
from .ir import KernelLayout, Program
from .normalized import check_outputs
from .script import ClassSpec, load_specs

__all__ = ["DeviceClass", "compile", "load_classes"]

_ARROW_TYPES = {
    "bool": pa.bool_(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "int8": pa.int8(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "uint8": pa.uint8(),
    "uint16": pa.uint16(),
    "uint32": pa.uint32(),
    "uint64": pa.uint64(),
    "str": pa.dictionary(pa.int32(), pa.string()),
}


class DeviceClass:
    """One compiled device class: decodes batches of payloads with one fused kernel."""

    def __init__(self, spec: ClassSpec, program: Program, source: str, layout: KernelLayout):
        self.spec = spec
        self.program = program
        self.source = source
        self.layout = layout
        self._kernel = None

    # ---- identity --------------------------------------------------------
    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def id(self) -> int | None:
        return self.spec.id

    @property
    def ports(self) -> tuple[int, ...] | None:
        return self.spec.ports

    @property
    def normalized(self) -> dict[str, tuple[str, ...]]:
        """Which output gives which quantity of the normalized payload schema (may be empty)."""
        return self.spec.normalized

    def __repr__(self) -> str:
        return f"<DeviceClass {self.name!r} id={self.id} outputs={len(self.layout.outputs)}>"

    # ---- kernel ----------------------------------------------------------
    @property
    def kernel(self):
        """The compiled kernel (built on first use; numba is imported only then)."""
        if self._kernel is None:
            self._kernel = load_kernel(self.source)
        return self._kernel

    def kernel_info(self) -> dict:
        """Where the kernel source lives and whether numba loaded it from its disk cache."""
        kernel = self.kernel
        return {"path": str(kernel.path), "digest": kernel.digest, **kernel.cache_stats()}

    # ---- decoding --------------------------------------------------------
    def decode(self, payloads: Any, encoding: str = "hex", ports: Any = None, include_hidden: bool = False):
        """Decode a batch of payloads (hex or base64 text, or raw bytes) into a DecodedBatch.

        ``ports``: None (unknown), one port for every row, or one per payload
        (None for unknown). A port is an integer 0-255; any other value fails
        its row with the reason, as a bad payload does. A sequence of another
        length than ``payloads`` raises ValueError.
        """
        from ..payload import to_buffer  # numba: imported on the first decode

        if isinstance(payloads, (list, tuple)) and len(payloads) >= _OVERLAP_ROWS:
            # Decode each converted chunk while the next one's text is gathered (two cores).
            outputs = _Outputs(self, len(payloads), ports)
            buffer = to_buffer(payloads, encoding, on_rows=outputs.run)
            if outputs.rows_done == len(buffer):
                return outputs.batch(buffer, include_hidden)
            # The conversion took its general path: decode the whole buffer at once.
        else:
            buffer = to_buffer(payloads, encoding)
        return self.decode_buffer(buffer, ports=ports, include_hidden=include_hidden)

    def decode_buffer(self, buffer, ports: Any = None, include_hidden: bool = False):
        """Decode payloads already converted to bytes (a payload.PayloadBuffer)."""
        outputs = _Outputs(self, len(buffer), ports)
        outputs.run(buffer.data, buffer.offsets, buffer.error, 0, len(buffer))
        return outputs.batch(buffer, include_hidden)

    # ---- description -----------------------------------------------------
    def output_schema(self, include_hidden: bool = False) -> pa.Schema:
        """Arrow schema of `decode(...).to_arrow()`."""
        tree: dict = {}
        for path, slot in self.layout.outputs:
            if not include_hidden and self.spec.is_hidden(path[0]):
                continue
            node = tree
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = _ARROW_TYPES[slot.storage]

        def fields(node: dict) -> list[pa.Field]:
            return [pa.field(k, pa.struct(fields(v)) if isinstance(v, dict) else v) for k, v in node.items()]

        return pa.schema(fields(tree))

    def explain(self) -> str:
        """A human description: layout, formulas and output columns."""
        lines = [f"device class {self.name!r}" + (f" (id {self.id})" if self.id is not None else "")]
        if self.ports:
            lines.append(f"  ports: {', '.join(map(str, self.ports))}")
        static = self.program.static_bits
        lines.append(
            f"  payload: {static} bits ({(static + 7) // 8} bytes)"
            if static is not None
            else "  payload: variable layout (conditional elements)"
        )
        for el in self.spec.parse_elements:
            target = ".".join(el.target) if el.target else "(skip)"
            extra = " signed" if el.signed else ""
            extra += " little-endian" if el.little_endian else ""
            extra += f" if {el.condition}" if el.condition else ""
            lines.append(f"  read  {target:<24} {el.kind}{el.bits}{extra}")
        for el in self.spec.calculate_elements:
            lines.append(f"  calc  {'.'.join(el.target):<24} = {el.formula}")
        lines.append("  output:")
        for field in self.output_schema(include_hidden=True):
            hidden = " (hidden)" if self.spec.is_hidden(field.name) else ""
            lines.append(f"    {field.name}: {field.type}{hidden}")
        if self.normalized:
            lines.append("  normalized payload:")
            lines += [f"    {name} <- {'.'.join(source)}" for name, source in self.normalized.items()]
        return "\n".join(lines)


_OVERLAP_ROWS = 1 << 16  # lists at least this long convert and decode chunk by chunk
_NO_PORTS = np.full(1, -1, np.int64)  # passed when no formula reads `port`
_NO_BITS = np.zeros(1, np.int64)  # passed for fixed layouts: the kernel never writes bits_used


MAX_PORT = 255  # an FPort is one byte


class _Ports:
    """The ``ports`` of a batch, checked: the FPort per row (-1 where unknown) and which rows are bad.

    ``None`` (or None, NaN, an Arrow null in a row) is unknown: ``port`` is
    null in formulas. A row's port is an integer 0-255; an integral float
    (pandas writes ints with gaps as floats) counts as one. Anything else (a
    fraction, a negative, 256 and up, a bool, text) makes that row an error,
    like a bad payload. A sequence of another length than the payloads is a
    ValueError.
    """

    def __init__(self, ports: Any, n: int) -> None:
        self.bad: np.ndarray | None = None  # bool per row, or None when no row is bad
        self._items: Any = None  # where bad rows' values are rendered from
        if ports is None:
            self.values = np.full(n, -1, np.int64)
            return
        if _is_scalar_port(ports):
            values, bad = _check_items([ports])
            self.values = np.repeat(values, n)
            self.bad = np.repeat(bad, n) if bad is not None else None
            self._items = [ports] * n if bad is not None else None
            return
        if isinstance(ports, (pa.Array, pa.ChunkedArray)):
            items = ports
            values, bad = _check_arrow(ports)
        elif isinstance(ports, np.ndarray):
            if ports.ndim != 1:
                raise ValueError(f"ports must be 1-dimensional, not shape {ports.shape}")
            items = ports
            values, bad = _check_numpy(ports)
        else:
            items = ports if isinstance(ports, (list, tuple)) else list(ports)
            try:  # typed in C when the items allow it; a bool, a huge int or text takes the slow way
                values, bad = _check_arrow(pa.array(items, from_pandas=True))
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
                values, bad = _check_items(items)
        if len(values) != n:
            raise ValueError(f"ports has {len(values)} entries for {n} payloads")
        self.values, self.bad = values, bad
        if bad is not None:
            self._items = items

    def message(self, row: int) -> str:
        """Why row ``row``'s port is bad."""
        item = self._items[row]
        if isinstance(item, pa.Scalar):
            item = item.as_py()
        elif isinstance(item, np.generic):
            item = item.item()
        return f"bad port {item!r}: an FPort is an integer 0-{MAX_PORT}"


def _is_scalar_port(ports: Any) -> bool:
    return isinstance(ports, (int, float, np.integer, np.floating)) or isinstance(ports, (str, bytes))


def _from_ints(values: np.ndarray, unknown: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    values = np.asarray(values)
    bad = (values < 0) | (values > MAX_PORT)
    if unknown is not None:
        bad &= ~unknown
    ok = ~bad if unknown is None else ~bad & ~unknown
    out = np.full(len(values), -1, np.int64)
    out[ok] = values[ok]
    return out, (bad if bad.any() else None)


def _from_floats(values: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    unknown = np.isnan(values)
    with np.errstate(invalid="ignore"):
        bad = ~unknown & ((values != np.floor(values)) | (values < 0) | (values > MAX_PORT))
    ok = ~unknown & ~bad
    out = np.full(len(values), -1, np.int64)
    out[ok] = values[ok]
    return out, (bad if bad.any() else None)


def _check_numpy(ports: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    if ports.dtype.kind in "iu":
        return _from_ints(ports, None)
    if ports.dtype.kind == "f":
        return _from_floats(ports.astype(np.float64, copy=False))
    return _check_items(ports.tolist())


def _check_arrow(ports: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray | None]:
    t = ports.type
    if pa.types.is_integer(t):
        unknown = np.asarray(ports.is_null().to_numpy(zero_copy_only=False), bool)
        values = np.asarray(ports.fill_null(0).to_numpy(zero_copy_only=False))
        return _from_ints(values, unknown)
    if pa.types.is_floating(t):
        return _from_floats(np.asarray(ports.cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)))
    if pa.types.is_null(t):
        return np.full(len(ports), -1, np.int64), None
    return _check_items(ports.to_pylist())


def _check_items(items: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """Python values one by one (lists, object arrays): what is not a port is a bad row."""
    values = np.full(len(items), -1, np.int64)
    bad = np.zeros(len(items), bool)
    for row, item in enumerate(items):
        if item is None or (isinstance(item, (float, np.floating)) and item != item):
            continue  # unknown
        if isinstance(item, (bool, np.bool_)) or not isinstance(item, (int, float, np.integer, np.floating)):
            bad[row] = True
        elif 0 <= item <= MAX_PORT and item == int(item):
            values[row] = int(item)
        else:
            bad[row] = True
    return values, (bad if bad.any() else None)


class _Outputs:
    """The output arrays of one batch, filled by kernel calls over row ranges."""

    def __init__(self, dc: DeviceClass, n: int, ports: Any):
        # Checked whether or not a formula reads `port`: a wrong ports list is the caller's bug either way.
        self.checked_ports = _Ports(ports, n)
        self.dc = dc
        self.kernel = dc.kernel
        self.rows_done = 0
        # Only what the layout needs is allocated: at a million rows every
        # untouched array still costs page faults on first write.
        self.ports = self.checked_ports.values if dc.program.uses_port else None
        self.err = np.empty(n, np.uint8)
        self.bits_used = np.zeros(n, np.int64) if dc.layout.dynamic else None
        self.columns, self.arrays = [], []
        for path, slot in dc.layout.outputs:
            values = np.empty(n, np.int32 if slot.storage == "str" else slot.storage)
            valid = np.empty(n, np.uint8) if slot.nullable else None
            self.arrays.append(values)
            if valid is not None:
                self.arrays.append(valid)
            self.columns.append(Column(path, slot, values, valid, dc.spec.is_hidden(path[0])))

    def run(self, data: np.ndarray, offsets: np.ndarray, in_err: np.ndarray, first: int, count: int) -> None:
        """Decode rows first .. first + count (offsets are absolute positions in data)."""
        from ..runtime.bits import uniform_stride  # numba: imported on the first decode

        if count <= 0:
            return
        last = first + count
        ports = _NO_PORTS if self.ports is None else self.ports[first:last]
        bits_used = _NO_BITS if self.bits_used is None else self.bits_used[first:last]
        arrays = [a[first:last] for a in self.arrays]
        row_offsets, row_err = offsets[first : last + 1], in_err[first:last]
        if self.checked_ports.bad is not None:  # a bad port fails its row like a bad payload
            row_err = row_err | self.checked_ports.bad[first:last].view(np.uint8)
        stride = uniform_stride(row_offsets, row_err)
        if stride >= 0:
            self.kernel.fixed(data[row_offsets[0] :], stride, count, ports, self.err[first:last], bits_used, *arrays)
        else:
            self.kernel.function(data, row_offsets, row_err, ports, self.err[first:last], bits_used, *arrays)
        self.rows_done += count

    def batch(self, buffer, include_hidden: bool):
        err = self.err
        input_errors = None
        if len(err) and err.max() == ERR_INPUT:
            input_errors = buffer.error_messages()  # a bad payload is named before a bad port
            if self.checked_ports.bad is not None:
                for row in np.flatnonzero(self.checked_ports.bad).tolist():
                    input_errors[row] = input_errors[row] or self.checked_ports.message(row)
        program = self.dc.program
        return DecodedBatch(
            class_name=self.dc.name,
            columns=self.columns,
            err=err,
            bits_used=self.bits_used,
            offsets=buffer.offsets,
            input_errors=input_errors,
            strings=program.strings,
            static_bits=None if self.dc.layout.dynamic else (program.static_bits or 0),
            include_hidden=include_hidden,
        )


def _build(spec: ClassSpec) -> DeviceClass:
    built = class_cache.load(spec)
    if built is not None:
        return DeviceClass(spec, *built)
    # start-up: the formula parser (lark) and the code generator, only for a class not built before
    from .codegen import generate
    from .lower import lower

    try:
        program = lower(spec)
    except ScriptError as err:
        raise err.located(device_class=spec.name) from None
    source, layout = generate(program)
    dc = DeviceClass(spec, program, source, layout)
    check_outputs(spec.normalized, dc.output_schema(include_hidden=True), spec.name)
    class_cache.store(spec, program, source, layout)
    return dc


def load_classes(source: Any) -> list[DeviceClass]:
    """Compile every device class in `source` (any Firefly response shape, JSON text or a path)."""
    return [_build(spec) for spec in load_specs(source)]


def compile(source: Any) -> DeviceClass:  # noqa: A001 - the library's verb, like re.compile
    """Compile exactly one device class; raise ScriptError if the script is invalid."""
    specs = load_specs(source)
    if len(specs) != 1:
        raise ScriptError(f"expected one device class, found {len(specs)}; use decoder.load_classes for several")
    return _build(specs[0])
