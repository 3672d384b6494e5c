"""A real Mosquitto broker for the test session, on a free loopback port.

Registered as a pytest plugin from conftest.py. Tests ask for the session
fixture ``mqtt_broker`` and publish with ``publish(broker, topic, payloads)``.

Where mosquitto is missing, tests that need it skip with the reason; where the
environment variable CI is set (as CI sets it) they fail instead, so CI can
never pass while silently skipping them. ``.ci/run`` installs mosquitto.

The broker binary is ``$MOSQUITTO_BIN`` if that is set (only it: pointing it at
a missing file simulates a machine without mosquitto), else ``mosquitto`` on
PATH, else /usr/sbin or /usr/local/sbin (Debian puts it in /usr/sbin, which is
not on a normal user's PATH).
"""

from __future__ import annotations

import collections
import os
import pwd
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

START_TIMEOUT = 10.0
HOST = "127.0.0.1"


def find_mosquitto() -> str | None:
    explicit = os.environ.get("MOSQUITTO_BIN")
    if explicit is not None:
        return explicit if os.path.isfile(explicit) and os.access(explicit, os.X_OK) else None
    path = os.environ.get("PATH", "")
    return shutil.which("mosquitto") or shutil.which("mosquitto", path=f"{path}:/usr/sbin:/usr/local/sbin")


def _missing(reason: str) -> None:
    """Skip on a developer's machine; fail under CI, where a skip would hide untested code."""
    if os.environ.get("CI"):  # same test as conftest's hypothesis profile: set and non-empty
        pytest.fail(
            f"{reason}; CI is set, so this is a failure, not a skip (.ci/run installs mosquitto)", pytrace=False
        )
    pytest.skip(f"{reason} (apt-get install mosquitto, or run .ci/run; set MOSQUITTO_BIN to use another binary)")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def write_config(directory: Path, port: int, **extra: object) -> Path:
    """A mosquitto.conf for one loopback listener; ``extra`` adds or overrides options (None drops one)."""
    options: dict[str, object] = {
        "listener": f"{port} {HOST}",
        "allow_anonymous": "true",
        "persistence": "false",
        # 0 = unlimited: messages published while a consumer is down are kept, not dropped at 1000.
        "max_queued_messages": 0,
        # 0 = unlimited in-flight QoS 1 messages per client (the broker default is 20).
        "max_inflight_messages": 0,
        "log_dest": f"file {directory / 'mosquitto.log'}",
        "log_type": "all",
        "connection_messages": "true",
        "log_timestamp_format": "%H:%M:%S",
        # Started as root, mosquitto would switch to user "mosquitto", which cannot write to our
        # tmp dir (mode 0700); keep the user we are. Ignored when not root.
        "user": pwd.getpwuid(os.getuid()).pw_name,
    }
    options.update(extra)
    conf = directory / "mosquitto.conf"
    conf.write_text("".join(f"{k} {v}\n" for k, v in options.items() if v is not None))
    return conf


@dataclass
class MosquittoBroker:
    host: str
    port: int
    log_path: Path
    conf_path: Path
    process: subprocess.Popen = field(repr=False)

    def url(self, topic: str = "") -> str:
        """``mqtt://127.0.0.1:PORT/<topic>``, the form ``decoder stream --mqtt`` takes."""
        return f"mqtt://{self.host}:{self.port}/{topic.lstrip('/')}"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def start_broker(directory: Path, binary: str, attempts: int = 3, **config: object) -> MosquittoBroker:
    """Start mosquitto on a free port (a new port if another process took ours first)."""
    directory.mkdir(parents=True, exist_ok=True)
    for attempt in range(attempts):
        port = free_port()
        conf = write_config(directory, port, **config)
        log_path = directory / "mosquitto.log"
        log_path.unlink(missing_ok=True)
        out = open(directory / "mosquitto.stdout", "wb")
        proc = subprocess.Popen(
            [binary, "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        broker = MosquittoBroker(HOST, port, log_path, conf, proc)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            if _accepts(HOST, port):
                return broker
            time.sleep(0.05)
        broker.stop()
        tail = broker.log_tail() + "\n" + (directory / "mosquitto.stdout").read_text(errors="replace")
        if "Address already in use" in tail and attempt + 1 < attempts:
            continue
        state = f"exited with {proc.returncode}" if proc.returncode is not None else "did not listen"
        raise RuntimeError(
            f"mosquitto ({binary} -c {conf}) {state} on {HOST}:{port} within {START_TIMEOUT:.0f} s; log tail:\n{tail}"
        )
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def mqtt_broker(tmp_path_factory):
    """One Mosquitto for the session: ``.host``, ``.port``, ``.url(topic)``, ``.log_path``."""
    binary = find_mosquitto()
    if binary is None:
        where = f"MOSQUITTO_BIN={os.environ['MOSQUITTO_BIN']!r}" if "MOSQUITTO_BIN" in os.environ else "PATH, /usr/sbin"
        _missing(f"mosquitto not found ({where})")
    broker = start_broker(tmp_path_factory.mktemp("mosquitto"), binary)
    try:
        yield broker
    finally:
        broker.stop()


def publish(
    broker: MosquittoBroker,
    topic: str,
    payloads,
    qos: int = 1,
    timeout: float = 60.0,
    client_id: str = "",
    window: int = 1000,
) -> None:
    """Publish each payload (bytes) to ``topic`` over MQTT v5 and wait until the broker has
    acknowledged every one (PUBACK for QoS 1, PUBCOMP for QoS 2)."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
    )
    # paho's default of 20 in flight would throttle; our broker takes any number (max_inflight_messages 0).
    client.max_inflight_messages_set(window)
    connected = threading.Event()
    refused: list = []
    rejected: dict = {}  # mid -> failing PUBACK reason code (e.g. 0x97 quota exceeded)

    def on_publish(client, userdata, mid, reason_code, properties):
        if reason_code.is_failure:
            rejected[mid] = reason_code

    def on_connect(client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            refused.append(reason_code)
        connected.set()

    client.on_connect = on_connect
    client.on_publish = on_publish
    client.connect(broker.host, broker.port, keepalive=30)
    client.loop_start()
    try:
        deadline = time.monotonic() + timeout
        # Publishing before CONNACK gives MQTT_ERR_NO_CONN, which wait_for_publish raises on.
        if not connected.wait(timeout) or refused:
            raise ConnectionError(f"publish: no connection to {broker.url()}: {refused or 'timeout'}")

        def settle(info) -> None:
            info.wait_for_publish(timeout=max(0.0, deadline - time.monotonic()))
            if not info.is_published():
                raise TimeoutError(
                    f"publish to {broker.url(topic)}: mid {info.mid} not acknowledged within {timeout} s (rc {info.rc})"
                )
            if info.mid in rejected:
                raise RuntimeError(
                    f"publish to {broker.url(topic)}: broker refused mid {info.mid}: {rejected.pop(info.mid)}"
                )

        # A window, not everything at once: paho keys unacknowledged messages by their 16-bit
        # mid, so the 65536th outstanding one would fail with MQTT_ERR_QUEUE_SIZE.
        pending: collections.deque = collections.deque()
        for payload in payloads:
            if len(pending) >= window:
                settle(pending.popleft())
            pending.append(client.publish(topic, payload, qos=qos))
        while pending:
            settle(pending.popleft())
    finally:
        client.disconnect()
        client.loop_stop()
