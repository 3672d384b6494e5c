"""Shared fixtures: one kernel cache for the whole session, the seed device class."""

from __future__ import annotations

import atexit
import copy
import os
import shutil
import tempfile

import pytest
from helpers import SEED_DEVICE_CLASSES
from hypothesis import settings

import decoder

# CI runs a fixed, reproducible set of examples (hypothesis derives them from each test);
# local runs keep drawing new ones, which is where new bugs are found.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

# One kernel cache for the session, shared with its subprocesses through the environment, so
# they load kernels instead of compiling again. A fresh private directory per run (unless the
# caller names one): a fixed shared path such as /tmp/decoder-test-cache can be created first
# by another local user, and what is in it would be imported.
if not os.environ.get("DECODER_CACHE_DIR"):
    _session_cache = tempfile.mkdtemp(prefix="decoder-test-cache-")
    os.environ["DECODER_CACHE_DIR"] = _session_cache
    atexit.register(shutil.rmtree, _session_cache, True)

# The session's Mosquitto broker (fixture mqtt_broker) and its publish() helper.
pytest_plugins = ["mqtt_broker"]


@pytest.fixture(scope="session")
def seed_classes() -> dict:
    return copy.deepcopy(SEED_DEVICE_CLASSES)


@pytest.fixture(scope="session")
def seed_class(seed_classes):
    return decoder.compile(seed_classes)
