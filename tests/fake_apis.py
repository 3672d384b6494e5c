"""Fake Firefly and Helium APIs on 127.0.0.1, for the pull tests: real HTTP servers in a thread.

They behave as the API references document (and where the references are
silent, as configured, so the tests can try each reading):

Firefly (``FakeFirefly``): the key in the ``auth`` query parameter (401
otherwise); ``GET /device_classes``, ``/device_classes/{id}/euis``,
``/devices``, ``/packets`` and ``/devices/eui/{eui}/packets`` with
``direction``, ``limit_to_last`` (default 1, or 10 with ``received_after``;
at most 100), ``offset``, ``received_after`` and ``more``; every response
carries ``x-ratelimit-limit`` / ``-remaining`` / ``-reset`` (milliseconds)
and a request beyond the limit gets a 429.

Firefly subscription queues of type ``http_pull`` (``FakeFirefly.add_queue``):
``GET /subscriptions/http_pull/{uid}`` hands out the queue's oldest events,
at most ``limit`` (all without it), and removes them: nothing acknowledges
or returns an event again. Events no poll fetched within 2 hours (on the
fixture's clock) are dropped. ``encoding=json`` answers a JSON array of the
events (as objects, or with ``queue_items="texts"`` as the JSON text a
template renders); another encoding (or ``queue_items="lines"``, a server
that does not honour ``encoding``) joins them with ``separator`` (default a
newline). A poll that fails (a fault) removes nothing. What each poll
handed out is kept in :attr:`FakeFirefly.handed_out`.

Helium (``FakeHelium``): the key in the ``key`` header; ``GET /devices``,
``/devices/:id/events`` (the last 100, newest first) and
``?sub_category=uplink_integration_req`` (the last 10 of those).

Both record every request (:attr:`FakeApi.requests`: the time on the
fixture's clock, path, query, status and the rate-limit headers sent) and
take faults by request number (:attr:`FakeApi.faults`): ``"500"``,
``"429"``, ``"drop"`` (close without answering), ``"truncate"`` (half a
body), ``"garbage"`` (200, not JSON), ``"401-echo"`` (401 whose body echoes
the request, key included), or ``("slow", seconds)``. :attr:`FakeApi.before`
runs before each answer and :attr:`FakeApi.after` after it (to add packets
between page requests).

Time: a :class:`FakeClock` shared with the client (``Timing``) makes every
wait instant and exactly measurable; without one, real monotonic time.
"""

from __future__ import annotations

import base64
import collections
import copy
import gzip
import json
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

from helpers import ROOT, sample_generator

FIREFLY_KEY = "ffk-9c1e5a77d04b4f2e8a1b3c5d7e9f0a12"
HELIUM_KEY = "hlm/K3y+with=special&chars%20"  # a key that must survive URL encoding and redaction alike

# The two packets of the reference's "List Packets" sample response, as printed there.
REFERENCE_PACKETS = json.loads("""
[
  {"ack": false, "bandwidth": 125, "codr": "4/6", "device_eui": "2564927382738492", "fopts": "",
   "fcnt": 12882, "freq": 866.349812,
   "gwrx": [{"tmst": 3977700196, "time": "2016-06-22T07:35:34.774224Z", "rssi": 2, "lsnr": 8.5,
             "gweui": "0000024B080E006D"}],
   "modu": "LORA", "mtype": "unconfirmed_data_up", "payload_encrypted": false,
   "payload": "415141414277673D", "port": 2, "received_at": "2016-06-22T09:35:35", "size": 28,
   "spreading_factor": 7, "uid": "8a569133-ba44-4d7e-5555-af62faf9f722"},
  {"ack": true, "bandwidth": 100, "codr": "4/6", "device_eui": "2564927382738492", "fopts": "",
   "fcnt": 12883, "freq": 866.347719,
   "gwrx": [{"tmst": 1468815219, "time": "2016-07-18T04:13:39.573216Z", "rssi": -35, "lsnr": 5.1,
             "gweui": "0102030205060708"}],
   "modu": "LORA", "mtype": "confirmed_data_up", "payload_encrypted": false,
   "payload": "415141414277673A", "port": 2, "received_at": "2016-06-22T09:39:16", "size": 28,
   "spreading_factor": 7, "uid": "8a569133-7752-4d7e-810d-af62faf9f722"}
]
""")

# The sample classes (ids 2, 7, 12) and one whose formula does not compile (its packets get an error).
CLASS_FILES = ["test_device_class.json", "room_climate_sensor.json", "multi_sensor.json"]
BROKEN_CLASS = {
    "id": 99,
    "name": "Broken Class",
    "script": {
        "variables": {"x": {"type": "range", "name": "x"}},
        "parseElements": [{"type": "int", "target": "x", "bits": "8"}],
        "calculateElements": [{"target": "x", "formula": "x +* 2"}],
    },
}
GROUPS = ["Test Device Class:9:2", "Room Climate Sensor:6:1", "Multi Sensor:10:1"]


class FakeClock:
    """Monotonic seconds that only move when someone sleeps: the client and the fixture share it."""

    def __init__(self, start: float = 10_000.0) -> None:
        self.now = start
        self.lock = threading.Lock()
        self.sleeps: list[float] = []

    def clock(self) -> float:
        with self.lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.now += max(0.0, seconds)
            self.sleeps.append(seconds)

    def timing(self, random: Callable[[], float] = lambda: 0.5, wall: datetime | None = None) -> Any:
        """The client's Timing on this clock; ``wall``: the UTC time at the start (default: the real one)."""
        from decoder.sources.http import Timing

        if wall is None:
            return Timing(clock=self.clock, sleep=self.sleep, random=random)
        start = self.clock()
        return Timing(
            clock=self.clock,
            sleep=self.sleep,
            random=random,
            wall=lambda: wall + timedelta(seconds=self.clock() - start),
        )


@dataclass
class Seen:
    """One request as the fixture got it."""

    n: int
    at: float
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    status: int = 0
    remaining: int | None = None
    reset_ms: int | None = None
    fault: Any = None


@dataclass
class RateLimit:
    limit: int = 50
    window_ms: int = 10_000
    started: float | None = None
    used: int = 0


class FakeApi:
    """The server part both fakes share: requests, faults, rate limit, and the HTTP plumbing."""

    prefix = "/api/v1"

    def __init__(self, key: str, *, clock: FakeClock | None = None, rate: RateLimit | None = None) -> None:
        self.key = key
        self.clock = clock
        self.rate = rate
        self.requests: list[Seen] = []
        self.faults: dict[int, Any] = {}
        self.before: Callable[[Seen], None] | None = None
        self.after: Callable[[Seen], None] | None = None  # runs once the answer is sent
        self.violations: list[Seen] = []  # requests sent while the limit said 0 were left
        self.lock = threading.RLock()
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def now(self) -> float:
        return self.clock.clock() if self.clock is not None else time.monotonic()

    def start(self) -> FakeApi:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                api._handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}{self.prefix}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- one request ----------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        with self.lock:
            seen = Seen(
                len(self.requests) + 1, self.now(), parts.path, query, {k.lower(): v for k, v in h.headers.items()}
            )
            self.requests.append(seen)
            fault = self.faults.get(seen.n)
            seen.fault = fault
            before = self.before
        if before is not None:
            before(seen)  # outside the lock: a hook may wait, or add packets
        if isinstance(fault, tuple) and fault[0] == "slow":
            time.sleep(fault[1])  # real time: the client's read timeout is what is tested
        if fault == "drop":
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)
            return
        with self.lock:
            status, body = self._answer(seen, fault, h)
            headers = self._rate_headers(seen, status)
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            h.send_response(status)
            h.send_header("content-type", "application/json" if not isinstance(body, bytes) else "text/html")
            for k, v in headers.items():
                h.send_header(k, v)
            h.send_header("content-length", str(len(data)))
            h.end_headers()
            if fault == "truncate":
                h.wfile.write(data[: len(data) // 2])
                h.wfile.flush()
                h.close_connection = True
                h.connection.shutdown(socket.SHUT_RDWR)
                return
            h.wfile.write(data)
            h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            return  # the client gave up (a timeout): nothing to answer
        if self.after is not None:
            self.after(seen)

    def _answer(self, seen: Seen, fault: Any, h: BaseHTTPRequestHandler) -> tuple[int, Any]:
        if fault == "500":
            return 500, b"<html><body>Internal Server Error</body></html>"
        if fault == "429":
            return 429, {"error": "rate limited"}
        if fault == "garbage":
            return 200, b"<html>maintenance</html>"
        if fault == "401-echo":
            return 401, f"invalid key for {h.path} key={h.headers.get('key')}".encode()
        if not self._authorized(seen):
            return 401, {"error": "invalid api key"}
        if self.rate is not None and not self.free(seen) and self._exhausted(seen):
            self.violations.append(seen)
            return 429, {"error": "rate limited"}
        if not seen.path.startswith(self.prefix):
            return 404, {"error": "not found"}
        return self.route(seen.path[len(self.prefix) :], seen.query)

    def _exhausted(self, seen: Seen) -> bool:
        rate = self.rate
        now = seen.at
        if rate.started is None or now >= rate.started + rate.window_ms / 1000:
            rate.started, rate.used = now, 0
        if rate.used >= rate.limit:
            return True
        rate.used += 1
        return False

    def _rate_headers(self, seen: Seen, status: int) -> dict[str, str]:
        rate = self.rate
        if rate is None:
            if seen.fault == "429":
                seen.status = status
                return {}
            seen.status = status
            return {}
        if rate.started is None:
            rate.started = seen.at
        left_ms = max(0, math.ceil((rate.started + rate.window_ms / 1000 - seen.at) * 1000))
        remaining = max(0, rate.limit - rate.used)
        seen.status, seen.remaining, seen.reset_ms = status, remaining, left_ms
        return {
            "x-ratelimit-limit": f"{rate.limit}/{rate.window_ms}ms",
            "x-ratelimit-remaining": str(remaining),
            "x-ratelimit-reset": str(left_ms),
        }

    # -- for the subclasses ------------------------------------------------------------------
    def _authorized(self, seen: Seen) -> bool:
        raise NotImplementedError

    def route(self, path: str, query: dict[str, str]) -> tuple[int, Any]:
        raise NotImplementedError

    def free(self, seen: Seen) -> bool:
        """A request that does not count against the rate limit."""
        return False

    def requests_to(self, suffix: str) -> list[Seen]:
        return [r for r in self.requests if r.path.endswith(suffix)]


# -- Firefly --------------------------------------------------------------------------------------


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S")


class FakeFirefly(FakeApi):
    """Firefly API v1 (see the module docstring). ``inclusive``: ``received_after`` includes its instant;
    ``asc_offset``: ``"oldest"`` (offset skips the first packets in the returned order) or ``"ignore"``;
    ``honor_direction``: False answers newest first whatever is asked."""

    def __init__(
        self,
        *,
        key: str = FIREFLY_KEY,
        clock: FakeClock | None = None,
        rate: RateLimit | None = None,
        inclusive: bool = False,
        asc_offset: str = "oldest",
        honor_direction: bool = True,
    ) -> None:
        super().__init__(key, clock=clock, rate=rate)
        self.inclusive = inclusive
        self.asc_offset = asc_offset
        self.honor_direction = honor_direction
        self.packets: list[dict] = []
        self.queues: dict[str, collections.deque] = {}  # uid -> (time enqueued, event), oldest first
        self.handed_out: dict[str, list[list[dict]]] = {}  # uid -> the events of each poll
        self.queue_items = "objects"
        self.classes: list[dict] = []
        self.bindings: dict[int, list[dict]] = {}  # class id -> [{"id", "eui", "address"}]

    def _authorized(self, seen: Seen) -> bool:
        return seen.query.get("auth") == self.key

    def add_packets(self, packets: list[dict]) -> None:
        """Store packets (``received_at`` as printed; the store is kept in received order, stable)."""
        with self.lock:
            self.packets.extend(copy.deepcopy(packets))
            self.packets.sort(key=lambda p: p["received_at"])

    def free(self, seen: Seen) -> bool:
        return seen.path == self.prefix + "/rate_limit"  # "will not count against the rate limits"

    # -- subscription queues ------------------------------------------------------------------
    QUEUE_LIFETIME = 2 * 3600.0  # "events will only be kept for 2 hours"

    def add_queue(self, uid: str) -> None:
        with self.lock:
            self.queues.setdefault(uid, collections.deque())
            self.handed_out.setdefault(uid, [])

    def enqueue(self, uid: str, events: list[dict]) -> None:
        """Events the queue's bindings produced now (on the fixture's clock)."""
        with self.lock:
            now = self.now()
            self.queues[uid].extend((now, copy.deepcopy(e)) for e in events)

    def all_handed_out(self, uid: str) -> list[dict]:
        return [e for poll in self.handed_out[uid] for e in poll]

    def _poll_queue(self, uid: str, q: dict[str, str]) -> tuple[int, Any]:
        queue = self.queues.get(uid)
        if queue is None:
            return 404, {"error": "queue not found"}
        while queue and queue[0][0] < self.now() - self.QUEUE_LIFETIME:
            queue.popleft()  # not fetched within 2 hours: gone
        limit = int(q["limit"]) if "limit" in q else len(queue)
        events = [queue.popleft()[1] for _ in range(min(limit, len(queue)))]
        self.handed_out[uid].append(events)
        if q.get("encoding", "json") == "json" and self.queue_items != "lines":
            if self.queue_items == "texts":
                return 200, [json.dumps(e) for e in events]
            return 200, events
        return 200, q.get("separator", "\n").join(json.dumps(e) for e in events).encode()

    def route(self, path: str, q: dict[str, str]) -> tuple[int, Any]:
        if path.startswith("/subscriptions/http_pull/"):
            return self._poll_queue(path.rsplit("/", 1)[1], q)
        if path == "/rate_limit":
            rate = self.rate or RateLimit()
            left = (
                0
                if rate.started is None
                else max(0, math.ceil((rate.started + rate.window_ms / 1000 - self.now()) * 1000))
            )
            used = rate.used if left > 0 else 0
            return 200, {
                "rate_limit": {
                    "remaining": rate.limit - used,
                    "reset": left,
                    "limit": f"{rate.limit}/{rate.window_ms}ms",
                },
                "valid_for_key": self.key,
            }
        if path == "/device_classes":
            return 200, {"device_classes": copy.deepcopy(self.classes)}
        if path.startswith("/device_classes/") and path.endswith("/euis"):
            cid = int(path.split("/")[2])
            return 200, {"devices": self.bindings.get(cid, [])}
        if path == "/packets":
            return 200, self._page(self.packets, q)
        if path.startswith("/devices/eui/") and path.endswith("/packets"):
            eui = path.split("/")[3].upper()
            mine = [p for p in self.packets if p["device_eui"].upper() == eui]
            if not mine and not any(eui == d["eui"] for ds in self.bindings.values() for d in ds):
                return 404, {"error": "device not found"}
            return 200, self._page(mine, q)
        return 404, {"error": "not found"}

    def _page(self, packets: list[dict], q: dict[str, str]) -> dict:
        after = q.get("received_after")
        limit = int(q.get("limit_to_last", 10 if after is not None else 1))
        limit = max(0, min(limit, 100))
        offset = int(q.get("offset", 0))
        rows = packets
        if after is not None:
            bound = datetime.fromisoformat(after)
            rows = [
                p
                for p in rows
                if (
                    datetime.fromisoformat(p["received_at"]) >= bound
                    if self.inclusive
                    else datetime.fromisoformat(p["received_at"]) > bound
                )
            ]
        asc = q.get("direction", "desc") == "asc" and self.honor_direction
        if not asc:
            rows = rows[::-1]
        start = 0 if (asc and self.asc_offset == "ignore") else offset
        page = rows[start : start + limit]
        return {"more": len(rows) > start + limit, "packets": copy.deepcopy(page)}

    # -- content --------------------------------------------------------------------------------
    def serve_sample_classes(self, generator: Any, *, broken: bool = True) -> None:
        """The three sample classes (and a broken one) with the generator's devices bound by class."""
        by_name = {}
        for name in CLASS_FILES:
            doc = json.loads((ROOT / "samples" / "classes" / name).read_text())
            items = doc["device_classes"] if isinstance(doc, dict) and "device_classes" in doc else doc
            for item in items if isinstance(items, list) else [items]:
                self.classes.append(item)
                by_name[item["name"]] = item["id"]
        gen = sample_generator()
        for k, (gi, i) in enumerate(generator.devices):
            cid = by_name[generator.groups[gi].name]
            self.bindings.setdefault(cid, []).append(
                {"id": k + 1, "eui": gen.device_eui(gi, i), "address": gen.device_addr(gi, i).upper()}
            )
        if broken:
            self.classes.append(copy.deepcopy(BROKEN_CLASS))
            self.bindings[99] = [{"id": 999, "eui": "2564927382738492", "address": "B43320AD"}]


def firefly_generator(seed: int = 1, devices: int = 40) -> Any:
    gen = sample_generator()
    return gen.Generator([gen.parse_group(g) for g in GROUPS], devices, {"firefly": 1.0}, seed)


def firefly_packets(generator: Any, n: int, start: datetime, per_second: float = 3.0) -> list[dict]:
    """``n`` generated uplinks received from ``start`` on, ``per_second`` of them each second."""
    out = []
    for k in range(n):
        p = json.loads(generator.firefly())
        p["received_at"] = _iso(start + timedelta(seconds=k / per_second))
        out.append(p)
    return out


# -- Helium ---------------------------------------------------------------------------------------


class FakeHelium(FakeApi):
    """Helium Console API (see the module docstring): devices, and each device's events newest first."""

    def __init__(self, *, key: str = HELIUM_KEY, clock: FakeClock | None = None, rate: RateLimit | None = None) -> None:
        super().__init__(key, clock=clock, rate=rate)
        self.devices: list[dict] = []
        self.events: dict[str, list[dict]] = {}  # device id -> events, oldest first

    def _authorized(self, seen: Seen) -> bool:
        return seen.headers.get("key") == self.key

    def route(self, path: str, q: dict[str, str]) -> tuple[int, Any]:
        if path == "/devices":
            return 200, copy.deepcopy(self.devices)
        parts = path.split("/")
        if len(parts) == 4 and parts[1] == "devices" and parts[3] == "events":
            events = self.events.get(parts[2])
            if events is None:
                return 404, {"errors": {"error": ["Device not found"]}}
            sub = q.get("sub_category")
            if sub:
                chosen = [e for e in events if e.get("sub_category") == sub][-10:]
            else:
                chosen = events[-100:]
            return 200, copy.deepcopy(chosen[::-1])
        return 404, {"error": "not found"}

    def add_device(self, device_id: str, dev_eui: str, name: str) -> None:
        self.devices.append(
            {
                "active": True,
                "app_eui": "70B3D57ED0000000",
                "dev_eui": dev_eui,
                "id": device_id,
                "name": name,
                "labels": [],
                "oui": 1,
                "organization_id": "07273bc4-4bc9-44ec-b4d5-ad320f162e15",
            }
        )
        self.events.setdefault(device_id, [])

    def add_events(self, device_id: str, events: list[dict]) -> None:
        with self.lock:
            self.events.setdefault(device_id, []).extend(copy.deepcopy(events))


class HeliumTraffic:
    """Uplinks of the sample generator's devices as Helium events: a device event per uplink, an
    integration event for it (``integration=True``), and now and then a downlink (not an uplink)."""

    def __init__(self, seed: int = 3, devices: int = 6) -> None:
        gen = sample_generator()
        self.gen = gen
        self.g = gen.Generator([gen.parse_group(g) for g in GROUPS], devices, {"helium_event": 1.0}, seed)
        self.t_ms = 1_700_000_000_000
        self.fcnt: dict[str, int] = {}

    def device_ids(self) -> list[tuple[str, str, str]]:
        """(device id, DevEUI, class name) of every device."""
        return [
            (self.gen.device_uuid(gi, i), self.gen.device_eui(gi, i), self.g.groups[gi].name)
            for gi, i in self.g.devices
        ]

    def uplink(self, device_id: str, *, integration: bool = True, downlink: bool = False) -> list[dict]:
        """The events of one uplink of ``device_id`` (the device event first)."""
        gi, i = next((gi, i) for gi, i in self.g.devices if self.gen.device_uuid(gi, i) == device_id)
        fcnt = self.fcnt[device_id] = self.fcnt.get(device_id, 100) + 1
        self.t_ms += 1_000 + self.g.rng.randrange(0, 5_000)
        t = self.t_ms
        port, body = self.g.payload(gi, fcnt, 1 + gi)
        payload = base64.b64encode(body).decode()
        hotspot = json.loads(self.g._hotspot(None))
        rid = f"{self.g.rng.getrandbits(64):016x}"
        event = {
            "category": "uplink",
            "data": {
                "dc": {"balance": 7944423, "nonce": 2, "used": 1},
                "devaddr": self.gen.device_addr(gi, i),
                "fcnt": fcnt,
                "hold_time": 30,
                "hotspot": hotspot,
                "mac": [],
                "payload": payload,
                "payload_size": len(body),
                "port": port,
            },
            "description": "Unconfirmed data up received",
            "device_id": device_id,
            "frame_down": None,
            "frame_up": fcnt,
            "id": f"ev-{rid}",
            "organization_id": "07273bc4-4bc9-44ec-b4d5-ad320f162e15",
            "reported_at": str(t),
            "router_uuid": "5c6b6b1e-2d1c-4f4e-9b0a-0c1d2e3f4a5b",
            "sub_category": "uplink_unconfirmed",
        }
        out = [event]
        if integration:
            hs = dict(hotspot, reported_at=t - 40, hold_time=31, status="success")
            body_doc = {
                "app_eui": "70B3D57ED0000000",
                "dev_eui": self.gen.device_eui(gi, i),
                "devaddr": self.gen.device_addr(gi, i),
                "fcnt": fcnt,
                "hotspots": [hs],
                "id": device_id,
                "metadata": {
                    "adr_allowed": False,
                    "cf_list_enabled": False,
                    "multi_buy": 1,
                    "organization_id": "07273bc4-4bc9-44ec-b4d5-ad320f162e15",
                },
                "name": f"device-{gi}-{i}",
                "payload": payload,
                "payload_size": len(body),
                "port": port,
                "reported_at": t - 40,
                "uuid": device_id,
            }
            out.append(
                {
                    "category": "uplink",
                    "data": {
                        "integration": {"id": "2b7c5f42", "name": "azure-int", "status": "success"},
                        "req": {"body": body_doc, "qos": 0},
                    },
                    "description": 'Request sent to <<"azure-int">>',
                    "device_id": device_id,
                    "frame_down": None,
                    "frame_up": None,
                    "id": f"in-{rid}",
                    "organization_id": "07273bc4-4bc9-44ec-b4d5-ad320f162e15",
                    "reported_at": str(t + 400),
                    "router_uuid": "5c6b6b1e-2d1c-4f4e-9b0a-0c1d2e3f4a5b",
                    "sub_category": "uplink_integration_req",
                }
            )
        if downlink:
            out.append(
                {
                    "category": "downlink",
                    "data": {"fcnt": fcnt, "port": 0, "payload": ""},
                    "description": "Ack sent",
                    "device_id": device_id,
                    "id": f"dn-{rid}",
                    "reported_at": str(t + 900),
                    "sub_category": "downlink_ack",
                }
            )
        return out


# -- helpers for the pull tests ------------------------------------------------------------------


def read_rows(path: str | os.PathLike) -> list[dict]:
    """The rows of an output: a file, a class-partitioned Parquet directory or an --append directory
    (files starting with "." or "_" are not data, as dataset readers agree)."""
    import pyarrow.parquet as pq
    from pyarrow import ipc

    p = Path(path)
    if p.is_dir():
        rows: list[dict] = []
        for f in sorted(p.rglob("*")):
            rel = f.relative_to(p).parts
            if f.is_file() and not any(part.startswith((".", "_")) for part in rel):
                rows.extend(read_rows(f))
        return rows
    name = p.name.removesuffix(".gz")
    if name.endswith(".parquet"):
        rows = pq.read_table(p).to_pylist()
        folder = p.parent.name
        if folder.startswith("device_class="):  # a class partition: the class is in the path, not the file
            value = unquote(folder.partition("=")[2])
            for row in rows:
                row["device_class"] = value or None  # device_class= holds the rows without a class
        return rows
    if name.endswith(".arrow"):
        with ipc.open_file(p) as reader:
            return reader.read_all().to_pylist()
    opener = gzip.open if p.name.endswith(".gz") else open
    with opener(p, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def all_text(root: str | os.PathLike) -> bytes:
    """Every byte of every file under ``root`` (gzip files also inflated), for grepping."""
    out = []
    for f in Path(root).rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            out.append(data)
            if data[:2] == b"\x1f\x8b":
                out.append(gzip.decompress(data))
    return b"\n".join(out)
