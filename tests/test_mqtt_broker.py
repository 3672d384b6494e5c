"""The test broker itself (fixture mqtt_broker) with paho-mqtt only, not the decoder package:
QoS 1 delivery, redelivery of an unacknowledged message to a persistent session, and acks
that reach the broker before a disconnect."""

from __future__ import annotations

import queue
import threading

import paho.mqtt.client as mqtt
import pytest
from mqtt_broker import publish
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

TIMEOUT = 10


class Subscriber:
    """A v5 client that puts every message on a queue; with manual_ack it acknowledges nothing itself."""

    def __init__(self, broker, client_id: str, *, manual_ack: bool = False):
        self.broker = broker
        self.messages: queue.Queue = queue.Queue()
        self.connack = queue.Queue()
        self.client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=manual_ack,
        )
        # Set before connect: a resumed session's unacknowledged messages come right after CONNACK,
        # before any SUBSCRIBE.
        self.client.on_message = lambda client, userdata, msg: self.messages.put(msg)
        self.client.on_connect = lambda client, userdata, flags, rc, props: self.connack.put((rc, flags))

    def connect(self, *, clean_start: bool, session_expiry: int = 0):
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = session_expiry
        props.ReceiveMaximum = 65535
        self.client.connect(self.broker.host, self.broker.port, keepalive=30, clean_start=clean_start, properties=props)
        self.client.loop_start()
        rc, flags = self.connack.get(timeout=TIMEOUT)
        assert not rc.is_failure, rc
        return flags

    def subscribe(self, topic: str) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *args: done.set()
        self.client.subscribe(topic, qos=1)
        assert done.wait(TIMEOUT), "no SUBACK"

    def take(self, n: int) -> list:
        return [self.messages.get(timeout=TIMEOUT) for _ in range(n)]

    def assert_quiet(self, seconds: float = 0.3) -> None:
        with pytest.raises(queue.Empty):
            extra = self.messages.get(timeout=seconds)
            pytest.fail(f"unexpected message {extra.payload!r}")

    def barrier(self) -> None:
        """Return once the broker has processed everything sent before (acks included): it
        handles a client's packets in order, so the UNSUBACK of a dummy UNSUBSCRIBE comes after."""
        done = threading.Event()
        self.client.on_unsubscribe = lambda *args: done.set()
        self.client.unsubscribe("barrier/none")
        assert done.wait(TIMEOUT), "no UNSUBACK"

    def disconnect(self, session_expiry: int | None = None) -> None:
        # Without the barrier, acks sent just before disconnect() can be lost (mosquitto 2.0.11
        # drops what it had not yet read when the socket closes), and come back as duplicates.
        self.barrier()
        props = None
        if session_expiry is not None:
            props = Properties(PacketTypes.DISCONNECT)
            props.SessionExpiryInterval = session_expiry
        gone = threading.Event()
        self.client.on_disconnect = lambda *args: gone.set()
        self.client.disconnect(properties=props)
        gone.wait(TIMEOUT)
        self.client.loop_stop()


def test_url_names_the_loopback_listener(mqtt_broker):
    assert mqtt_broker.host == "127.0.0.1"
    assert mqtt_broker.url("uplinks/#") == f"mqtt://127.0.0.1:{mqtt_broker.port}/uplinks/#"
    assert mqtt_broker.log_path.exists()


def test_publish_and_receive_qos1(mqtt_broker):
    sub = Subscriber(mqtt_broker, "test-qos1")
    sub.connect(clean_start=True)
    sub.subscribe("qos1/#")
    try:
        payloads = [b"\x00\x01", b"second", bytes(range(256))]
        publish(mqtt_broker, "qos1/dev/a", payloads)
        got = sub.take(3)
        assert [m.payload for m in got] == payloads
        assert [m.qos for m in got] == [1, 1, 1]
        assert {m.topic for m in got} == {"qos1/dev/a"}
        sub.assert_quiet()
    finally:
        sub.disconnect()


def test_unacked_message_redelivered_to_persistent_session(mqtt_broker):
    topic, client_id = "redeliver/x", "test-redeliver"
    first = Subscriber(mqtt_broker, client_id, manual_ack=True)
    assert not first.connect(clean_start=True, session_expiry=300).session_present
    first.subscribe(topic)
    publish(mqtt_broker, topic, [b"acked", b"unacked"])
    acked, unacked = first.take(2)
    assert (acked.payload, unacked.payload, acked.dup, unacked.dup) == (b"acked", b"unacked", False, False)
    first.client.ack(acked.mid, acked.qos)
    first.disconnect()  # the second message was never acknowledged

    publish(mqtt_broker, topic, [b"while away"])  # queued for the offline session

    second = Subscriber(mqtt_broker, client_id, manual_ack=True)
    assert second.connect(clean_start=False, session_expiry=300).session_present
    try:
        again, queued = second.take(2)  # no SUBSCRIBE: the session kept it
        assert (again.payload, again.dup, again.mid) == (b"unacked", True, unacked.mid)
        assert (queued.payload, queued.dup) == (b"while away", False)
        second.assert_quiet()
        for m in (again, queued):
            second.client.ack(m.mid, m.qos)
    finally:
        second.disconnect(session_expiry=0)  # end the session on the broker


def test_acks_before_a_barrier_are_not_redelivered(mqtt_broker):
    """Many acks, then the UNSUBSCRIBE barrier, then disconnect: the resumed session gets nothing again."""
    topic, client_id, n = "barrier/x", "test-barrier", 3000
    sub = Subscriber(mqtt_broker, client_id, manual_ack=True)
    sub.connect(clean_start=True, session_expiry=300)
    sub.subscribe(topic)
    publish(mqtt_broker, topic, [b"%d" % i for i in range(n)])
    got = sub.take(n)
    assert [int(m.payload) for m in got] == list(range(n))
    acker = threading.Thread(target=lambda: [sub.client.ack(m.mid, m.qos) for m in got])  # not paho's thread
    acker.start()
    acker.join()
    sub.disconnect()

    again = Subscriber(mqtt_broker, client_id, manual_ack=True)
    assert again.connect(clean_start=False, session_expiry=300).session_present
    try:
        again.assert_quiet(0.5)
    finally:
        again.disconnect(session_expiry=0)
