"""An MQTT source for the stream stage: QoS 1, a persistent session, acknowledgements after writing.

Helium's MQTT integration and most LoRaWAN network servers publish uplinks
to an MQTT broker. :class:`MqttSource` subscribes with QoS 1 and hands each
message on as a :class:`~decoder.stream.Message` whose position is an
:class:`MqttPosition`. Nothing is acknowledged on receipt
(``manual_ack``): the caller acknowledges a batch's positions with
:meth:`MqttSource.ack` once its sink has written the batch. A message that
was never acknowledged, because the consumer died or lost its connection,
stays with the broker and is delivered again (flagged ``redelivered``).

For the broker to keep messages while the consumer is away, the session
must outlive the connection: MQTT 5 with ``clean_start=False``, a session
expiry interval, and the same client id on every start.

Flow control. The client asks for a Receive Maximum (how many
unacknowledged messages the broker may have out to it at once), but
Mosquitto before 2.0.13 releases a whole new Receive Maximum of messages
on every acknowledgement, so the limit that holds is ours: at most
``buffer`` received messages wait for the caller, and beyond that paho's
network thread stops reading the socket until the caller takes some (TCP
holds the broker back). Packet ids are 16 bits and the broker reuses them
past 65,535 unacknowledged messages, so a caller must acknowledge before
it holds that many: :attr:`MqttSource.window` minus ``buffer``.

Acknowledgements go out from paho's network thread. Mosquitto 2.0.11 may
drop PUBACKs that are followed at once by a DISCONNECT, so :meth:`close`
first waits for the answer to a harmless UNSUBSCRIBE: the broker handles a
client's packets in order, so the acknowledgements before it have landed.

Built on paho-mqtt (the Eclipse client), imported only when a source is made.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from ..errors import InputError
from .stage import Message

__all__ = ["MqttSource", "MqttPosition", "parse_url", "redact", "MQTT_MAX_ROWS", "PASSWORD_ENV"]

DEFAULT_PORT = 1883
DEFAULT_TLS_PORT = 8883
DEFAULT_SESSION_EXPIRY = 7 * 24 * 3600  # seconds the broker keeps our queue while we are away
MAX_RECEIVE = 65535  # the largest Receive Maximum MQTT 5 allows
DEFAULT_BUFFER = 8192  # messages received but not yet taken by the caller
_BARRIER_TIMEOUT = 10.0
_SOCKET_SLACK = 1024  # messages that may sit in socket buffers
MQTT_MAX_ROWS = 18_000  # the largest batch for which holdable() stays above one batch
PASSWORD_ENV = "DECODER_MQTT_PASSWORD"  # where decoder stream takes the broker password from


@dataclass(frozen=True, slots=True)
class MqttPosition:
    """Where an MQTT message came from: its topic and packet id (unique among unacknowledged ones)."""

    topic: str
    mid: int


@dataclass(frozen=True)
class MqttUrl:
    host: str
    port: int
    topic: str
    tls: bool
    username: str | None
    password: str | None = field(default=None, repr=False)  # never shown

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}/{self.topic}"


def redact(url: str) -> str:
    """``url`` fit for a message: any password in it (``user:password@``) replaced by ``***``.

    Everything before the last ``@`` counts as user information, so a password
    holding ``/``, ``:`` or ``@`` unescaped is hidden too (a topic with an
    ``@`` in it is then partly hidden in messages, which is the safe side).
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    if "@" not in rest:
        return url
    auth, _, tail = rest.rpartition("@")
    user, colon, _ = auth.partition(":")
    return f"{scheme}{sep}{user}{':***' if colon else ''}@{tail}"


def parse_url(url: str) -> MqttUrl:
    """``mqtt[s]://[user[:password]@]host[:port]/topic/filter`` (the filter may hold ``+`` and ``#``).

    The topic is everything after the first ``/`` past the host, taken as
    it is (``#`` is not a URL fragment here); %-escapes are decoded. Error
    messages show the URL without its password (:func:`redact`).
    """
    shown = redact(url)
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ValueError(f"not an MQTT URL: {shown!r} (expected mqtt://host:port/topic/#)")
    tls = scheme.lower() in ("mqtts", "ssl")
    netloc, slash, topic = rest.partition("/")
    if "@" in topic:  # most likely the end of a password holding an unescaped /: never use it as a topic
        raise ValueError(f"{shown!r}: an @ after the host (write @ and / in a password or topic as %40 and %2F)")
    topic = unquote(topic)
    if not slash or not topic:
        raise ValueError(f"{shown!r}: no topic (expected mqtt://host:port/topic/#)")
    user = password = None
    if "@" in netloc:
        auth, _, netloc = netloc.rpartition("@")
        user, _, pw = auth.partition(":")
        user, password = unquote(user), (unquote(pw) if pw else None)
    host, port = netloc, DEFAULT_TLS_PORT if tls else DEFAULT_PORT
    if netloc.startswith("["):  # [IPv6]:port
        host, _, tail = netloc[1:].partition("]")
        if tail.startswith(":"):
            port = _port(tail[1:], shown)
    elif ":" in netloc:
        host, _, p = netloc.rpartition(":")
        port = _port(p, shown)
    if not host:
        raise ValueError(f"{shown!r}: no host")
    return MqttUrl(host, port, topic, tls, user or None, password)


def _port(text: str, url: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        # The text is not echoed: a password with an unescaped / ends up here.
        raise ValueError(f"{url!r}: bad port (a number 1-65535; escape / : @ in a password as %2F %3A %40)")
    return int(text)


def default_client_id(url: MqttUrl) -> str:
    """A client id stable across restarts for one broker and topic, so the session (and its queue) is found again."""
    digest = hashlib.sha256(f"{url.host}:{url.port}/{url.topic}".encode()).hexdigest()[:12]
    return f"decoder-stream-{digest}"


class _Closed:
    pass


_CLOSED = _Closed()


class MqttSource:
    """Subscribe to ``url`` with QoS 1; iterate the messages; :meth:`ack` them after writing.

    >>> source = MqttSource("mqtt://localhost:1883/helium/+/rx")
    >>> for batch in stage.batches(source):
    ...     sink.write(batch.records)
    ...     source.ack(batch.positions)
    >>> source.close()
    """

    def __init__(
        self,
        url: str,
        *,
        client_id: str | None = None,
        session_expiry: int = DEFAULT_SESSION_EXPIRY,
        receive_maximum: int = MAX_RECEIVE,
        buffer: int = DEFAULT_BUFFER,
        keepalive: int = 30,
        connect_timeout: float = 10.0,
        log: Callable[[str], None] | None = None,
        password: str | None = None,
    ) -> None:
        try:
            self.url = parse_url(url)
        except ValueError as err:
            raise InputError(str(err)) from None
        # An explicit password (from the environment or a file) wins over one in the URL.
        self._password = password if password is not None else self.url.password
        if not 1 <= receive_maximum <= MAX_RECEIVE:
            raise ValueError(f"receive_maximum must be 1..{MAX_RECEIVE}")
        self.client_id = client_id or default_client_id(self.url)
        self.session_expiry = int(session_expiry)
        self.window = int(receive_maximum)
        self.keepalive = keepalive
        self.connect_timeout = connect_timeout
        self.log = log or (lambda text: None)
        self.received = 0
        self.acked = 0
        self.reconnects = 0
        self.buffer = int(buffer)
        self._queue: queue.Queue = queue.Queue(maxsize=self.buffer)
        self._client: Any = None
        self._ready = threading.Event()
        self._problem: str | None = None
        self._connected_once = False
        self._closed = False
        self._barrier = threading.Event()

    # -- connection ----------------------------------------------------------
    def start(self) -> MqttSource:
        """Connect and subscribe; raise InputError when the broker cannot be reached or refuses."""
        if self._client is not None:
            return self
        import paho.mqtt.client as mqtt  # start-up: paho only once a source starts
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        if self.url.username is not None:
            client.username_pw_set(self.url.username, self._password)
        if self.url.tls:
            client.tls_set()
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        client.on_unsubscribe = lambda *args: self._barrier.set()
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry
        props.ReceiveMaximum = self.window
        self._client = client
        try:
            # clean_start=False on every connect: resume the session and get its unacknowledged messages.
            client.connect(self.url.host, self.url.port, keepalive=self.keepalive, clean_start=False, properties=props)
        except OSError as err:
            self._client = None
            raise InputError(f"cannot connect to {self.url}: {err.strerror or err}") from None
        client.loop_start()
        if not self._ready.wait(self.connect_timeout):
            self.close()
            raise InputError(f"cannot connect to {self.url}: no answer in {self.connect_timeout:g} s")
        if self._problem is not None:
            problem = self._problem
            self.close()
            raise InputError(f"{self.url}: {problem}")
        return self

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._problem = f"the broker refused the connection: {reason_code}"
            self._ready.set()
            return
        if self._connected_once:
            self.reconnects += 1
            self.log(f"reconnected to {self.url} (session {'resumed' if flags.session_present else 'new'})")
        self._connected_once = True
        client.subscribe(self.url.topic, qos=1)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        failed = [rc for rc in reason_codes if rc.is_failure]
        if failed:
            self._problem = f"the broker refused the subscription to {self.url.topic!r}: {failed[0]}"
        self._ready.set()

    def _on_message(self, client, userdata, msg) -> None:
        position = MqttPosition(msg.topic, msg.mid) if msg.qos else None
        message = Message(msg.payload, position, bool(msg.dup))
        # Waiting here stops paho reading the socket: TCP then holds the broker back.
        while not self._closed:
            try:
                self._queue.put(message, timeout=0.1)
                self.received += 1
                return
            except queue.Full:
                continue
        # Closing: dropped unacknowledged, so the broker delivers it again next time.

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        # Before a first connection a disconnect is the refusal itself, which start() reports.
        if not self._closed and self._connected_once:
            self.log(f"lost the connection to {self.url} ({reason_code}); reconnecting")

    def holdable(self, batch_rows: int) -> int:
        """How many messages a caller may hold unacknowledged (written, waiting for a file
        to complete) while it takes batches of ``batch_rows``: what stays of the 16-bit
        packet id space after our buffer, one batch being read, one queued, and slack
        for what is still in the socket."""
        return self.window - self.buffer - 2 * batch_rows - _SOCKET_SLACK

    # -- messages --------------------------------------------------------------
    def __iter__(self) -> Iterator[Message]:
        """The messages as they arrive, until :meth:`close` (connects first if needed)."""
        self.start()
        while True:
            item = self._queue.get()
            if item is _CLOSED:
                return
            yield item

    def ack(self, positions: Iterable[Any]) -> int:
        """Acknowledge the messages at ``positions`` (in arrival order, as MQTT asks); return how many."""
        client = self._client
        if client is None:
            return 0  # closed: the broker delivers them again on the next start
        count = 0
        for position in positions:
            if isinstance(position, MqttPosition):  # None: a QoS 0 message, nothing to acknowledge
                client.ack(position.mid, 1)
                count += 1
        self.acked += count
        return count

    def close(self) -> None:
        """Disconnect once the acknowledgements sent have landed; end the iteration.

        Unacknowledged messages stay with the broker for the next start.
        """
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            try:
                if client.is_connected():
                    self._barrier.clear()
                    client.unsubscribe(f"decoder/barrier/{self.client_id}")
                    if not self._barrier.wait(_BARRIER_TIMEOUT):
                        self.log("the broker did not confirm the last acknowledgements; their messages may come again")
                client.disconnect()
            finally:
                client.loop_stop()
        _drain(self._queue)
        self._queue.put(_CLOSED)

    def __enter__(self) -> MqttSource:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MqttSource({str(self.url)!r}, client_id={self.client_id!r})"


def _drain(q: queue.Queue) -> None:
    try:
        while True:
            q.get_nowait()
    except queue.Empty:
        pass
