"""Which device class decodes which device.

A :class:`Registry` holds the compiled device classes and the bindings of
devices to them. Bindings come from:

- Firefly ``GET /devices`` responses (``{"devices": [...]}``, each device
  with ``eui``, ``address`` and ``device_class_id``), a single
  ``{"device": {...}}``, or a list of device objects;
- Firefly ``GET /device_classes/{id}/euis`` responses. These do not say
  which class they list, so the class is given one of three ways:
  ``registry.load_devices(response, device_class=2)``; a JSON object
  ``{"2": <euis response>, "Room Climate Sensor": <euis response>}`` (keys
  are class ids or names); or a file named after the URL it came from,
  ``device_classes_2_euis.json`` or ``device_classes/2/euis.json``. On the
  command line ``--devices 2=FILE`` names the class explicitly;
- a plain JSON map ``{key: class}``: the key is a DevEUI, or a Helium device
  id (whose device events carry no EUI); the class is an id, a name, or a
  list of them for a device with one class per port;
- one class for everything (:meth:`Registry.bind_all`, ``--class``).

A class may also be a built-in format named anywhere a class name goes
(``"cayenne-lpp"``, see :mod:`decoder.formats`): it is added to the registry
when first named, with no classes file.

Choosing the class of a packet: the device's own bindings are used when it
has any (looked up by DevEUI, then by Helium device id, then by device
address), otherwise the classes bound to everything. Among those, a class
whose ``ports`` lists the packet's port wins; otherwise the one class that
lists no ports. Two classes of one device that could decode the same port
are refused when they are bound (:class:`~decoder.errors.InputError`).

A packet without a class is kept; its error is ``no device class`` (device
unknown), ``no device class for port N`` (device known, no class for that
port) or ``device class N is not loaded`` (the device names a class that is
not in the classes file).

Nothing here imports numba: classes arrive compiled (or are compiled by
:func:`decoder.load_classes` on demand), and :mod:`decoder.formats` is only
a table of names until a built-in format is named.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .arrays import distinct_codes
from .compiler import load_classes
from .errors import InputError
from .formats import BUILTIN_NAMES, builtin, is_builtin
from .json_source import is_path, read_json_source

__all__ = ["Registry", "NO_CLASS"]

NO_CLASS = "no device class"

# device_classes_2_euis.json, device_classes-2-euis.json, device_classes/2/euis.json
_EUIS_NAME = re.compile(r"device_classes[/_\-.](\d+)[/_\-.]euis(?:\.[A-Za-z0-9]+)*$")
_EUI_RE = re.compile(r"^[0-9A-Fa-f]{16}$")
_NULL_PORT = 256  # port code for "port unknown"


def _norm_key(value: Any) -> str:
    return str(value).strip().upper()


def _class_label(ref: Any) -> str:
    if isinstance(ref, int) or (isinstance(ref, str) and ref.strip().isdigit()):
        return str(ref).strip()
    return repr(ref)


class _Binding:
    """The classes one device (or everything) is bound to."""

    __slots__ = ("classes", "missing")

    def __init__(self) -> None:
        self.classes: list[int] = []  # indices into Registry.classes
        self.missing: list[Any] = []  # class references that are not loaded

    def key(self) -> tuple:
        return (tuple(self.classes), tuple(map(str, self.missing)))


class Registry:
    """Device classes plus the devices bound to them.

    >>> reg = Registry(decoder.load_classes("samples/classes/test_device_class.json"))
    >>> reg.bind_all("Test Device Class")          # one class for everything
    >>> reg = Registry.from_files("classes.json", devices="devices.json")
    """

    def __init__(self, classes: Iterable[Any] = (), *, default: Any = None) -> None:
        self.classes: list[Any] = []
        self._by_id: dict[int, int] = {}
        self._by_name: dict[str, list[int]] = {}
        self._devices: dict[str, _Binding] = {}  # DevEUI (upper) or device id -> binding
        self._addresses: dict[str, str] = {}  # device address (upper) -> DevEUI
        self._eui_address: dict[str, str] = {}  # DevEUI -> device address as given
        self._default = _Binding()
        self._cache: tuple | None = None
        self.version = 0  # bumped on every change; an Engine checks it
        for dc in classes:
            self.add_class(dc)
        if default is not None:
            for ref in default if isinstance(default, (list, tuple)) else [default]:
                self.bind_all(ref)

    # -- construction --------------------------------------------------------
    @classmethod
    def from_files(
        cls,
        classes: Any,
        devices: Any = None,
        default: Any = None,
    ) -> Registry:
        """Build a registry from class files and device files.

        ``classes``: a path or parsed JSON of any Firefly device-class shape,
        or a list of those. ``devices``: a path, parsed JSON, ``(class,
        source)`` pair (an euis response of that class), or a list of those.
        ``default``: a class id or name (or a list) bound to every device.
        With no ``devices`` and no ``default`` and exactly one class, that
        class decodes everything.
        """
        reg = cls()
        sources = classes if isinstance(classes, list) and classes and _looks_like_sources(classes) else [classes]
        for src in sources:
            reg.add_classes(src)
        if devices is not None:
            for src in devices if isinstance(devices, list) and _looks_like_sources(devices) else [devices]:
                if isinstance(src, tuple):
                    reg.load_devices(src[1], device_class=src[0])
                else:
                    reg.load_devices(src)
        if default is not None:
            for ref in default if isinstance(default, (list, tuple)) else [default]:
                reg.bind_all(ref)
        if devices is None and default is None and len(reg.classes) == 1:
            reg.bind_all(reg.classes[0])
        return reg

    def add_classes(self, source: Any) -> list[Any]:
        """Compile and add every class in ``source`` (path or parsed JSON)."""
        added = [self.add_class(dc) for dc in load_classes(source)]
        return added

    def add_class(self, dc: Any) -> Any:
        """Add a compiled device class (``decoder.compile(...)``)."""
        for other in self.classes:
            if other is dc:
                return dc
        if dc.id is not None and dc.id in self._by_id:
            other = self.classes[self._by_id[dc.id]]
            raise InputError(f"two device classes have the id {dc.id}: {other.name!r} and {dc.name!r}")
        if dc.name in self._by_name:
            raise InputError(f"two device classes are named {dc.name!r}")
        idx = len(self.classes)
        self.classes.append(dc)
        if dc.id is not None:
            self._by_id[dc.id] = idx
        self._by_name.setdefault(dc.name, []).append(idx)
        self._changed()
        return dc

    def _changed(self) -> None:
        self._cache = None
        self.version += 1

    # -- lookup of classes -----------------------------------------------------
    def _index(self, ref: Any, *, required: bool = True) -> int | None:
        if not isinstance(ref, (int, str)) or isinstance(ref, bool):
            for i, dc in enumerate(self.classes):
                if dc is ref:
                    return i
            raise InputError(f"not a device class id, name or loaded class: {ref!r}")
        if isinstance(ref, int):
            if ref in self._by_id:
                return self._by_id[ref]
        else:
            text = ref.strip()
            if text.lstrip("-").isdigit() and int(text) in self._by_id:
                return self._by_id[int(text)]
            if text in self._by_name:
                return self._by_name[text][0]
            if is_builtin(text):  # "cayenne-lpp": loaded on first mention
                self.add_class(builtin(text))
                return self._by_name[builtin(text).name][0]
        if required:
            names = (
                ", ".join(f"{dc.id}={dc.name!r}" if dc.id is not None else repr(dc.name) for dc in self.classes)
                or "none"
            )
            raise InputError(
                f"unknown device class {_class_label(ref)} (loaded: {names}; built in: {', '.join(BUILTIN_NAMES)})"
            )
        return None

    def resolve(self, ref: Any) -> Any:
        """The loaded class with this id or name (InputError if none)."""
        return self.classes[self._index(ref)]

    # -- bindings ----------------------------------------------------------------
    def bind(self, device: str, device_class: Any, *, address: str | None = None, strict: bool = True) -> None:
        """Bind a device (DevEUI or Helium device id) to a class.

        ``strict=False`` records a class that is not loaded instead of
        raising, so its packets get the error ``device class N is not
        loaded`` (used for Firefly ``/devices`` responses, which may name
        classes that were not exported).
        """
        key = _norm_key(device)
        if not key:
            raise InputError("a device key (DevEUI or device id) is empty")
        binding = self._devices.setdefault(key, _Binding())
        self._add(binding, device_class, f"device {device}", strict)
        if address:
            self._addresses.setdefault(_norm_key(address), key)
            self._eui_address.setdefault(key, str(address))
        self._changed()

    def bind_all(self, device_class: Any) -> None:
        """Bind every device without bindings of its own to this class."""
        self._add(self._default, device_class, "every device", True)
        self._changed()

    def _add(self, binding: _Binding, ref: Any, who: str, strict: bool) -> None:
        idx = self._index(ref, required=strict)
        if idx is None:
            if str(ref) not in map(str, binding.missing):
                binding.missing.append(ref)
            return
        if idx in binding.classes:
            return
        new = self.classes[idx]
        for other_idx in binding.classes:
            other = self.classes[other_idx]
            if new.ports is None and other.ports is None:
                raise InputError(
                    f"{who} is bound to {other.name!r} and {new.name!r}, and neither lists ports: "
                    'give one of them a "ports" list'
                )
            if new.ports is not None and other.ports is not None:
                common = sorted(set(new.ports) & set(other.ports))
                if common:
                    raise InputError(
                        f"{who} is bound to {other.name!r} and {new.name!r}, which both decode "
                        f"port {', '.join(map(str, common))}"
                    )
        binding.classes.append(idx)

    def load_devices(self, source: Any, *, device_class: Any = None) -> int:
        """Add bindings from a device file or parsed JSON; returns the number bound.

        Accepted: a Firefly ``/devices`` response, ``{"device": {...}}``, a
        list of devices, an euis response (``device_class`` given, or named
        ``device_classes_<id>_euis.json``), a map ``{class: euis response}``
        or a plain map ``{dev_eui or device id: class or [classes]}``.
        """
        where = "devices"
        if is_path(source):
            path = Path(source)
            where = str(path)
            if device_class is None:
                m = _EUIS_NAME.search(path.as_posix())
                if m:
                    device_class = int(m.group(1))
        doc = read_json_source(source, "devices", InputError)
        return self._load_doc(doc, device_class, where)

    def _load_doc(self, doc: Any, device_class: Any, where: str) -> int:
        if isinstance(doc, dict) and "devices" in doc and isinstance(doc["devices"], list):
            return self._load_device_list(doc["devices"], device_class, where)
        if isinstance(doc, dict) and isinstance(doc.get("device"), dict):
            return self._load_device_list([doc["device"]], device_class, where)
        if isinstance(doc, list):
            if all(isinstance(d, dict) and ("devices" in d or "device" in d) for d in doc):
                return sum(self._load_doc(d, device_class, where) for d in doc)
            return self._load_device_list(doc, device_class, where)
        if isinstance(doc, dict):
            if not doc:
                return 0
            values = list(doc.values())
            if all(isinstance(v, (dict, list)) and _is_device_collection(v) for v in values):
                # {class id or name: euis response}
                if device_class is not None:
                    raise InputError(f"{where}: a map of classes to euis responses cannot also name a class")
                return sum(self._load_doc(v, key, f"{where}[{key!r}]") for key, v in doc.items())
            count = 0
            for key, value in doc.items():
                refs = value if isinstance(value, list) else [value]
                if not refs or not all(isinstance(r, (int, str)) and not isinstance(r, bool) for r in refs):
                    raise InputError(
                        f"{where}: the value of {key!r} must be a class id or name (or a list of them), got {value!r}"
                    )
                for ref in refs:
                    self.bind(key, ref)
                count += 1
            return count
        raise InputError(f"{where}: not a devices response or a {{dev_eui: class}} map")

    def _load_device_list(self, devices: list, device_class: Any, where: str) -> int:
        count = 0
        unclassed = 0
        for pos, dev in enumerate(devices):
            if not isinstance(dev, dict):
                raise InputError(f"{where}: device #{pos} is a {type(dev).__name__}, not an object")
            eui = dev.get("eui") or dev.get("dev_eui") or dev.get("device_eui")
            if not eui:
                raise InputError(f"{where}: device #{pos} has no eui")
            ref = device_class if device_class is not None else dev.get("device_class_id")
            address = dev.get("address") or dev.get("devaddr")
            if ref is None:
                unclassed += 1
                if address:
                    key = _norm_key(eui)
                    self._addresses.setdefault(_norm_key(address), key)
                    self._eui_address.setdefault(key, str(address))
                continue
            # Explicit classes (euis of class N) must exist; a /devices response may
            # name classes that were not exported: those packets get an error instead.
            self.bind(eui, ref, address=address, strict=device_class is not None)
            count += 1
        if devices and count == 0 and unclassed:
            raise InputError(
                f"{where}: no device has a device_class_id. If this is a /device_classes/{{id}}/euis "
                "response, name the class: --devices ID=FILE, or call the file device_classes_ID_euis.json"
            )
        self._changed()
        return count

    # -- queries ----------------------------------------------------------------
    @property
    def bound_classes(self) -> list[Any]:
        """The classes any device (or everything) is bound to, in load order."""
        used = set(self._default.classes)
        for b in self._devices.values():
            used.update(b.classes)
        return [dc for i, dc in enumerate(self.classes) if i in used]

    @property
    def device_count(self) -> int:
        return len(self._devices)

    def address_of(self, dev_eui: str) -> str | None:
        return self._eui_address.get(_norm_key(dev_eui))

    def classes_for(self, device: str | None) -> tuple[Any, ...]:
        binding = self._binding(device)
        return tuple(self.classes[i] for i in binding.classes)

    def _binding(self, device: str | None, device_id: str | None = None, devaddr: str | None = None) -> _Binding:
        for key in (device, device_id):
            if key is not None and _norm_key(key) in self._devices:
                return self._devices[_norm_key(key)]
        if devaddr is not None:
            eui = self._addresses.get(_norm_key(devaddr))
            if eui is not None and eui in self._devices:
                return self._devices[eui]
        return self._default

    def lookup(
        self,
        dev_eui: str | None,
        port: int | None = None,
        *,
        device_id: str | None = None,
        devaddr: str | None = None,
    ) -> Any | None:
        """The class that decodes this packet, or None."""
        idx, _ = self._choose(self._binding(dev_eui, device_id, devaddr), port)
        return None if idx < 0 else self.classes[idx]

    def reason(
        self,
        dev_eui: str | None,
        port: int | None = None,
        *,
        device_id: str | None = None,
        devaddr: str | None = None,
    ) -> str | None:
        """Why this packet has no class (None when it has one)."""
        return self._choose(self._binding(dev_eui, device_id, devaddr), port)[1]

    def _choose(self, binding: _Binding, port: int | None) -> tuple[int, str | None]:
        catch_all = -1
        for idx in binding.classes:
            ports = self.classes[idx].ports
            if ports is None:
                catch_all = idx
            elif port is not None and port in ports:
                return idx, None
        if catch_all >= 0:
            return catch_all, None
        if binding.missing:
            refs = ", ".join(_class_label(r) for r in binding.missing)
            return -1, f"device class {refs} is not loaded"
        if not binding.classes:
            return -1, NO_CLASS
        return -1, f"{NO_CLASS} for port {'null' if port is None else port}"

    # -- vectorized assignment (used by the Engine) ---------------------------------
    def _tables(self) -> tuple:
        if self._cache is None:
            bindings: list[_Binding] = [self._default]
            seen: dict[tuple, int] = {self._default.key(): 0}
            keys, codes = [], []
            for key, b in self._devices.items():
                code = seen.setdefault(b.key(), len(bindings))
                if code == len(bindings):
                    bindings.append(b)
                keys.append(key)
                codes.append(code)
            addr_keys, addr_codes = [], []
            for addr, eui in self._addresses.items():
                if eui in self._devices:
                    addr_keys.append(addr)
                    addr_codes.append(seen[self._devices[eui].key()])
            self._cache = (
                bindings,
                pa.array(keys, pa.string()),
                np.asarray(codes, np.int64),
                pa.array(addr_keys, pa.string()),
                np.asarray(addr_codes, np.int64),
                pa.array(list(self._eui_address), pa.string()),
                pa.array(list(self._eui_address.values()), pa.string()),
            )
        return self._cache

    def assign(
        self,
        dev_eui: pa.Array | pa.ChunkedArray,
        port: pa.Array | pa.ChunkedArray,
        device_id: pa.Array | pa.ChunkedArray | None = None,
        devaddr: pa.Array | pa.ChunkedArray | None = None,
    ) -> tuple[np.ndarray, pa.Array]:
        """Class of every packet, vectorized.

        Returns ``(index, error)``: ``index`` is an int32 numpy array of
        positions in :attr:`classes` (-1 where there is none) and ``error``
        a string array, null where a class was found, else the reason.
        Python work is per distinct (binding, port) pair, not per row.
        """
        bindings, keys, codes, addr_keys, addr_codes, _, _ = self._tables()
        n = len(dev_eui)
        code = np.zeros(n, np.int64)  # 0: the default binding
        found = np.zeros(n, bool)
        lookups = [(dev_eui, keys, codes), (device_id, keys, codes), (devaddr, addr_keys, addr_codes)]
        for column, value_set, value_codes in lookups:
            if column is None or not len(value_set) or found.all():
                continue
            pos = pc.index_in(pc.utf8_upper(pc.utf8_trim_whitespace(column)), value_set=value_set)
            pos_np = np.asarray(pc.fill_null(pos, -1).to_numpy(zero_copy_only=False), np.int64)
            take = (pos_np >= 0) & ~found
            code[take] = value_codes[pos_np[take]]
            found |= take
        port_np = pc.fill_null(pc.cast(port, pa.int64()), _NULL_PORT).to_numpy(zero_copy_only=False)
        port_np = np.where((port_np >= 0) & (port_np < _NULL_PORT), port_np, _NULL_PORT).astype(np.int64)
        pair = code * (_NULL_PORT + 1) + port_np
        uniq, inverse = distinct_codes(pair)
        out_idx = np.empty(len(uniq), np.int32)
        reasons: list[str | None] = []
        for u, p in enumerate(uniq.tolist()):
            b, pt = divmod(p, _NULL_PORT + 1)
            idx, why = self._choose(bindings[b], None if pt == _NULL_PORT else pt)
            out_idx[u] = idx
            reasons.append(why)
        index = out_idx[inverse] if n else np.empty(0, np.int32)
        if all(r is None for r in reasons):
            error = pa.nulls(n, pa.string())
        else:
            error = pc.take(pa.array(reasons, pa.string()), pa.array(inverse, pa.int64()))
        return index, error

    def fill_devaddr(self, dev_eui: pa.Array | pa.ChunkedArray, devaddr: pa.Array | pa.ChunkedArray) -> pa.Array:
        """``devaddr`` with nulls filled from the devices' addresses, where known."""
        *_, euis, addrs = self._tables()
        if not len(euis) or devaddr.null_count == 0:
            return devaddr
        pos = pc.index_in(pc.utf8_upper(pc.utf8_trim_whitespace(dev_eui)), value_set=euis)
        known = pc.take(addrs, pos)
        return pc.coalesce(devaddr, known)

    def __repr__(self) -> str:
        names = ", ".join(repr(dc.name) for dc in self.classes)
        return f"Registry(classes=[{names}], devices={len(self._devices)})"


def _is_device_collection(v: Any) -> bool:
    if isinstance(v, dict):
        return isinstance(v.get("devices"), list) or isinstance(v.get("device"), dict)
    return isinstance(v, list) and all(isinstance(d, dict) and ("eui" in d or "devices" in d) for d in v)


def _looks_like_sources(items: Sequence[Any]) -> bool:
    """A list of sources (paths, pairs) rather than one parsed JSON list."""
    return all(isinstance(x, (str, os.PathLike, tuple)) for x in items)
