"""Registry: which device class decodes which device.

Binding logic is tested with stand-in classes (name, id, ports: all the
registry looks at), so these tests need no kernel.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest
from helpers import ROOT

from decoder.errors import InputError
from decoder.registry import NO_CLASS, Registry


def fake(name: str, id: int | None, ports=None) -> SimpleNamespace:
    return SimpleNamespace(name=name, id=id, ports=tuple(ports) if ports is not None else None)


GPS = fake("Test Device Class", 2)
CLIMATE = fake("Room Climate Sensor", 7)
MULTI = fake("Multi Sensor", 12, [3, 4])
CONFIG = fake("Config Reports", 13, [5])

# Firefly GET /devices (the Firefly API v1 reference, "Show all Devices") with the device_class_id the
# field table documents; the printed sample omits it.
FIREFLY_DEVICES = {
    "devices": [
        {
            "updated_at": "2016-05-25T09:02:41.307000",
            "otaa": False,
            "eui": "00000000AABBCCDD",
            "name": "Device #1",
            "address": "A4DDB314",
            "tags": [],
            "device_class_id": 2,
        },
        {
            "updated_at": "2016-06-20T13:56:39.689000",
            "otaa": False,
            "eui": "00000000DECF02EF",
            "name": "Device #2",
            "address": "23DDB76A",
            "tags": [],
            "device_class_id": 7,
        },
    ]
}
# GET /device_classes/1/euis, as printed in the Firefly API v1 reference.
EUIS = {
    "devices": [
        {"id": 63, "eui": "000000004136AF4A", "address": "4136AF4A"},
        {"id": 304, "eui": "00000000232317D2", "address": "232317D2"},
        {"id": 81, "eui": "000000004137DF3A", "address": "4137DF3A"},
    ]
}


def registry(*classes) -> Registry:
    return Registry(classes or (GPS, CLIMATE, MULTI, CONFIG))


def test_firefly_devices_response_binds_by_device_class_id():
    reg = registry()
    assert reg.load_devices(FIREFLY_DEVICES) == 2
    assert reg.lookup("00000000AABBCCDD", 2) is GPS
    assert reg.lookup("00000000decf02ef", 1) is CLIMATE  # EUIs are case-insensitive
    assert reg.lookup("0000000000000000", 1) is None
    assert reg.reason("0000000000000000", 1) == NO_CLASS
    assert reg.address_of("00000000AABBCCDD") == "A4DDB314"


def test_single_device_response():
    reg = registry()
    reg.load_devices({"device": {"eui": "D4022191A445D748", "address": "B43320AD", "device_class_id": 7}})
    assert reg.lookup("D4022191A445D748") is CLIMATE


def test_euis_response_needs_its_class(tmp_path):
    reg = registry()
    with pytest.raises(InputError, match="euis"):
        reg.load_devices(EUIS)  # no device_class_id anywhere: say how to name the class
    assert reg.load_devices(EUIS, device_class=2) == 3
    assert reg.lookup("000000004136AF4A") is GPS


def test_euis_file_name_convention(tmp_path):
    path = tmp_path / "device_classes_7_euis.json"
    path.write_text(json.dumps(EUIS))
    reg = registry()
    reg.load_devices(path)
    assert reg.lookup("00000000232317D2") is CLIMATE
    nested = tmp_path / "device_classes" / "2" / "euis.json"
    nested.parent.mkdir(parents=True)
    nested.write_text(json.dumps({"devices": [{"id": 1, "eui": "1111111111111111"}]}))
    reg.load_devices(nested)
    assert reg.lookup("1111111111111111") is GPS


def test_map_of_classes_to_euis_responses():
    reg = registry()
    assert reg.load_devices({"7": EUIS, "Test Device Class": {"devices": [{"eui": "2222222222222222"}]}}) == 4
    assert reg.lookup("000000004137DF3A") is CLIMATE
    assert reg.lookup("2222222222222222") is GPS


def test_plain_map_ids_names_lists_and_helium_device_ids():
    reg = registry()
    reg.load_devices(
        {
            "70B3D57ED0000001": 2,
            "70B3D57ED0000002": "Room Climate Sensor",
            "00000000-0000-4000-8002-000000000003": ["Multi Sensor", "Config Reports", 2],
        }
    )
    assert reg.lookup("70B3D57ED0000001") is GPS
    assert reg.lookup("70B3D57ED0000002") is CLIMATE
    helium = "00000000-0000-4000-8002-000000000003"
    assert reg.lookup(None, 3, device_id=helium) is MULTI
    assert reg.lookup(None, 5, device_id=helium) is CONFIG
    assert reg.lookup(None, 1, device_id=helium) is GPS  # the class without ports takes the rest
    assert reg.lookup(None, None, device_id=helium) is GPS


def test_unknown_class_in_a_plain_map_is_an_input_error():
    with pytest.raises(InputError, match="unknown device class 99"):
        registry().load_devices({"70B3D57ED0000001": 99})
    with pytest.raises(InputError, match="must be a class id or name"):
        registry().load_devices({"70B3D57ED0000001": {"x": 1}})


def test_devices_naming_a_class_that_is_not_loaded_get_a_reason():
    reg = registry()
    reg.load_devices(
        {
            "devices": [
                {"eui": "3333333333333333", "device_class_id": 42},
                {"eui": "4444444444444444", "device_class_id": 2},
            ]
        }
    )
    assert reg.lookup("3333333333333333", 1) is None
    assert reg.reason("3333333333333333", 1) == "device class 42 is not loaded"
    assert reg.bound_classes == [GPS]


def test_ports_choose_among_a_devices_classes():
    reg = registry()
    reg.bind("AA", MULTI)
    reg.bind("AA", CONFIG)
    assert reg.lookup("AA", 3) is MULTI
    assert reg.lookup("AA", 5) is CONFIG
    assert reg.lookup("AA", 1) is None
    assert reg.reason("AA", 1) == "no device class for port 1"
    assert reg.reason("AA", None) == "no device class for port null"


def test_conflicting_bindings_are_refused():
    reg = registry()
    reg.bind("AA", GPS)
    with pytest.raises(InputError, match="neither lists ports"):
        reg.bind("AA", CLIMATE)
    reg.bind("AA", GPS)  # the same class again is fine
    reg.bind("BB", MULTI)
    with pytest.raises(InputError, match="both decode port 4"):
        reg.bind("BB", reg.add_class(fake("Other", 20, [4, 9])))
    assert reg.classes_for("BB") == (MULTI,)


def test_bind_all_is_the_fallback_for_unknown_devices():
    reg = registry()
    reg.bind_all(2)
    reg.bind("AA", CLIMATE)
    assert reg.lookup("ZZ") is GPS
    assert reg.lookup("AA") is CLIMATE
    assert reg.bound_classes == [GPS, CLIMATE]


def test_resolve_by_id_name_and_numeric_text():
    reg = registry()
    assert reg.resolve(7) is CLIMATE
    assert reg.resolve("7") is CLIMATE
    assert reg.resolve("Multi Sensor") is MULTI
    with pytest.raises(InputError, match="loaded: 2='Test Device Class'"):
        reg.resolve("nope")
    with pytest.raises(InputError, match="two device classes have the id 2"):
        reg.add_class(fake("Copy", 2))


def test_assign_is_vectorized_and_matches_lookup():
    reg = registry()
    reg.load_devices(FIREFLY_DEVICES)
    reg.load_devices({"helium-1": ["Multi Sensor", "Config Reports"]})
    dev_eui = pa.array(["00000000AABBCCDD", None, "00000000decf02ef", "FFFF", None, None, "00000000AABBCCDD"])
    device_id = pa.array([None, "helium-1", None, None, "helium-1", None, None])
    devaddr = pa.array([None, None, None, None, None, "23DDB76A", None])
    port = pa.array([2, 3, 1, 1, 7, 9, None], pa.int64())
    index, error = reg.assign(dev_eui, port, device_id, devaddr)
    classes = [reg.classes[i].name if i >= 0 else None for i in index]
    assert classes == [
        "Test Device Class",
        "Multi Sensor",
        "Room Climate Sensor",
        None,
        None,
        "Room Climate Sensor",
        "Test Device Class",
    ]
    assert error.to_pylist() == [None, None, None, NO_CLASS, "no device class for port 7", None, None]
    assert index.dtype == np.int32
    for k in range(len(dev_eui)):
        expected = reg.lookup(
            dev_eui[k].as_py(), port[k].as_py(), device_id=device_id[k].as_py(), devaddr=devaddr[k].as_py()
        )
        assert (expected.name if expected else None) == classes[k]


def test_fill_devaddr_from_device_records():
    reg = registry()
    reg.load_devices(FIREFLY_DEVICES)
    out = reg.fill_devaddr(pa.array(["00000000AABBCCDD", "X", None]), pa.array([None, None, "01020304"]))
    assert out.to_pylist() == ["A4DDB314", None, "01020304"]


def test_from_files_with_the_sample_classes(tmp_path):
    devices = tmp_path / "devices.json"
    devices.write_text(json.dumps({"70B3D57ED0000001": "Room Climate Sensor", "70B3D57ED0100002": 12}))
    classes = sorted(str(p) for p in (ROOT / "samples" / "classes").glob("*.json"))
    reg = Registry.from_files(classes, devices=str(devices))
    assert {dc.name for dc in reg.classes} >= {"Test Device Class", "Room Climate Sensor", "Multi Sensor"}
    assert [dc.name for dc in reg.bound_classes] == sorted(
        ["Room Climate Sensor", "Multi Sensor"], key=[dc.name for dc in reg.classes].index
    )
    assert reg.lookup("70B3D57ED0100002", 3).ports == (3, 4)
    one = Registry.from_files(str(ROOT / "samples" / "classes" / "test_device_class.json"))
    assert one.lookup("anything").name == "Test Device Class"  # one class, no devices: everything


def test_bad_devices_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        registry().load_devices(bad)
    with pytest.raises(InputError, match="cannot read devices"):
        registry().load_devices(tmp_path / "missing.json")
    with pytest.raises(InputError, match="has no eui"):
        registry().load_devices({"devices": [{"address": "01020304", "device_class_id": 2}]})
