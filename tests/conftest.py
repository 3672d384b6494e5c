"""Shared fixtures: one kernel cache for the whole session, the seed device class."""

from __future__ import annotations

import copy
import os
import tempfile
from pathlib import Path

import pytest
from helpers import SEED_DEVICE_CLASSES
from hypothesis import settings

import decoder

# CI runs a fixed, reproducible set of examples (hypothesis derives them from each test);
# local runs keep drawing new ones, which is where new bugs are found.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

# One cache for the session: subprocess tests then load kernels instead of compiling again.
os.environ.setdefault("DECODER_CACHE_DIR", str(Path(tempfile.gettempdir()) / "decoder-test-cache"))

# The session's Mosquitto broker (fixture mqtt_broker) and its publish() helper.
pytest_plugins = ["mqtt_broker"]


@pytest.fixture(scope="session")
def seed_classes() -> dict:
    return copy.deepcopy(SEED_DEVICE_CLASSES)


@pytest.fixture(scope="session")
def seed_class(seed_classes):
    return decoder.compile(seed_classes)
