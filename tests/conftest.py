"""Shared fixtures: one kernel cache for the whole session, the seed device class."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings

# CI runs a fixed, reproducible set of examples (hypothesis derives them from each test);
# local runs keep drawing new ones, which is where new bugs are found.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

# One cache for the session: subprocess tests then load kernels instead of compiling again.
os.environ.setdefault("DECODER_CACHE_DIR", str(Path(tempfile.gettempdir()) / "decoder-test-cache"))

ROOT = Path(__file__).resolve().parents[1]

# The session's Mosquitto broker (fixture mqtt_broker) and its publish() helper.
pytest_plugins = ["mqtt_broker"]

# GET /device_classes, exactly as printed in the Firefly API reference (seeds/001, "Show Device Classes").
SEED_DEVICE_CLASSES = json.loads("""
{
  "device_classes": [
    {
      "updated_at": "2016-04-22T12:52:16.109000",
      "script": {
        "variables": {
          "gps": {"type": "gps", "name": "gps"},
          "batteryLevel": {"type": "range", "name": "batteryLevel"},
          "battery": {"type": "hidden", "name": "battery"}
        },
        "parseElements": [
          {"type": "int", "target": "battery", "bits": "8"},
          {"type": "int", "target": "gps.latitude", "signed": true, "bits": "24"},
          {"type": "int", "target": "gps.longitude", "signed": true, "bits": "24"},
          {"type": "int", "target": "gps.altitude", "signed": true, "bits": "16"}
        ],
        "calculateElements": [
          {"target": "batteryLevel", "formula": "battery != 0 ? (battery - 1) / 253 : null"},
          {"target": "gps.latitude", "formula": "gps.latitude / (1 << 23) * 90"},
          {"target": "gps.longitude", "formula": "gps.longitude / (1 << 23) * 180"}
        ]
      },
      "name": "Test Device Class",
      "inserted_at": "2016-04-20T15:09:18.911000",
      "id": 2,
      "description": null
    }
  ]
}
""")


def sample_generator():
    """samples/generate.py as a module (it is a script, not a package), loaded once."""
    import importlib.util
    import sys

    module = sys.modules.get("sample_generate")
    if module is None:
        spec = importlib.util.spec_from_file_location("sample_generate", ROOT / "samples" / "generate.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look the module up
        spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def seed_classes() -> dict:
    return json.loads(json.dumps(SEED_DEVICE_CLASSES))


@pytest.fixture(scope="session")
def seed_class(seed_classes):
    import decoder

    return decoder.compile(seed_classes)
